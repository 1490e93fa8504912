'use strict';
// The CommonJS entry (package.json exports "require"). transformer-heads is an ES module. Where Node can require() an
// ES module (Node >= 20.19, Electron >= 35) this returns it; elsewhere it throws an error
// that says what to write instead, rather than Node's ERR_PACKAGE_PATH_NOT_EXPORTED or ERR_REQUIRE_ESM.
try {
  module.exports = require('../dist/index.js');
} catch (e) {
  if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
    const err = new Error(
      `transformer-heads is an ES module, and this Node (${process.version}${process.versions.electron ? `, Electron ${process.versions.electron}` : ''}) cannot require() it.\n` +
        "From CommonJS, load it with a dynamic import:  const th = await import('transformer-heads');\n" +
        '(inside an async function; every model call is async anyway). Node >= 20.19 and Electron >= 35 can require() it directly.',
    );
    err.code = 'ERR_TH_REQUIRE_ESM';
    err.cause = e;
    throw err;
  }
  throw e;
}

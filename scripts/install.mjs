#!/usr/bin/env node
// npm's install script: make sure this package has a native binary that runs against the libtorch on this machine.
//   1. a prebuild (prebuilds/<platform>-<arch>/) that fits the libtorch found: nothing is compiled
//   2. otherwise a build from source with the node-gyp that npm bundles (binding.gyp), so no devDependency is needed
//   3. otherwise one message: what is missing and the one command that fixes it here
// libtorch is found in the order of scripts/libtorch.mjs (TRANSFORMER_HEADS_LIBTORCH / LIBTORCH, Torch_DIR, PyTorch's
// Python package, the system), the same order the runtime uses.
//
// Settings (environment):
//   TRANSFORMER_HEADS_BUILD_FROM_SOURCE=1  ignore the prebuilds and build
//   TRANSFORMER_HEADS_SKIP_INSTALL=1       do nothing (the first load reports what is missing)
// In a development checkout (ts/ next to this folder) this does nothing: bash scripts/setup.sh builds there.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findLibtorch, fixCommand, locateNative } from './libtorch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const log = (msg) => console.error(`transformer-heads: ${msg}`);

/** Loads the binary that locateNative picks in a fresh process and calls runtimeInfo(): the proof that it runs. */
function checkLoads(extraEnv = {}) {
  const code = `
    const { createRequire } = require('node:module');
    import(${JSON.stringify(new URL('./libtorch.mjs', import.meta.url).href)}).then(async (lib) => {
      const loc = await lib.locateNative(${JSON.stringify(root)}, process.env);
      const r = createRequire(${JSON.stringify(join(root, 'package.json'))});
      await r(loc.binary.loader).preload(loc.preload);
      const info = await r(loc.binary.path).runtimeInfo();
      console.log(JSON.stringify({ kind: loc.binary.kind, path: loc.binary.path, torch: info.torchVersion, from: loc.libtorch.detail }));
    }).catch((e) => { console.error(e.message); process.exit(1); });`;
  return new Promise((res) => {
    execFile(process.execPath, ['-e', code], { env: { ...env, ...extraEnv }, timeout: 300_000 }, (err, stdout, stderr) =>
      res(err ? { ok: false, error: (stderr || err.message).trim() } : { ok: true, ...JSON.parse(stdout.trim().split('\n').pop()) }),
    );
  });
}

function onPath(cmd) {
  return (env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, cmd)));
}

/** The node-gyp that npm bundles: npm passes it as npm_config_node_gyp; else next to this node's npm. */
function nodeGyp() {
  const candidates = [
    env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => c && existsSync(c)) ?? null;
}

/** What a build from source lacks here, each with the package that provides it. */
async function buildPrerequisites() {
  const missing = [];
  const debian = existsSync('/etc/debian_version');
  if (!onPath(env.CXX ?? 'c++') && !onPath('g++') && !onPath('clang++')) missing.push({ what: 'a C++17 compiler (g++)', pkg: 'g++' });
  if (!onPath('make')) missing.push({ what: 'make', pkg: 'make' });
  if (!onPath('python3') && !onPath('python')) missing.push({ what: 'python3 (node-gyp runs it)', pkg: 'python3' });
  if (!nodeGyp()) missing.push({ what: "node-gyp (npm's own copy was not found)", pkg: null, cmd: 'npm install -g node-gyp' });
  let libtorch = null;
  try {
    libtorch = await findLibtorch({ headers: true, env });
  } catch (e) {
    // Debian's runtime package (libtorch1.13) without libtorch-dev: the libraries but no headers.
    missing.push({ what: `libtorch's C++ headers (${e.message})`, pkg: 'libtorch-dev', cmd: debian ? null : e.fix });
  }
  // The core reads JSON with nlohmann/json (header-only): Debian's nlohmann-json3-dev, or any include folder.
  const jsonRoots = ['/usr/include', '/usr/local/include', ...(libtorch?.include ?? []), ...(env.CPATH ?? '').split(':').filter(Boolean)];
  if (!jsonRoots.some((d) => existsSync(join(d, 'nlohmann', 'json.hpp')))) missing.push({ what: 'nlohmann/json.hpp (the JSON header library)', pkg: 'nlohmann-json3-dev' });
  const pkgs = missing.filter((m) => m.pkg).map((m) => m.pkg);
  const fix = [
    ...(pkgs.length ? [debian ? `sudo apt-get install ${pkgs.join(' ')}` : `install ${pkgs.join(', ')} with your system's package manager`] : []),
    ...missing.filter((m) => m.cmd).map((m) => m.cmd),
  ];
  return { missing, fix, libtorch };
}

/** node-gyp's headers for this Node: the installed ones when they are there, so that nothing is downloaded. */
function nodedirArgs() {
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) && existsSync(join(prefix, 'include', 'node', 'common.gypi')) ? [`--nodedir=${prefix}`] : [];
}

function run(cmd, args, opts) {
  return new Promise((res) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => res({ code, out }));
    child.on('error', (e) => res({ code: -1, out: String(e) }));
  });
}

async function buildFromSource(reason) {
  const pre = await buildPrerequisites();
  if (pre.missing.length) {
    return {
      ok: false,
      message:
        `${reason}, and it cannot be built from source here: missing ${pre.missing.map((m) => m.what).join('; ')}.\n` +
        `Fix: ${pre.fix.join(' && ')}, then: npm rebuild transformer-heads`,
    };
  }
  const jobs = String(Math.max(1, Math.min(4, (await import('node:os')).availableParallelism())));
  log(`${reason}; building from source against libtorch in ${pre.libtorch.libdir} (node-gyp, ${jobs} jobs; 5-20 minutes)`);
  const t0 = performance.now();
  const gyp = nodeGyp();
  const r = await run(process.execPath, [gyp, 'rebuild', '--release', '-j', jobs, ...nodedirArgs()], { cwd: root, env });
  if (r.code !== 0) {
    return {
      ok: false,
      message: `${reason}, and the build from source failed (node-gyp exit ${r.code}). Its last lines:\n${r.out.split('\n').slice(-30).join('\n')}`,
    };
  }
  const s = await run(process.execPath, [join(root, 'scripts', 'libtorch.mjs'), 'stamp', join(root, 'build', 'Release', 'transformer_heads.node'), 'node-gyp'], { cwd: root, env });
  if (s.code !== 0) return { ok: false, message: `the build succeeded but recording its libtorch failed: ${s.out}` };
  log(`built in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return { ok: true };
}

async function main() {
  if (existsSync(join(root, 'ts', 'index.ts'))) {
    log('development checkout: nothing to install (bash scripts/setup.sh builds the addon)');
    return 0;
  }
  if (env.TRANSFORMER_HEADS_SKIP_INSTALL) {
    log('TRANSFORMER_HEADS_SKIP_INSTALL is set: no binary checked or built');
    return 0;
  }
  let located = null;
  let reason = null;
  try {
    located = await locateNative(root, env);
  } catch (e) {
    if (!e.libtorch) {
      // No libtorch at all: nothing to build against either. Not an install failure: installing libtorch afterwards
      // makes the prebuild work with no rebuild, and the first load says the same as this.
      log(`${e.message}\nFix: ${e.fix ?? fixCommand()}\nThe package is installed; it loads once libtorch is there (check with: npx transformer-heads doctor).`);
      return 0;
    }
    // One line: "no binary fits libtorch X from Y: <binary>: it needs ...; <binary>: ..."
    reason = e.message.replace(/:\n {2}- /, ': ').replace(/\n {2}- /g, '; ').split('\n')[0];
  }
  if (located && !env.TRANSFORMER_HEADS_BUILD_FROM_SOURCE) {
    const check = await checkLoads();
    if (check.ok) {
      log(`using the ${check.kind} ${check.path.slice(root.length + 1)} with libtorch ${check.torch} from ${check.from}`);
      return 0;
    }
    reason = `the ${located.binary.kind} did not load: ${check.error.split('\n')[0]}`;
  }
  reason ??= 'TRANSFORMER_HEADS_BUILD_FROM_SOURCE is set';
  const built = await buildFromSource(reason);
  if (!built.ok) {
    log(built.message);
    return 1;
  }
  const check = await checkLoads();
  if (!check.ok) {
    log(`the binary built from source does not load: ${check.error}`);
    return 1;
  }
  log(`using the ${check.kind} with libtorch ${check.torch} from ${check.from}`);
  return 0;
}

process.exitCode = await main();

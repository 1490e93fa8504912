#!/usr/bin/env node
// npm run build:prebuild: the prebuilt binaries that ship in the package, for the libtorch found on this machine.
//   prebuilds/<platform>-<arch>/transformer_heads.<libc>.torch-<major.minor>-<cpu|cuda>.node  the addon
//   prebuilds/<platform>-<arch>/transformer_heads.<libc>.torch-<major.minor>-<cpu|cuda>.json  what it was built against
//   prebuilds/<platform>-<arch>/th_loader.<libc>.node                                        the loader (no libtorch)
// Built with cmake-js in its own folder (build-prebuild/, not build/: the developer's build and its C++ tests stay),
// without C++ tests and without any RPATH, then stripped (--reuse: build/Release instead, when it is up to date).
// The runtime (scripts/libtorch.mjs) picks the prebuild whose libtorch version matches the libtorch it finds;
// node-gyp-build's naming would ignore the torch tag, hence our own.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describeBinary, libcInfo } from './libtorch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const t0 = performance.now();

/** Whether build/Release (the developer's cmake-js build) is newer than every native source: then it is reused. */
function freshLocalBuild() {
  const addon = join(root, 'build', 'Release', 'transformer_heads.node');
  const record = join(root, 'build', 'Release', 'transformer_heads.torch.json');
  let built;
  try {
    built = Math.min(statSync(addon).mtimeMs, statSync(join(root, 'build', 'Release', 'th_loader.node')).mtimeMs);
    statSync(record);
  } catch {
    return false;
  }
  const sources = [join(root, 'CMakeLists.txt'), join(root, 'binding.gyp')];
  for (const d of ['native/core', 'native/addon', 'native/loader']) for (const f of readdirSync(join(root, d))) sources.push(join(root, d, f));
  return sources.every((f) => statSync(f).mtimeMs <= built);
}

// --reuse: package build/Release when it is up to date (its addon is the same binary: the C++ tests are separate
// targets, and no build of the addon has an RPATH), so CI compiles the addon once. Otherwise build-prebuild/.
let built;
if (process.argv.includes('--reuse') && freshLocalBuild()) {
  built = join(root, 'build', 'Release');
  console.error(`prebuild: packaging the up-to-date build in ${built}`);
} else {
  const out = join(root, 'build-prebuild');
  const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? '2';
  const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
  execFileSync(process.execPath, [cmakeJs, 'compile', '--out', out, '--parallel', jobs, '--CDTH_BUILD_TESTS=OFF'], { cwd: root, stdio: 'inherit' });
  built = join(out, 'Release');
}
const buildS = (performance.now() - t0) / 1000;

const meta = JSON.parse(readFileSync(join(built, 'transformer_heads.torch.json'), 'utf8'));
const libc = libcInfo();
const tag = `torch-${/^(\d+\.\d+)/.exec(meta.torchVersion)[1]}-${meta.cuda ? 'cuda' : 'cpu'}`;
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
// One prebuild per libtorch version and flavour: a rebuild replaces the one with the same tag only.
for (const f of readdirSync(dir)) if (f.includes(`.${tag}.`) || f.startsWith('th_loader.')) rmSync(join(dir, f));
const addon = join(dir, `transformer_heads.${libc.family}.${tag}.node`);
const loader = join(dir, `th_loader.${libc.family}.node`);
copyFileSync(join(built, 'transformer_heads.node'), addon);
copyFileSync(join(built, 'th_loader.node'), loader);
execFileSync('strip', ['--strip-unneeded', addon, loader]);
const record = {
  torchVersion: meta.torchVersion,
  cxx11Abi: meta.cxx11Abi,
  cuda: meta.cuda,
  builder: 'cmake-js (npm run prebuild)',
  glibc: libc.version,
  napi: 8,
};
writeFileSync(addon.replace(/\.node$/, '.json'), JSON.stringify(record, null, 2) + '\n');
const d = await describeBinary(addon, 'prebuild');
if (d.rpath) throw new Error(`${addon} has an RPATH (${d.rpath}): a prebuild must find libtorch through the loader only`);
const mb = (p) => (statSync(p).size / 2 ** 20).toFixed(1);
console.log(
  JSON.stringify({ addon, loader, needs: d.torchNeeded, record, addon_mib: Number(mb(addon)), loader_kib: Math.round(statSync(loader).size / 1024), build_s: Math.round(buildS) }),
);

#!/usr/bin/env node
// Finds libtorch for the node-gyp build (binding.gyp calls this), in the same order as CMakeLists.txt:
//   LIBTORCH (a libtorch folder) -> Torch_DIR (folder of TorchConfig.cmake) -> the PyTorch Python package -> system.
// Usage: node scripts/libtorch.mjs include|libs|ldflags|cflags|info
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

function layout(prefix, source) {
  const include = join(prefix, 'include');
  if (!existsSync(join(include, 'torch', 'script.h'))) return null;
  const libdir = ['lib', 'lib64'].map((d) => join(prefix, d)).find((d) => existsSync(join(d, 'libtorch.so')) || existsSync(join(d, 'libtorch.dylib')));
  if (!libdir) return null;
  const cmakeDir = join(prefix, 'share', 'cmake', 'Torch');
  return { source, include: [include, join(include, 'torch', 'csrc', 'api', 'include')], libdir, cmakeDir };
}

function systemLayout() {
  for (const libdir of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib']) {
    if (!existsSync(join(libdir, 'libtorch.so'))) continue;
    for (const inc of ['/usr/include', '/usr/local/include']) {
      if (existsSync(join(inc, 'torch', 'script.h'))) {
        return { source: 'system', include: [inc, join(inc, 'torch', 'csrc', 'api', 'include')], libdir, cmakeDir: join(libdir, 'cmake', 'Torch') };
      }
    }
  }
  return null;
}

function pythonTorchDir() {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      const out = execFileSync(py, ['-c', 'import os, torch; print(os.path.dirname(torch.__file__), int(torch.compiled_with_cxx11_abi()))'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      }).toString();
      const [dir, abi] = out.trim().split(' ');
      return { dir, abi };
    } catch {
      /* next */
    }
  }
  return null;
}

export function findLibtorch() {
  const tried = [];
  if (process.env.LIBTORCH) {
    const l = layout(resolve(process.env.LIBTORCH), `LIBTORCH=${process.env.LIBTORCH}`);
    if (l) return l;
    tried.push(`LIBTORCH=${process.env.LIBTORCH} (no include/torch/script.h or lib/libtorch.so there)`);
  }
  if (process.env.Torch_DIR) {
    const l = layout(resolve(process.env.Torch_DIR, '..', '..', '..'), `Torch_DIR=${process.env.Torch_DIR}`);
    if (l) return l;
    tried.push(`Torch_DIR=${process.env.Torch_DIR}`);
  }
  const py = pythonTorchDir();
  if (py) {
    const l = layout(py.dir, `PyTorch Python package (${py.dir})`);
    if (l) return { ...l, abi: py.abi };
    tried.push(`PyTorch Python package at ${py.dir} (no C++ headers there)`);
  }
  const s = systemLayout();
  if (s) return s;
  tried.push('system (/usr/include/torch, /usr/lib*/libtorch.so)');
  throw new Error(
    `libtorch was not found. Tried: ${tried.join('; ')}.\n` +
      'Fix it with one of: bash scripts/setup.sh (Debian/Ubuntu, installs libtorch-dev); export LIBTORCH=/path/to/libtorch; pip install torch; export Torch_DIR=/path/to/share/cmake/Torch',
  );
}

function cxxAbiFlag(l) {
  // TorchConfig.cmake records the libstdc++ ABI libtorch was built with; mixing ABIs fails at link or load time.
  const cfg = join(l.cmakeDir, 'TorchConfig.cmake');
  if (existsSync(cfg)) {
    const m = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(readFileSync(cfg, 'utf8'));
    if (m) return `-D_GLIBCXX_USE_CXX11_ABI=${m[1]}`;
  }
  return l.abi !== undefined ? `-D_GLIBCXX_USE_CXX11_ABI=${l.abi}` : '';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const l = findLibtorch();
    const what = process.argv[2] ?? 'info';
    const cuda = existsSync(join(l.libdir, 'libtorch_cuda.so'));
    const out = {
      include: l.include,
      libs: [`-L${l.libdir}`, '-ltorch', '-ltorch_cpu', '-lc10', ...(cuda ? ['-ltorch_cuda', '-lc10_cuda'] : [])],
      // RPATH (not RUNPATH) so libtorch's own dependencies resolve through it too.
      ldflags: [`-Wl,-rpath,${l.libdir}`, '-Wl,--disable-new-dtags', ...(cuda ? ['-Wl,--no-as-needed,-ltorch_cuda,--as-needed'] : [])],
      cflags: [cxxAbiFlag(l)].filter(Boolean),
    }[what];
    if (what === 'info') console.log(JSON.stringify(l, null, 2));
    else if (!out) throw new Error(`unknown query '${what}' (include, libs, ldflags, cflags, info)`);
    else console.log(out.join(' '));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}

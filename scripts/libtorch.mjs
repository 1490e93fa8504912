#!/usr/bin/env node
// Where libtorch is, and which binary of this package runs against it: the one search used by every build and by
// every run (binding.gyp, scripts/install.mjs, scripts/prebuild.mjs, the runtime loader in ts/native/binding.ts and
// `transformer-heads doctor`). CMakeLists.txt follows the same order with find_package.
//
// Search order (the first location that holds libtorch wins; an explicit setting that is wrong is an error, not
// skipped, so a typo never silently picks another libtorch):
//   1. TRANSFORMER_HEADS_LIBTORCH, then LIBTORCH: a libtorch folder (the unpacked zip: lib/ and include/ under it),
//      or its lib/ folder itself
//   2. Torch_DIR: the folder holding TorchConfig.cmake (<prefix>/share/cmake/Torch)
//   3. PyTorch's Python package: python3 (then /usr/bin/python3) -> torch/lib (found without importing torch)
//   4. the system: LD_LIBRARY_PATH, /usr/local/lib, /usr/lib/<triplet>, /usr/lib64, /usr/lib (Debian: libtorch-dev)
// A build needs headers too (include/torch/script.h): a location without them is passed over when building.
//
// CLI: node scripts/libtorch.mjs include|libs|ldflags|cflags|info|locate|stamp <binary.node>
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// In load order: each library's DT_NEEDED are loaded before it. libtorch.so itself is small; it needs the others.
const LIBRARY_NAMES = ['c10', 'c10_cuda', 'torch_cpu', 'torch_cuda', 'torch'];

// ------------------------------------------------------------------------------------------------ ELF
// The dynamic section of a 64-bit little-endian ELF file: its SONAME, its DT_NEEDED, its RPATH/RUNPATH. Read with a
// few small reads (libtorch_cpu is hundreds of MB), so it costs well under a millisecond per file.
export async function readElf(path, { scanFor } = {}) {
  const fh = await open(path, 'r');
  try {
    const read = async (pos, len) => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    };
    const h = await read(0, 64);
    if (h.length < 64 || h.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path} is not an ELF file`);
    if (h[4] !== 2 || h[5] !== 1) throw new Error(`${path} is not a 64-bit little-endian ELF file`);
    const phoff = Number(h.readBigUInt64LE(0x20));
    const phentsize = h.readUInt16LE(0x36);
    const phnum = h.readUInt16LE(0x38);
    const ph = await read(phoff, phentsize * phnum);
    const loads = [];
    let dyn = null;
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      const type = ph.readUInt32LE(o);
      const seg = { offset: Number(ph.readBigUInt64LE(o + 8)), vaddr: Number(ph.readBigUInt64LE(o + 16)), filesz: Number(ph.readBigUInt64LE(o + 32)) };
      if (type === 1) loads.push(seg);
      else if (type === 2) dyn = seg;
    }
    const result = { soname: null, needed: [], rpath: null, runpath: null, found: null };
    if (!dyn) return result;
    const d = await read(dyn.offset, dyn.filesz);
    const entries = [];
    let strtab = 0;
    let strsz = 0;
    for (let o = 0; o + 16 <= d.length; o += 16) {
      const tag = Number(d.readBigInt64LE(o));
      const val = Number(d.readBigUInt64LE(o + 8));
      if (tag === 0) break;
      if (tag === 5) strtab = val;
      else if (tag === 10) strsz = val;
      else entries.push([tag, val]);
    }
    const seg = loads.find((s) => strtab >= s.vaddr && strtab < s.vaddr + s.filesz);
    if (!seg) return result;
    const strOff = strtab - seg.vaddr + seg.offset;
    const str = async (off) => {
      const b = await read(strOff + off, 4096);
      const end = b.indexOf(0);
      return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
    };
    for (const [tag, val] of entries) {
      if (tag === 1) result.needed.push(await str(val));
      else if (tag === 14) result.soname = await str(val);
      else if (tag === 15) result.rpath = await str(val);
      else if (tag === 29) result.runpath = await str(val);
    }
    if (scanFor) result.found = (await read(strOff, strsz)).includes(scanFor);
    return result;
  } finally {
    await fh.close();
  }
}

// ------------------------------------------------------------------------------------------------ search
function triplet() {
  return { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.arch] ?? `${process.arch}-linux-gnu`;
}

/** The file in `dir` for library `name`: lib<name>.so, else the shortest lib<name>.so.<version>. */
function libraryFile(dir, name) {
  const plain = join(dir, `lib${name}.so`);
  if (existsSync(plain)) return plain;
  let files;
  try {
    files = readdirSync(dir);
  } catch {
    return null;
  }
  const re = new RegExp(`^lib${name}\\.so(\\.\\d+)+$`);
  const versioned = files.filter((f) => re.test(f)).sort((a, b) => a.length - b.length);
  return versioned.length ? join(dir, versioned[0]) : null;
}

function hasLibtorch(libdir) {
  return libraryFile(libdir, 'torch_cpu') !== null && libraryFile(libdir, 'c10') !== null;
}

function runPython(py, code) {
  return new Promise((res) => {
    execFile(py, ['-c', code], { timeout: 20000 }, (err, stdout) => res(err ? null : stdout.trim()));
  });
}

// torch's package folder, found with importlib's spec search: importing torch would take seconds.
async function pythonTorchDir(env) {
  const tried = [];
  for (const py of [env.TRANSFORMER_HEADS_PYTHON || 'python3', '/usr/bin/python3']) {
    if (tried.includes(py)) continue;
    tried.push(py);
    const out = await runPython(py, "import importlib.util as u; s = u.find_spec('torch'); print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')");
    if (out) return { python: py, dir: out };
  }
  return null;
}

function firstInclude(...roots) {
  for (const r of roots) if (r && existsSync(join(r, 'torch', 'script.h'))) return [r, join(r, 'torch', 'csrc', 'api', 'include')];
  return null;
}

class LibtorchNotFound extends Error {
  constructor(message, tried, headers) {
    super(message);
    this.code = 'ERR_TH_NATIVE';
    this.tried = tried;
    this.fix = fixCommand(headers);
  }
}

/** The one command that installs a libtorch on this machine (headers too when building). */
export function fixCommand(headers = false) {
  const debian = existsSync('/etc/debian_version');
  if (process.platform === 'linux' && debian) return headers ? 'sudo apt-get install libtorch-dev' : 'sudo apt-get install libtorch-dev   (or only the runtime: libtorch1.13)';
  if (process.platform === 'linux') return 'pip install torch   (or unpack the libtorch zip from pytorch.org and export TRANSFORMER_HEADS_LIBTORCH=/path/to/libtorch)';
  return `no libtorch build of transformer-heads exists for ${process.platform}-${process.arch} yet; Linux x64 is supported`;
}

/**
 * Finds libtorch in the documented order. `headers`: a build needs include/ too. Returns
 * { source, detail, root, libdir, include, cmakeDir, libraries: [{ name, path }] } or throws LibtorchNotFound.
 */
export async function findLibtorch({ headers = false, env = process.env } = {}) {
  const tried = [];
  const candidate = (source, detail, root, libdir, includeRoots, cmakeDir) => {
    if (!libdir || !hasLibtorch(libdir)) return { missing: `no libtorch_cpu.so / libc10.so in ${libdir ?? root}` };
    const include = headers ? firstInclude(...includeRoots) : null;
    if (headers && !include) return { missing: `libraries in ${libdir} but no C++ headers (include/torch/script.h)` };
    const libraries = LIBRARY_NAMES.map((name) => ({ name, path: libraryFile(libdir, name) })).filter((l) => l.path);
    return { source, detail, root, libdir, include, cmakeDir, libraries };
  };
  for (const key of ['TRANSFORMER_HEADS_LIBTORCH', 'LIBTORCH']) {
    const v = env[key];
    if (!v) continue;
    const root = resolve(v);
    const libdir = hasLibtorch(join(root, 'lib')) ? join(root, 'lib') : root;
    const prefix = libdir === root ? dirname(root) : root;
    const c = candidate(key, `${key}=${v}`, prefix, libdir, [join(prefix, 'include')], join(prefix, 'share', 'cmake', 'Torch'));
    if (!c.missing) return c;
    throw new LibtorchNotFound(`${key}=${v} is not a libtorch folder: ${c.missing}. Point it at the folder that holds lib/libtorch_cpu.so (the unpacked libtorch zip), or unset it.`, [`${key}: ${c.missing}`], headers);
  }
  if (env.Torch_DIR) {
    const prefix = resolve(env.Torch_DIR, '..', '..', '..');
    const c = candidate('Torch_DIR', `Torch_DIR=${env.Torch_DIR}`, prefix, [join(prefix, 'lib'), join(prefix, 'lib64')].find(hasLibtorch) ?? join(prefix, 'lib'), [join(prefix, 'include')], resolve(env.Torch_DIR));
    if (!c.missing) return c;
    throw new LibtorchNotFound(`Torch_DIR=${env.Torch_DIR} does not lead to a libtorch: ${c.missing}. Unset it or point it at <libtorch>/share/cmake/Torch.`, [`Torch_DIR: ${c.missing}`], headers);
  }
  const py = await pythonTorchDir(env);
  if (py) {
    const c = candidate('python', `PyTorch Python package (${py.python}: ${py.dir})`, py.dir, join(py.dir, 'lib'), [join(py.dir, 'include')], join(py.dir, 'share', 'cmake', 'Torch'));
    if (!c.missing) return c;
    tried.push(`PyTorch Python package at ${py.dir}: ${c.missing}`);
  } else {
    tried.push('PyTorch Python package: python3 has no torch module');
  }
  const ldPath = (env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean);
  const dirs = [...ldPath, '/usr/local/lib', `/usr/lib/${triplet()}`, '/usr/lib64', '/usr/lib', `/lib/${triplet()}`];
  for (const libdir of dirs) {
    if (!hasLibtorch(libdir)) continue;
    const c = candidate('system', `system (${libdir})`, dirname(libdir), libdir, ['/usr/local/include', '/usr/include', join(dirname(libdir), 'include')], join(libdir, 'cmake', 'Torch'));
    if (!c.missing) return c;
    tried.push(`system ${libdir}: ${c.missing}`);
  }
  tried.push(`system: no libtorch_cpu.so in ${dirs.join(', ')}`);
  throw new LibtorchNotFound(
    `libtorch${headers ? ' with its C++ headers' : ''} was not found. Looked at: TRANSFORMER_HEADS_LIBTORCH / LIBTORCH (unset), Torch_DIR (unset); ${tried.join('; ')}.`,
    tried,
    headers,
  );
}

/** Version, C++ ABI, CUDA and SONAMEs of a libtorch that findLibtorch returned. */
export async function describeLibtorch(lt) {
  let version = null;
  const tryRead = (p, re) => {
    try {
      const m = re.exec(readFileSync(p, 'utf8'));
      return m ? m[1].trim() : null;
    } catch {
      return null;
    }
  };
  if (lt.root) version = tryRead(join(lt.root, 'build-version'), /^(.+)$/m) ?? tryRead(join(lt.root, 'version.py'), /__version__\s*=\s*['"]([^'"]+)['"]/);
  const cmakeDirs = [lt.cmakeDir, join(lt.libdir, 'cmake', 'Torch'), lt.root && join(lt.root, 'share', 'cmake', 'Torch')].filter(Boolean);
  for (const d of cmakeDirs) version ??= tryRead(join(d, 'TorchConfigVersion.cmake'), /PACKAGE_VERSION\s+"([^"]+)"/);
  let cxx11Abi = null;
  for (const d of cmakeDirs) {
    const v = tryRead(join(d, 'TorchConfig.cmake'), /_GLIBCXX_USE_CXX11_ABI=([01])/);
    if (v !== null) {
      cxx11Abi = Number(v);
      break;
    }
  }
  const libraries = [];
  for (const l of lt.libraries) {
    const real = realpathSync(l.path);
    const elf = await readElf(real, l.name === 'c10' && cxx11Abi === null ? { scanFor: '__cxx11' } : {});
    if (l.name === 'c10' && cxx11Abi === null) cxx11Abi = elf.found ? 1 : 0;
    libraries.push({ ...l, real, soname: elf.soname ?? basename(real) });
  }
  const cpu = libraries.find((l) => l.name === 'torch_cpu');
  const sonameVersion = /\.so\.(\d+\.\d+)/.exec(cpu?.soname ?? '')?.[1] ?? null;
  version ??= sonameVersion;
  return { ...lt, version, cxx11Abi, cuda: libraries.some((l) => l.name === 'torch_cuda'), libraries };
}

// ------------------------------------------------------------------------------------------------ binaries
/** Reads what a built addon needs: its torch SONAMEs and the sidecar JSON (<name>.torch.json or <stem>.json). */
export async function describeBinary(path, kind) {
  const elf = await readElf(path);
  const candidates = [path.replace(/\.node$/, '.json'), join(dirname(path), 'transformer_heads.torch.json')];
  let meta = null;
  for (const c of candidates) {
    if (c !== path && existsSync(c)) {
      meta = JSON.parse(readFileSync(c, 'utf8'));
      break;
    }
  }
  return { path, kind, torchNeeded: elf.needed.filter((n) => /^lib(torch|c10)/.test(n)), rpath: elf.rpath ?? elf.runpath, meta };
}

const majorMinor = (v) => /^(\d+\.\d+)/.exec(v ?? '')?.[1] ?? null;

/** Why `binary` cannot run against `lt` (a described libtorch), or null when it can. */
export function incompatibility(binary, lt) {
  const have = new Set(lt.libraries.map((l) => l.soname));
  const missing = binary.torchNeeded.filter((n) => !have.has(n));
  const need = binary.meta ? `libtorch ${binary.meta.torchVersion} (${binary.meta.cuda ? 'CUDA' : 'CPU'}, C++${binary.meta.cxx11Abi === 0 ? ' pre-cxx11' : '11'} ABI)` : `the libraries ${binary.torchNeeded.join(', ')}`;
  const found = `libtorch ${lt.version ?? '(version unknown)'} (${lt.cuda ? 'CUDA' : 'CPU'}) from ${lt.detail}`;
  if (binary.meta && lt.version && majorMinor(binary.meta.torchVersion) !== majorMinor(lt.version)) return `it needs ${need}; found ${found}`;
  if (binary.meta && binary.meta.cxx11Abi != null && lt.cxx11Abi != null && binary.meta.cxx11Abi !== lt.cxx11Abi) return `it needs ${need}; found ${found} with the other C++ ABI`;
  if (missing.length) return `it links ${missing.join(', ')}, which ${found} does not provide (it has ${[...have].join(', ')})`;
  return null;
}

// musl by its dynamic loader's file: process.report would say too, but a report takes milliseconds to build.
function platformTag() {
  const musl = process.platform === 'linux' && readdirSafe('/lib').some((f) => f.startsWith('ld-musl-'));
  return { dir: `${process.platform}-${process.arch}`, libc: process.platform !== 'linux' ? null : musl ? 'musl' : 'glibc' };
}

function readdirSafe(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The C library the running Node uses, for doctor and a prebuild's record: e.g. { family: 'glibc', version: '2.36' }. */
export function libcInfo() {
  const header = process.report?.getReport?.().header ?? {};
  return header.glibcVersionRuntime ? { family: 'glibc', version: header.glibcVersionRuntime } : { family: platformTag().libc, version: null };
}

/**
 * The binaries this package could run, best first: TRANSFORMER_HEADS_BINDING, then a local build (build/Release),
 * then the prebuilds for this platform. Each with its loader (th_loader.node) and what it needs.
 */
export async function binaryCandidates(root = PACKAGE_ROOT, env = process.env) {
  const out = [];
  const plat = platformTag();
  const prebuildDir = join(root, 'prebuilds', plat.dir);
  const prebuildLoader = join(prebuildDir, `th_loader.${plat.libc ?? 'glibc'}.node`);
  const localLoader = join(root, 'build', 'Release', 'th_loader.node');
  const loaderFor = (dir) => (existsSync(join(dir, 'th_loader.node')) ? join(dir, 'th_loader.node') : existsSync(localLoader) ? localLoader : prebuildLoader);
  if (env.TRANSFORMER_HEADS_BINDING) {
    const p = resolve(env.TRANSFORMER_HEADS_BINDING);
    out.push({ ...(await describeBinary(p, 'TRANSFORMER_HEADS_BINDING')), loader: loaderFor(dirname(p)) });
    return out; // explicit: nothing else is tried
  }
  const local = join(root, 'build', 'Release', 'transformer_heads.node');
  if (existsSync(local)) out.push({ ...(await describeBinary(local, 'local build')), loader: loaderFor(dirname(local)) });
  if (existsSync(prebuildDir) && plat.libc) {
    for (const f of readdirSync(prebuildDir).sort()) {
      if (!f.startsWith('transformer_heads.') || !f.endsWith('.node') || !f.split('.').includes(plat.libc)) continue;
      out.push({ ...(await describeBinary(join(prebuildDir, f), 'prebuild')), loader: prebuildLoader });
    }
  }
  return out;
}

/**
 * Everything needed to load the addon: the libtorch found, the binary chosen and the libraries to preload, or an
 * error (code ERR_TH_NATIVE) that says what is missing and the one command that fixes it.
 */
export async function locateNative(root = PACKAGE_ROOT, env = process.env) {
  const lt = await describeLibtorch(await findLibtorch({ env }));
  const candidates = await binaryCandidates(root, env);
  const rejected = [];
  for (const b of candidates) {
    if (!existsSync(b.loader)) {
      rejected.push(`${b.path}: no loader (${b.loader} is missing)`);
      continue;
    }
    const why = incompatibility(b, lt);
    if (why) {
      rejected.push(`${b.kind} ${b.path}: ${why}`);
      continue;
    }
    return { libtorch: lt, binary: b, preload: lt.libraries.map((l) => l.path), rejected };
  }
  const err = new Error(
    candidates.length === 0
      ? `no transformer-heads binary was found for ${process.platform}-${process.arch} (no prebuild, no build/Release) to run against libtorch ${lt.version ?? ''} from ${lt.detail}`
      : `no transformer-heads binary fits libtorch ${lt.version ?? ''} from ${lt.detail}:\n  - ${rejected.join('\n  - ')}`,
  );
  // npm rebuild runs scripts/install.mjs, which builds from source against this libtorch (and says what a build lacks).
  err.fix = 'npm rebuild transformer-heads   (builds it from source for this libtorch: needs g++, make, python3 and the libtorch headers)';
  err.code = 'ERR_TH_NATIVE';
  err.libtorch = lt;
  err.rejected = rejected;
  throw err;
}

/** Writes <binary>.json: what a build was made against (read back by incompatibility()). */
export async function stamp(binaryPath, builder) {
  const lt = await describeLibtorch(await findLibtorch({ headers: true }));
  const meta = {
    torchVersion: lt.version,
    cxx11Abi: lt.cxx11Abi,
    cuda: lt.cuda,
    libdir: lt.libdir,
    builder,
    glibc: libcInfo().version,
    napi: 8,
  };
  const out = basename(binaryPath) === 'transformer_heads.node' ? join(dirname(binaryPath), 'transformer_heads.torch.json') : binaryPath.replace(/\.node$/, '.json');
  writeFileSync(out, JSON.stringify(meta, null, 2) + '\n');
  return { out, meta, libtorch: lt };
}

// ------------------------------------------------------------------------------------------------ CLI (binding.gyp)
function cxxAbiFlag(abi) {
  // libtorch's libstdc++ ABI; mixing ABIs fails at link or load time.
  return abi === null || abi === undefined ? [] : [`-D_GLIBCXX_USE_CXX11_ABI=${abi}`];
}

function glooFlags(include) {
  const dirs = [...(Array.isArray(include) ? include : []), '/usr/include', '/usr/local/include'];
  return dirs.some((d) => existsSync(join(d, 'gloo', 'algorithm.h'))) ? ['-DUSE_DISTRIBUTED', '-DUSE_C10D_GLOO'] : [];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const what = process.argv[2] ?? 'info';
  try {
    if (what === 'locate') {
      console.log(JSON.stringify(await locateNative(), null, 2));
    } else if (what === 'stamp') {
      const r = await stamp(resolve(process.argv[3]), process.argv[4] ?? 'node-gyp');
      console.log(`wrote ${r.out}`);
    } else {
      const lt = await describeLibtorch(await findLibtorch({ headers: what !== 'info' }));
      const cuda = lt.cuda;
      const out = {
        include: lt.include,
        libs: [`-L${lt.libdir}`, '-ltorch', '-ltorch_cpu', '-lc10', ...(cuda ? ['-ltorch_cuda', '-lc10_cuda'] : [])],
        // No -rpath: th_loader preloads the libtorch found at run time (see native/loader/loader.c).
        ldflags: cuda ? ['-Wl,--no-as-needed,-ltorch_cuda,--as-needed'] : [],
        // Data parallel (native/core/distributed.cpp): c10d's Gloo header needs gloo's own headers, which not every
        // libtorch ships (Debian: libgloo-dev); without them the addon builds without Gloo and says so when asked.
        cflags: [...cxxAbiFlag(lt.cxx11Abi), ...glooFlags(lt.include)],
      }[what];
      if (what === 'info') console.log(JSON.stringify(lt, null, 2));
      else if (!out) throw new Error(`unknown query '${what}' (include, libs, ldflags, cflags, info, locate, stamp)`);
      else console.log(out.join(' '));
    }
  } catch (e) {
    console.error(e.message + (e.fix ? `\nFix: ${e.fix}` : ''));
    process.exit(1);
  }
}

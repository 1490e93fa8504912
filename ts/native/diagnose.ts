// What `transformer-heads doctor` reports: the platform, the libtorch the search finds, every binary considered and why
// it was or was not used, and, when the addon loads, what libtorch itself reports (threads, CUDA) and the BLAS and
// OpenMP libraries the process actually mapped. Each step is caught separately, so a broken install still gets a
// report that says where it breaks.
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { ensureNative, nativeLocation, nativePackageRoot, type LibtorchInfo, type NativeLocation } from './binding.js';

/** One binary the loader considered. */
export interface DiagnosedBinary {
  kind: string;
  path: string;
  /** The libtorch it was built against (its .json record), when recorded. */
  builtFor: { torchVersion: string | null; cuda: boolean; cxx11Abi: number | null } | null;
  /** 'used', or why it was passed over. */
  status: string;
}

/** The report of diagnoseNative() (and of `transformer-heads doctor --json`). */
export interface NativeDiagnosis {
  ok: boolean;
  node: { version: string; napi: string | null; platform: string; arch: string; libc: string | null; electron: string | null };
  package: { root: string; version: string | null };
  /** The libtorch found, its libraries by file name only. */
  libtorch: null | (Omit<LibtorchInfo, 'libraries'> & { libraries: string[] });
  binaries: DiagnosedBinary[];
  binary: null | { kind: string; path: string; loader: string; loadMs: number };
  /** What the loaded addon reports (runtimeInfo()), as it reports it. */
  runtime: Record<string, unknown> | null;
  /** Shared libraries mapped into the process after loading, by role: the BLAS, OpenMP and CUDA runtimes. */
  libraries: { blas: string[]; openmp: string[]; cuda: string[] };
  /**
   * numThreads: libtorch's intra-op threads per compute thread; computeThreads: compute threads started (one per
   * device in use); osThreads: this process's OS threads once the addon is loaded (null before, or where unknown).
   */
  threads: { numThreads: number | null; computeThreads: number | null; osThreads: number | null; cores: number; env: Record<string, string> };
  /** What went wrong, each with the fix. Empty when ok. */
  problems: Array<{ message: string; fix: string | null }>;
}

interface LibtorchScript {
  findLibtorch(o: { env: NodeJS.ProcessEnv }): Promise<unknown>;
  describeLibtorch(lt: unknown): Promise<NativeLocation['libtorch']>;
  binaryCandidates(root: string, env: NodeJS.ProcessEnv): Promise<Array<NativeLocation['binary'] & { meta: { torchVersion: string | null; cuda: boolean; cxx11Abi: number | null } | null }>>;
  incompatibility(b: unknown, lt: unknown): string | null;
  libcInfo(): { family: string | null; version: string | null };
}

const THREAD_ENV = ['OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'TRANSFORMER_HEADS_LIBTORCH', 'LIBTORCH', 'Torch_DIR', 'TRANSFORMER_HEADS_BINDING'];

function errorInfo(e: unknown): { message: string; fix: string | null } {
  const err = e as { message?: string; fix?: string; cause?: { fix?: string } };
  const message = err?.message ?? String(e);
  const fixLine = /\nFix: (.*)/.exec(message)?.[1] ?? null;
  return { message: message.split('\n')[0]!, fix: err?.fix ?? err?.cause?.fix ?? fixLine };
}

/** The libraries of each role mapped into this process (Linux: /proc/self/maps), real paths, in map order. */
async function mappedLibraries(): Promise<NativeDiagnosis['libraries']> {
  const out: NativeDiagnosis['libraries'] = { blas: [], openmp: [], cuda: [] };
  let maps: string;
  try {
    maps = await readFile('/proc/self/maps', 'utf8');
  } catch {
    return out;
  }
  const seen = new Set<string>();
  for (const line of maps.split('\n')) {
    const path = line.slice(line.indexOf('/'));
    if (!line.includes('/') || seen.has(path)) continue;
    seen.add(path);
    const name = path.slice(path.lastIndexOf('/') + 1);
    if (/^lib(open)?blas|^libcblas|^libmkl_|^libflexiblas|^libblis|^libatlas/.test(name) || /openblas/.test(path)) out.blas.push(path);
    else if (/^lib(g|i|iomp|)omp[0-9]*\.so/.test(name) || /^libiomp5/.test(name)) out.openmp.push(path);
    else if (/^lib(cudart|cublas|cudnn|nccl|cuda)\b/.test(name)) out.cuda.push(path);
  }
  return out;
}

/**
 * Everything `transformer-heads doctor` prints: Node and N-API, the libtorch the search found (version, location,
 * CUDA), the binaries considered and the one used, what libtorch reports once loaded (threads, CUDA devices), the BLAS
 * and OpenMP libraries in the process, and each problem with its fix. Loads the addon (asynchronously) when it can.
 */
export async function diagnoseNative(): Promise<NativeDiagnosis> {
  const root = nativePackageRoot();
  const problems: NativeDiagnosis['problems'] = [];
  let pkgVersion: string | null = null;
  try {
    pkgVersion = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // reported as null
  }
  const lib = (await import(pathToFileURL(join(root, 'scripts', 'libtorch.mjs')).href)) as LibtorchScript;
  const libc = lib.libcInfo();
  const report: NativeDiagnosis = {
    ok: false,
    node: {
      version: process.version,
      napi: process.versions.napi ?? null,
      platform: process.platform,
      arch: process.arch,
      libc: libc.family ? `${libc.family}${libc.version ? ` ${libc.version}` : ''}` : null,
      electron: process.versions.electron ?? null,
    },
    package: { root, version: pkgVersion },
    libtorch: null,
    binaries: [],
    binary: null,
    runtime: null,
    libraries: { blas: [], openmp: [], cuda: [] },
    threads: { numThreads: null, computeThreads: null, osThreads: null, cores: availableParallelism(), env: Object.fromEntries(THREAD_ENV.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]!])) },
    problems,
  };
  let lt: NativeLocation['libtorch'] | null = null;
  try {
    lt = await lib.describeLibtorch(await lib.findLibtorch({ env: process.env }));
    report.libtorch = {
      source: lt.source,
      detail: lt.detail,
      libdir: lt.libdir,
      version: lt.version,
      cxx11Abi: lt.cxx11Abi,
      cuda: lt.cuda,
      libraries: lt.libraries.map((l) => l.soname),
    };
  } catch (e) {
    problems.push(errorInfo(e));
  }
  const candidates = await lib.binaryCandidates(root, process.env).catch((e: unknown) => {
    problems.push(errorInfo(e));
    return [];
  });
  for (const b of candidates) {
    report.binaries.push({
      kind: b.kind,
      path: b.path,
      builtFor: b.meta ? { torchVersion: b.meta.torchVersion, cuda: b.meta.cuda, cxx11Abi: b.meta.cxx11Abi } : null,
      status: lt ? (lib.incompatibility(b, lt) ?? 'fits') : 'not checked (no libtorch)',
    });
  }
  if (lt) {
    try {
      const b = await ensureNative();
      const loc = nativeLocation()!;
      report.binary = { kind: loc.binary.kind, path: loc.binary.path, loader: loc.binary.loader, loadMs: Math.round(loc.loadMs) };
      for (const d of report.binaries) if (d.path === loc.binary.path) d.status = 'used';
      report.runtime = { ...(await b.runtimeInfo()) } as Record<string, unknown>;
      const n = report.runtime.numThreads;
      report.threads.numThreads = typeof n === 'number' ? n : null;
      const { computeThreads, osThreads } = report.runtime;
      report.threads.computeThreads = typeof computeThreads === 'number' ? computeThreads : null;
      report.threads.osThreads = typeof osThreads === 'number' && osThreads >= 0 ? osThreads : null;
      report.ok = true;
    } catch (e) {
      problems.push(errorInfo(e));
    }
  }
  report.libraries = await mappedLibraries();
  if (report.ok && report.libraries.blas.some((p) => /\/blas\/libblas\.so/.test(p))) {
    problems.push({
      message: "libtorch uses the reference BLAS (Debian's libblas3): matrix products run about 40x slower than with OpenBLAS",
      fix: 'sudo apt-get install libopenblas0-pthread',
    });
  }
  return report;
}

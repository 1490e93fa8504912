import { invalidArg } from '../errors.js';
import { ensureNative, type NativeRuntimeInfo } from './binding.js';

/**
 * libtorch intra-op threads for every model in this process (default: all cores, or OMP_NUM_THREADS). OpenMP keeps
 * the count per thread, so it is applied on the compute threads, after the work already queued there: await it
 * before timing anything that should use the new count. Loads the addon first (off the event loop) when it is not
 * loaded yet.
 */
export async function setNumThreads(n: number): Promise<void> {
  if (!Number.isInteger(n) || n < 1 || n > 1024) invalidArg('n', 'an integer from 1 to 1024', n);
  await (await ensureNative()).setNumThreads(n);
}

/** What the native side was built with and sees: libtorch version, CUDA, threads and allocator settings. */
export type RuntimeInfo = NativeRuntimeInfo;

/**
 * What the native side was built with and sees. Asynchronous: loading the addon (the first time) and probing CUDA
 * (which can load the CUDA libraries) happen off the event loop.
 */
export async function runtimeInfo(): Promise<RuntimeInfo> {
  return (await ensureNative()).runtimeInfo();
}

/**
 * Returns to the system the freed CPU buffers the library keeps for reuse (up to 256 MiB by default,
 * TRANSFORMER_HEADS_CPU_CACHE_MB), as torch.cuda.empty_cache() does for the GPU; resolves to the bytes released.
 * Buffers in use are untouched; the next training step maps fresh memory where it would have reused. Useful when a
 * long-lived process (an Electron app) is done training for a while.
 */
export async function releaseCachedMemory(): Promise<number> {
  return (await ensureNative()).releaseCpuCache();
}

/** The thread figures of this process, for `doctor` and benchmarks. */
export interface ThreadCounts {
  /** libtorch's intra-op threads per compute thread (setNumThreads / OMP_NUM_THREADS / every core). */
  intraOp: number;
  /** Compute threads started: one per device in use; every libtorch call runs on one of them. */
  compute: number;
  /** OS threads of the whole process (Node's own, libuv's pool, compute threads and their OpenMP teams); -1 if unknown. */
  os: number;
}

/** The process's thread counts (see ThreadCounts). */
export async function threadCounts(): Promise<ThreadCounts> {
  const r = await runtimeInfo();
  return { intraOp: r.numThreads, compute: r.computeThreads, os: r.osThreads };
}

import { invalidArg } from '../errors.js';
import { loadedBinding, ensureNative, whenLoaded } from './binding.js';

/**
 * libtorch intra-op threads for every model in this process (default: all cores, or OMP_NUM_THREADS). Synchronous
 * and cheap: before the addon is loaded it is recorded and applied as loading finishes, before any model loads, so
 * calling it first thing never blocks the event loop on loading libtorch.
 */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 1024) invalidArg('n', 'a positive integer (at most 1024)', n);
  const b = loadedBinding();
  if (b) b.setNumThreads(n);
  else whenLoaded((loaded) => loaded.setNumThreads(n));
}

/** What the native side was built with and sees. Loads the addon first (asynchronously) when it is not loaded yet. */
export async function runtimeInfo(): Promise<{ torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; numThreads: number }> {
  const b = await ensureNative();
  return await b.runtimeInfo();
}

import { invalidArg } from '../errors.js';
import { binding } from './binding.js';

/** libtorch intra-op threads for every model in this process (default: all cores, or OMP_NUM_THREADS). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) invalidArg('n', 'a positive integer', n);
  binding().setNumThreads(n);
}

/** What the native side was built with and sees. */
export function runtimeInfo(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; numThreads: number } {
  return binding().runtimeInfo();
}

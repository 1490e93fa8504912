import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // libtorch keeps per-process state and native addons can crash the threads pool: one forked process per file,
    // one file at a time (2 cores are shared with libtorch's own threads).
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

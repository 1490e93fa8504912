#!/usr/bin/env node
// The allocator settings' effect on peak RSS and step time: the LoRA r=8 fp32 training step of bench/lora.mjs
// (GPT-2-small-shaped, batch 8 x 128), each run in its own process, the settings alternating run after run so that a
// drift of the machine's load spreads over all of them. One JSON line per run, then one per setting (median, spread).
// usage: node bench/malloc.mjs [rounds (3)] [settings, comma-separated (all)]
//   addon:        the addon's settings (docs/THREADS.md): libtorch's buffers of 1 MiB+ from the caching allocator
//                 (up to 256 MiB of freed ones kept), glibc's mmap threshold 4 MiB, trim 2 MiB, 2 arenas
//   nocache:      the same without the caching allocator (TRANSFORMER_HEADS_CPU_CACHE_MB=0)
//   cache1g:      the caching allocator keeping up to 1 GiB
//   glibc:        glibc's defaults, no caching allocator (TRANSFORMER_HEADS_MALLOC=default)
//   arena1:       glibc's defaults with MALLOC_ARENA_MAX=1 (the second measurement)
//   mmap1m:       no caching allocator, a 1 MiB mmap threshold (MALLOC_MMAP_THRESHOLD_ overrides the addon's):
//                 as low a peak as the cache, and slower steps (every buffer's pages fault in at every use)
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const rounds = Number(process.argv[2] ?? 3);
const allSettings = {
  addon: {},
  nocache: { TRANSFORMER_HEADS_CPU_CACHE_MB: '0' },
  cache1g: { TRANSFORMER_HEADS_CPU_CACHE_MB: '1024' },
  glibc: { TRANSFORMER_HEADS_MALLOC: 'default' },
  arena1: { TRANSFORMER_HEADS_MALLOC: 'default', MALLOC_ARENA_MAX: '1' },
  mmap1m: { TRANSFORMER_HEADS_CPU_CACHE_MB: '0', MALLOC_MMAP_THRESHOLD_: String(1 << 20) },
};
const only = process.argv[3]?.split(',');
const settings = Object.fromEntries(Object.entries(allSettings).filter(([k]) => !only || only.includes(k)));
const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_') && k !== 'TRANSFORMER_HEADS_MALLOC' && k !== 'TRANSFORMER_HEADS_CPU_CACHE_MB'));
const results = Object.fromEntries(Object.keys(settings).map((k) => [k, []]));
for (let r = 0; r < rounds; r++) {
  for (const [name, env] of Object.entries(settings)) {
    const p = spawnSync(process.execPath, [resolve(here, 'lora.mjs'), 'fp32 base'], { env: { ...clean, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (p.status !== 0) process.exit(p.status ?? 1);
    const line = JSON.parse(p.stdout.trim().split('\n').at(-1));
    results[name].push(line);
    console.log(JSON.stringify({ bench: 'malloc', setting: name, round: r, peak_rss_mib: line.peak_rss_mib, ms_per_step: line.ms_per_step, os_threads: line.os_threads, malloc: line.malloc }));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [name, lines] of Object.entries(results)) {
  const rss = lines.map((l) => l.peak_rss_mib);
  const ms = lines.map((l) => l.ms_per_step);
  console.log(
    JSON.stringify({
      bench: 'malloc-summary',
      setting: name,
      runs: lines.length,
      peak_rss_mib_median: median(rss),
      peak_rss_mib_min: Math.min(...rss),
      peak_rss_mib_max: Math.max(...rss),
      peak_rss_spread: Number(((Math.max(...rss) - Math.min(...rss)) / median(rss)).toFixed(3)),
      ms_per_step_median: median(ms),
    }),
  );
}

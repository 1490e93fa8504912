// Loading and forward run off the event loop: timers keep firing while they work.
import { expect, it } from 'vitest';

import { loadBackbone, runtimeInfo } from '../ts/index.js';
import { fixture } from './helpers.js';

/** Runs `op` while counting event-loop turns; returns the turns and the longest gap between two of them. */
async function watchLoop<T>(op: () => Promise<T>): Promise<{ result: T; turns: number; maxGapMs: number; totalMs: number }> {
  let turns = 0;
  let last = performance.now();
  let maxGapMs = 0;
  let running = true;
  const tick = () => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    turns++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  const t0 = performance.now();
  const result = await op();
  const totalMs = performance.now() - t0;
  running = false;
  return { result, turns, maxGapMs, totalMs };
}

it('loadBackbone does not block the event loop', async () => {
  await runtimeInfo(); // loads the addon first: the first load is measured by first-load.test.ts
  const { result: model, turns, maxGapMs, totalMs } = await watchLoop(() => loadBackbone(fixture('small-gpt2.pt')));
  console.log(`load: ${totalMs.toFixed(0)} ms, ${turns} loop turns, longest gap ${maxGapMs.toFixed(1)} ms`);
  expect(turns).toBeGreaterThan(10);
  expect(maxGapMs).toBeLessThan(totalMs / 2);
  model.dispose();
});

it('a forward does not block the event loop', async () => {
  const model = await loadBackbone(fixture('small-gpt2.pt'));
  const ids = Array.from({ length: 8 }, (_, b) => Array.from({ length: 128 }, (_, t) => (b * 131 + t * 17) % 5000));
  const { turns, maxGapMs, totalMs } = await watchLoop(() => model.hiddenStates({ input_ids: ids }));
  console.log(`forward: ${totalMs.toFixed(0)} ms, ${turns} loop turns, longest gap ${maxGapMs.toFixed(1)} ms`);
  expect(turns).toBeGreaterThan(10);
  expect(maxGapMs).toBeLessThan(totalMs / 2);
  model.dispose();
});

it('dispose releases native memory (no growth over repeated load/dispose)', async () => {
  const rss = () => process.memoryUsage().rss / 2 ** 20;
  // Warm up allocator pools first.
  (await loadBackbone(fixture('small-gpt2.pt'))).dispose();
  const before = rss();
  for (let i = 0; i < 8; i++) {
    const m = await loadBackbone(fixture('small-gpt2.pt'));
    expect(m.memoryBytes).toBeGreaterThan(20e6);
    m.dispose();
  }
  const growth = rss() - before;
  console.log(`rss growth over 8 load/dispose cycles of a ${24} MB model: ${growth.toFixed(1)} MiB`);
  expect(growth).toBeLessThan(60); // 8 leaked copies would be ~190 MiB
});

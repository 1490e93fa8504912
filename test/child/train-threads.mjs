// Child of test/threads.test.ts: trains a small model for a few steps and reports the process's OS thread count
// (/proc/self/status) before the library starts any thread and at its highest during training, sampled by a 5 ms timer
// (which also only fires because the event loop stays free). Prints one JSON line.
// usage: node train-threads.mjs <model.pt> [intra-op threads]
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';

const osThreads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
// Thread names by count ({ node: 1, 'th-compute-cpu': 1, ... }): what the threads are when a bound fails.
const names = () => {
  const out = {};
  for (const t of readdirSync('/proc/self/task')) {
    let n = '?';
    try {
      n = readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
    } catch {}
    out[n] = (out[n] ?? 0) + 1;
  }
  return out;
};

// Node's own threads first: V8's platform workers and libuv's pool (started by the first fs call), so that the
// baseline holds everything that is not the library's.
await readFile(new URL(import.meta.url));
await new Promise((r) => setTimeout(r, 50));
const baseline = osThreads();
const baselineNames = names();

const th = await import('transformer-heads');
const [modelPath, threadsArg] = process.argv.slice(2);
if (threadsArg) await th.setNumThreads(Number(threadsArg));
let max = 0;
let atMax = {};
const sample = () => {
  const n = osThreads();
  if (n > max) {
    max = n;
    atMax = names();
  }
};
const timer = setInterval(sample, 5);
const model = await th.loadHeaded(modelPath, {
  heads: [
    { name: 'cls', inSize: 256, numOutputs: 2, predForSequence: true },
    { name: 'tok', inSize: 256, numOutputs: 3, layerHook: 3 },
  ],
  seed: 1,
});
await model.configureOptimizer({ lr: 1e-3 });
const ids = Array.from({ length: 8 }, (_, b) => Array.from({ length: 64 }, (_, t) => (b * 131 + t * 17) % 5000));
const batch = { input_ids: ids, cls: [0, 1, 0, 1, 1, 0, 1, 0], tok: ids.map((r) => r.map((v) => v % 3)) };
for (let i = 0; i < 6; i++) {
  await model.trainStep(batch);
  await model.optimizerStep(1e-3);
  await model.forward(batch);
}
clearInterval(timer);
sample();
const counts = await th.threadCounts();
model.dispose();
console.log(JSON.stringify({ baseline, max, cores: cpus().length, ...counts, names: atMax, baselineNames }));

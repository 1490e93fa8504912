#!/usr/bin/env node
// Quickstart demo: loads a small GPT-2-shaped model exported by scripts/export_torchscript.py, captures the hidden
// states of every layer for a batch with padding, and shows what early exit saves.
// Usage: node scripts/demo.mjs [model.pt]
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { loadBackbone, runtimeInfo } = await import(resolve(root, 'dist/index.js'));
const path = process.argv[2] ?? resolve(root, 'fixtures/small-gpt2.pt');

const rt = runtimeInfo();
console.log(`libtorch ${rt.torchVersion}, ${rt.numThreads} threads, CUDA ${rt.cudaAvailable ? 'available' : 'not available'}`);

let t0 = performance.now();
const model = await loadBackbone(path, { device: 'cpu', dtype: 'float32' });
const c = model.config;
console.log(
  `loaded ${path} in ${(performance.now() - t0).toFixed(0)} ms: ${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, ` +
    `${c.numAttentionHeads} heads, vocab ${c.vocabSize}, ${(model.memoryBytes / 2 ** 20).toFixed(1)} MiB of weights`,
);

// 4 sequences of 64 tokens; the last two are right- and left-padded.
const B = 4;
const T = 64;
const input_ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 997 + t * 31) % c.vocabSize));
const attention_mask = [Array(T).fill(1), Array(T).fill(1), [...Array(40).fill(1), ...Array(24).fill(0)], [...Array(16).fill(0), ...Array(48).fill(1)]];
const batch = { input_ids, attention_mask };

t0 = performance.now();
const hs = await model.hiddenStates(batch);
const allMs = performance.now() - t0;
console.log(`\nhidden states of all ${hs.size} layers in ${allMs.toFixed(0)} ms (${((B * T) / (allMs / 1000)).toFixed(0)} tokens/s)`);
console.log('layer  what                     shape          mean |h| at real tokens');
for (const [layer, h] of hs) {
  const H = h.shape[2];
  let sum = 0;
  let n = 0;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      if (!attention_mask[b][t]) continue;
      let sq = 0;
      for (let k = 0; k < H; k++) sq += h.data[(b * T + t) * H + k] ** 2;
      sum += Math.sqrt(sq);
      n++;
    }
  const what = layer === 0 ? 'embeddings' : layer === c.numLayers ? `final norm (= -1)` : `output of block ${layer}`;
  console.log(`${String(layer).padStart(5)}  ${what.padEnd(24)} [${h.shape.join(', ')}]`.padEnd(48) + (sum / n).toFixed(3));
}

const mid = Math.floor(c.numLayers / 2);
const before = model.stats.blocksRun;
t0 = performance.now();
await model.hiddenStates(batch, { layers: [mid] });
const midMs = performance.now() - t0;
console.log(`\nlayer ${mid} alone: ${midMs.toFixed(0)} ms, ${model.stats.blocksRun - before} of ${c.numLayers} blocks run (early exit)`);
model.dispose();

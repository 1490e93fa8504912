#!/usr/bin/env node
// npm run bench: one JSON line per result. Everything compared is measured in the same run, on the same machine.
//
// hiddenStates throughput on a GPT-2-small-shaped model (12 layers, 768 hidden, 12 heads, vocab 50257, random
// weights exported by scripts/export_torchscript.py), batch 8 x 128 tokens:
//   native, all 13 hidden states | native, layer 6 only (early exit) | native, logits (the work the archive does)
//   | the TorchScript archive's own forward through torch::jit (logits + all hidden states).
// Options: --iters N (default 5), --batch B, --seq T, --threads N, --device cpu|cuda
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    iters: { type: 'string', default: '5' },
    batch: { type: 'string', default: '8' },
    seq: { type: 'string', default: '128' },
    threads: { type: 'string' },
    device: { type: 'string', default: process.env.TH_BENCH_DEVICE ?? 'cpu' },
  },
});
const iters = Number(opt.iters);
const B = Number(opt.batch);
const T = Number(opt.seq);

const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');
if (!existsSync(modelPath)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });

const th = await import(resolve(root, 'dist/index.js'));
if (opt.threads) th.setNumThreads(Number(opt.threads));
const info = await th.runtimeInfo();

// Deterministic token ids (a fixed LCG), the same for every variant.
let s = 12345;
const ids = Array.from({ length: B }, () => Array.from({ length: T }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 50257));
const batch = { input_ids: ids };

async function measure(name, fn, extra = {}) {
  await fn(); // warm-up: first-call allocations and lazy initialisation
  const times = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const line = {
    bench: 'hiddenStates',
    variant: name,
    model: 'gpt2-small-shaped (random weights)',
    batch: B,
    seq: T,
    tokens_per_s: Math.round((B * T) / (median / 1000)),
    ms_median: Number(median.toFixed(1)),
    ms_min: Number(times[0].toFixed(1)),
    iterations: iters,
    threads: info.numThreads,
    device: opt.device,
    torch: info.torchVersion,
    ...extra,
  };
  console.log(JSON.stringify(line));
  return line;
}

const model = await th.loadBackbone(modelPath, { device: opt.device });
const all = await measure('native: all 13 hidden states', () => model.hiddenStates(batch));
const early = await measure('native: layer 6 only (early exit)', () => model.hiddenStates(batch, { layers: [6] }));
const logits = await measure('native: logits', () => model.logits(batch));
model.dispose();
const jit = await th.loadTorchScript(modelPath);
const ref = await measure('torch::jit archive forward: logits + all hidden states', () => jit.forward(batch));
jit.dispose();
console.log(
  JSON.stringify({
    bench: 'hiddenStates-summary',
    early_exit_speedup_vs_all_layers: Number((early.tokens_per_s / all.tokens_per_s).toFixed(2)),
    native_logits_vs_torchscript: Number((logits.tokens_per_s / ref.tokens_per_s).toFixed(2)),
    native_all_layers_vs_torchscript: Number((all.tokens_per_s / ref.tokens_per_s).toFixed(2)),
  }),
);

#!/usr/bin/env node
// Training-step benchmarks on the GPT-2-small-shaped model (12 layers, 768 hidden, random weights), batch 8 x 128
// tokens, measured in one run:
//   - a linear-probe step at layer 6 with a frozen backbone: early exit, no autograd through the backbone;
//   - the same step the way the Python library runs it: the frozen backbone's full forward (output_hidden_states,
//     all 12 blocks) before the head (baseline);
//   - Trainer epochs with the activation cache: epoch 1 (computes and caches the hidden states) vs epoch 2 (cache);
//   - a full-finetuning step (backbone trains: forward + backward through all blocks + AdamW over 124M weights).
// Each of the four runs in a process of its own (bench/proc.mjs), so that each line's peak RSS is its own.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { medianStepMs, processFields, rowOrSpawn } from './proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');
if (!existsSync(modelPath)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });
const { row, lines } = rowOrSpawn(import.meta.url, ['early-exit', 'full-forward', 'activation-cache', 'full-finetune']);
if (!row) {
  const pick = (v) => lines.find((l) => l.variant.startsWith(v));
  const early = pick('probe step');
  const full = pick('baseline');
  const e1 = pick('Trainer epoch 1');
  const cached = pick('Trainer epoch 2');
  const ft = pick('full-finetuning');
  console.log(
    JSON.stringify({
      bench: 'training-summary',
      early_exit_probe_vs_python_style_full_forward: Number((early.tokens_per_s / full.tokens_per_s).toFixed(2)),
      activation_cache_epoch2_vs_epoch1: Number((e1.ms_per_step / cached.ms_per_step).toFixed(1)),
      cached_epoch_vs_python_style_step: Number((cached.tokens_per_s / full.tokens_per_s).toFixed(1)),
      full_finetune_tokens_per_s: ft.tokens_per_s,
      peak_rss_mib: Object.fromEntries(lines.map((l) => [l.variant.split(' (')[0].split(',')[0], l.peak_rss_mib])),
    }),
  );
  process.exit(0);
}
const th = await import(resolve(root, 'dist/index.js'));
const info = await th.runtimeInfo();
const device = process.env.TH_BENCH_DEVICE ?? 'cpu';
const B = 8;
const T = 128;
let s = 7;
const ids = () => Array.from({ length: B }, () => Array.from({ length: T }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 50000));
const batch = { input_ids: ids(), probe: Array.from({ length: B }, (_, i) => i % 2) };
const probe = { name: 'probe', inSize: 768, numOutputs: 2, layerHook: 6, predForSequence: true };

function line(variant, ms, extra = {}) {
  const r = { bench: 'training', variant, model: 'gpt2-small-shaped (random weights)', batch: B, seq: T, tokens_per_s: Math.round((B * T) / (ms / 1000)), ms_per_step: Number(ms.toFixed(1)), threads: info.numThreads, device, torch: info.torchVersion, ...extra, ...processFields(info) };
  console.log(JSON.stringify(r));
  return r;
}

const timeSteps = (model, n) => medianStepMs(model, batch, n, 1e-3);

if (row === 'early-exit') {
  const m = await th.loadHeaded(modelPath, { heads: [probe], device });
  line('probe step, layer 6, frozen backbone with early exit', await timeSteps(m, 5), { blocks_per_step: 6 });
  m.dispose();
} else if (row === 'full-forward') {
  // The Python library always asks the trunk for every hidden state: a head at -1 without a loss forces the same
  // full forward here.
  const m = await th.loadHeaded(modelPath, { heads: [probe, { name: 'full', inSize: 768, numOutputs: 1, lossFct: null, trainable: false }], device });
  line('baseline: same step with the full 12-block forward (as the Python library runs it)', await timeSteps(m, 5), { blocks_per_step: 12 });
  m.dispose();
} else if (row === 'activation-cache') {
  // Activation cache: 8 batches per epoch.
  const m = await th.loadHeaded(modelPath, { heads: [probe], device });
  const rows = Array.from({ length: 64 }, (_, i) => ({ input_ids: ids()[0], probe: i % 2 }));
  const stamps = [];
  const trainer = new th.Trainer(m, { outputDir: resolve(root, 'bench/out'), numTrainEpochs: 2, perDeviceTrainBatchSize: 8, learningRate: 1e-3, disableProgressBar: true, activationCache: true }, {
    trainDataset: new th.Dataset(rows),
    dataCollator: new th.DataCollatorWithPadding({ input_ids: 50256, attention_mask: 0 }),
    callbacks: { onStepEnd: () => void stamps.push(performance.now()) },
  });
  const t0 = performance.now();
  await trainer.train();
  line('Trainer epoch 1 (computes and caches layer-6 states)', (stamps[7] - t0) / 8);
  line('Trainer epoch 2 (from the activation cache)', (stamps[15] - stamps[7]) / 8);
  m.dispose();
} else if (row === 'full-finetune') {
  const m = await th.loadHeaded(modelPath, { heads: [probe], freezeBaseModel: false, device });
  line('full-finetuning step (all 124M weights train)', await timeSteps(m, 2));
  m.dispose();
} else {
  console.error(`unknown row '${row}'`);
  process.exit(2);
}

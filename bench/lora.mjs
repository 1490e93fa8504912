#!/usr/bin/env node
// LoRA (r=8 on every projection) training steps on the GPT-2-small-shaped model, batch 8 x 128 tokens: a float32
// base, an NF4 base, and an NF4 base with double quantization, each in its own process so the peak RSS is its own.
// Reports tokens/s, bits per weight of the quantized projections (absmax included) and peak RSS.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { medianStepMs, processFields } from './proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');
const variants = {
  'fp32 base': undefined,
  'NF4 base': { bits: 4, quantType: 'nf4', doubleQuant: false },
  'NF4 + double quant base': { bits: 4, quantType: 'nf4', doubleQuant: true },
};
const which = process.argv[2];

if (!which) {
  if (!existsSync(modelPath)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });
  const lines = [];
  for (const v of Object.keys(variants)) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), v], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) process.exit(r.status ?? 1);
    process.stdout.write(r.stdout);
    lines.push(JSON.parse(r.stdout.trim().split('\n').at(-1)));
  }
  const [f32, nf4, dq] = lines;
  console.log(
    JSON.stringify({
      bench: 'lora-summary',
      nf4_speed_vs_fp32: Number((nf4.tokens_per_s / f32.tokens_per_s).toFixed(2)),
      nf4_dq_speed_vs_fp32: Number((dq.tokens_per_s / f32.tokens_per_s).toFixed(2)),
      nf4_dq_bits_per_weight: dq.quantized_bits_per_weight,
      weight_bytes_nf4_dq_vs_fp32: Number((dq.weight_bytes_total / f32.weight_bytes_total).toFixed(3)),
      peak_rss_mib: { fp32: f32.peak_rss_mib, nf4: nf4.peak_rss_mib, nf4_dq: dq.peak_rss_mib },
    }),
  );
} else {
  const th = await import(resolve(root, 'dist/index.js'));
  const device = process.env.TH_BENCH_DEVICE ?? 'cpu';
  const info = await th.runtimeInfo();
  let s = 11;
  const ids = Array.from({ length: 8 }, () => Array.from({ length: 128 }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 50000));
  const batch = { input_ids: ids, cls: ids.map((_, i) => i % 2) };
  const m = await th.createHeadedQLoRA(modelPath, {
    heads: [{ name: 'cls', inSize: 768, numOutputs: 2, predForSequence: true }],
    lora: { r: 8, alpha: 16 },
    device,
    ...(variants[which] ? { quantization: variants[which] } : {}),
  });
  const ms = await medianStepMs(m, batch, 3, 1e-4);
  const fp = m.memoryFootprint();
  console.log(
    JSON.stringify({
      bench: 'lora',
      variant: `LoRA r=8 training step, ${which}`,
      model: 'gpt2-small-shaped (random weights)',
      batch: 8,
      seq: 128,
      tokens_per_s: Math.round(1024 / (ms / 1000)),
      ms_per_step: Number(ms.toFixed(1)),
      trainable_parameters: m.trainableParameters(),
      quantized_bits_per_weight: fp.quantizedBitsPerParameter === null ? null : Number(fp.quantizedBitsPerParameter.toFixed(3)),
      weight_bytes_total: fp.total,
      weight_bytes: fp,
      ...processFields(info),
      threads: info.numThreads,
      device,
      torch: info.torchVersion,
    }),
  );
  m.dispose();
}

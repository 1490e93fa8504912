#!/usr/bin/env node
// This build against another build of the project, step by step, alternating processes: "is any step slower than
// before this change?" (issue 15: no step more than 5% slower than before it). The other build is a checkout of an
// older commit with its own native build and dist/ (git worktree add ../base <commit>; npm ci; npm run build).
//
//   node bench/vs-build.mjs --baseline ../base [--rounds 3] [--rows probe,lora-fp32,...]
//
// Rows (GPT-2-small-shaped model, random weights, batch 8 x 128, the public API that both builds have; each in a
// process of its own, so its peak RSS is its own; the two builds alternate, and which goes first alternates by round):
//   probe           probe step at layer 6, frozen backbone (early exit)
//   probe-full      the same step with the full 12-block forward (as the Python library runs it)
//   lora-fp32       LoRA r=8 on every projection + a sequence head, float32 base
//   lora-nf4-dq     the same on an NF4 + double-quant base
//   full-finetune   every weight trains (AdamW)
//   generate-8      greedy generation with the KV cache, batch 8, 32-token prompt, 128 new tokens
// Per row and build: median ms per step (3 steps after a warm-up; generation: the whole run) and peak RSS; the summary
// line per row gives ours / baseline of the medians over the rounds.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { medianStepMs, peakRssMib } from './proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROWS = ['probe', 'probe-full', 'lora-fp32', 'lora-nf4-dq', 'full-finetune', 'generate-8'];
const { values: opt } = parseArgs({
  options: {
    baseline: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    rows: { type: 'string', default: ROWS.join(',') },
    row: { type: 'string' },
    dist: { type: 'string' },
  },
});
const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');

if (opt.row) {
  const th = await import(pathToFileURL(resolve(opt.dist, 'index.js')).href);
  const B = 8;
  const T = 128;
  let s = 7;
  const ids = Array.from({ length: B }, () => Array.from({ length: T }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 50000));
  const batch = { input_ids: ids, probe: ids.map((_, i) => i % 2), cls: ids.map((_, i) => i % 2) };
  const probe = { name: 'probe', inSize: 768, numOutputs: 2, layerHook: 6, predForSequence: true };
  const cls = { name: 'cls', inSize: 768, numOutputs: 2, predForSequence: true };
  const steps = async (m, n = 3) => ({ ms: await medianStepMs(m, batch, n, 1e-4), tokens: B * T });
  let r;
  if (opt.row === 'probe') r = await steps(await th.loadHeaded(modelPath, { heads: [probe] }), 5);
  else if (opt.row === 'probe-full') {
    r = await steps(await th.loadHeaded(modelPath, { heads: [probe, { name: 'full', inSize: 768, numOutputs: 1, lossFct: null, trainable: false }] }), 5);
  } else if (opt.row === 'lora-fp32') r = await steps(await th.createHeadedQLoRA(modelPath, { heads: [cls], lora: { r: 8, alpha: 16 } }));
  else if (opt.row === 'lora-nf4-dq') {
    r = await steps(await th.createHeadedQLoRA(modelPath, { heads: [cls], lora: { r: 8, alpha: 16 }, quantization: { bits: 4, quantType: 'nf4', doubleQuant: true } }));
  } else if (opt.row === 'full-finetune') r = await steps(await th.loadHeaded(modelPath, { heads: [probe], freezeBaseModel: false }), 2);
  else if (opt.row === 'generate-8') {
    const m = await th.loadHeaded(modelPath, { onlyInference: true, heads: [{ name: 'lm_head', inSize: 768, numOutputs: 50257, isCausalLm: true }] });
    const prompts = ids.map((p) => p.slice(0, 32));
    for await (const _ of m.generateStream([[1, 2, 3, 4]], { maxNewTokens: 4, eosTokenId: null }));
    const t0 = performance.now();
    for await (const _ of m.generateStream(prompts, { maxNewTokens: 128, eosTokenId: null }));
    r = { ms: performance.now() - t0, tokens: 8 * 128 };
  } else throw new Error(`unknown row ${opt.row}`);
  console.log(JSON.stringify({ ms: r.ms, tokens_per_s: (r.tokens / r.ms) * 1000, peak_rss_mib: peakRssMib() }));
  process.exit(0);
}

if (!opt.baseline || !existsSync(resolve(opt.baseline, 'dist/index.js'))) {
  console.error('vs-build: --baseline DIR must be a built checkout of the project (DIR/dist/index.js and its native build)');
  process.exit(2);
}
const builds = { ours: resolve(root, 'dist'), baseline: resolve(opt.baseline, 'dist') };
const rows = opt.rows.split(',');
const got = Object.fromEntries(rows.map((r) => [r, { ours: [], baseline: [] }]));
function run(row, side) {
  // The baseline's own package resolution (its node_modules), our script.
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--row', row, '--dist', builds[side]], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const last = r.stdout?.trim().split('\n').at(-1);
  if (r.status !== 0 || !last?.startsWith('{')) {
    console.error(`vs-build: row ${row} (${side}) failed (exit ${r.status})`);
    return;
  }
  const x = JSON.parse(last);
  const line = { bench: 'vs-build', row, build: side, round: got[row][side].length + 1, ms: Number(x.ms.toFixed(1)), tokens_per_s: Number(x.tokens_per_s.toFixed(1)), peak_rss_mib: x.peak_rss_mib };
  console.log(JSON.stringify(line));
  got[row][side].push(line);
}
for (let round = 0; round < Number(opt.rounds); round++) {
  for (const row of rows) {
    const order = round % 2 ? ['baseline', 'ours'] : ['ours', 'baseline'];
    for (const side of order) run(row, side);
  }
}
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
for (const row of rows) {
  const { ours, baseline } = got[row];
  if (!ours.length || !baseline.length) continue;
  const tps = (l) => median(l.map((x) => x.tokens_per_s));
  const rss = (l) => median(l.map((x) => x.peak_rss_mib));
  console.log(
    JSON.stringify({
      bench: 'vs-build-summary',
      row,
      baseline: opt.baseline,
      tokens_per_s: { ours: ours.map((x) => x.tokens_per_s), baseline: baseline.map((x) => x.tokens_per_s) },
      peak_rss_mib: { ours: ours.map((x) => x.peak_rss_mib), baseline: baseline.map((x) => x.peak_rss_mib) },
      speed_ours_vs_baseline: Number((tps(ours) / tps(baseline)).toFixed(3)),
      peak_rss_ours_vs_baseline: Number((rss(ours) / rss(baseline)).toFixed(3)),
    }),
  );
}

#!/usr/bin/env node
// npm run bench: one JSON line per result. Everything compared is measured in the same run, on the same machine.
//
// Generation on a GPT-2-small-shaped model (12 layers, 768 hidden, vocab 50257, random weights), greedy, a 32-token
// prompt and 256 new tokens (no eos), batch 1 and batch 8:
//   with the KV cache | full recompute of the whole sequence at every step (what generation without a cache does).
// Reported: generated tokens/s (rows x new tokens / wall time), time to first token (prompt forward + first pick),
// and the mean time per step after the first.
// Full recompute at batch 8 takes tens of minutes on 2 cores; by default it is measured on a sample of steps
// (every 32nd sequence length, each step timed alone with the cache off) and integrated over all 256 steps; the
// line says so ("estimated": true). --full-recompute measures every step instead.
// Options: --new N (256), --prompt N (32), --batches 1,8, --threads N, --device cpu|cuda, --full-recompute
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    new: { type: 'string', default: '256' },
    prompt: { type: 'string', default: '32' },
    batches: { type: 'string', default: '1,8' },
    threads: { type: 'string' },
    device: { type: 'string', default: process.env.TH_BENCH_DEVICE ?? 'cpu' },
    'full-recompute': { type: 'boolean', default: false },
  },
});
const N = Number(opt.new);
const P = Number(opt.prompt);

const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');
if (!existsSync(modelPath)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });

const th = await import(resolve(root, 'dist/index.js'));
if (opt.threads) th.setNumThreads(Number(opt.threads));
const info = await th.runtimeInfo();
const model = await th.loadHeaded(modelPath, {
  device: opt.device,
  onlyInference: true,
  heads: [{ name: 'lm_head', inSize: 768, numOutputs: 50257, isCausalLm: true }],
});

let s = 4242;
const rand = () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 50257;
const base = { eosTokenId: null };

function emit(line) {
  console.log(
    JSON.stringify({
      bench: 'generate',
      model: 'gpt2-small-shaped (random weights)',
      prompt_tokens: P,
      new_tokens: N,
      device: opt.device,
      threads: info.numThreads,
      torch: info.torchVersion,
      ...line,
    }),
  );
}

/** Wall time of a streamed generation, with the time to the first step. */
async function timed(prompts, options) {
  const t0 = performance.now();
  let first = 0;
  let steps = 0;
  for await (const _ of model.generateStream(prompts, { ...base, ...options })) {
    if (steps++ === 0) first = performance.now() - t0;
  }
  const total = performance.now() - t0;
  return { total, first, steps };
}

await timed([[1, 2, 3, 4]], { maxNewTokens: 4 }); // warm-up
for (const B of opt.batches.split(',').map(Number)) {
  const prompts = Array.from({ length: B }, () => Array.from({ length: P }, rand));
  const cached = await timed(prompts, { maxNewTokens: N });
  const cachedLine = {
    variant: 'kv-cache',
    batch: B,
    tokens_per_s: Number(((B * N) / (cached.total / 1000)).toFixed(1)),
    time_to_first_token_ms: Number(cached.first.toFixed(1)),
    ms_per_step_after_first: Number(((cached.total - cached.first) / (N - 1)).toFixed(2)),
    total_s: Number((cached.total / 1000).toFixed(2)),
  };
  emit(cachedLine);

  let recompute;
  let estimated = false;
  if (opt['full-recompute'] || B === 1) {
    recompute = await timed(prompts, { maxNewTokens: N, useCache: false });
  } else {
    // Step k of a recompute run processes a P + k token sequence; time single steps at sampled lengths.
    estimated = true;
    const lengths = [];
    for (let k = 0; k < N; k += 32) lengths.push(k);
    if (lengths[lengths.length - 1] !== N - 1) lengths.push(N - 1);
    const ms = [];
    for (const k of lengths) {
      const longer = prompts.map((p) => [...p, ...Array.from({ length: k }, rand)]);
      const r = await timed(longer, { maxNewTokens: 1, useCache: false });
      ms.push(r.total);
    }
    // Piecewise-linear in k between the samples (attention makes it slightly convex: a mild underestimate).
    let total = 0;
    for (let k = 0; k < N; ++k) {
      let j = 0;
      while (j + 1 < lengths.length && lengths[j + 1] <= k) j++;
      const [k0, k1] = [lengths[j], lengths[Math.min(j + 1, lengths.length - 1)]];
      const w = k1 === k0 ? 0 : (k - k0) / (k1 - k0);
      total += ms[j] * (1 - w) + ms[Math.min(j + 1, ms.length - 1)] * w;
    }
    recompute = { total, first: ms[0], steps: N };
  }
  emit({
    variant: 'full-recompute',
    batch: B,
    tokens_per_s: Number(((B * N) / (recompute.total / 1000)).toFixed(1)),
    time_to_first_token_ms: Number(recompute.first.toFixed(1)),
    total_s: Number((recompute.total / 1000).toFixed(2)),
    ...(estimated ? { estimated: true, sampled_lengths: Math.ceil(N / 32) + 1 } : {}),
  });
  emit({ variant: 'speedup', batch: B, kv_cache_over_recompute: Number((recompute.total / cached.total).toFixed(2)), estimated });
}
model.dispose();

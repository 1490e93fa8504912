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
// Side by side: the tuned PyTorch eager peer (../shared/peers/peer_generate.py: nanoGPT with a preallocated KV cache,
// GPT-2's tanh GELU, OMP_WAIT_POLICY=PASSIVE, the same threads) runs the same generation right after each of our
// KV-cache rows, for --rounds rounds (alternating), and a summary line gives the ratio of the medians.
// Options: --new N (256), --prompt N (32), --batches 1,8, --threads N, --device cpu|cuda, --full-recompute,
// --rounds N (2), --no-peer, --no-recompute, --dtype float32|bfloat16, --quant nf4|nf4-dq (a 4-bit base; the peer
// always runs in float32: such a row's ratio to it is a different precision, labelled so in the summary)
// Each (variant, batch) runs in a process of its own (bench/proc.mjs), so that each line's peak RSS is its own.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { peersDir, processFields, rowOrSpawn, runPeer } from './proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    new: { type: 'string', default: '256' },
    prompt: { type: 'string', default: '32' },
    batches: { type: 'string', default: '1,8' },
    threads: { type: 'string' },
    device: { type: 'string', default: process.env.TH_BENCH_DEVICE ?? 'cpu' },
    dtype: { type: 'string', default: 'float32' },
    quant: { type: 'string' },
    'full-recompute': { type: 'boolean', default: false },
    'no-recompute': { type: 'boolean', default: false },
    'no-peer': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '2' },
    row: { type: 'string' },
  },
});
const N = Number(opt.new);
const P = Number(opt.prompt);

const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');
if (!existsSync(modelPath)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });

const batches = opt.batches.split(',').map(Number);
const threads = opt.threads ? Number(opt.threads) : availableParallelism();
const passOn = ['--new', opt.new, '--prompt', opt.prompt, '--device', opt.device, '--dtype', opt.dtype, ...(opt.quant ? ['--quant', opt.quant] : []), ...(opt.threads ? ['--threads', opt.threads] : []), ...(opt['full-recompute'] ? ['--full-recompute'] : [])];
const { row } = rowOrSpawn(import.meta.url, [], process.argv.slice(2));
if (!row) {
  const ours = (name) => rowOrSpawn(import.meta.url, [name], passOn).lines;
  const peers = !opt['no-peer'] && opt.device === 'cpu' ? peersDir() : null;
  if (!opt['no-peer'] && !peers) console.error('generate: no peer harness (set TH_PEERS to the folder holding peer_generate.py); peer rows skipped');
  const got = [];
  for (let r = 0; r < Number(opt.rounds); r++) {
    for (const B of batches) {
      got.push(...ours(`kv-cache:${B}`));
      if (!peers) continue;
      const p = runPeer(peers, 'peer_generate.py', ['--batches', String(B), '--prompt', opt.prompt, '--new', opt.new, '--threads', String(threads), '--gelu', 'tanh']);
      if (!p) continue;
      const line = {
        bench: 'generate',
        variant: 'peer kv-cache (PyTorch eager, nanoGPT, preallocated cache, OMP_WAIT_POLICY=PASSIVE)',
        batch: B,
        prompt_tokens: p.prompt_tokens,
        new_tokens: p.new_tokens,
        threads: p.threads,
        torch: p.torch_version,
        tokens_per_s: p.tokens_per_s,
        time_to_first_token_ms: p.time_to_first_token_ms,
        ms_per_step_after_first: p.ms_per_step_after_first,
        total_s: p.total_s,
        peak_rss_mib: Math.round(p.peak_rss_mb),
      };
      console.log(JSON.stringify(line));
      got.push(line);
    }
  }
  if (!opt['no-recompute']) for (const B of batches) got.push(...ours(`full-recompute:${B}`));
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : null;
  };
  for (const B of batches) {
    const cached = got.filter((l) => l.variant === 'kv-cache' && l.batch === B);
    const peer = got.filter((l) => l.variant.startsWith('peer') && l.batch === B);
    const recompute = got.find((l) => l.variant === 'full-recompute' && l.batch === B);
    const tps = median(cached.map((l) => l.tokens_per_s));
    const peerTps = median(peer.map((l) => l.tokens_per_s));
    console.log(
      JSON.stringify({
        bench: 'generate',
        variant: 'summary',
        batch: B,
        dtype: opt.dtype,
        ...(opt.quant ? { quant: opt.quant } : {}),
        ...(opt.dtype !== 'float32' || opt.quant ? { peer_dtype: 'float32' } : {}),
        tokens_per_s: cached.map((l) => l.tokens_per_s),
        peer_tokens_per_s: peer.map((l) => l.tokens_per_s),
        peak_rss_mib: cached.map((l) => l.peak_rss_mib),
        peer_peak_rss_mib: peer.map((l) => l.peak_rss_mib),
        kv_cache_vs_peer: peerTps ? Number((tps / peerTps).toFixed(3)) : null,
        ...(recompute ? { kv_cache_over_recompute: Number((recompute.total_s / median(cached.map((l) => l.total_s))).toFixed(2)), estimated: Boolean(recompute.estimated) } : {}),
      }),
    );
  }
  process.exit(0);
}
const [variant, batchText] = row.split(':');

const th = await import(resolve(root, 'dist/index.js'));
if (opt.threads) await th.setNumThreads(Number(opt.threads));
const info = await th.runtimeInfo();
const model = await th.loadHeaded(modelPath, {
  device: opt.device,
  dtype: opt.dtype,
  ...(opt.quant ? { quantization: { bits: 4, quantType: 'nf4', doubleQuant: opt.quant === 'nf4-dq' } } : {}),
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
      dtype: opt.dtype,
      ...(opt.quant ? { quant: opt.quant } : {}),
      threads: info.numThreads,
      torch: info.torchVersion,
      ...line,
      ...processFields(info),
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
const B = Number(batchText);
const prompts = Array.from({ length: B }, () => Array.from({ length: P }, rand));
if (variant === 'kv-cache') {
  const cached = await timed(prompts, { maxNewTokens: N });
  emit({
    variant: 'kv-cache',
    batch: B,
    tokens_per_s: Number(((B * N) / (cached.total / 1000)).toFixed(1)),
    time_to_first_token_ms: Number(cached.first.toFixed(1)),
    ms_per_step_after_first: Number(((cached.total - cached.first) / (N - 1)).toFixed(2)),
    total_s: Number((cached.total / 1000).toFixed(2)),
  });
} else {
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
}
model.dispose();

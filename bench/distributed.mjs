#!/usr/bin/env node
// Data-parallel scaling on the GPT-2-small-shaped model: a frozen-backbone probe step and a LoRA (r=8) step, global
// batch 8 x 128 tokens, as 1 process x 2 threads (batch 8) and as 2 processes x 1 thread (batch 4 each, Gloo over
// 127.0.0.1). One JSON line per configuration: tokens/s of the global batch, the gradient all-reduce's milliseconds
// per step (and the bytes it moves), the time a rank waits for the slowest one, the step's milliseconds, and the peak
// RSS of each process.
// With TH_BENCH_DEVICE=cuda and --backend nccl, the same on CUDA devices with NCCL (rank i on cuda:i; one GPU per rank).
// usage: node bench/distributed.mjs [--steps N] [--backend gloo|nccl] [--kinds probe,lora]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { processFields } from './proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const modelPath = resolve(root, 'fixtures/gpt2-small-random.pt');
const self = fileURLToPath(import.meta.url);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const steps = Number(arg('steps', 4));
const backend = arg('backend', 'gloo');
const kinds = arg('kinds', 'probe,lora').split(',');
const GLOBAL_BATCH = 8;
const SEQ = 128;

function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => res(port));
    });
  });
}

function child(kind, world, threads, rank, port) {
  return new Promise((res, rej) => {
    const env = { ...process.env, OMP_NUM_THREADS: String(threads), TH_BENCH_ROLE: JSON.stringify({ kind, world, threads, steps }) };
    if (world > 1) Object.assign(env, { RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), TH_DIST_BACKEND: backend });
    const p = spawn(process.execPath, [self], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`${kind} ${world}x${threads} rank ${rank} exited with ${code}`))));
  });
}

if (!process.env.TH_BENCH_ROLE) {
  if (!existsSync(modelPath)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });
  const rows = [];
  for (const kind of kinds) {
    for (const [world, threads] of [
      [1, 2],
      [2, 1],
    ]) {
      const port = await freePort();
      const outs = await Promise.all(Array.from({ length: world }, (_, r) => child(kind, world, threads, r, port)));
      const line = outs[0].trim().split('\n').at(-1);
      process.stdout.write(line + '\n');
      rows.push(JSON.parse(line));
    }
  }
  for (const kind of kinds) {
    const [one, two] = rows.filter((r) => r.kind === kind);
    console.log(
      JSON.stringify({
        bench: 'distributed-summary',
        kind,
        speedup_2proc_vs_1proc_2threads: Number((two.tokens_per_s / one.tokens_per_s).toFixed(2)),
        allreduce_share_of_step: Number((two.allreduce_ms_per_step / two.ms_per_step).toFixed(3)),
      }),
    );
  }
} else {
  const { kind, world, threads } = JSON.parse(process.env.TH_BENCH_ROLE);
  const th = await import(resolve(root, 'dist/index.js'));
  await th.setNumThreads(threads);
  const device = process.env.TH_BENCH_DEVICE ?? 'cpu';
  const dist = world > 1 ? await th.initProcessGroup() : null;
  const rank = dist?.rank ?? 0;
  const dev = device === 'cuda' && dist ? `cuda:${rank}` : device;
  const bs = GLOBAL_BATCH / world;
  const heads = [{ name: 'cls', inSize: 768, numOutputs: 2, predForSequence: true }];
  const m =
    kind === 'lora'
      ? await th.createHeadedQLoRA(modelPath, { heads, lora: { r: 8, alpha: 16 }, device: dev })
      : await th.loadHeaded(modelPath, { heads, device: dev, freezeBaseModel: true });
  await m.configureOptimizer({ lr: 1e-4 });
  if (dist) await dist.attach(m);
  // Each rank its own rows (the global batch split in two), fixed across steps.
  let s = 11 + rank;
  const ids = Array.from({ length: bs }, () => Array.from({ length: SEQ }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 50000));
  const batch = { input_ids: ids, cls: ids.map((_, i) => i % 2) };
  let waitMs = 0;
  const step = async () => {
    await m.trainStep(batch);
    // Time spent waiting for the slowest rank's backward, kept out of the all-reduce's figure (which would
    // otherwise include it: the all-reduce cannot finish before every rank has joined it).
    if (dist) {
      const t = performance.now();
      await dist.barrier('the end of the backward');
      waitMs += performance.now() - t;
    }
    await m.optimizerStep(1e-4);
  };
  await step(); // warm-up (and the first all-reduce's connection set-up)
  const before = dist ? await dist.stats() : { reduceMs: 0, reduceCount: 0 };
  waitMs = 0;
  const times = [];
  for (let i = 0; i < steps; i++) {
    // Every rank starts the step together, so a step's time is the slowest rank's, as in training.
    if (dist) await dist.barrier('the benchmark step');
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  const after = dist ? await dist.stats() : { reduceMs: 0, reduceCount: 0 };
  const info = await th.runtimeInfo();
  const fields = processFields(info);
  // Peak RSS of every rank, gathered on rank 0.
  const rss = dist ? await dist.allGather([fields.peak_rss_mib]) : [fields.peak_rss_mib];
  const ms = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
  if (rank === 0) {
    console.log(
      JSON.stringify({
        bench: 'distributed',
        kind,
        variant: `${kind === 'lora' ? 'LoRA r=8' : 'frozen-backbone probe'} step, ${world} process(es) x ${threads} thread(s), batch ${bs} per process`,
        model: 'gpt2-small-shaped (random weights)',
        processes: world,
        threads_per_process: threads,
        global_batch: GLOBAL_BATCH,
        seq: SEQ,
        tokens_per_s: Math.round((GLOBAL_BATCH * SEQ) / (ms / 1000)),
        ms_per_step: Number(ms.toFixed(1)),
        wait_for_slowest_rank_ms_per_step: Number((waitMs / steps).toFixed(2)),
        allreduce_ms_per_step: dist ? Number(((after.reduceMs - before.reduceMs) / Math.max(1, after.reduceCount - before.reduceCount)).toFixed(2)) : 0,
        trainable_parameters: m.trainableParameters(),
        allreduce_bytes_per_step: dist ? m.trainableParameters() * 4 : 0,
        backend: dist ? dist.options.backend : null,
        ...fields,
        peak_rss_mib_per_process: rss,
        device,
        torch: info.torchVersion,
      }),
    );
  }
  if (dist) await dist.barrier('the end of the benchmark');
  m.dispose();
}

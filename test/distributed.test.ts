// Data-parallel training over 127.0.0.1 with real processes (test/child/ddp-train.mjs): 2 ranks x batch 4 train to
// the weights of 1 process x batch 8 (frozen-backbone probe with the activation cache, LoRA, full finetuning);
// `transformer-heads launch` gives the same; a rank killed with SIGKILL makes the other fail with ERR_TH_DISTRIBUTED
// naming it; different settings are refused at startup naming the field; a checkpoint of 2 ranks resumes in 1.
//
// Same data order: every rank shuffles 0..n-1 with the same seed per epoch (as DistributedSampler), and rank r takes
// positions r, r+2, r+4, ... of that order, so 2 ranks' k-th micro-batches of 4 hold exactly the examples of one
// process's k-th batch of 8 (n = 32: no padding of the shard). The losses are means over the batch, and the gradient
// is averaged over ranks: with one label per sequence the mean over 8 is the mean of the two means over 4.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { distributedFromEnv, permutation, shardIndices } from '../ts/index.js';
import { ensureDist, fixture, relDiff, root } from './helpers.js';

const CHILD = join(root, 'test', 'child', 'ddp-train.mjs');
const CLI = join(root, 'dist', 'cli.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'th-ddp-'));
// float32 gradients summed in another order (two halves, then across ranks; batches padded to other lengths), through
// 8 AdamW steps at lr 1e-3: AdamW divides each gradient by its own magnitude, so rounding noise in near-zero gradients
// moves weights by up to a learning rate. A bug (no average, another data order) moves them by ~lr x steps: 1e-2
// of the weights' scale, three orders above this tolerance.
const TOL = 1e-5;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { cwd: root, env: { ...process.env, OMP_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

type Opts = Record<string, unknown> & { out: string };

/** One process (no torchrun environment). */
const single = (o: Opts) => run([CHILD, JSON.stringify(o)]);

/** `world` ranks started directly with torchrun's environment (no launcher: each rank's own exit is observed). */
async function ranks(world: number, o: Opts, timeout = 60): Promise<Run[]> {
  const port = await freePort();
  return Promise.all(
    Array.from({ length: world }, (_, rank) =>
      run([CHILD, JSON.stringify(o)], {
        RANK: String(rank),
        WORLD_SIZE: String(world),
        LOCAL_RANK: String(rank),
        LOCAL_WORLD_SIZE: String(world),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        TH_DIST_TIMEOUT: String(timeout),
      }),
    ),
  );
}

const launch = (args: string[]) => run([CLI, 'launch', ...args]);

function result(dir: string): { weights: Record<string, number[]>; trainLoss: number; globalStep: number; activationCache: boolean; log: Array<Record<string, number>> } {
  return JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'));
}

function ok(r: Run | Run[]): void {
  for (const x of Array.isArray(r) ? r : [r]) expect(x.code, `${x.stdout}\n${x.stderr}`).toBe(0);
}

const rel = (a: number[], b: number[]) => relDiff({ data: a, shape: [a.length] }, { data: b, shape: [b.length] });

// The largest difference over all trainable tensors relative to the largest trainable weight (as the C++ test):
// a tensor that starts at 0 (LoRA's B) is compared at the scale of the model's weights, not of its own few steps.
function expectSameWeights(got: Record<string, number[]>, want: Record<string, number[]>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  let diff = 0;
  let scale = 0;
  let worst = '';
  for (const k of Object.keys(want)) {
    const g = got[k]!;
    const w = want[k]!;
    expect(g.length, k).toBe(w.length);
    for (let i = 0; i < w.length; i++) {
      scale = Math.max(scale, Math.abs(w[i]!));
      const d = Math.abs(g[i]! - w[i]!);
      if (!(d <= diff)) [diff, worst] = [d, k];
    }
  }
  expect(diff / scale, `largest difference in ${worst}`).toBeLessThan(TOL);
}

beforeAll(() => ensureDist());

describe('sharding and the environment', () => {
  it("shards as PyTorch's DistributedSampler: pad by repeating the first indices, then every world-th from rank", () => {
    const cases = [
      [10, 3],
      [7, 2],
      [32, 2],
      [5, 8],
    ] as const;
    // DistributedSampler without shuffle yields positions in 0..n-1; with a shuffle it takes them from its
    // permutation, which here is the library's own seeded one. One Python process for every case (importing torch
    // takes seconds).
    const code = `import json; from torch.utils.data.distributed import DistributedSampler as S
print(json.dumps([[list(S(range(n), num_replicas=w, rank=r, shuffle=False)) for r in range(w)] for n, w in ${JSON.stringify(cases)}]))`;
    const py = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
    expect(py.status, py.stderr).toBe(0);
    const want = JSON.parse(py.stdout) as number[][][];
    cases.forEach(([n, world], c) => {
      const order = permutation(n, 11);
      for (let r = 0; r < world; r++) expect(shardIndices(order, r, world)).toEqual(want[c]![r]!.map((i) => order[i]));
    });
  });

  it('reads the torchrun environment', () => {
    expect(distributedFromEnv({})).toBeNull();
    expect(distributedFromEnv({ WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '1234' })).toEqual({
      rank: 3,
      worldSize: 4,
      localRank: 1,
      localWorldSize: 2,
      masterAddr: '10.0.0.1',
      masterPort: 1234,
      backend: 'gloo',
      timeout: 300,
    });
    expect(() => distributedFromEnv({ WORLD_SIZE: '2' })).toThrow(/RANK/);
    expect(() => distributedFromEnv({ WORLD_SIZE: '2', RANK: '2' })).toThrow(/rank/);
    expect(() => distributedFromEnv({ WORLD_SIZE: 'two', RANK: '0' })).toThrow(/WORLD_SIZE/);
  });
});

describe('transformer-heads launch: its command line', () => {
  it('refuses what it cannot run, with usage errors (exit code 2)', async () => {
    const none = await launch(['--nproc-per-node', '2']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/launch needs a script or a command/);
    const addr = await launch(['--nnodes', '2', '--nproc-per-node', '1', 'x.mjs']);
    expect(addr.code).toBe(2);
    expect(addr.stderr).toMatch(/--master-addr is required with --nnodes > 1/);
    const rank = await launch(['--nnodes', '2', '--node-rank', '2', '--master-addr', 'h', 'x.mjs']);
    expect(rank.stderr).toMatch(/--node-rank 2 must be below --nnodes 2/);
    const what = await launch(['--nproc-per-node', '2', 'notes.txt']);
    expect(what.stderr).toMatch(/launch runs a \.js\/\.mjs\/\.cjs script or one of the commands/);
  });
});

describe('2 processes x batch 4 == 1 process x batch 8', () => {
  const base = { model: fixture('tiny-gpt2.pt'), n: 32, maxSteps: 8 };

  it('frozen-backbone probe (activation cache on every rank), through transformer-heads launch', async () => {
    const one = tmp();
    const two = tmp();
    ok(await single({ ...base, mode: 'probe', bs: 8, out: one }));
    const l = await launch(['--nproc-per-node', '2', CHILD, JSON.stringify({ ...base, mode: 'probe', bs: 4, out: two })]);
    ok(l);
    const a = result(two);
    const b = result(one);
    expect(a.activationCache).toBe(true);
    expect(a.globalStep).toBe(8);
    expectSameWeights(a.weights, b.weights);
    // The logged loss is the mean over the ranks: the loss of the global batch.
    expect(rel([a.trainLoss], [b.trainLoss])).toBeLessThan(TOL);
  });

  it('LoRA', async () => {
    const one = tmp();
    const two = tmp();
    ok(await single({ ...base, mode: 'lora', bs: 8, out: one }));
    ok(await ranks(2, { ...base, mode: 'lora', bs: 4, out: two }));
    expectSameWeights(result(two).weights, result(one).weights);
  });

  it('full finetuning', async () => {
    const one = tmp();
    const two = tmp();
    ok(await single({ ...base, mode: 'full', bs: 8, out: one }));
    ok(await ranks(2, { ...base, mode: 'full', bs: 4, out: two }));
    const a = result(two).weights;
    expect(Object.keys(a).length).toBeGreaterThan(10); // the backbone's tensors are there
    expectSameWeights(a, result(one).weights);
  });

  it('token-level heads: equal when every rank has as many loss positions (sequences of one length)', async () => {
    const one = tmp();
    const two = tmp();
    ok(await single({ ...base, mode: 'probe', tokenHead: true, fixedLength: 8, bs: 8, out: one }));
    ok(await ranks(2, { ...base, mode: 'probe', tokenHead: true, fixedLength: 8, bs: 4, out: two }));
    expectSameWeights(result(two).weights, result(one).weights);
  });
});

describe('faults', () => {
  it('a rank killed with SIGKILL mid-training: the other stops with ERR_TH_DISTRIBUTED naming it, within the timeout', async () => {
    const [r0, r1] = await ranks(2, { model: fixture('tiny-gpt2.pt'), n: 32, maxSteps: 1000, mode: 'full', bs: 4, killRank: 1, killAtStep: 3, out: tmp() }, 20);
    expect(r1!.signal).toBe('SIGKILL');
    expect(r0!.code).toBe(1);
    const err = JSON.parse(r0!.stdout.trim().split('\n').at(-1)!).error;
    expect(err.code).toBe('ERR_TH_DISTRIBUTED');
    expect(err.message).toMatch(/^rank 0 of 2: .*rank 1 \(the other rank\)/);
    expect(r0!.ms).toBeLessThan(20_000 + 15_000); // the timeout, plus loading and 3 steps
  });

  it('launch stops every rank when one dies and exits with its code', async () => {
    const l = await launch(['--nproc-per-node', '2', '--timeout', '20', CHILD, JSON.stringify({ model: fixture('tiny-gpt2.pt'), n: 32, maxSteps: 1000, mode: 'probe', bs: 4, killRank: 1, killAtStep: 2, out: tmp() })]);
    expect(l.code).toBe(128 + 9);
    expect(l.stderr).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL; stopping the other ranks/);
    expect(l.stderr).toMatch(/failed: rank 1 was killed by SIGKILL/);
  });

  it('different settings on the ranks are refused at startup, naming the field', async () => {
    const base = { model: fixture('tiny-gpt2.pt'), n: 32, maxSteps: 2, mode: 'probe', bs: 4 };
    const lr = await launch(['--nproc-per-node', '2', '--timeout', '20', CHILD, JSON.stringify({ ...base, rank1: { learningRate: 0.5 }, out: tmp() })]);
    expect(lr.code).toBe(1);
    // Either rank may report first (the launcher then stops the other).
    expect(lr.stdout).toMatch(/\[rank(\d)\]: .*ERR_TH_DISTRIBUTED.*rank \1 and rank \d run different training argument learningRate \((0\.001 here, 0\.5|0\.5 here, 0\.001) there\)/);
    const heads = await launch(['--nproc-per-node', '2', '--timeout', '20', CHILD, JSON.stringify({ ...base, rank1: { heads: { layerHook: 1 } }, out: tmp() })]);
    expect(heads.code).toBe(1);
    expect(heads.stdout).toMatch(/ERR_TH_DISTRIBUTED.*run different heads/);
  });

  it('Ctrl-C to the launcher stops every rank', async () => {
    const p = spawn(process.execPath, [CLI, 'launch', '--nproc-per-node', '2', CHILD, JSON.stringify({ model: fixture('tiny-gpt2.pt'), n: 32, maxSteps: 100000, mode: 'probe', bs: 4, out: tmp() })], {
      cwd: root,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    // Wait until both ranks train (their progress is not printed: give them time to load), then interrupt.
    await new Promise((r) => setTimeout(r, 6000));
    const t0 = Date.now();
    p.kill('SIGINT');
    const code = await new Promise<number | null>((r) => p.on('close', (c) => r(c)));
    expect(code, err).toBe(130);
    expect(err).toMatch(/SIGINT: stopping every rank/);
    expect(Date.now() - t0).toBeLessThan(12_000);
  });
});

describe('checkpoints', () => {
  it('a checkpoint of 2 processes x batch 4 resumes in 1 process x batch 8 to the same weights', async () => {
    const two = tmp();
    const one = tmp();
    const base = { model: fixture('tiny-gpt2.pt'), n: 32, maxSteps: 8, mode: 'lora' };
    ok(await ranks(2, { ...base, bs: 4, saveSteps: 2, out: two }));
    // checkpoint-2 sits mid-epoch (2 of 4 steps): 16 examples of the epoch consumed, 2 batches of 8 in one process.
    ok(await single({ ...base, bs: 8, resume: join(two, 'checkpoint-2'), out: one }));
    const a = result(one);
    expect(a.globalStep).toBe(8);
    expectSameWeights(a.weights, result(two).weights);
  });
});

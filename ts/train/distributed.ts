// Data-parallel training across processes and machines on PyTorch's c10d (native/core/distributed.h): the torchrun
// environment, the process group, DistributedSampler's sharding, and the reductions the Trainer needs. One process
// group per process, as torch.distributed's default group.
import { createHash } from 'node:crypto';

import { invalidArg, nativeCall, TransformerHeadsError } from '../errors.js';
import type { HeadedModel } from '../model/index.js';
import { ensureNative } from '../native/index.js';

/** Where and how this process joins a data-parallel run (torchrun's variables, or given explicitly). */
export interface DistributedOptions {
  /** This process's rank, 0..worldSize-1 (RANK). */
  rank: number;
  /** How many processes train together (WORLD_SIZE). */
  worldSize: number;
  /** The rank on this machine (LOCAL_RANK): the CUDA device index with NCCL. Defaults to rank. */
  localRank?: number;
  /** Processes on this machine (LOCAL_WORLD_SIZE). */
  localWorldSize?: number;
  /** Host of rank 0, which serves the rendezvous store (MASTER_ADDR). Defaults to 127.0.0.1. */
  masterAddr?: string;
  /** Its port (MASTER_PORT). Defaults to 29500. */
  masterPort?: number;
  /** 'gloo' (CPU tensors, the default) or 'nccl' (CUDA tensors; a libtorch with CUDA and NCCL). */
  backend?: 'gloo' | 'nccl';
  /** Seconds a rank waits for the others at the rendezvous and in every collective. Defaults to 300. */
  timeout?: number;
}

/** A parsed DistributedOptions with every default filled in. */
export type ResolvedDistributedOptions = Required<DistributedOptions>;

function intVar(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new TransformerHeadsError(`the environment variable ${name} must be an integer >= ${min}, got '${v}'`, 'ERR_TH_VALUE');
  }
  return n;
}

/**
 * The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and
 * TH_DIST_BACKEND / TH_DIST_TIMEOUT), or null when WORLD_SIZE is unset: one process. Slurm and Kubernetes jobs set
 * these variables themselves (docs/distributed.md).
 */
export function distributedFromEnv(env: NodeJS.ProcessEnv = process.env): ResolvedDistributedOptions | null {
  const worldSize = intVar(env, 'WORLD_SIZE', 1);
  if (worldSize === undefined) return null;
  const rank = intVar(env, 'RANK', 0);
  if (rank === undefined) throw new TransformerHeadsError('WORLD_SIZE is set but RANK is not: set both (torchrun and transformer-heads launch do)', 'ERR_TH_VALUE');
  const backend = env.TH_DIST_BACKEND ?? 'gloo';
  return resolveDistributedOptions({
    rank,
    worldSize,
    localRank: intVar(env, 'LOCAL_RANK', 0),
    localWorldSize: intVar(env, 'LOCAL_WORLD_SIZE', 1),
    masterAddr: env.MASTER_ADDR || undefined,
    masterPort: intVar(env, 'MASTER_PORT', 1),
    backend: backend as 'gloo',
    timeout: env.TH_DIST_TIMEOUT ? Number(env.TH_DIST_TIMEOUT) : undefined,
  });
}

/** Checks and completes explicit options. */
export function resolveDistributedOptions(o: DistributedOptions): ResolvedDistributedOptions {
  if (!o || typeof o !== 'object') invalidArg('distributed', 'an object { rank, worldSize, ... }', o);
  const int = (name: string, v: unknown, min: number, max = Infinity) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) invalidArg(`distributed.${name}`, `an integer in [${min}, ${max}]`, v);
    return v;
  };
  const worldSize = int('worldSize', o.worldSize, 1);
  const rank = int('rank', o.rank, 0, worldSize - 1);
  const backend = o.backend ?? 'gloo';
  if (backend !== 'gloo' && backend !== 'nccl') invalidArg('distributed.backend', "'gloo' or 'nccl'", backend);
  const timeout = o.timeout ?? 300;
  if (typeof timeout !== 'number' || !(timeout > 0)) invalidArg('distributed.timeout', 'a number of seconds > 0', timeout);
  return {
    rank,
    worldSize,
    localRank: int('localRank', o.localRank ?? rank, 0),
    localWorldSize: int('localWorldSize', o.localWorldSize ?? 1, 1),
    masterAddr: o.masterAddr ?? '127.0.0.1',
    masterPort: int('masterPort', o.masterPort ?? 29500, 1, 65535),
    backend,
    timeout,
  };
}

/**
 * The indices of `order` (a permutation of 0..n-1, the same on every rank) that `rank` reads, as PyTorch's
 * DistributedSampler picks them: padded to a multiple of worldSize by repeating the first indices, then every
 * worldSize-th from position `rank`. With one rank it is `order` itself.
 */
export function shardIndices(order: readonly number[], rank: number, worldSize: number): number[] {
  if (worldSize === 1) return [...order];
  const total = Math.ceil(order.length / worldSize) * worldSize;
  const padded = [...order];
  while (padded.length < total) padded.push(...order.slice(0, total - padded.length));
  const out: number[] = [];
  for (let i = rank; i < total; i += worldSize) out.push(padded[i]!);
  return out;
}

/** A short digest of a value's JSON (what the startup check compares for long values). */
export function configDigest(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value ?? null)).digest('hex').slice(0, 16);
}

/** This process's place in a data-parallel run, and the collectives the Trainer uses. */
export class DistributedContext {
  #destroyed = false;

  /** @internal use initProcessGroup() */
  constructor(readonly options: ResolvedDistributedOptions) {}

  get rank(): number {
    return this.options.rank;
  }
  get worldSize(): number {
    return this.options.worldSize;
  }
  /** Rank 0 logs, plots and saves; the others wait for it at barriers. */
  get isMain(): boolean {
    return this.options.rank === 0;
  }

  /** Sums numbers over the ranks (float64). */
  async allReduceSum(values: readonly number[]): Promise<number[]> {
    const b = await ensureNative();
    return Array.from(await nativeCall(() => b.distAllReduce(Float64Array.from(values))));
  }

  /** Every rank's values, concatenated in rank order (a sum of zero-padded slots: evaluation predictions). */
  async allGather(values: readonly number[]): Promise<number[]> {
    const counts = new Array<number>(this.worldSize).fill(0);
    counts[this.rank] = values.length;
    const all = await this.allReduceSum(counts);
    const offset = all.slice(0, this.rank).reduce((a, c) => a + c, 0);
    const buf = new Array<number>(all.reduce((a, c) => a + c, 0)).fill(0);
    values.forEach((v, i) => (buf[offset + i] = v));
    return this.allReduceSum(buf);
  }

  /** Waits for every rank; `what` names the point in an error. */
  async barrier(what: string): Promise<void> {
    const b = await ensureNative();
    await nativeCall(() => b.distBarrier(what));
  }

  /** Refuses to go on (ERR_TH_DISTRIBUTED, naming the field and the rank) unless every rank passes the same pairs. */
  async checkSame(fields: Array<[string, string]>): Promise<void> {
    const b = await ensureNative();
    await nativeCall(() => b.distCheck(fields));
  }

  /**
   * Checks that every rank runs the same model (weights digest), heads, LoRA, quantization and `extra` fields, then
   * gives every rank rank 0's trainable weights and averages gradients before each optimizer step.
   */
  async attach(model: HeadedModel<string, string>, extra: Array<[string, string]> = []): Promise<void> {
    const b = await ensureNative();
    const native = await model._withNative((n) => b.distFingerprint(n));
    await this.checkSame([
      ['device type', model.device.split(':')[0]!],
      ['dtype', model.dtype],
      ...native,
      ['heads', configDigest(model.heads)],
      ['LoRA settings', configDigest(model.lora)],
      ['quantization settings', configDigest(model.quantization)],
      ['freezeBaseModel', String(model.freezeBaseModel)],
      // ranks with different position modes compute different hidden states on padded batches
      ['positions', model.positions],
      ...extra,
    ]);
    await model._withNative((n) => b.distAttach(n, true));
  }

  /** Stops averaging this model's gradients. */
  async detach(model: HeadedModel<string, string>): Promise<void> {
    const b = await ensureNative();
    await model._withNative((n) => b.distAttach(n, false));
  }

  /** Milliseconds spent in gradient all-reduces and how many ran, since the group started. */
  async stats(): Promise<{ reduceMs: number; reduceCount: number }> {
    const b = await ensureNative();
    return nativeCall(() => b.distStats());
  }

  /** Leaves the process group (models attached keep their reference until detached). */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (current === this) current = null;
    const b = await ensureNative();
    await nativeCall(() => b.distDestroy());
  }
}

let current: DistributedContext | null = null;
let pending: Promise<DistributedContext> | null = null;

/** The process group this process joined, if any. */
export function currentProcessGroup(): DistributedContext | null {
  return current;
}

/**
 * Joins the data-parallel run (rendezvous through a TCPStore at masterAddr:masterPort, then Gloo or NCCL). Without
 * options it reads the torchrun environment. Once per process: later calls resolve with the same group. Rejects with
 * ERR_TH_DISTRIBUTED when the other ranks do not come within the timeout.
 */
export async function initProcessGroup(options?: DistributedOptions): Promise<DistributedContext> {
  if (current) return current;
  if (pending) return pending;
  const o = options ? resolveDistributedOptions(options) : distributedFromEnv();
  if (!o) {
    throw new TransformerHeadsError('no data-parallel environment: WORLD_SIZE and RANK are not set (use transformer-heads launch or torchrun)', 'ERR_TH_VALUE');
  }
  pending = (async () => {
    const b = await ensureNative();
    if (!b.distAvailable(o.backend)) {
      throw new TransformerHeadsError(
        o.backend === 'nccl'
          ? "the 'nccl' backend needs a libtorch built with CUDA and NCCL and a visible CUDA device; use backend 'gloo' (CPU)"
          : 'this build has no Gloo process group (it was compiled without the gloo headers: on Debian install libgloo-dev and rebuild)',
        'ERR_TH_DEVICE',
      );
    }
    await nativeCall(() =>
      b.distInit({ rank: o.rank, worldSize: o.worldSize, localRank: o.localRank, masterAddr: o.masterAddr, masterPort: o.masterPort, backend: o.backend, timeoutMs: Math.round(o.timeout * 1000) }),
    );
    current = new DistributedContext(o);
    return current;
  })();
  try {
    return await pending;
  } finally {
    pending = null;
  }
}

// The Trainer: one training loop (schedules, accumulation, the activation cache, divergence handling, evaluation,
// checkpoints) and its data-parallel side (sharding, per-step agreement, reductions), kept in one class because they
// share the loop's state; the data-parallel functions are grouped in one section below. Hence the length.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArg, TransformerHeadsError } from '../errors.js';
import { appendText, atomicWrite, ensureFolder, readJsonFile, removePath, saveFolder, shown } from '../io/index.js';
import type { HeadedBatch, HeadedModel, ResolvedHeadConfig } from '../model/index.js';
import { releaseCachedMemory, type Tensor } from '../native/index.js';
import { lossChart } from '../report/index.js';
import { learningRateAt, type TrainingArguments } from './arguments.js';
import { checkpoints, latestCheckpoint } from './checkpoints.js';
import { DataCollatorWithPadding, type CollatedBatch } from './collator.js';
import { permutation, type Dataset, type Example } from './data.js';
import { configDigest, currentProcessGroup, distributedFromEnv, initProcessGroup, shardIndices, type DistributedContext } from './distributed.js';
import { selectForMetrics } from './loss-positions.js';
import { accuracy, macroF1, meanSquaredError, r2Score } from './metrics.js';

/** One entry of the Trainer's log history (log_history.jsonl), as Hugging Face's Trainer writes it. */
export interface LogEntry {
  step: number;
  epoch: number;
  [key: string]: number;
}

/** The evaluation logged at the run's last step (epoch or step strategy), if there is one. */
export function finalEvaluation(res: { logHistory: LogEntry[]; globalStep: number }): Record<string, number> | null {
  const e = [...res.logHistory].reverse().find((x) => 'eval_loss' in x);
  if (!e || e.step !== res.globalStep) return null;
  return Object.fromEntries(Object.entries(e).filter(([k]) => k.startsWith('eval_'))) as Record<string, number>;
}

/** Hooks the Trainer calls during train(); each may return a Promise, which is awaited. */
export interface TrainerCallbacks {
  /** After each logged step and each evaluation, with the log entry. */
  onLog?(entry: LogEntry): void | Promise<void>;
  /** After each evaluation, with its metrics (eval_loss, eval_<head>_accuracy, ...). */
  onEvaluate?(metrics: Record<string, number>): void | Promise<void>;
  /** After a checkpoint is written, with its folder. */
  onSave?(checkpointDir: string): void | Promise<void>;
  /** After every optimizer step. */
  onStepEnd?(state: { step: number; epoch: number; loss: number; learningRate: number; totalSteps: number }): void | Promise<void>;
}

/**
 * What computeMetrics receives: per head, the predictions at the positions that carry a loss (the arg-max class for
 * cross_entropy heads, the raw outputs otherwise, numOutputs values per position) and their labels.
 */
export interface EvalPredictions<H extends string = string> {
  /** Heads with a loss and labels in the evaluation data. */
  heads: Record<H, { predictions: Float32Array; labels: Float32Array; numOutputs: number; config: ResolvedHeadConfig<H> }>;
}

/** A computeMetrics key as evaluate() reports it: with the 'eval_' prefix. */
export type EvalMetricKey<M extends string> = M extends `eval_${string}` ? M : `eval_${M}`;

/**
 * What Trainer.evaluate() returns: eval_loss, and per head H eval_loss_<H>, then eval_<H>_accuracy and
 * eval_<H>_f1_macro (classification heads) or eval_<H>_mse and eval_<H>_r2 (regression heads), and the keys
 * computeMetrics returns (M), prefixed with 'eval_'. With the head names known a misspelt key is a compile error;
 * with string names it is a Record<string, number>.
 */
export type EvalMetrics<H extends string = string, M extends string = never> = string extends H
  ? Record<string, number>
  : { eval_loss: number } & Record<`eval_loss_${H}` | `eval_${H}_${'accuracy' | 'f1_macro' | 'mse' | 'r2'}` | EvalMetricKey<M>, number>;

/** `H`: the model's head names (see HeadConfig); `M`: the keys computeMetrics returns. */
export interface TrainerData<H extends string = string, M extends string = string> {
  trainDataset?: Dataset;
  evalDataset?: Dataset;
  dataCollator: DataCollatorWithPadding;
  /** Extra metrics from the evaluation predictions; keys get an 'eval_' prefix. */
  computeMetrics?: (p: EvalPredictions<H>) => Record<M, number>;
  callbacks?: TrainerCallbacks;
  /** Stops training cleanly after the step in progress. */
  signal?: AbortSignal;
}

/** What train() returns: steps done, whether it was stopped, the final training loss and metrics. */
export interface TrainOutput {
  globalStep: number;
  /** Mean loss over the applied steps (skipped ones excluded). */
  trainingLoss: number;
  /** Steps skipped for a NaN or infinite loss or gradient norm (only with skipNonFiniteSteps; else 0). */
  skippedSteps: number;
  stopped: boolean;
  activationCache: boolean;
  metrics: Record<string, number>;
  logHistory: LogEntry[];
}

/** Why the activation cache cannot stand in for the backbone, or null when it can. */
export function activationCacheBlocker(model: HeadedModel): string | null {
  if (!model.freezeBaseModel || model.backboneNeedsGrad) return 'the backbone trains (freezeBaseModel is false or a tied lm_head trains)';
  for (const h of model.heads) {
    if (h.lossFct === null || h.ignorePads) continue;
    // Without ignorePads a head reads padded positions unless its loss skips -100 labels there.
    if (h.predForSequence || !(h.lossFct === 'cross_entropy' || h.lossFct === 'masked_mse')) {
      return `head '${h.name}' reads padded positions (ignorePads is false)`;
    }
  }
  return null;
}

function progressBar(): ((done: number, total: number, info: string) => void) & { end(): void } {
  const start = Date.now();
  const fmt = (s: number) => (s >= 3600 ? `${Math.floor(s / 3600)}:` : '') + new Date(s * 1000).toISOString().slice(s >= 3600 ? 14 : 14, 19);
  const f = (done: number, total: number, info: string) => {
    const width = 28;
    const frac = total > 0 ? done / total : 0;
    const elapsed = (Date.now() - start) / 1000;
    const eta = done > 0 ? (elapsed * (total - done)) / done : 0;
    const bar = '='.repeat(Math.floor(frac * width)).padEnd(width, ' ');
    process.stderr.write(`\r[${bar}] ${done}/${total} ${fmt(elapsed)}<${fmt(eta)} ${info}\x1b[K`);
  };
  return Object.assign(f, { end: () => process.stderr.write('\n') });
}

/**
 * Trains a HeadedModel: the loop, schedules, gradient accumulation, evaluation, logging and checkpoints. `H` (the
 * model's head names) and `M` (computeMetrics' keys) type the metrics evaluate() returns.
 */
export class Trainer<H extends string = string, M extends string = never> {
  readonly model: HeadedModel<H, string>;
  readonly args: Required<Omit<TrainingArguments, 'evalSteps' | 'saveSteps' | 'saveTotalLimit' | 'resumeFromCheckpoint'>> &
    Pick<TrainingArguments, 'evalSteps' | 'saveSteps' | 'saveTotalLimit' | 'resumeFromCheckpoint'>;
  readonly data: TrainerData<H, M>;
  readonly logHistory: LogEntry[] = [];
  #cache: Array<Map<number, Float32Array> | undefined> | null = null;
  #dist: DistributedContext | null = null;

  constructor(model: HeadedModel<H, string>, args: TrainingArguments, data: TrainerData<H, M>) {
    if (!model || typeof model.trainStep !== 'function') invalidArg('model', 'a HeadedModel', model);
    if (typeof args?.outputDir !== 'string' || !args.outputDir) invalidArg('args.outputDir', 'a folder path', args?.outputDir);
    if (!(data?.dataCollator instanceof DataCollatorWithPadding)) invalidArg('dataCollator', 'a DataCollatorWithPadding', data?.dataCollator);
    const pos = (name: string, v: number, int = true) => {
      if (typeof v !== 'number' || !(v > 0) || (int && !Number.isInteger(v))) invalidArg(`args.${name}`, int ? 'a positive integer' : 'a positive number', v);
      return v;
    };
    const nonneg = (name: string, v: number) => {
      if (typeof v !== 'number' || !(v >= 0)) invalidArg(`args.${name}`, 'a number >= 0', v);
      return v;
    };
    this.model = model;
    this.data = data;
    this.args = {
      outputDir: args.outputDir,
      learningRate: pos('learningRate', args.learningRate ?? 5e-5, false),
      numTrainEpochs: pos('numTrainEpochs', args.numTrainEpochs ?? 3, false),
      maxSteps: args.maxSteps ?? -1,
      perDeviceTrainBatchSize: pos('perDeviceTrainBatchSize', args.perDeviceTrainBatchSize ?? 8),
      perDeviceEvalBatchSize: pos('perDeviceEvalBatchSize', args.perDeviceEvalBatchSize ?? 8),
      gradientAccumulationSteps: pos('gradientAccumulationSteps', args.gradientAccumulationSteps ?? 1),
      warmupSteps: nonneg('warmupSteps', args.warmupSteps ?? 0),
      warmupRatio: nonneg('warmupRatio', args.warmupRatio ?? 0),
      lrSchedulerType: args.lrSchedulerType ?? 'linear',
      weightDecay: nonneg('weightDecay', args.weightDecay ?? 0),
      adamBeta1: args.adamBeta1 ?? 0.9,
      adamBeta2: args.adamBeta2 ?? 0.999,
      adamEpsilon: args.adamEpsilon ?? 1e-8,
      maxGradNorm: nonneg('maxGradNorm', args.maxGradNorm ?? 1),
      seed: args.seed ?? 42,
      loggingSteps: pos('loggingSteps', args.loggingSteps ?? 500),
      evalStrategy: args.evalStrategy ?? (args.evalSteps ? 'steps' : data.evalDataset ? 'epoch' : 'no'),
      evalSteps: args.evalSteps,
      saveStrategy: args.saveStrategy ?? (args.saveSteps ? 'steps' : 'no'),
      saveSteps: args.saveSteps,
      saveTotalLimit: args.saveTotalLimit,
      resumeFromCheckpoint: args.resumeFromCheckpoint,
      activationCache: args.activationCache ?? 'auto',
      activationCacheMaxBytes: args.activationCacheMaxBytes ?? 2 ** 30,
      disableProgressBar: args.disableProgressBar ?? false,
      skipNonFiniteSteps: args.skipNonFiniteSteps ?? false,
      maxConsecutiveSkippedSteps: pos('maxConsecutiveSkippedSteps', args.maxConsecutiveSkippedSteps ?? 10),
      distributed: args.distributed ?? 'auto',
    };
    const d = this.args.distributed;
    if (!(d === 'auto' || typeof d === 'boolean' || (typeof d === 'object' && d !== null))) invalidArg('args.distributed', "'auto', true, false or { rank, worldSize, ... }", d);
    if (typeof this.args.skipNonFiniteSteps !== 'boolean') invalidArg('args.skipNonFiniteSteps', 'true or false', this.args.skipNonFiniteSteps);
    if (!['linear', 'cosine', 'constant', 'constant_with_warmup'].includes(this.args.lrSchedulerType)) {
      invalidArg('args.lrSchedulerType', "'linear', 'cosine', 'constant' or 'constant_with_warmup'", this.args.lrSchedulerType);
    }
    if (this.args.evalStrategy === 'steps' && !this.args.evalSteps) invalidArg('args.evalSteps', 'a positive integer with evalStrategy "steps"', this.args.evalSteps);
    if (this.args.saveStrategy === 'steps' && !this.args.saveSteps) invalidArg('args.saveSteps', 'a positive integer with saveStrategy "steps"', this.args.saveSteps);
  }

  /**
   * Runs the training loop (evaluation, logging and checkpoints as the arguments say); resolves when done or stopped by
   * the signal.
   */
  async train(): Promise<TrainOutput> {
    const { trainDataset, signal, callbacks } = this.data;
    const a = this.args;
    if (!trainDataset) throw new TransformerHeadsError('train() needs a trainDataset', 'ERR_TH_VALUE');
    const n = trainDataset.length;
    if (n === 0) throw new TransformerHeadsError('the training dataset is empty', 'ERR_TH_VALUE');
    if (this.model.onlyInference) throw new TransformerHeadsError('the model was loaded with onlyInference: true', 'ERR_TH_CONFIG');
    const bs = a.perDeviceTrainBatchSize;
    const accum = a.gradientAccumulationSteps;
    const dist = await this.#distributed();
    const world = dist?.worldSize ?? 1;
    // Each rank reads its DistributedSampler shard: ceil(n / world) examples per epoch.
    const microPerEpoch = Math.ceil(Math.ceil(n / world) / bs);
    const updatesPerEpoch = Math.max(1, Math.floor(microPerEpoch / accum));
    const totalSteps = a.maxSteps > 0 ? a.maxSteps : Math.ceil(a.numTrainEpochs * updatesPerEpoch);
    const numEpochs = a.maxSteps > 0 ? Math.ceil(a.maxSteps / updatesPerEpoch) : Math.ceil(a.numTrainEpochs);
    const warmup = a.warmupSteps > 0 ? a.warmupSteps : Math.ceil(a.warmupRatio * totalSteps);

    await ensureFolder(a.outputDir);
    await this.model.configureOptimizer({
      lr: a.learningRate,
      weightDecay: a.weightDecay,
      beta1: a.adamBeta1,
      beta2: a.adamBeta2,
      eps: a.adamEpsilon,
      maxGradNorm: a.maxGradNorm,
    });

    let globalStep = 0;
    let startEpoch = 0;
    let skipMicro = 0;
    if (a.resumeFromCheckpoint) {
      const dir = a.resumeFromCheckpoint === true ? await latestCheckpoint(a.outputDir) : a.resumeFromCheckpoint;
      const st = await this.#loadCheckpoint(dir);
      globalStep = st.globalStep;
      startEpoch = st.epoch;
      skipMicro = st.microStep;
      this.logHistory.push(...st.logHistory);
    }
    if (dist) await this.#attachDistributed(dist, trainDataset);

    const cacheBlocker = activationCacheBlocker(this.model);
    let useCache = false;
    if (a.activationCache !== false) {
      const bytes = this.#cacheBytes(trainDataset);
      const blocker = cacheBlocker ?? (bytes > a.activationCacheMaxBytes ? `it needs ${bytes} bytes, over activationCacheMaxBytes ${a.activationCacheMaxBytes}` : null);
      if (blocker === null) useCache = true;
      else if (a.activationCache === true) throw new TransformerHeadsError(`the activation cache cannot be used: ${blocker}`, 'ERR_TH_CONFIG');
    }
    this.#cache = useCache ? new Array(n) : null;

    const bar = !a.disableProgressBar && process.stderr.isTTY && (dist?.isMain ?? true) ? progressBar() : null;
    const t0 = performance.now();
    let stopped = false;
    let windowLoss = 0;
    let windowSteps = 0;
    let totalLoss = 0;
    let lastGradNorm = 0;
    let stepLoss = 0;
    const guard = new DivergenceGuard(a.skipNonFiniteSteps, a.maxConsecutiveSkippedSteps, a.learningRate, a.maxGradNorm);
    const finished = () => globalStep >= totalSteps;

    outer: for (let epoch = startEpoch; epoch < numEpochs && !finished(); epoch++) {
      const order = dist ? shardIndices(permutation(n, a.seed + epoch), dist.rank, world) : permutation(n, a.seed + epoch);
      for (let micro = 0; micro < microPerEpoch; micro++) {
        if (epoch === startEpoch && micro < skipMicro) continue;
        // With several ranks the stop is agreed at the step boundary below (one rank alone leaving would strand the others).
        if (!dist && signal?.aborted) {
          stopped = true;
          break outer;
        }
        const idx = order.slice(micro * bs, (micro + 1) * bs);
        const examples = idx.map((i) => trainDataset.at(i));
        const batch = this.data.dataCollator.collate(examples);
        const hidden = this.#cache ? await this.#cachedHidden(idx, examples, batch) : undefined;
        const out = await this.model.trainStep(batch as unknown as HeadedBatch, { scale: 1 / accum, hidden });
        stepLoss += out.loss / accum;
        guard.observe(out.lossByHead);
        const boundary = (micro + 1) % accum === 0 || micro === microPerEpoch - 1;
        if (!boundary) continue;
        let stopAfterStep = false;
        if (dist) [stepLoss, stopAfterStep] = await this.#agreeOnStep(dist, stepLoss, signal?.aborted ?? false);
        const lr = learningRateAt(a.lrSchedulerType, a.learningRate, globalStep, warmup, totalSteps);
        // The core applies nothing when this step's loss or gradient norm is not finite (it returns NaN or inf).
        const norm = await this.model.optimizerStep(lr);
        const epochFloat = epoch + (micro + 1) / microPerEpoch;
        // Throws ERR_TH_DIVERGED, or (skipNonFiniteSteps) says the step was skipped: it still counts for the
        // schedule, logging, evaluation and saving, but not for the loss averages.
        const skipped = guard.endStep(norm, globalStep + 1, epochFloat);
        globalStep++;
        if (!skipped) {
          lastGradNorm = norm;
          windowLoss += stepLoss;
          windowSteps++;
          totalLoss += stepLoss;
        }
        bar?.(globalStep, totalSteps, `loss ${stepLoss.toFixed(4)} lr ${lr.toExponential(2)}`);
        await callbacks?.onStepEnd?.({ step: globalStep, epoch: epochFloat, loss: stepLoss, learningRate: lr, totalSteps });
        stepLoss = 0;
        if (globalStep % a.loggingSteps === 0 || finished()) {
          await this.#log({ step: globalStep, epoch: round(epochFloat), ...windowEntry(windowLoss, windowSteps, lastGradNorm), learning_rate: lr, ...guard.logFields() });
          windowLoss = 0;
          windowSteps = 0;
        }
        if (a.evalStrategy === 'steps' && globalStep % a.evalSteps! === 0 && this.data.evalDataset) await this.#evaluateAndLog(globalStep, epochFloat);
        if (a.saveStrategy === 'steps' && globalStep % a.saveSteps! === 0) await this.#saveCheckpoint(globalStep, epoch, micro + 1, microPerEpoch);
        if (stopAfterStep) {
          stopped = true;
          break outer;
        }
        // Leave the epoch, not the run: as in Hugging Face's Trainer, the epoch-end evaluation and save still happen.
        if (finished()) break;
      }
      if (a.evalStrategy === 'epoch' && this.data.evalDataset) await this.#evaluateAndLog(globalStep, epoch + 1);
      if (a.saveStrategy === 'epoch') await this.#saveCheckpoint(globalStep, epoch + 1, 0, microPerEpoch);
    }
    bar?.end();
    const runtime = (performance.now() - t0) / 1000;
    const metrics = {
      train_runtime: round(runtime),
      train_samples_per_second: round((globalStep * bs * accum * world) / runtime),
      train_steps_per_second: round(globalStep / runtime),
      train_loss: globalStep - guard.skipped > 0 ? totalLoss / (globalStep - guard.skipped) : Number.NaN,
      ...(a.skipNonFiniteSteps ? { train_skipped_steps: guard.skipped } : {}),
    };
    await this.#log({ step: globalStep, epoch: this.logHistory.at(-1)?.epoch ?? 0, ...metrics });
    if (dist?.isMain ?? true) await atomicWrite(join(a.outputDir, 'loss.svg'), lossChart(this.logHistory));
    // Every rank returns once rank 0's files are complete.
    if (dist) await dist.barrier('the end of training');
    this.#cache = null;
    // The step-sized buffers the caching CPU allocator kept for the next step (up to 256 MiB) go back to the system.
    await releaseCachedMemory();
    return { globalStep, trainingLoss: metrics.train_loss, skippedSteps: guard.skipped, stopped, activationCache: useCache, metrics, logHistory: [...this.logHistory] };
  }

  /**
   * Mean loss per head and in total over a dataset (the Python library's evaluate_head_wise), plus accuracy /
   * macro-F1 for classification heads, MSE / R² for regression heads, and computeMetrics' results.
   */
  async evaluate(dataset: Dataset | undefined = this.data.evalDataset): Promise<EvalMetrics<H, M>> {
    if (!dataset) throw new TransformerHeadsError('evaluate() needs an evalDataset', 'ERR_TH_VALUE');
    if (dataset.length === 0) throw new TransformerHeadsError('the evaluation dataset is empty', 'ERR_TH_VALUE');
    const bs = this.args.perDeviceEvalBatchSize;
    const sums: Record<string, number> = {};
    const counts: Record<string, number> = {};
    let total = 0;
    let batches = 0;
    const collected: Record<string, { preds: number[]; labels: number[] }> = {};
    const pad = this.model.config.padTokenId ?? this.model.config.eosTokenId;
    const dist = await this.#distributed();
    // Several ranks: each evaluates every worldSize-th example (no padding: each example counts once).
    const rows = (dist ? dataset.rows.filter((_, i) => i % dist.worldSize === dist.rank) : dataset.rows) as Example[];
    for (let i = 0; i < rows.length; i += bs) {
      const examples = rows.slice(i, i + bs);
      const batch = this.data.dataCollator.collate(examples);
      const out = await this.model.forward(batch as unknown as HeadedBatch, { returnPreds: true });
      total += out.loss;
      batches++;
      for (const [h, l] of Object.entries<number>(out.lossByHead)) {
        sums[h] = (sums[h] ?? 0) + l;
        counts[h] = (counts[h] ?? 0) + 1;
      }
      for (const h of this.model.heads) {
        const col = batch[h.target];
        const preds = out.predsByHead!.get(h.name);
        if (!col || !preds || h.lossFct === null) continue;
        const c = (collected[h.name] ??= { preds: [], labels: [] });
        selectForMetrics(h, preds, col, batch.input_ids!, pad, c);
      }
    }
    if (dist) [total, batches] = await this.#reduceEvaluation(dist, total, batches, sums, counts, collected);
    const metrics: Record<string, number> = { eval_loss: total / batches };
    for (const h of Object.keys(sums)) metrics[`eval_loss_${h}`] = sums[h]! / counts[h]!;
    const forUser = { heads: {} } as EvalPredictions<H>;
    for (const h of this.model.heads) {
      const c = collected[h.name];
      if (!c || c.labels.length === 0) continue;
      const C = h.lossFct === 'cross_entropy' || h.isRegression ? 1 : h.numOutputs ?? 1;
      const preds = Float32Array.from(c.preds);
      const labels = Float32Array.from(c.labels);
      forUser.heads[h.name] = { predictions: preds, labels, numOutputs: C, config: h };
      if (h.lossFct === 'cross_entropy') {
        metrics[`eval_${h.name}_accuracy`] = accuracy(preds, labels);
        // macro-F1 over a vocabulary says little and costs a pass per class: classification heads only
        if (!h.isCausalLm) metrics[`eval_${h.name}_f1_macro`] = macroF1(preds, labels);
      } else if (h.lossFct === 'bce' || h.lossFct === 'bce_with_logits') {
        const thr = h.lossFct === 'bce' ? 0.5 : 0;
        metrics[`eval_${h.name}_accuracy`] = accuracy(preds.map((p) => (p > thr ? 1 : 0)), labels);
      } else {
        metrics[`eval_${h.name}_mse`] = meanSquaredError(preds, labels);
        metrics[`eval_${h.name}_r2`] = r2Score(preds, labels);
      }
    }
    if (this.data.computeMetrics) {
      for (const [k, v] of Object.entries<number>(this.data.computeMetrics(forUser))) metrics[k.startsWith('eval_') ? k : `eval_${k}`] = v;
    }
    return metrics as EvalMetrics<H, M>;
  }

  // ---------------------------------------------------------------------------------------------- data parallel
  // (ts/train/distributed.ts; docs/distributed.md). With one process none of these runs.

  // The process group this Trainer runs in (joined on first use), or null for one process.
  async #distributed(): Promise<DistributedContext | null> {
    const d = this.args.distributed;
    if (d === false) return (this.#dist = null);
    let g = currentProcessGroup();
    if (!g) {
      const env = typeof d === 'object' ? d : distributedFromEnv();
      if (!env) {
        if (d === true) throw new TransformerHeadsError('distributed: true, but WORLD_SIZE and RANK are not set (use transformer-heads launch or torchrun)', 'ERR_TH_VALUE');
        return (this.#dist = null);
      }
      if (env.worldSize === 1) return (this.#dist = null);
      g = await initProcessGroup(env);
    }
    return (this.#dist = g.worldSize > 1 ? g : null);
  }

  // Startup: every rank must run the same model, heads, adapters, data and arguments (named in the error when not);
  // then rank 0's trainable weights go to every rank and gradients are averaged from the next step on.
  async #attachDistributed(dist: DistributedContext, ds: Dataset): Promise<void> {
    const a = this.args;
    const same: Array<keyof typeof a> = [
      'learningRate', 'numTrainEpochs', 'maxSteps', 'perDeviceTrainBatchSize', 'gradientAccumulationSteps', 'warmupSteps', 'warmupRatio',
      'lrSchedulerType', 'weightDecay', 'adamBeta1', 'adamBeta2', 'adamEpsilon', 'maxGradNorm', 'seed', 'loggingSteps', 'evalStrategy',
      'evalSteps', 'saveStrategy', 'saveSteps', 'skipNonFiniteSteps',
    ];
    const data = createHash('sha256');
    for (const r of ds) data.update(JSON.stringify(r.input_ids ?? null)).update('\n');
    await dist.attach(this.model, [
      ...same.map((k): [string, string] => [`training argument ${k}`, JSON.stringify(a[k] ?? null)]),
      ['training dataset', `${ds.length} examples, ${data.digest('hex').slice(0, 16)}`],
      ['data collator padding', JSON.stringify(this.data.dataCollator.padValues)],
    ]);
  }

  // One tiny all-reduce per optimizer step: the step's loss averaged over the ranks (what is logged), and whether any
  // rank was asked to stop, so that every rank stops after the same step.
  async #agreeOnStep(dist: DistributedContext, loss: number, aborted: boolean): Promise<[number, boolean]> {
    const [sum, stops] = await dist.allReduceSum([loss, aborted ? 1 : 0]);
    return [sum! / dist.worldSize, stops! > 0];
  }

  // Sums of the losses and batch counts over the ranks, and every rank's predictions and labels (rank order).
  async #reduceEvaluation(
    dist: DistributedContext,
    total: number,
    batches: number,
    sums: Record<string, number>,
    counts: Record<string, number>,
    collected: Record<string, { preds: number[]; labels: number[] }>,
  ): Promise<[number, number]> {
    const names = this.model.heads.map((h) => h.name);
    const v = await dist.allReduceSum([total, batches, ...names.flatMap((h) => [sums[h] ?? 0, counts[h] ?? 0])]);
    names.forEach((h, i) => {
      delete sums[h];
      delete counts[h];
      if (v[3 + 2 * i]! > 0) {
        sums[h] = v[2 + 2 * i]!;
        counts[h] = v[3 + 2 * i]!;
      }
    });
    for (const h of this.model.heads) {
      if (h.lossFct === null) continue;
      const c = collected[h.name] ?? { preds: [], labels: [] };
      const preds = await dist.allGather(c.preds);
      const labels = await dist.allGather(c.labels);
      if (labels.length > 0) collected[h.name] = { preds, labels };
    }
    return [v[0]!, v[1]!];
  }

  // A checkpoint's position in its epoch, in this run's micro-batches: the examples consumed (micro-batches x batch
  // size x ranks when saved) are the first ones of the epoch's permutation whatever the number of ranks, so a run
  // resumes exactly where the global batch size divides them.
  #resumeMicroStep(dir: string, micro: number, state: Record<string, unknown>): number {
    const savedWorld = typeof state.world_size === 'number' ? state.world_size : 1;
    const savedBs = typeof state.per_device_train_batch_size === 'number' ? state.per_device_train_batch_size : this.args.perDeviceTrainBatchSize;
    const world = this.#dist?.worldSize ?? 1;
    if (savedWorld === world && savedBs === this.args.perDeviceTrainBatchSize) return micro;
    const examples = micro * savedBs * savedWorld;
    const perMicro = this.args.perDeviceTrainBatchSize * world;
    if (examples % perMicro !== 0) {
      process.emitWarning(
        `resuming '${dir}' (saved with ${savedWorld} process(es) x batch ${savedBs}) with ${world} x ${this.args.perDeviceTrainBatchSize}: ` +
          `${examples} examples of the epoch were consumed, not a multiple of ${perMicro}; the epoch resumes after ${Math.floor(examples / perMicro) * perMicro}`,
      );
    }
    return Math.floor(examples / perMicro);
  }

  async #evaluateAndLog(step: number, epoch: number): Promise<void> {
    const m = await this.evaluate();
    await this.#log({ step, epoch: round(epoch), ...m });
    await this.data.callbacks?.onEvaluate?.(m);
  }

  async #log(entry: LogEntry): Promise<void> {
    this.logHistory.push(entry);
    if (this.#dist?.isMain ?? true) await appendText(join(this.args.outputDir, 'log_history.jsonl'), JSON.stringify(entry) + '\n');
    await this.data.callbacks?.onLog?.(entry);
  }

  #cacheBytes(ds: Dataset): number {
    let tokens = 0;
    for (const r of ds) tokens += lengthOf(r.input_ids);
    return tokens * this.model.config.hiddenSize * 4 * this.model.hookedLayers.length;
  }

  // Hidden states for a batch: from the cache when every row is there, else computed once and stored (unpadded).
  async #cachedHidden(idx: number[], examples: Example[], batch: CollatedBatch): Promise<Map<number, Tensor>> {
    const cache = this.#cache!;
    const [B, T] = batch.input_ids!.shape as [number, number];
    const H = this.model.config.hiddenSize;
    if (idx.every((i) => cache[i])) {
      const out = new Map<number, Tensor>();
      for (const layer of this.model.hookedLayers) {
        const data = new Float32Array(B * T * H); // padded positions stay 0: no head with a loss reads them
        idx.forEach((ex, b) => data.set(cache[ex]!.get(layer)!, b * T * H));
        out.set(layer, { data, shape: [B, T, H] });
      }
      return out;
    }
    const hidden = await this.model.hookedHiddenStates(batch as never);
    idx.forEach((ex, b) => {
      const len = lengthOf(examples[b]!.input_ids);
      const m = new Map<number, Float32Array>();
      for (const [layer, t] of hidden) m.set(layer, t.data.slice(b * T * H, b * T * H + len * H));
      cache[ex] = m;
    });
    return hidden;
  }

  // A checkpoint folder is the Trainer's own: it is replaced whole and all-or-nothing (saveFolder), so resuming after a
  // crash at any point finds exactly the previous checkpoint or exactly this one.
  async #saveCheckpoint(step: number, epoch: number, microStep: number, microPerEpoch: number): Promise<void> {
    const dir = join(this.args.outputDir, `checkpoint-${step}`);
    const dist = this.#dist;
    if (dist && !dist.isMain) {
      await dist.barrier(`saving ${dir} on rank 0`);
      await this.data.callbacks?.onSave?.(dir);
      return;
    }
    const files = await this.model.saveFiles();
    const state = {
      global_step: step,
      epoch: microStep >= microPerEpoch ? epoch + 1 : epoch,
      micro_step: microStep >= microPerEpoch ? 0 : microStep,
      ...(dist ? { world_size: dist.worldSize, per_device_train_batch_size: this.args.perDeviceTrainBatchSize } : {}),
      log_history: this.logHistory,
    };
    await saveFolder(dir, () => true, async (tmp) => {
      for (const [name, data] of files) await writeFile(join(tmp, name), data);
      await this.model.saveTrainableState(join(tmp, 'trainable.pt'));
      await this.model.saveOptimizerState(join(tmp, 'optimizer.pt'));
      await writeFile(join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 2));
    });
    if (this.args.saveTotalLimit) {
      const all = await checkpoints(this.args.outputDir);
      for (const old of all.slice(0, Math.max(0, all.length - this.args.saveTotalLimit))) await removePath(join(this.args.outputDir, `checkpoint-${old}`));
    }
    if (dist) await dist.barrier(`saving ${dir} on rank 0`);
    await this.data.callbacks?.onSave?.(dir);
  }

  async #loadCheckpoint(dir: string): Promise<{ globalStep: number; epoch: number; microStep: number; logHistory: LogEntry[] }> {
    const state = (await readJsonFile(join(dir, 'trainer_state.json'), 'checkpoint state', { code: 'ERR_TH_FILE' })) as Record<string, unknown>;
    const count = (k: string) => {
      const v = state[k] ?? 0;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
        throw new TransformerHeadsError(`trainer_state.json in '${dir}': ${k} must be an integer >= 0, got ${shown(v)}`, 'ERR_TH_FILE');
      }
      return v;
    };
    const log = state.log_history ?? [];
    if (!Array.isArray(log) || !log.every((e) => typeof e === 'object' && e !== null && !Array.isArray(e))) {
      throw new TransformerHeadsError(`trainer_state.json in '${dir}': log_history must be a list of objects`, 'ERR_TH_FILE');
    }
    const st = { globalStep: count('global_step'), epoch: count('epoch'), microStep: this.#resumeMicroStep(dir, count('micro_step'), state), logHistory: log as LogEntry[] };
    await this.model.loadTrainableState(join(dir, 'trainable.pt'));
    await this.model.loadOptimizerState(join(dir, 'optimizer.pt'));
    return st;
  }
}

/**
 * Watches one run for NaN or infinite losses and gradient norms. It does not touch the model: the core already
 * refuses to apply such a step (optimizerStep returns a non-finite norm and leaves weights and AdamW moments as they
 * were). It decides whether the run stops (ERR_TH_DIVERGED) or skips the step, and counts skips.
 */
class DivergenceGuard {
  skipped = 0;
  #consecutive = 0;
  #heads = new Map<string, number>(); // head -> its first non-finite loss in the step in progress

  constructor(
    readonly skip: boolean,
    readonly maxConsecutive: number,
    readonly learningRate: number,
    readonly maxGradNorm: number,
  ) {}

  /** The log entry's count of skipped steps (only when skipping is on). */
  logFields(): Record<string, number> {
    return this.skip ? { skipped_steps: this.skipped } : {};
  }

  /** Records the heads of one micro-batch whose loss is not finite. */
  observe(lossByHead: Record<string, number>): void {
    for (const [h, l] of Object.entries(lossByHead)) if (!Number.isFinite(l) && !this.#heads.has(h)) this.#heads.set(h, l);
  }

  /**
   * Ends an optimizer step (1-based `step`). Returns false when it was applied, true when it was skipped; throws
   * ERR_TH_DIVERGED when the run must stop.
   */
  endStep(gradNorm: number, step: number, epoch: number): boolean {
    const heads = this.#heads;
    this.#heads = new Map();
    if (heads.size === 0 && Number.isFinite(gradNorm)) {
      this.#consecutive = 0;
      return false;
    }
    const what =
      heads.size > 0
        ? `the loss of ${[...heads].map(([h, l]) => `head '${h}' is ${l}`).join(', ')}`
        : `the gradient norm is ${gradNorm} (every head's loss was finite)`;
    if (this.skip && this.#consecutive + 1 < this.maxConsecutive) {
      this.skipped++;
      this.#consecutive++;
      return true;
    }
    const where = `at step ${step} (epoch ${round(epoch)})`;
    const skipped = this.skip ? ` after ${this.#consecutive + 1} non-finite steps in a row (maxConsecutiveSkippedSteps ${this.maxConsecutive})` : '';
    const clip = this.maxGradNorm > 0 ? `lower maxGradNorm (now ${this.maxGradNorm})` : 'enable gradient clipping (maxGradNorm, e.g. 1)';
    throw new TransformerHeadsError(
      `training diverged ${where}${skipped}: ${what}. The weights are those before this step. ` +
        `Lower the learning rate (now ${this.learningRate}), ${clip}, check the labels for extreme values` +
        (this.skip ? '' : ', or set skipNonFiniteSteps: true to skip such steps'),
      'ERR_TH_DIVERGED',
    );
  }
}

// The loss and gradient norm of a logging window; a window whose every step was skipped has neither.
function windowEntry(loss: number, steps: number, gradNorm: number): Record<string, number> {
  return steps > 0 ? { loss: loss / steps, grad_norm: gradNorm } : {};
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

function lengthOf(v: unknown): number {
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return (v as ArrayLike<unknown>).length;
  throw new TransformerHeadsError('every example needs an input_ids array', 'ERR_TH_VALUE');
}

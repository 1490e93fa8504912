import { invalidArg } from '../errors.js';
import type { DistributedOptions } from './distributed.js';

/** Learning-rate schedules, as Hugging Face names them. */
export type LrSchedulerType = 'linear' | 'cosine' | 'constant' | 'constant_with_warmup';

/** The Hugging Face TrainingArguments this Trainer understands (camelCase). */
export interface TrainingArguments {
  /** Checkpoints, log_history.jsonl and loss.svg (training and eval loss by step, written at the end of train()) go here. */
  outputDir: string;
  /** Peak learning rate. Defaults to 5e-5. */
  learningRate?: number;
  /** Defaults to 3. Fractions train part of the last epoch. */
  numTrainEpochs?: number;
  /** When > 0, the number of optimizer steps, overriding numTrainEpochs. Defaults to -1. */
  maxSteps?: number;
  /** Defaults to 8. */
  perDeviceTrainBatchSize?: number;
  /** Defaults to 8. */
  perDeviceEvalBatchSize?: number;
  /** Micro-batches per optimizer step. Defaults to 1. */
  gradientAccumulationSteps?: number;
  /** Defaults to 0. */
  warmupSteps?: number;
  /** Fraction of the steps to warm up over, when warmupSteps is 0. Defaults to 0. */
  warmupRatio?: number;
  /** Defaults to 'linear'. */
  lrSchedulerType?: LrSchedulerType;
  /** AdamW decoupled weight decay on weight matrices (never biases or norms). Defaults to 0. */
  weightDecay?: number;
  adamBeta1?: number;
  adamBeta2?: number;
  adamEpsilon?: number;
  /** Gradient-norm clipping; 0 disables. Defaults to 1. */
  maxGradNorm?: number;
  /** Shuffling seed. Defaults to 42. */
  seed?: number;
  /** Log every N optimizer steps. Defaults to 500. */
  loggingSteps?: number;
  /** 'no' | 'steps' | 'epoch'. Defaults to 'steps' when evalSteps is set, 'epoch' with an evalDataset, else 'no'. */
  evalStrategy?: 'no' | 'steps' | 'epoch';
  evalSteps?: number;
  /** 'no' | 'steps' | 'epoch'. Defaults to 'steps' when saveSteps is set, else 'no'. */
  saveStrategy?: 'no' | 'steps' | 'epoch';
  saveSteps?: number;
  /** Keep at most this many checkpoints (oldest removed). Defaults to unlimited. */
  saveTotalLimit?: number;
  /** A checkpoint folder, or true for the latest in outputDir. */
  resumeFromCheckpoint?: string | boolean;
  /**
   * Frozen backbones: compute the hooked hidden states once (epoch 1) and train the heads from them afterwards.
   * 'auto' (default) uses it when the model and heads allow it and it fits activationCacheMaxBytes.
   */
  activationCache?: 'auto' | boolean;
  /** Memory budget of the activation cache. Defaults to 1 GiB. */
  activationCacheMaxBytes?: number;
  /** No progress bar even in a terminal. */
  disableProgressBar?: boolean;
  /**
   * What a step whose loss or gradient norm is NaN or infinite does. false (default): training stops with an
   * ERR_TH_DIVERGED error naming the step, the epoch and the heads. true: the step is skipped (no weight update; the
   * batch is consumed and the step counts for the schedule), counted in `skippedSteps` and the log, and training
   * stops with that error only after maxConsecutiveSkippedSteps skipped steps in a row. Unlike Hugging Face's
   * `logging_nan_inf_filter`, which only keeps such losses out of the logged average while the update is still
   * applied, a skipped step here changes no weight.
   */
  skipNonFiniteSteps?: boolean;
  /** With skipNonFiniteSteps: how many skipped steps in a row end training with ERR_TH_DIVERGED. Defaults to 10. */
  maxConsecutiveSkippedSteps?: number;
  /**
   * Data-parallel training (docs/distributed.md). 'auto' (default): when the torchrun environment says so (WORLD_SIZE
   * set, as `transformer-heads launch`, torchrun and Slurm/Kubernetes jobs set it). false: one process whatever the
   * environment. true: the environment must be there. An object: explicit rank, world size and rendezvous.
   */
  distributed?: 'auto' | boolean | DistributedOptions;
}

/** The learning rate at optimizer step `step` (0-based), as transformers' schedulers compute it. */
export function learningRateAt(type: LrSchedulerType, peak: number, step: number, warmup: number, total: number): number {
  if (type === 'constant') return peak;
  if (step < warmup) return (peak * step) / Math.max(1, warmup);
  if (type === 'constant_with_warmup') return peak;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (type === 'linear') return peak * Math.max(0, (total - step) / Math.max(1, total - warmup));
  if (type === 'cosine') return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  return invalidArg('lrSchedulerType', "'linear', 'cosine', 'constant' or 'constant_with_warmup'", type);
}


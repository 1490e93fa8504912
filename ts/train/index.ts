// The training layer: datasets and the collator, the Trainer (schedules, gradient accumulation, evaluation,
// checkpoints, the activation cache), metrics, head-wise evaluation, and linear probes by layer.
export { learningRateAt } from './arguments.js';
export type { LrSchedulerType, TrainingArguments } from './arguments.js';
export { DataCollatorWithPadding } from './collator.js';
export type { CollatedBatch, Column } from './collator.js';
export { Dataset, permutation, rng } from './data.js';
export { currentProcessGroup, distributedFromEnv, DistributedContext, initProcessGroup, resolveDistributedOptions, shardIndices } from './distributed.js';
export type { DistributedOptions, ResolvedDistributedOptions } from './distributed.js';
export type { Example } from './data.js';
export { BUILTIN_DATASETS, loadBuiltinDataset, loadLabelledFile, readTable } from './datasets.js';
export type { BuiltinDataset, LabelledText } from './datasets.js';
export { evaluateHeadWise, getSomePreds, getTopNPreds } from './evaluate.js';
export type { SomePreds } from './evaluate.js';
export { accuracy, argmaxRows, macroF1, meanSquaredError, r2Score } from './metrics.js';
export { accuracyByLayerChart, DEFAULT_MODEL, defaultModelPath, formatProbeTable, layerName, probeLayers, writeProbeOutputs } from './probe.js';
export type { LayerProbeResult, ProbeLayersOptions, ProbeResult } from './probe.js';
export { activationCacheBlocker, finalEvaluation, Trainer } from './trainer.js';
export type { EvalMetricKey, EvalMetrics, EvalPredictions, LogEntry, TrainerCallbacks, TrainerData, TrainOutput } from './trainer.js';

// The public API of transformer-heads. Each line takes what users see from one layer's face (its index.ts); the
// layers and what they own are described in docs/ARCHITECTURE.md. test/api.test.ts pins this list.
export { ERROR_CODES, TransformerHeadsError } from './errors.js';
export type { ErrorCode } from './errors.js';

export { diagnoseNative, loadNative, nativeLocation, releaseCachedMemory, runtimeInfo, setNumThreads, threadCounts } from './native/index.js';
export type { Batch, BinaryInfo, DiagnosedBinary, NativeDiagnosis, IntTensor, LibtorchInfo, LibtorchLibrary, NativeLocation, PositionMode, RuntimeInfo, Tensor, ThreadCounts, TokenInput } from './native/index.js';

export { decodeSafetensors, downloadModel, encodeSafetensors, hubCacheDir, loadTokenizer, readModelConfig, readSafetensors, resolveModel, Tokenizer } from './io/index.js';
export type { DownloadProgress, DownloadResult, HubFiles, HubOptions, ModelConfig, NamedTensor, ResolveModelOptions } from './io/index.js';

export { barChart, DEFAULT_MARGIN, escapeXml, htmlReport, htmlTable, lineChart, linearScale, lossChart, niceTicks, PALETTE } from './report/index.js';
export type { BarChartOptions, Cell, LineChartOptions, LineSeries, Margin, ReferenceLine, ReportOptions, ReportSection, StepLogEntry, Table } from './report/index.js';

export {
  adapterConfigJson,
  Backbone,
  createHeadedQLoRA,
  DEFAULT_MODEL_DIR,
  findAllLinearNames,
  headConfigsJson,
  HeadedModel,
  loadBackbone,
  loadEmbeddedModel,
  loadHeaded,
  loadLoraWithHeads,
  loadTorchScript,
  readEmbeddedModelInfo,
  readHeadConfigs,
  resolveHeadConfig,
  resolveHeadConfigs,
  TorchScriptModule,
} from './model/index.js';
export type {
  CausalLmHeadConfig,
  CreateHeadedQLoRAOptions,
  Device,
  Dtype,
  EmbeddedModelInfo,
  FinishReason,
  GeneratedHeadName,
  GenerateOptions,
  GenerateOutput,
  GenerationStep,
  HeadConfig,
  HeadConfigFields,
  HeadedBatch,
  HeadedOutput,
  HiddenStatesOptions,
  LabelInput,
  LoadBackboneOptions,
  LoadHeadedOptions,
  LoadLoraWithHeadsOptions,
  LoraConfig,
  LossFunction,
  OptimizerSettings,
  OutputActivation,
  PredictionHeadConfig,
  Prompt,
  QuantizationConfig,
  ResolvedHeadConfig,
  ResolvedLoraConfig,
} from './model/index.js';

export {
  accuracy,
  accuracyByLayerChart,
  activationCacheBlocker,
  argmaxRows,
  BUILTIN_DATASETS,
  currentProcessGroup,
  DataCollatorWithPadding,
  Dataset,
  DistributedContext,
  distributedFromEnv,
  initProcessGroup,
  DEFAULT_MODEL,
  defaultModelPath,
  evaluateHeadWise,
  finalEvaluation,
  formatProbeTable,
  getSomePreds,
  getTopNPreds,
  layerName,
  learningRateAt,
  loadBuiltinDataset,
  loadLabelledFile,
  macroF1,
  meanSquaredError,
  permutation,
  probeLayers,
  r2Score,
  readTable,
  shardIndices,
  Trainer,
  writeProbeOutputs,
} from './train/index.js';
export type {
  BuiltinDataset,
  CollatedBatch,
  Column,
  DistributedOptions,
  EvalMetricKey,
  EvalMetrics,
  EvalPredictions,
  Example,
  LabelledText,
  LayerProbeResult,
  LogEntry,
  LrSchedulerType,
  ProbeLayersOptions,
  ProbeResult,
  SomePreds,
  TrainerCallbacks,
  TrainerData,
  TrainingArguments,
  TrainOutput,
} from './train/index.js';

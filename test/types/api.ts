// Every type name the package entry exported before ts/ was laid out by layer (ts/index.ts at commit a56fb62):
// compiling this file (test/types.test.ts) fails if one of them disappears from the public API.
import type * as api from '../../ts/index.js';

export type PublicTypes = [
  api.BarChartOptions, api.Batch, api.BuiltinDataset, api.CollatedBatch, api.Column, api.CreateHeadedQLoRAOptions,
  api.Device, api.Dtype, api.EmbeddedModelInfo, api.ErrorCode, api.EvalPredictions, api.Example, api.FinishReason,
  api.GenerateOptions, api.GenerateOutput, api.GenerationStep, api.HeadConfig, api.HeadedBatch, api.HeadedOutput,
  api.HiddenStatesOptions, api.IntTensor, api.LabelInput, api.LabelledText, api.LayerProbeResult,
  api.LineChartOptions, api.LineSeries, api.LoadBackboneOptions, api.LoadHeadedOptions,
  api.LoadLoraWithHeadsOptions, api.LogEntry, api.LoraConfig, api.LossFunction, api.LrSchedulerType, api.Margin,
  api.ModelConfig, api.NamedTensor, api.OptimizerSettings, api.OutputActivation, api.ProbeLayersOptions,
  api.ProbeResult, api.Prompt, api.QuantizationConfig, api.ReferenceLine, api.ReportOptions, api.ReportSection,
  api.ResolvedHeadConfig, api.ResolvedLoraConfig, api.Table, api.Tensor, api.TokenInput, api.TrainerCallbacks,
  api.TrainerData, api.TrainingArguments, api.TrainOutput,
  // the Hub (added with it)
  api.DownloadProgress, api.DownloadResult, api.HubFiles, api.HubOptions, api.ResolveModelOptions,
];

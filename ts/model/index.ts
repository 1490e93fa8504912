// The model layer: a backbone (GPT-2 / Llama family) with heads, as the user holds it. Head configs, the headed model
// (forward, training steps, saving in the Python library's layout), LoRA / quantization settings, loading, and
// text generation with every head's output per token.
export { Backbone, loadBackbone, loadTorchScript, TorchScriptModule } from './backbone.js';
export type { Device, Dtype, HiddenStatesOptions, LoadBackboneOptions } from './backbone.js';
export { DEFAULT_MODEL_DIR, loadEmbeddedModel, readEmbeddedModelInfo } from './embedded.js';
export type { EmbeddedModelInfo } from './embedded.js';
export type { FinishReason, GenerateOptions, GenerateOutput, GenerationStep, Prompt } from './generate.js';
export { HeadedModel } from './headed.js';
export type { HeadedOutput, OptimizerSettings } from './headed.js';
export { headConfigsJson, resolveHeadConfig, resolveHeadConfigs } from './heads.js';
export type { HeadConfig, LossFunction, OutputActivation, ResolvedHeadConfig } from './heads.js';
export type { HeadedBatch, LabelInput } from './labels.js';
export { createHeadedQLoRA, loadHeaded, loadLoraWithHeads, readHeadConfigs } from './load.js';
export type { CreateHeadedQLoRAOptions, LoadHeadedOptions, LoadLoraWithHeadsOptions } from './load.js';
export { adapterConfigJson } from './lora.js';
export type { LoraConfig, ResolvedLoraConfig } from './lora.js';
export type { QuantizationConfig } from './quantization.js';

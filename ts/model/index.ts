// The model layer: a backbone (GPT-2 / Llama family) with heads, as the user holds it. Head configs, the headed model
// (forward, training steps, saving in the Python library's layout), LoRA / quantization settings, loading, and
// text generation with every head's output per token.
import { loadEmbeddedModel as loadEmbedded } from './embedded.js';
import type { HeadedModel } from './headed.js';
import type { LoadHeadedOptions } from './load.js';

export { Backbone, loadBackbone, loadTorchScript, TorchScriptModule } from './backbone.js';
export type { Device, Dtype, HiddenStatesOptions, LoadBackboneOptions } from './backbone.js';
export { DEFAULT_MODEL_DIR, readEmbeddedModelInfo } from './embedded.js';
export type { EmbeddedModelInfo } from './embedded.js';
export type { FinishReason, GeneratedHeadName, GenerateOptions, GenerateOutput, GenerationStep, Prompt } from './generate.js';
export { HeadedModel } from './headed.js';
export type { HeadedOutput, OptimizerSettings } from './headed.js';
export { headConfigsJson, resolveHeadConfig, resolveHeadConfigs } from './heads.js';
export type { CausalLmHeadConfig, HeadConfig, HeadConfigFields, LossFunction, OutputActivation, PredictionHeadConfig, ResolvedHeadConfig } from './heads.js';
export type { HeadedBatch, LabelInput } from './labels.js';
export { createHeadedQLoRA, loadHeaded, loadLoraWithHeads, readHeadConfigs } from './load.js';
export type { CreateHeadedQLoRAOptions, LoadHeadedOptions, LoadLoraWithHeadsOptions } from './load.js';
export { findAllLinearNames } from './linear-names.js';
export { adapterConfigJson } from './lora.js';
export type { LoraConfig, ResolvedLoraConfig } from './lora.js';
export type { QuantizationConfig } from './quantization.js';

/**
 * Loads the embedded model (or another folder written by scripts/pretrain.mjs) with heads, as loadHeaded does, with
 * the head names and label columns typed as loadHeaded types them.
 */
// Typed here rather than in embedded.ts: that file is an input of the embedded model's build signature
// (scripts/pretrain.mjs), and editing it makes every checkout rebuild the model. It returns what loadHeaded returns.
export const loadEmbeddedModel = loadEmbedded as <const N extends string = string, const T extends string = never>(
  options: LoadHeadedOptions<N, T>,
  dir?: string,
) => Promise<HeadedModel<N, N | T>>;


import { parseJson } from './json.js';

/** The Hugging Face config.json of a model, with the fields this library uses in camelCase. */
export interface ModelConfig {
  /** 'gpt2' | 'llama' | 'mistral' | 'qwen2' */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  /** Number of transformer blocks L; hidden-state indices go from -(L+1) to L. */
  numLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  /** The whole config.json as stored with the model. */
  raw: Record<string, unknown>;
}

/**
 * @internal The public ModelConfig from the native core's validated, normalized fields (its config_to_json: the one
 * validation of config.json, shared with the loader) and the config.json text they came from.
 */
export function parseModelConfig(normalized: string, rawText: string, where = 'config.json'): ModelConfig {
  const n = JSON.parse(normalized) as Omit<ModelConfig, 'raw'>;
  // The core has parsed this text already (depth-bounded, every field checked).
  const raw = parseJson(rawText, where) as Record<string, unknown>;
  return {
    modelType: n.modelType,
    vocabSize: n.vocabSize,
    hiddenSize: n.hiddenSize,
    numLayers: n.numLayers,
    numAttentionHeads: n.numAttentionHeads,
    numKeyValueHeads: n.numKeyValueHeads,
    headDim: n.headDim,
    intermediateSize: n.intermediateSize,
    maxPositionEmbeddings: n.maxPositionEmbeddings,
    tieWordEmbeddings: n.tieWordEmbeddings,
    bosTokenId: n.bosTokenId,
    eosTokenId: n.eosTokenId,
    padTokenId: n.padTokenId,
    raw,
  };
}

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

function num(raw: Record<string, unknown>, ...keys: string[]): number | undefined {
  for (const k of keys) {
    const v = raw[k];
    if (typeof v === 'number') return v;
  }
  return undefined;
}

function tokenId(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

/**
 * @internal config.json (text, bytes or the parsed object), renamed. Fields are checked by the native core when the
 * model loads; here a missing or mistyped one reads as 0 / null.
 */
export function parseModelConfig(input: string | Uint8Array | Record<string, unknown>, where = 'config.json'): ModelConfig {
  const raw = (typeof input === 'string' || input instanceof Uint8Array ? parseJson(input, where) : input) as Record<string, unknown>;
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : String(raw.model_type);
  const gpt2 = modelType === 'gpt2';
  const hiddenSize = num(raw, 'n_embd', 'hidden_size') ?? 0;
  const heads = num(raw, 'n_head', 'num_attention_heads') ?? 1;
  return {
    modelType,
    vocabSize: num(raw, 'vocab_size') ?? 0,
    hiddenSize,
    numLayers: num(raw, 'n_layer', 'num_hidden_layers') ?? 0,
    numAttentionHeads: heads,
    numKeyValueHeads: gpt2 ? heads : (num(raw, 'num_key_value_heads') ?? heads),
    headDim: num(raw, 'head_dim') ?? hiddenSize / heads,
    intermediateSize: gpt2 ? (num(raw, 'n_inner') ?? 4 * hiddenSize) : (num(raw, 'intermediate_size') ?? 0),
    maxPositionEmbeddings: num(raw, 'n_positions', 'max_position_embeddings') ?? 0,
    tieWordEmbeddings: typeof raw.tie_word_embeddings === 'boolean' ? raw.tie_word_embeddings : gpt2,
    bosTokenId: tokenId(raw.bos_token_id),
    eosTokenId: tokenId(raw.eos_token_id),
    padTokenId: tokenId(raw.pad_token_id),
    raw,
  };
}

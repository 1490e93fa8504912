import { TransformerHeadsError } from '../errors.js';
import { clip, shown, type ModelConfig } from '../io/index.js';

/** Activation after a head's last layer. */
export type OutputActivation = 'linear' | 'sigmoid' | 'relu';
/** A head's loss, as the Python library names it. */
export type LossFunction = 'cross_entropy' | 'mse' | 'masked_mse' | 'bce' | 'bce_with_logits';

/** The fields every head has, whatever its kind (see HeadConfig). */
export interface HeadConfigFields<N extends string = string, T extends string = string> {
  /** Head id; also the weights file name `<name>.safetensors`. The name 'lm_head' reuses the model's own LM head. (Python: name) */
  name: N;
  /** Input width; must equal the model's hidden size. (in_size) */
  inSize: number;
  /** Output width: classes, regression targets, or the vocabulary size for a causal-LM head; at most 2^20. (num_outputs) */
  numOutputs?: number | null;
  /** Hidden-state index the head reads (0 = embeddings, -1 = final-norm output). Defaults to -1. (layer_hook) */
  layerHook?: number;
  /** Width of the MLP's hidden layers; used when numLayers > 1; at most 2^20. Defaults to 0. (hidden_size) */
  hiddenSize?: number;
  /** 1 = a linear probe, more = an MLP with ReLU between layers; at most 64 (and 2^31 parameters in all). Defaults to 1. (num_layers) */
  numLayers?: number;
  /** Defaults to 'linear'. (output_activation) */
  outputActivation?: OutputActivation;
  /** Label column in the batch. Defaults to the name. (target) */
  target?: T;
  /** Predict the next token: logits and labels are shifted by one. Defaults to false. (is_causal_lm) */
  isCausalLm?: boolean;
  /** One prediction per sequence, at its last real token. Defaults to false. (pred_for_sequence) */
  predForSequence?: boolean;
  /** Flatten predictions to 1-D for the loss (regression, bce). Defaults to false. (is_regression) */
  isRegression?: boolean;
  /** Bias on the last layer (hidden layers always have one). Defaults to false. (output_bias) */
  outputBias?: boolean;
  /** Defaults to 'cross_entropy'; null = no loss (predictions only). (loss_fct) */
  lossFct?: LossFunction | null;
  /** Train this head. Defaults to true. (trainable) */
  trainable?: boolean;
  /** Multiplier of this head's loss in the total. Defaults to 1. (loss_weight) */
  lossWeight?: number;
  /** Use pad tokens to find each sequence's end. Defaults to !isCausalLm. (ignore_pads) */
  ignorePads?: boolean;
  /** Keep this head's gradient out of the backbone. Defaults to false. (block_gradients) */
  blockGradients?: boolean;
}

/** A head that predicts labels of the text: one per token, or one per sequence with predForSequence. */
export interface PredictionHeadConfig<N extends string = string, T extends string = string> extends HeadConfigFields<N, T> {
  isCausalLm?: false;
}

/** A causal language-model head: the next token at every position. It predicts per token, never per sequence. */
export interface CausalLmHeadConfig<N extends string = string, T extends string = string> extends HeadConfigFields<N, T> {
  isCausalLm: true;
  /** A causal-LM head predicts at every position: true is refused (ERR_TH_CONFIG). */
  predForSequence?: false;
}

/**
 * A head to attach to the model: the Python library's HeadConfig, field for field (camelCase here, snake_case in
 * head_configs.json). Its kind, `isCausalLm`, rules out at compile time the combinations the model refuses (a
 * causal-LM head predicting per sequence); resolveHeadConfig checks the same at run time for JavaScript callers.
 * `N` is the head's name and `T` its label column: loadHeaded infers them from literal configs, so that head names
 * and label columns are checked where outputs and batches use them. Both default to string.
 */
export type HeadConfig<N extends string = string, T extends string = string> = PredictionHeadConfig<N, T> | CausalLmHeadConfig<N, T>;

/** A HeadConfig with every default filled in. */
export type ResolvedHeadConfig<N extends string = string> = Required<Omit<HeadConfigFields<N>, 'numOutputs' | 'lossFct'>> & {
  numOutputs: number | null;
  lossFct: LossFunction | null;
};

// The Python field order, which is also the key order of head_configs.json.
const FIELDS: Array<[keyof HeadConfigFields, string]> = [
  ['name', 'name'],
  ['inSize', 'in_size'],
  ['numOutputs', 'num_outputs'],
  ['layerHook', 'layer_hook'],
  ['hiddenSize', 'hidden_size'],
  ['numLayers', 'num_layers'],
  ['outputActivation', 'output_activation'],
  ['target', 'target'],
  ['isCausalLm', 'is_causal_lm'],
  ['predForSequence', 'pred_for_sequence'],
  ['isRegression', 'is_regression'],
  ['outputBias', 'output_bias'],
  ['lossFct', 'loss_fct'],
  ['trainable', 'trainable'],
  ['lossWeight', 'loss_weight'],
  ['ignorePads', 'ignore_pads'],
  ['blockGradients', 'block_gradients'],
];
const CAMEL = new Set(FIELDS.map(([c]) => c as string));
const SNAKE_TO_CAMEL = new Map(FIELDS.map(([c, s]) => [s, c as string]));
const ACTIVATIONS: readonly string[] = ['linear', 'sigmoid', 'relu'];
const LOSSES: readonly string[] = ['cross_entropy', 'mse', 'masked_mse', 'bce', 'bce_with_logits'];

function fail(head: string, field: string, message: string, value: unknown): never {
  throw new TransformerHeadsError(`head '${head}': ${field} ${message}, got ${shown(value)}`, 'ERR_TH_CONFIG');
}

/**
 * Head size bounds, the same as the native core's (heads.h), checked before anything is allocated: 64 layers is far
 * beyond any probe or MLP head in use; 2^20 covers every hidden size a config may have and every vocabulary in use
 * (a causal-LM head has one output per token); 2^31 parameters (8 GiB in float32) is a whole 256k-vocabulary LM head
 * on an 8192-wide model.
 */
export const HEAD_LIMITS = { maxLayers: 64, maxWidth: 2 ** 20, maxParameters: 2 ** 31 } as const;

function int(head: string, field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(head, field, `must be an integer >= ${min}`, v);
  if (v > max) fail(head, field, `must be at most ${max}`, v);
  return v;
}

/** Weights and biases of a head (the core's head_parameter_count). */
export function headParameterCount(h: { inSize: number; hiddenSize: number; numLayers: number; outputBias: boolean }, outputs: number): number {
  const bias = h.outputBias ? outputs : 0;
  if (h.numLayers === 1) return h.inSize * outputs + bias;
  return h.inSize * h.hiddenSize + h.hiddenSize + (h.numLayers - 2) * (h.hiddenSize * h.hiddenSize + h.hiddenSize) + h.hiddenSize * outputs + bias;
}

function bool(head: string, field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(head, field, 'must be true or false', v);
  return v;
}

/** Fills defaults and checks one head against the model. Throws ERR_TH_CONFIG naming the field and the value. */
export function resolveHeadConfig<N extends string = string>(cfg: HeadConfig<N>, model?: Pick<ModelConfig, 'hiddenSize' | 'numLayers' | 'vocabSize'>): ResolvedHeadConfig<N> {
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new TransformerHeadsError(`a head config must be an object, got ${shown(cfg)}`, 'ERR_TH_CONFIG');
  const name = cfg.name;
  if (typeof name !== 'string' || name.length === 0 || /[/\\\0]/.test(name) || name === '.' || name === '..') {
    throw new TransformerHeadsError(`head name must be a non-empty string usable as a file name, got ${shown(name)}`, 'ERR_TH_CONFIG');
  }
  if (Buffer.byteLength(name) + '.safetensors'.length > 255) {
    throw new TransformerHeadsError(`head name ${shown(name)} is too long: '<name>.safetensors' must fit a file name (255 bytes)`, 'ERR_TH_CONFIG');
  }
  for (const key of Object.keys(cfg)) {
    if (!CAMEL.has(key)) {
      const hint = SNAKE_TO_CAMEL.get(key);
      throw new TransformerHeadsError(`head '${name}': unknown field '${clip(key)}'${hint ? ` (did you mean '${hint}'?)` : ''}`, 'ERR_TH_CONFIG');
    }
  }
  const isLm = name === 'lm_head';
  const W = HEAD_LIMITS.maxWidth;
  const inSize = int(name, 'inSize', cfg.inSize, 1, W);
  if (model && inSize !== model.hiddenSize) fail(name, 'inSize', `must equal the model's hidden size ${model.hiddenSize}`, inSize);
  const isCausalLm = bool(name, 'isCausalLm', cfg.isCausalLm ?? false);
  const predForSequence = bool(name, 'predForSequence', cfg.predForSequence ?? false);
  if (isCausalLm && predForSequence) fail(name, 'predForSequence', 'cannot be combined with isCausalLm', predForSequence);
  const lossFct = cfg.lossFct === undefined ? 'cross_entropy' : cfg.lossFct;
  if (lossFct !== null && !LOSSES.includes(lossFct)) fail(name, 'lossFct', `must be one of ${LOSSES.join(', ')} or null`, lossFct);
  let numOutputs: number | null = cfg.numOutputs ?? null;
  if (numOutputs === null) {
    if (isLm) numOutputs = model ? model.vocabSize : null;
    // An explicit null is the Python library's num_outputs=None (head folders written by it carry it): one output
    // (`Linear(in_size, num_outputs or 1)`), and classification losses take the vocabulary size as the class count.
    else if (cfg.numOutputs !== null) fail(name, 'numOutputs', 'is required (number of classes, regression targets, or the vocabulary size for a causal-LM head; null for one output, as Python\'s None)', cfg.numOutputs);
  }
  if (numOutputs !== null) numOutputs = int(name, 'numOutputs', numOutputs, 1, W);
  const layerHook = cfg.layerHook ?? -1;
  if (!Number.isInteger(layerHook)) fail(name, 'layerHook', 'must be an integer', layerHook);
  if (model) {
    const L = model.numLayers;
    if (layerHook < -(L + 1) || layerHook > L) fail(name, 'layerHook', `must be from ${-(L + 1)} to ${L} (this model has ${L} layers)`, layerHook);
  }
  const numLayers = int(name, 'numLayers', cfg.numLayers ?? 1, 1, HEAD_LIMITS.maxLayers);
  const hiddenSize = int(name, 'hiddenSize', cfg.hiddenSize ?? 0, 0, W);
  if (numLayers > 1 && hiddenSize < 1) fail(name, 'hiddenSize', 'must be positive for an MLP head (numLayers > 1)', hiddenSize);
  // Python builds the last layer of an MLP head as Linear(hidden_size, num_outputs): None fails there too.
  if (numLayers > 1 && numOutputs === null && !isLm) fail(name, 'numOutputs', 'must be a number for an MLP head (numLayers > 1); null (one output) is for single-layer heads', null);
  const outputActivation = cfg.outputActivation ?? 'linear';
  if (!ACTIVATIONS.includes(outputActivation)) fail(name, 'outputActivation', `must be one of ${ACTIVATIONS.join(', ')}`, outputActivation);
  const target = cfg.target ?? name;
  if (typeof target !== 'string' || target.length === 0) fail(name, 'target', 'must be a non-empty string', target);
  const lossWeight = cfg.lossWeight ?? 1.0;
  if (typeof lossWeight !== 'number' || !Number.isFinite(lossWeight)) fail(name, 'lossWeight', 'must be a finite number', lossWeight);
  const outputBias = bool(name, 'outputBias', cfg.outputBias ?? false);
  const params = headParameterCount({ inSize, hiddenSize, numLayers, outputBias }, numOutputs ?? 1);
  if (params > HEAD_LIMITS.maxParameters) {
    throw new TransformerHeadsError(
      `head '${name}': numLayers ${numLayers}, hiddenSize ${hiddenSize} and numOutputs ${numOutputs} give ${params} parameters, more than the ${HEAD_LIMITS.maxParameters} a head may have (8 GiB in float32); lower them`,
      'ERR_TH_CONFIG',
    );
  }
  if (isLm && (numLayers !== 1 || outputBias || (model && numOutputs !== model.vocabSize))) {
    fail(name, 'numOutputs', `of 'lm_head' (the model's own LM head) must be the vocabulary size, with numLayers 1 and no outputBias`, numOutputs);
  }
  return {
    name,
    inSize,
    numOutputs,
    layerHook,
    hiddenSize,
    numLayers,
    outputActivation,
    target,
    isCausalLm,
    predForSequence,
    isRegression: bool(name, 'isRegression', cfg.isRegression ?? false),
    outputBias,
    lossFct,
    trainable: bool(name, 'trainable', cfg.trainable ?? true),
    lossWeight,
    ignorePads: bool(name, 'ignorePads', cfg.ignorePads ?? !isCausalLm),
    blockGradients: bool(name, 'blockGradients', cfg.blockGradients ?? false),
  };
}

/** Resolves a list of heads, rejecting duplicate names. */
export function resolveHeadConfigs<N extends string = string>(heads: readonly HeadConfig<N>[], model?: Pick<ModelConfig, 'hiddenSize' | 'numLayers' | 'vocabSize'>): ResolvedHeadConfig<N>[] {
  if (!Array.isArray(heads) || heads.length === 0) throw new TransformerHeadsError('heads must be a non-empty array of head configs', 'ERR_TH_CONFIG');
  const seen = new Set<string>();
  return heads.map((h) => {
    const r = resolveHeadConfig<N>(h, model);
    if (seen.has(r.name)) throw new TransformerHeadsError(`two heads are named '${r.name}'; head names must be unique`, 'ERR_TH_CONFIG');
    seen.add(r.name);
    return r;
  });
}

/** The snake_case object of one head, keys in the Python order. */
export function toSnakeCase(h: ResolvedHeadConfig): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [c, s] of FIELDS) o[s] = h[c];
  return o;
}

/** A head config read from head_configs.json (snake_case); unknown keys are an error, as in Python. */
export function fromSnakeCase(o: Record<string, unknown>, where: string): HeadConfig {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const c = SNAKE_TO_CAMEL.get(k);
    if (!c) throw new TransformerHeadsError(`${where}: unknown head config key '${clip(k)}'`, 'ERR_TH_CONFIG');
    if (v !== null || c === 'numOutputs' || c === 'lossFct') out[c] = v;
  }
  return out as unknown as HeadConfig;
}

// Python's float repr for the values head configs hold (1.0, 0.5, 1e-05).
function pyFloat(x: number): string {
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return x.toFixed(1);
  return String(x).replace(/e([+-])(\d)$/, 'e$10$2');
}

function pyJson(v: unknown, floatKeys: Set<string>, key?: string): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return key && floatKeys.has(key) ? pyFloat(v) : String(v);
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const entries = Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyJson(k, floatKeys)}: ${pyJson(x, floatKeys, k)}`);
  return `{${entries.join(', ')}}`;
}

/** head_configs.json exactly as Python's json.dump writes it: one line, ", " and ": " separators. */
export function headConfigsJson(heads: ResolvedHeadConfig[]): string {
  const o: Record<string, unknown> = {};
  for (const h of heads) o[h.name] = toSnakeCase(h);
  return pyJson(o, new Set(['loss_weight']));
}

// The CLI's train config file: validation with messages that name the offending field, defaults, and paths relative
// to the config file. Label handling (columns, class names, tokenized examples) is in labels.ts.

import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import { TransformerHeadsError } from '../errors.js';
import { parseJson, parseRepoRef, type ModelConfig } from '../io/index.js';
import { resolveHeadConfigs, type HeadConfig, type LoraConfig, type QuantizationConfig, type ResolvedHeadConfig } from '../model/index.js';
import type { TrainingArguments } from '../train/index.js';
import { CliError } from './ui.js';

const CONFIG_HINT = "see the config file format with 'transformer-heads train --help' (or the README's Command line section)";

export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(v);
  }
}

/** Throws `<path>: <message>` as a config error (exit code 2). */
export function configError(path: string, message: string, hint: string = CONFIG_HINT): never {
  throw new CliError(`${path}: ${message}`, hint, 2);
}

function expected(path: string, what: string, v: unknown): never {
  return configError(path, `expected ${what}, got ${show(v)}`);
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** snake_case -> camelCase (learning_rate -> learningRate). */
export function camelKey(k: string): string {
  return k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The object's keys in camelCase (snake_case accepted, aliases applied); an unknown key is an error naming it, with
 * the closest known key as a suggestion. Keys starting with "//" or "$" are comments and dropped, and so are null
 * values (the default) unless keepNull.
 */
function normalizeKeys(o: Record<string, unknown>, path: string, allowed: readonly string[], aliases: Record<string, string> = {}, keepNull = false): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k.startsWith('//') || k.startsWith('$')) continue;
    if (v === null && !keepNull) continue; // null = the default, as in the library's options
    const c = aliases[k] ?? aliases[camelKey(k)] ?? camelKey(k);
    if (!allowed.includes(c)) {
      const best = allowed.map((a) => [a, editDistance(a.toLowerCase(), c.toLowerCase())] as const).sort((x, y) => x[1] - y[1])[0];
      const hint = best && best[1] <= Math.max(2, Math.floor(c.length / 3)) ? ` (did you mean '${best[0]}'?)` : '';
      configError(`${path}.${k}`, `unknown field${hint}; known fields: ${allowed.join(', ')}`);
    }
    if (c in out) configError(`${path}.${k}`, `given twice (as '${c}' and a spelling of it)`);
    out[c] = v;
  }
  return out;
}

const str = (path: string, v: unknown): string => (typeof v === 'string' && v.length > 0 ? v : expected(path, 'a non-empty string', v));
const bool = (path: string, v: unknown): boolean => (typeof v === 'boolean' ? v : expected(path, 'true or false', v));
const posInt = (path: string, v: unknown): number => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : expected(path, 'a positive integer', v));
const nonNegInt = (path: string, v: unknown): number => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : expected(path, 'an integer >= 0', v));
const int = (path: string, v: unknown): number => (typeof v === 'number' && Number.isInteger(v) ? v : expected(path, 'an integer', v));
const posNum = (path: string, v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : expected(path, 'a positive number', v));
const nonNeg = (path: string, v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : expected(path, 'a number >= 0', v));
const finite = (path: string, v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : expected(path, 'a number', v));
const fraction = (path: string, v: unknown): number => (typeof v === 'number' && v > 0 && v < 1 ? v : expected(path, 'a number between 0 and 1 (exclusive)', v));
function oneOf<T extends string>(path: string, v: unknown, values: readonly T[]): T {
  return typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : expected(path, `one of ${values.map((x) => `'${x}'`).join(', ')}`, v);
}

export interface DataConfig {
  train: string | null;
  eval: string | null;
  /** Split this fraction off the training file for evaluation when there is no eval file. */
  evalFraction: number | null;
  format: 'jsonl' | 'csv' | null;
  csvDelimiter: string | null;
  textColumn: string;
  /** Head target -> column of the data file (default: the column named like the target). */
  labelColumns: Record<string, string>;
  maxLength: number | null;
  padTokenId: number | null;
  /** A tokenizer other than the model's: a folder with tokenizer.json, or a model archive. */
  tokenizer: string | null;
}

export interface TrainConfig {
  /** Absolute. */
  model: string;
  outputDir: string | null;
  heads: HeadConfig[];
  data: DataConfig;
  training: Omit<TrainingArguments, 'outputDir'>;
  device: string | null;
  dtype: 'float32' | 'bfloat16' | 'float16' | null;
  /** Position ids of the batches: 'sequential' reproduces the Python library's forward on padded batches. */
  positions: 'from-mask' | 'sequential' | null;
  seed: number | null;
  freezeBaseModel: boolean | null;
  adaptiveLoss: boolean | null;
  gradientCheckpointing: boolean | null;
  quantization: QuantizationConfig | null;
  lora: LoraConfig | null;
  fullyTrainedHeads: boolean | null;
  /** The folder of the config file (relative paths in it resolve against this). */
  configDir: string;
}

const TOP = ['model', 'outputDir', 'heads', 'data', 'training', 'device', 'dtype', 'positions', 'seed', 'freezeBaseModel', 'adaptiveLoss', 'gradientCheckpointing', 'quantization', 'lora', 'fullyTrainedHeads'] as const;
const DATA = ['train', 'eval', 'evalFraction', 'format', 'csvDelimiter', 'textColumn', 'labelColumns', 'maxLength', 'padTokenId', 'tokenizer'] as const;
const TRAINING = [
  'learningRate', 'numTrainEpochs', 'maxSteps', 'perDeviceTrainBatchSize', 'perDeviceEvalBatchSize', 'gradientAccumulationSteps',
  'warmupSteps', 'warmupRatio', 'lrSchedulerType', 'weightDecay', 'adamBeta1', 'adamBeta2', 'adamEpsilon', 'maxGradNorm', 'seed',
  'loggingSteps', 'evalStrategy', 'evalSteps', 'saveStrategy', 'saveSteps', 'saveTotalLimit', 'resumeFromCheckpoint',
  'activationCache', 'activationCacheMaxBytes', 'disableProgressBar', 'skipNonFiniteSteps', 'maxConsecutiveSkippedSteps', 'outputDir',
] as const;
const HEAD = [
  'name', 'inSize', 'numOutputs', 'layerHook', 'hiddenSize', 'numLayers', 'outputActivation', 'target', 'isCausalLm',
  'predForSequence', 'isRegression', 'outputBias', 'lossFct', 'trainable', 'lossWeight', 'ignorePads', 'blockGradients',
] as const;
const QUANT = ['bits', 'quantType', 'blocksize', 'doubleQuant', 'computeDtype', 'llmInt8Threshold', 'quantizeEmbeddings'] as const;
const LORA = ['r', 'alpha', 'dropout', 'bias', 'targetModules', 'useRslora', 'rankPattern', 'alphaPattern', 'layersToTransform', 'layersPattern'] as const;
const DTYPES = ['float32', 'bfloat16', 'float16'] as const;
const DEVICE_RE = /^(cpu|cuda|cuda:\d{1,3})$/;

/** A model (or tokenizer) field: a path relative to the config file that exists, or a Hub id ORG/NAME[@REV]. */
function modelPathOrId(path: string, v: unknown, base: string): string {
  const s = str(path, v);
  const p = resolve(base, s);
  if (existsSync(p) || !parseRepoRef(s)) return existingPath(path, s, base, 'any');
  return s;
}

function existingPath(path: string, v: unknown, base: string, kind: 'file' | 'any'): string {
  const p = resolve(base, str(path, v));
  if (!existsSync(p)) configError(path, `'${p}' does not exist`, `paths in a config file are relative to the folder of the config file${path === 'config.model' || path.endsWith('.tokenizer') ? '; a model on the Hugging Face Hub is ORG/NAME' : ''}`);
  if (kind === 'file' && statSync(p).isDirectory()) configError(path, `'${p}' is a folder, not a file`);
  return p;
}

/** Device flag / field check (exit 2 on a bad value). */
export function checkDevice(path: string, v: unknown): string {
  if (typeof v !== 'string' || !DEVICE_RE.test(v)) expected(path, "'cpu', 'cuda' or 'cuda:N'", v);
  return v;
}

function parseHead(raw: unknown, path: string): HeadConfig {
  if (!isObj(raw)) expected(path, 'a head config object', raw);
  const h = normalizeKeys(raw, path, HEAD, {}, true);
  for (const k of Object.keys(h)) if (h[k] === null && k !== 'lossFct') delete h[k]; // null = default, but lossFct: null = no loss
  const out: Record<string, unknown> = {};
  const f = (k: string) => `${path}.${k}`;
  out.name = str(f('name'), h.name);
  if (/[/\\\0]/.test(out.name as string) || out.name === '.' || out.name === '..') configError(f('name'), `must be usable as a file name, got ${show(out.name)}`);
  if (h.inSize !== undefined) out.inSize = posInt(f('inSize'), h.inSize);
  if (h.numOutputs !== undefined && h.numOutputs !== null) out.numOutputs = posInt(f('numOutputs'), h.numOutputs);
  else if (out.name !== 'lm_head') configError(f('numOutputs'), 'is required: the number of classes (or regression targets, or the vocabulary size for a causal-LM head)');
  if (h.layerHook !== undefined) out.layerHook = int(f('layerHook'), h.layerHook);
  if (h.hiddenSize !== undefined) out.hiddenSize = nonNegInt(f('hiddenSize'), h.hiddenSize);
  if (h.numLayers !== undefined) out.numLayers = posInt(f('numLayers'), h.numLayers);
  if (h.outputActivation !== undefined) out.outputActivation = oneOf(f('outputActivation'), h.outputActivation, ['linear', 'sigmoid', 'relu']);
  if (h.target !== undefined) out.target = str(f('target'), h.target);
  for (const k of ['isCausalLm', 'predForSequence', 'isRegression', 'outputBias', 'trainable', 'ignorePads', 'blockGradients']) {
    if (h[k] !== undefined) out[k] = bool(f(k), h[k]);
  }
  if (h.lossFct !== undefined) out.lossFct = h.lossFct === null ? null : oneOf(f('lossFct'), h.lossFct, ['cross_entropy', 'mse', 'masked_mse', 'bce', 'bce_with_logits']);
  if (h.lossWeight !== undefined) out.lossWeight = finite(f('lossWeight'), h.lossWeight);
  return out as unknown as HeadConfig;
}

function parseTraining(raw: unknown, base: string): { training: Omit<TrainingArguments, 'outputDir'>; outputDir: string | null } {
  const path = 'config.training';
  if (raw === undefined) return { training: {}, outputDir: null };
  if (!isObj(raw)) expected(path, 'an object of training arguments', raw);
  const t = normalizeKeys(raw, path, TRAINING, { evaluationStrategy: 'evalStrategy', numEpochs: 'numTrainEpochs', epochs: 'numTrainEpochs', lr: 'learningRate' });
  const f = (k: string) => `${path}.${k}`;
  const out: Record<string, unknown> = {};
  const set = (k: string, check: (p: string, v: unknown) => unknown) => {
    if (t[k] !== undefined) out[k] = check(f(k), t[k]);
  };
  set('learningRate', posNum);
  set('numTrainEpochs', posNum);
  set('maxSteps', (p, v) => (v === -1 ? -1 : posInt(p, v)));
  for (const k of ['perDeviceTrainBatchSize', 'perDeviceEvalBatchSize', 'gradientAccumulationSteps', 'loggingSteps', 'evalSteps', 'saveSteps', 'saveTotalLimit', 'activationCacheMaxBytes']) set(k, posInt);
  set('warmupSteps', nonNegInt);
  set('warmupRatio', (p, v) => (typeof v === 'number' && v >= 0 && v < 1 ? v : expected(p, 'a number from 0 to 1', v)));
  for (const k of ['weightDecay', 'maxGradNorm']) set(k, nonNeg);
  for (const k of ['adamBeta1', 'adamBeta2']) set(k, (p, v) => (typeof v === 'number' && v >= 0 && v < 1 ? v : expected(p, 'a number in [0, 1)', v)));
  set('adamEpsilon', posNum);
  set('seed', int);
  set('lrSchedulerType', (p, v) => oneOf(p, v, ['linear', 'cosine', 'constant', 'constant_with_warmup']));
  set('evalStrategy', (p, v) => oneOf(p, v, ['no', 'steps', 'epoch']));
  set('saveStrategy', (p, v) => oneOf(p, v, ['no', 'steps', 'epoch']));
  set('resumeFromCheckpoint', (p, v) => (typeof v === 'boolean' ? v : resolve(base, str(p, v))));
  set('activationCache', (p, v) => (v === 'auto' || typeof v === 'boolean' ? v : expected(p, "'auto', true or false", v)));
  set('disableProgressBar', bool);
  set('skipNonFiniteSteps', bool);
  set('maxConsecutiveSkippedSteps', posInt);
  if (out.evalStrategy === 'steps' && out.evalSteps === undefined) configError(f('evalSteps'), "is required with evalStrategy 'steps'");
  if (out.saveStrategy === 'steps' && out.saveSteps === undefined) configError(f('saveSteps'), "is required with saveStrategy 'steps'");
  const outputDir = t.outputDir === undefined ? null : resolve(base, str(f('outputDir'), t.outputDir));
  return { training: out as Omit<TrainingArguments, 'outputDir'>, outputDir };
}

function parseData(raw: unknown, base: string, needTrain: boolean): DataConfig {
  const path = 'config.data';
  if (raw === undefined && !needTrain) raw = {};
  if (!isObj(raw)) expected(path, 'an object { train, eval, textColumn, ... }', raw);
  const d = normalizeKeys(raw, path, DATA, { validation: 'eval', test: 'eval', trainFile: 'train', evalFile: 'eval' });
  const f = (k: string) => `${path}.${k}`;
  if (needTrain && d.train === undefined) configError(f('train'), 'is required: a .jsonl or .csv file of training examples');
  const labelColumns: Record<string, string> = {};
  if (d.labelColumns !== undefined) {
    if (!isObj(d.labelColumns)) expected(f('labelColumns'), 'an object { headTarget: column }', d.labelColumns);
    for (const [k, v] of Object.entries(d.labelColumns)) labelColumns[k] = str(`${f('labelColumns')}.${k}`, v);
  }
  const data: DataConfig = {
    train: d.train === undefined ? null : existingPath(f('train'), d.train, base, 'file'),
    eval: d.eval === undefined ? null : existingPath(f('eval'), d.eval, base, 'file'),
    evalFraction: d.evalFraction === undefined ? null : fraction(f('evalFraction'), d.evalFraction),
    format: d.format === undefined ? null : oneOf(f('format'), d.format, ['jsonl', 'csv'] as const),
    csvDelimiter: d.csvDelimiter === undefined ? null : (typeof d.csvDelimiter === 'string' && d.csvDelimiter.length === 1 ? d.csvDelimiter : expected(f('csvDelimiter'), 'one character', d.csvDelimiter)),
    textColumn: d.textColumn === undefined ? 'text' : str(f('textColumn'), d.textColumn),
    labelColumns,
    maxLength: d.maxLength === undefined ? null : posInt(f('maxLength'), d.maxLength),
    padTokenId: d.padTokenId === undefined ? null : nonNegInt(f('padTokenId'), d.padTokenId),
    tokenizer: d.tokenizer === undefined ? null : modelPathOrId(f('tokenizer'), d.tokenizer, base),
  };
  if (data.eval && data.evalFraction !== null) configError(f('evalFraction'), 'give either data.eval (a file) or data.evalFraction (a split of data.train), not both');
  return data;
}

function parseQuantization(raw: unknown): QuantizationConfig | null {
  const path = 'config.quantization';
  if (raw === undefined || raw === null) return null;
  if (!isObj(raw)) expected(path, 'an object { bits: 4 | 8, ... }', raw);
  const q = normalizeKeys(raw, path, QUANT, { bnb4bitQuantType: 'quantType', bnb4bitUseDoubleQuant: 'doubleQuant', bnb4bitComputeDtype: 'computeDtype' });
  const f = (k: string) => `${path}.${k}`;
  const out: QuantizationConfig = { bits: q.bits === 4 || q.bits === 8 ? q.bits : expected(f('bits'), '4 or 8', q.bits) };
  if (q.quantType !== undefined) out.quantType = oneOf(f('quantType'), q.quantType, ['nf4', 'fp4'] as const);
  if (q.blocksize !== undefined) {
    const b = posInt(f('blocksize'), q.blocksize);
    if (b < 32 || b > 4096 || (b & (b - 1)) !== 0) expected(f('blocksize'), 'a power of two from 32 to 4096', b);
    out.blocksize = b;
  }
  if (q.doubleQuant !== undefined) out.doubleQuant = bool(f('doubleQuant'), q.doubleQuant);
  if (q.quantizeEmbeddings !== undefined) out.quantizeEmbeddings = bool(f('quantizeEmbeddings'), q.quantizeEmbeddings);
  if (q.computeDtype !== undefined) out.computeDtype = oneOf(f('computeDtype'), q.computeDtype, DTYPES);
  if (q.llmInt8Threshold !== undefined) {
    const t = q.llmInt8Threshold;
    if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) expected(f('llmInt8Threshold'), 'a finite number >= 0 (LLM.int8 outlier threshold; 0 = no decomposition)', t);
    out.llmInt8Threshold = t;
  }
  return out;
}

function parseLora(raw: unknown): LoraConfig | null {
  const path = 'config.lora';
  if (raw === undefined || raw === null) return null;
  if (!isObj(raw)) expected(path, 'an object { r, alpha, dropout, ... }', raw);
  const l = normalizeKeys(raw, path, LORA, { loraAlpha: 'alpha', loraDropout: 'dropout' });
  const f = (k: string) => `${path}.${k}`;
  const out: LoraConfig = {};
  if (l.r !== undefined) out.r = posInt(f('r'), l.r);
  if (l.alpha !== undefined) out.alpha = posNum(f('alpha'), l.alpha);
  if (l.dropout !== undefined) out.dropout = typeof l.dropout === 'number' && l.dropout >= 0 && l.dropout < 1 ? l.dropout : expected(f('dropout'), 'a number in [0, 1)', l.dropout);
  if (l.bias !== undefined) out.bias = oneOf(f('bias'), l.bias, ['none', 'all', 'lora_only'] as const);
  if (l.targetModules !== undefined) {
    if (!Array.isArray(l.targetModules) || l.targetModules.length === 0) expected(f('targetModules'), 'a non-empty array of module names', l.targetModules);
    out.targetModules = l.targetModules.map((m, i) => str(`${f('targetModules')}[${i}]`, m));
  }
  if (l.useRslora !== undefined) out.useRslora = bool(f('useRslora'), l.useRslora);
  // Checked with the rest of the LoRA options when the model is created (checkLora), with the same messages.
  if (l.rankPattern !== undefined) out.rankPattern = l.rankPattern as Record<string, number>;
  if (l.alphaPattern !== undefined) out.alphaPattern = l.alphaPattern as Record<string, number>;
  if (l.layersToTransform !== undefined) out.layersToTransform = l.layersToTransform as number[];
  if (l.layersPattern !== undefined) out.layersPattern = l.layersPattern as string;
  return out;
}

/** Validates a parsed config object. `needTrain`: data.train is required (train); eval and predict do not need it. */
export function parseTrainConfig(raw: unknown, configDir: string, options: { needTrain?: boolean } = {}): TrainConfig {
  if (!isObj(raw)) expected('config', 'a JSON object', raw);
  const c = normalizeKeys(raw, 'config', TOP, { modelPath: 'model', modelNameOrPath: 'model', output: 'outputDir', headConfigs: 'heads', trainingArguments: 'training', args: 'training' });
  if (c.model === undefined) configError('config.model', 'is required: the path of a TorchScript archive (.pt) or a Hugging Face model folder, or a Hub model id ORG/NAME');
  const model = modelPathOrId('config.model', c.model, configDir);
  if (!Array.isArray(c.heads) || c.heads.length === 0) expected('config.heads', 'a non-empty array of head configs', c.heads);
  const heads = c.heads.map((h, i) => parseHead(h, `config.heads[${i}]`));
  const seen = new Map<string, number>();
  heads.forEach((h, i) => {
    if (seen.has(h.name)) configError(`config.heads[${i}].name`, `'${h.name}' is also the name of config.heads[${seen.get(h.name)}]; head names must be unique`);
    seen.set(h.name, i);
  });
  const { training, outputDir: trainingOut } = parseTraining(c.training, configDir);
  const outputDir = c.outputDir !== undefined ? resolve(configDir, str('config.outputDir', c.outputDir)) : trainingOut;
  const lora = parseLora(c.lora);
  const quantization = parseQuantization(c.quantization);
  const freezeBaseModel = c.freezeBaseModel === undefined ? null : bool('config.freezeBaseModel', c.freezeBaseModel);
  if (quantization && !lora && freezeBaseModel === false) {
    configError('config.freezeBaseModel', 'cannot be false with quantization: a 4/8-bit backbone trains through LoRA adapters only (add config.lora)');
  }
  if (lora && freezeBaseModel === false) configError('config.freezeBaseModel', 'cannot be false with lora: with LoRA only the adapters (and heads) train');
  return {
    model,
    outputDir,
    heads,
    data: parseData(c.data, configDir, options.needTrain ?? true),
    training,
    device: c.device === undefined ? null : checkDevice('config.device', c.device),
    dtype: c.dtype === undefined ? null : oneOf('config.dtype', c.dtype, DTYPES),
    positions: c.positions === undefined ? null : oneOf('config.positions', c.positions, ['from-mask', 'sequential'] as const),
    seed: c.seed === undefined ? null : int('config.seed', c.seed),
    freezeBaseModel,
    adaptiveLoss: c.adaptiveLoss === undefined ? null : bool('config.adaptiveLoss', c.adaptiveLoss),
    gradientCheckpointing: c.gradientCheckpointing === undefined ? null : bool('config.gradientCheckpointing', c.gradientCheckpointing),
    quantization,
    lora,
    fullyTrainedHeads: c.fullyTrainedHeads === undefined ? null : bool('config.fullyTrainedHeads', c.fullyTrainedHeads),
    configDir,
  };
}

/** Reads and validates a config file (exit 2 with a one-line message when it is missing or not valid JSON). */
export async function readTrainConfig(path: string, options: { needTrain?: boolean } = {}): Promise<TrainConfig> {
  const abs = resolve(path);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'ENOENT' ? `config file '${path}' does not exist` : code === 'EISDIR' ? `'${path}' is a folder, not a config file` : `cannot read config file '${path}': ${(e as Error).message}`,
      'pass the path of a JSON config file; see transformer-heads train --help',
      2,
    );
  }
  let raw: unknown;
  try {
    raw = parseJson(text, `config file '${path}'`, { top: 'any' });
  } catch (e) {
    throw new CliError((e as Error).message, 'JSON has no comments or trailing commas; check the line the message points at', 2);
  }
  return parseTrainConfig(raw, dirname(abs), options);
}

/** Fills inSize from the model and checks each head against it (field-named errors). */
export function resolveHeadsForModel(heads: readonly HeadConfig[], model: ModelConfig, where = 'config.heads'): { heads: HeadConfig[]; resolved: ResolvedHeadConfig[] } {
  const L = model.numLayers;
  const filled = heads.map((h, i) => {
    const p = `${where}[${i}]`;
    if (h.inSize !== undefined && h.inSize !== model.hiddenSize) {
      configError(`${p}.inSize`, `must equal the model's hidden size ${model.hiddenSize} (or be left out), got ${h.inSize}`);
    }
    const lh = h.layerHook ?? -1;
    if (lh < -(L + 1) || lh > L) configError(`${p}.layerHook`, `must be from ${-(L + 1)} to ${L} (this model has ${L} layers; 0 = embeddings, -1 = final norm), got ${lh}`);
    if (h.name === 'lm_head' && h.numOutputs !== undefined && h.numOutputs !== null && h.numOutputs !== model.vocabSize) {
      configError(`${p}.numOutputs`, `of 'lm_head' (the model's own LM head) must be the vocabulary size ${model.vocabSize}, got ${h.numOutputs}`);
    }
    return { ...h, inSize: model.hiddenSize };
  });
  try {
    return { heads: filled, resolved: resolveHeadConfigs(filled, model) };
  } catch (e) {
    if (!(e instanceof TransformerHeadsError)) throw e;
    const m = /^head '([^']*)': (\w+) (.*)$/.exec(e.message);
    const i = m ? filled.findIndex((h) => h.name === m[1]) : -1;
    if (m && i >= 0) configError(`${where}[${i}].${m[2]}`, m[3]!);
    return configError(where, e.message);
  }
}

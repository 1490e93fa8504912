import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Device, Dtype } from './backbone.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { invalidArg, nativeCall, TransformerHeadsError } from './errors.js';
import { fromSnakeCase, headConfigsJson, resolveHeadConfigs, toSnakeCase, type HeadConfig, type ResolvedHeadConfig } from './heads.js';
import { NativeHandle } from './handle.js';
import { binding, type NativeHeaded, type RawTensor } from './native.js';
import { atomicWrite, encodeSafetensors, readSafetensors, type NamedTensor } from './safetensors.js';
import { fromRaw, packTokens, type Batch, type PackedTokens, type Tensor, type TokenInput } from './tensor.js';

/** Labels: nested number arrays, a flat typed array (one value per row), or `{ data, shape }`. */
export type LabelInput = number[] | number[][] | number[][][] | Float32Array | Float64Array | Int32Array | BigInt64Array | { data: ArrayLike<number> | BigInt64Array; shape: number[] };

/** A batch with label columns named by the heads' `target`s. */
export type HeadedBatch = Batch & { [target: string]: LabelInput | TokenInput | undefined };

export interface LoadHeadedOptions {
  /** Heads to attach (new, initialised N(0, 0.02) as Hugging Face does). Give this or headFolder. */
  heads?: HeadConfig[];
  /** A folder written by HeadedModel.save(): head_configs.json and <name>.safetensors. */
  headFolder?: string;
  device?: Device;
  dtype?: Dtype;
  /** Train heads only; the backbone runs without autograd up to the deepest hooked layer. Defaults to true. */
  freezeBaseModel?: boolean;
  /** No training at all. Defaults to false. */
  onlyInference?: boolean;
  /** Normalise each head's loss by its running mean and std (Welford, 5 warm-up steps). Defaults to false. */
  adaptiveLoss?: boolean;
  /** Seed of the new heads' initial weights. Defaults to 42. */
  seed?: number;
  /** 4/8-bit quantized backbones are not supported yet. */
  quantization?: unknown;
}

export interface HeadedOutput {
  /** Weighted sum of the finite head losses. */
  loss: number;
  lossByHead: Record<string, number>;
  /** Equal to lossByHead unless adaptive loss is on. */
  adaptedLossByHead: Record<string, number>;
  /** Every head's output [B, T, C] (float32), when asked for with returnPreds. */
  predsByHead: Map<string, Tensor> | null;
}

export interface OptimizerSettings {
  lr: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Gradient-norm clipping; 0 disables. Defaults to 1.0. */
  maxGradNorm?: number;
}

interface PackedLabel {
  name: string;
  data: Float32Array | Int32Array | BigInt64Array;
  shape: number[];
}

function nestedShape(v: unknown, name: string): number[] {
  const shape: number[] = [];
  let cur: unknown = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

function packLabel(value: LabelInput, name: string, integer: boolean): PackedLabel {
  let data: ArrayLike<number> | BigInt64Array;
  let shape: number[];
  if (typeof value === 'object' && value !== null && 'shape' in value && 'data' in value) {
    data = value.data;
    shape = value.shape;
  } else if (Array.isArray(value)) {
    shape = nestedShape(value, name);
    const flat = (value as unknown[]).flat(Infinity) as unknown[];
    const n = shape.reduce((a, b) => a * b, 1);
    if (flat.length !== n) {
      throw new TransformerHeadsError(`labels '${name}' are ragged (rows of different lengths); pad them, e.g. with DataCollatorWithPadding (pads labels with -100)`, 'ERR_TH_SHAPE');
    }
    for (const x of flat) if (typeof x !== 'number') invalidArg(`labels '${name}'`, 'numbers', x);
    data = flat as number[];
  } else if (ArrayBuffer.isView(value)) {
    data = value as ArrayLike<number>;
    shape = [(value as ArrayLike<number>).length];
  } else {
    return invalidArg(`labels '${name}'`, 'an array, a typed array or { data, shape }', value);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new TransformerHeadsError(`labels '${name}' have ${data.length} values but shape [${shape}] needs ${n}`, 'ERR_TH_SHAPE');
  if (data instanceof BigInt64Array) return { name, data, shape };
  if (integer) {
    if (data instanceof Int32Array) return { name, data, shape };
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const x = Number(data[i]);
      if (!Number.isInteger(x)) {
        throw new TransformerHeadsError(`labels '${name}' must be class indices (integers) for cross_entropy, got ${x}`, 'ERR_TH_SHAPE');
      }
      out[i] = x;
    }
    return { name, data: out, shape };
  }
  const out = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  for (let i = 0; i < n; i++) if (Number.isNaN(out[i])) throw new TransformerHeadsError(`labels '${name}' contain NaN (at index ${i})`, 'ERR_TH_SHAPE');
  return { name, data: out, shape };
}

const pairsToRecord = (p: Array<[string, number]>) => Object.fromEntries(p);

/**
 * A backbone with heads: forward with losses, training steps, saving and loading in the Python library's format.
 * Calls run one at a time, in order, off the event loop.
 */
export class HeadedModel extends NativeHandle<NativeHeaded> {
  readonly config: ModelConfig;
  readonly heads: readonly ResolvedHeadConfig[];
  readonly modelPath: string;
  readonly device: string;
  readonly dtype: Dtype;
  readonly tokenizerJson: string | null;
  readonly tokenizerConfigJson: string | null;
  /** Hidden-state indices (0..L) the heads read. */
  readonly hookedLayers: readonly number[];
  readonly freezeBaseModel: boolean;
  readonly onlyInference: boolean;

  /** @internal use loadHeaded() */
  constructor(native: NativeHeaded, modelPath: string, heads: HeadConfig[], opts: { freezeBaseModel: boolean; onlyInference: boolean }) {
    super(native);
    const info = native.info();
    this.config = parseModelConfig(info.config);
    this.heads = resolveHeadConfigs(heads, this.config);
    this.modelPath = modelPath;
    this.device = info.device;
    this.dtype = info.dtype as Dtype;
    this.tokenizerJson = info.tokenizer || null;
    this.tokenizerConfigJson = info.tokenizerConfig || null;
    this.hookedLayers = info.hookedLayers;
    this.freezeBaseModel = opts.freezeBaseModel;
    this.onlyInference = opts.onlyInference;
  }


  /** Number of weights that train (heads, and the backbone unless frozen). */
  trainableParameters(): number {
    return this._live().info().trainableParameters;
  }

  totalParameters(): number {
    return this._live().info().totalParameters;
  }

  /** Bytes of the backbone's weights. */
  get memoryBytes(): number {
    return this._live().info().parameterBytes;
  }

  /** Transformer blocks run since load (early exit makes this smaller than batches x layers). */
  get blocksRun(): number {
    return this._live().info().blocksRun;
  }

  /** Losses and, with returnPreds, every head's predictions. No autograd; adaptive-loss statistics untouched. */
  async forward(batch: HeadedBatch, options: { returnPreds?: boolean } = {}): Promise<HeadedOutput> {
    const { ids, mask, labels } = this.#pack(batch);
    const native = this._live();
    return this._enqueue(async () => {
      const o = await nativeCall(() => native.forward(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, labels, options.returnPreds ?? false, null));
      return this.#output(o, options.returnPreds ?? false);
    });
  }

  /**
   * One training micro-batch: forward with autograd and backward of loss x scale (use 1 / gradient-accumulation
   * steps). `hidden` replaces the backbone with cached hidden states (frozen backbones only). Usually driven by Trainer.
   */
  async trainStep(batch: HeadedBatch, options: { scale?: number; hidden?: Map<number, Tensor> } = {}): Promise<Omit<HeadedOutput, 'predsByHead'>> {
    const { ids, mask, labels } = this.#pack(batch);
    const hidden = options.hidden ? [...options.hidden].map(([layer, t]) => ({ layer, data: t.data, shape: t.shape })) : null;
    const native = this._live();
    return this._enqueue(async () => {
      const o = await nativeCall(() => native.trainStep(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, labels, options.scale ?? 1, hidden));
      const { predsByHead: _, ...rest } = this.#output(o, false);
      return rest;
    });
  }

  /** Sets up AdamW (weight decay on weight matrices only) over every trainable tensor. */
  configureOptimizer(settings: OptimizerSettings): void {
    if (typeof settings?.lr !== 'number' || !(settings.lr > 0)) invalidArg('lr', 'a positive number', settings?.lr);
    this._live().configureOptimizer(settings);
  }

  /** Clips gradients, steps AdamW at learning rate `lr`, clears gradients; resolves with the gradient norm before clipping. */
  async optimizerStep(lr: number): Promise<number> {
    return this._call((n) => n.optimizerStep(lr));
  }

  /** @internal */
  async saveOptimizerState(path: string): Promise<void> {
    return this._call((n) => n.saveOptimizer(path));
  }

  /** @internal */
  async loadOptimizerState(path: string): Promise<void> {
    return this._call((n) => n.loadOptimizer(path));
  }

  /** @internal every trainable tensor (heads, and the backbone when not frozen), for exact resume */
  async saveTrainableState(path: string): Promise<void> {
    return this._call((n) => n.saveTrainable(path));
  }

  /** @internal */
  async loadTrainableState(path: string): Promise<void> {
    return this._call((n) => n.loadTrainable(path));
  }

  /** @internal whether training must run the backbone with autograd (so cached activations cannot stand in) */
  get backboneNeedsGrad(): boolean {
    return this._live().info().backboneNeedsGrad;
  }

  /** Hidden states at the hooked layers (what the heads read), without autograd. */
  async hookedHiddenStates(batch: Batch): Promise<Map<number, Tensor>> {
    const ids = packTokens(batch.input_ids, 'input_ids');
    const mask = batch.attention_mask === undefined ? null : packTokens(batch.attention_mask, 'attention_mask');
    const native = this._live();
    return this._enqueue(async () => {
      const out = await nativeCall(() => native.hookedHidden(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null));
      return new Map(out.map((t) => [Number(t.layer), fromRaw(t)]));
    });
  }

  /** A snapshot of one head's weights (keys lins.K.weight|bias, [out, in]). */
  headWeights(name: string): NamedTensor[] {
    return this._live().headState(name).map((t) => ({ key: t.key, ...fromRaw(t) }));
  }

  /** Gradients accumulated on one head since the last optimizer step (empty when it has none). */
  headGradients(name: string): NamedTensor[] {
    return this._live().headGrads(name).map((t) => ({ key: t.key, ...fromRaw(t) }));
  }

  /** L2 norm of the gradients accumulated on the backbone's weights (0 when frozen or blocked). */
  backboneGradNorm(): number {
    return this._live().backboneGradNorm();
  }

  /** Replaces one head's weights (strict: every key, right shapes). */
  loadHeadWeights(name: string, tensors: NamedTensor[]): void {
    this._live().loadHeadState(name, tensors);
  }

  /**
   * Writes the Python library's head files into `dir`: `<name>.safetensors` for every head except 'lm_head'
   * (keys lins.K.weight|bias, F32, [out, in]) and head_configs.json. Each file is written atomically.
   */
  async save(dir: string): Promise<void> {
    if (typeof dir !== 'string' || !dir) invalidArg('dir', 'a folder path', dir);
    await mkdir(dir, { recursive: true });
    for (const h of this.heads) {
      if (h.name === 'lm_head') continue;
      await atomicWrite(join(dir, `${h.name}.safetensors`), encodeSafetensors(this.headWeights(h.name)));
    }
    await atomicWrite(join(dir, 'head_configs.json'), headConfigsJson([...this.heads]));
  }


  #pack(batch: HeadedBatch): { ids: PackedTokens; mask: PackedTokens | null; labels: PackedLabel[] } {
    if (typeof batch !== 'object' || batch === null) invalidArg('batch', 'an object with input_ids', batch);
    const ids = packTokens(batch.input_ids, 'input_ids');
    const mask = batch.attention_mask === undefined ? null : packTokens(batch.attention_mask, 'attention_mask');
    const labels: PackedLabel[] = [];
    const targets = new Map<string, boolean>(); // target -> every head using it is cross_entropy
    for (const h of this.heads) {
      if (h.lossFct === null) continue;
      targets.set(h.target, (targets.get(h.target) ?? true) && h.lossFct === 'cross_entropy');
    }
    for (const [target, integer] of targets) {
      const v = batch[target];
      if (v === undefined || v === null) continue;
      labels.push(packLabel(v as LabelInput, target, integer));
    }
    return { ids, mask, labels };
  }

  #output(o: { loss: number; lossByHead: Array<[string, number]>; adaptedLossByHead: Array<[string, number]>; preds: Array<RawTensor & { name: string }> }, preds: boolean): HeadedOutput {
    return {
      loss: o.loss,
      lossByHead: pairsToRecord(o.lossByHead),
      adaptedLossByHead: pairsToRecord(o.adaptedLossByHead),
      predsByHead: preds ? new Map(o.preds.map((p) => [p.name, fromRaw(p)])) : null,
    };
  }


}

/** Reads head_configs.json (the Python library's format) from a folder. */
export async function readHeadConfigs(folder: string): Promise<HeadConfig[]> {
  const path = join(folder, 'head_configs.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new TransformerHeadsError(`no head_configs.json in '${folder}': ${(e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new TransformerHeadsError(`'${path}' is not valid JSON: ${(e as Error).message}`, 'ERR_TH_CONFIG');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new TransformerHeadsError(`'${path}' must hold an object {name: head config}`, 'ERR_TH_CONFIG');
  }
  return Object.values(parsed as Record<string, Record<string, unknown>>).map((o) => fromSnakeCase(o, path));
}

/**
 * Loads a model (TorchScript archive) with heads: new ones from `heads`, or saved ones from `headFolder`
 * (predictions after reload are bit-identical to before saving).
 */
export async function loadHeaded(modelPath: string, options: LoadHeadedOptions): Promise<HeadedModel> {
  if (typeof modelPath !== 'string' || !modelPath) invalidArg('modelPath', 'a non-empty string', modelPath);
  if (typeof options !== 'object' || options === null) invalidArg('options', 'an object with heads or headFolder', options);
  if ((options.heads === undefined) === (options.headFolder === undefined)) {
    throw new TransformerHeadsError('give exactly one of heads and headFolder', 'ERR_TH_CONFIG');
  }
  const freezeBaseModel = options.freezeBaseModel ?? true;
  const onlyInference = options.onlyInference ?? false;
  if (options.quantization !== undefined) {
    throw new TransformerHeadsError('quantized backbones (quantization) are not supported yet', 'ERR_TH_CONFIG');
  }
  const heads = options.heads ?? (await readHeadConfigs(options.headFolder!));
  const resolved = resolveHeadConfigs(heads); // model-independent checks first: clearer errors, no load wasted
  const native = await nativeCall(() =>
    binding().loadHeaded(modelPath, {
      device: options.device ?? 'cpu',
      dtype: options.dtype ?? 'float32',
      heads: JSON.stringify(resolved.map(toSnakeCase)),
      freezeBase: freezeBaseModel,
      onlyInference,
      adaptiveLoss: options.adaptiveLoss ?? false,
      seed: options.seed ?? 42,
    }),
  );
  const model = new HeadedModel(native, modelPath, heads, { freezeBaseModel, onlyInference });
  if (options.headFolder) {
    try {
      for (const h of model.heads) {
        if (h.name === 'lm_head') continue;
        model.loadHeadWeights(h.name, await readSafetensors(join(options.headFolder, `${h.name}.safetensors`)));
      }
    } catch (e) {
      model.dispose();
      throw e instanceof TransformerHeadsError ? e : new TransformerHeadsError((e as Error).message, 'ERR_TH_CONFIG', { cause: e });
    }
  }
  return model;
}

import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Device, Dtype } from './backbone.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { fromNative, invalidArg, nativeCall, TransformerHeadsError } from './errors.js';
import {
  assemble,
  packPrompt,
  resolveGenerateOptions,
  TextTracker,
  toStep,
  type GenerateOptions,
  type GenerateOutput,
  type GenerationStep,
  type NativeGenerator,
  type Prompt,
} from './generate.js';
import { fromSnakeCase, headConfigsJson, resolveHeadConfigs, toSnakeCase, type HeadConfig, type ResolvedHeadConfig } from './heads.js';
import { NativeHandle } from './handle.js';
import { writeHfFolder } from './hf.js';
import { binding, type NativeHeaded, type RawTensor } from './native.js';
import { atomicWrite, encodeSafetensors, readSafetensors, type NamedTensor } from './safetensors.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
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
  /** With headFolder: new heads to attach next to the saved ones (e.g. the pretrained lm_head, for generation). */
  extraHeads?: HeadConfig[];
  device?: Device;
  dtype?: Dtype;
  /** Train heads only; the backbone runs without autograd up to the deepest hooked layer. Defaults to true. */
  freezeBaseModel?: boolean;
  /** No training at all. Defaults to false. */
  onlyInference?: boolean;
  /** Normalise each head's loss by its running mean and std (Welford, 5 warm-up steps). Defaults to false. */
  adaptiveLoss?: boolean;
  /** Seed of the new heads' initial weights (and of new LoRA adapters). Defaults to 42. */
  seed?: number;
  /** Recompute each block in the backward pass instead of keeping its activations (training only). Defaults to false. */
  gradientCheckpointing?: boolean;
  /**
   * Quantize the backbone's block projections (bitsandbytes NF4 / FP4 blockwise 4-bit, or 8-bit row-wise); heads,
   * norms, embeddings and the LM head stay dense. Needs a frozen backbone (or LoRA, see createHeadedQLoRA).
   */
  quantization?: QuantizationConfig;
}

export interface QuantizationConfig {
  /** 4 or 8. */
  bits: 4 | 8;
  /** 4-bit code: 'nf4' (default) or 'fp4'. */
  quantType?: 'nf4' | 'fp4';
  /** Elements per absmax block (power of two, 32..4096). Defaults to 64. */
  blocksize?: number;
  /** Quantize the absmax values too (8-bit, blocks of 256): about 4.13 instead of 4.5 bits per weight. Defaults to false. */
  doubleQuant?: boolean;
  /** Dtype the dequantized weights multiply in. Defaults to 'float32'. */
  computeDtype?: Dtype;
}

export interface LoraConfig {
  /** Rank. Defaults to 8. */
  r?: number;
  /** Scaling numerator: scaling = alpha / r (alpha / sqrt(r) with useRslora). Defaults to 8. */
  alpha?: number;
  /** Dropout on the adapter input while training. Defaults to 0. */
  dropout?: number;
  /** Which biases train with the adapters: 'none' (default), 'all', 'lora_only'. */
  bias?: 'none' | 'all' | 'lora_only';
  /** Module names or name suffixes; defaults to every projection of the blocks (GPT-2 c_attn/c_proj/c_fc, Llama q/k/v/o/gate/up/down). */
  targetModules?: string[];
  useRslora?: boolean;
}

export type ResolvedLoraConfig = Required<LoraConfig>;

/** @internal */
export function defaultTargetModules(modelType: string): string[] {
  return modelType === 'gpt2' ? ['c_attn', 'c_proj', 'c_fc'] : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
}

function checkQuantization(q: QuantizationConfig): Required<QuantizationConfig> {
  if (typeof q !== 'object' || q === null) invalidArg('quantization', 'an object { bits: 4 | 8, ... }', q);
  if (q.bits !== 4 && q.bits !== 8) throw new TransformerHeadsError(`quantization.bits must be 4 or 8, got ${JSON.stringify(q.bits)}`, 'ERR_TH_CONFIG');
  const blocksize = q.blocksize ?? 64;
  if (!Number.isInteger(blocksize) || blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) !== 0) {
    throw new TransformerHeadsError(`quantization.blocksize must be a power of two from 32 to 4096, got ${blocksize}`, 'ERR_TH_CONFIG');
  }
  const quantType = q.quantType ?? 'nf4';
  if (quantType !== 'nf4' && quantType !== 'fp4') throw new TransformerHeadsError(`quantization.quantType must be 'nf4' or 'fp4', got '${quantType}'`, 'ERR_TH_CONFIG');
  return { bits: q.bits, quantType, blocksize, doubleQuant: q.doubleQuant ?? false, computeDtype: q.computeDtype ?? 'float32' };
}

function checkLora(l: LoraConfig, modelType: string | null): ResolvedLoraConfig {
  if (typeof l !== 'object' || l === null) invalidArg('lora', 'an object { r, alpha, ... }', l);
  const r = l.r ?? 8;
  if (!Number.isInteger(r) || r <= 0) throw new TransformerHeadsError(`lora.r must be a positive integer, got ${JSON.stringify(r)}`, 'ERR_TH_CONFIG');
  const alpha = l.alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new TransformerHeadsError(`lora.alpha must be a number, got ${JSON.stringify(alpha)}`, 'ERR_TH_CONFIG');
  const dropout = l.dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw new TransformerHeadsError(`lora.dropout must be in [0, 1), got ${JSON.stringify(dropout)}`, 'ERR_TH_CONFIG');
  const bias = l.bias ?? 'none';
  if (!['none', 'all', 'lora_only'].includes(bias)) throw new TransformerHeadsError(`lora.bias must be 'none', 'all' or 'lora_only', got '${bias}'`, 'ERR_TH_CONFIG');
  const targetModules = l.targetModules ?? (modelType ? defaultTargetModules(modelType) : []);
  if (!Array.isArray(targetModules) || targetModules.some((t) => typeof t !== 'string' || !t)) invalidArg('lora.targetModules', 'an array of module names', targetModules);
  return { r, alpha, dropout, bias, targetModules, useRslora: l.useRslora ?? false };
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
  /** The quantization of the backbone's projections, or null. */
  readonly quantization: Required<QuantizationConfig> | null;
  /** The name written as base_model_name_or_path in adapter_config.json. */
  readonly baseModelNameOrPath: string;
  #lora: ResolvedLoraConfig | null;

  /** @internal use loadHeaded() */
  constructor(
    native: NativeHeaded,
    modelPath: string,
    heads: HeadConfig[],
    opts: { freezeBaseModel: boolean; onlyInference: boolean; quantization?: Required<QuantizationConfig> | null; lora?: ResolvedLoraConfig | null; baseModelNameOrPath?: string },
  ) {
    super(native);
    this.quantization = opts.quantization ?? null;
    this.#lora = opts.lora ?? null;
    this.baseModelNameOrPath = opts.baseModelNameOrPath ?? modelPath;
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


  /** The LoRA configuration, or null (none, or merged by mergeAndUnload). */
  get lora(): ResolvedLoraConfig | null {
    return this.#lora;
  }

  /**
   * Bytes of weight memory by kind: dense backbone weights, quantized projections (codes and absmax), LoRA
   * adapters, heads; and the bits per weight of the quantized projections.
   */
  memoryFootprint(): { dense: number; quantized: number; lora: number; heads: number; total: number; quantizedBitsPerParameter: number | null } {
    const info = this._live().info();
    const m = info.memory;
    return {
      ...m,
      total: m.dense + m.quantized + m.lora + m.heads,
      quantizedBitsPerParameter: info.quantizedParameters > 0 ? (8 * m.quantized) / info.quantizedParameters : null,
    };
  }

  /** LoRA tensors by PEFT name (without "base_model.model."). */
  loraWeights(): NamedTensor[] {
    return this._live().loraState().map((t) => ({ key: t.key, ...fromRaw(t) }));
  }

  /** Folds the LoRA adapters into the projections (4-bit ones become dense) and removes them; returns this model. */
  mergeAndUnload(): this {
    if (!this.#lora) throw new TransformerHeadsError('this model has no LoRA adapters to merge', 'ERR_TH_CONFIG');
    this._live().mergeLora();
    this.#lora = null;
    return this;
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
  async forward(batch: HeadedBatch, options?: { returnPreds?: boolean } | null): Promise<HeadedOutput> {
    const returnPreds = options?.returnPreds ?? false;
    const { ids, mask, labels } = this.#pack(batch);
    const native = this._live();
    return this._enqueue(async () => {
      const o = await nativeCall(() => native.forward(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, labels, returnPreds, null));
      return this.#output(o, returnPreds);
    });
  }

  /**
   * One training micro-batch: forward with autograd and backward of loss x scale (use 1 / gradient-accumulation
   * steps). `hidden` replaces the backbone with cached hidden states (frozen backbones only). Usually driven by Trainer.
   */
  async trainStep(batch: HeadedBatch, opts?: { scale?: number; hidden?: Map<number, Tensor> } | null): Promise<Omit<HeadedOutput, 'predsByHead'>> {
    const options = opts ?? {};
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
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) invalidArg('lr', 'a finite number >= 0', lr);
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

  /** Replaces the LoRA weights (strict: every adapter tensor, right shapes). Keys as loraWeights() gives them. */
  loadLoraWeights(tensors: NamedTensor[]): void {
    this._live().loadLoraState(tensors);
  }

  /** Replaces backbone weights by Hugging Face name (e.g. the biases an adapter file carries). */
  loadBackboneWeights(tensors: NamedTensor[]): void {
    this._live().loadBackboneTensors(tensors);
  }

  /** Replaces one head's weights (strict: every key, right shapes). */
  loadHeadWeights(name: string, tensors: NamedTensor[]): void {
    this._live().loadHeadState(name, tensors);
  }

  /**
   * Generates text with the causal-LM head (usually 'lm_head') and reports every other head's output at each step
   * (the Python library's generate). Greedy by default; sampling with temperature / topK / topP / minP and a seed.
   * Returns typed arrays with shapes: sequences [B, P + steps], logprobs [B, steps], headOutputs[name] [B, steps, C].
   */
  async generate(prompt: Prompt, options?: GenerateOptions | null): Promise<GenerateOutput> {
    const steps: GenerationStep[] = [];
    const stream = this.#generate(prompt, options);
    let r = await stream.next();
    while (!r.done) {
      steps.push(r.value);
      r = await stream.next();
    }
    const { prompt: packed, tracker, hasTokenizer } = r.value;
    return assemble(packed, steps, tracker, hasTokenizer);
  }

  /**
   * Yields each step as it is generated: the tokens, the decoded text delta (`text` for row 0, `texts` per row),
   * log-probabilities and head outputs. Every step runs off the event loop; `options.signal` or leaving the loop
   * (break) stops generation and frees its cache.
   */
  async *generateStream(prompt: Prompt, options?: GenerateOptions | null): AsyncGenerator<GenerationStep, void, undefined> {
    yield* this.#generate(prompt, options);
  }

  async *#generate(
    prompt: Prompt,
    options: GenerateOptions | null | undefined,
  ): AsyncGenerator<GenerationStep, { prompt: ReturnType<typeof packPrompt>; tracker: TextTracker; hasTokenizer: boolean }, undefined> {
    const native = this._live();
    const tokenizer = options?.tokenizer ?? (await this.#ownTokenizer());
    const o = resolveGenerateOptions(options, tokenizer, this.config.eosTokenId, this.config.raw.eos_token_id);
    o.signal?.throwIfAborted();
    const packed = packPrompt(prompt, tokenizer, o.pad);
    let gen: NativeGenerator;
    try {
      gen = native.generator(packed.ids, packed.shape, packed.mask, packed.shape, o.native);
    } catch (e) {
      throw fromNative(e);
    }
    const tracker = new TextTracker(tokenizer, packed.shape[0], o.stopSequences, o.native.eosTokenIds);
    try {
      for (;;) {
        o.signal?.throwIfAborted();
        const raw = await this._enqueue(() => nativeCall(() => gen.step()));
        const { deltas, stopped } = tracker.push(raw.tokens.data);
        if (stopped.length) gen.finish(stopped);
        const finished = Array.from(raw.finished.data, (f, i) => f !== 0 || tracker.reasons[i] === 'stop');
        yield toStep(raw, deltas, finished);
        if (raw.done || gen.info().done) break;
      }
    } finally {
      gen.dispose();
    }
    return { prompt: packed, tracker, hasTokenizer: tokenizer !== null };
  }

  #tokenizer: Promise<Tokenizer | null> | null = null;

  /** The tokenizer stored with the model (null when it has none), parsed once. */
  #ownTokenizer(): Promise<Tokenizer | null> {
    if (!this.#tokenizer) {
      this.#tokenizer = this.tokenizerJson
        ? loadTokenizer({ tokenizerJson: this.tokenizerJson, tokenizerConfigJson: this.tokenizerConfigJson, config: { raw: this.config.raw } })
        : Promise.resolve(null);
    }
    return this.#tokenizer;
  }

  /**
   * Writes the Python library's head files into `dir`: `<name>.safetensors` for every head except 'lm_head'
   * (keys lins.K.weight|bias, F32, [out, in]) and head_configs.json. Each file is written atomically.
   */
  async save(dir: string): Promise<void> {
    if (typeof dir !== 'string' || !dir) invalidArg('dir', 'a folder path', dir);
    await mkdir(dir, { recursive: true });
    if (this.#lora) {
      // PEFT's layout: adapter_config.json (sorted keys, indent 2) + adapter_model.safetensors {"format": "pt"}, with
      // the biases that trained (bias 'all' / 'lora_only') next to the adapters, as PEFT stores them.
      const trained = this._live().trainedBackboneState().map((t) => ({ key: t.key, ...fromRaw(t) }));
      const tensors = [...this.loraWeights(), ...trained].map((t) => ({ ...t, key: `base_model.model.${t.key}` }));
      await atomicWrite(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
      await atomicWrite(join(dir, 'adapter_config.json'), adapterConfigJson(this.#lora, this.baseModelNameOrPath, this.config.modelType === 'gpt2' && !this.quantization));
    }
    for (const h of this.heads) {
      if (h.name === 'lm_head') continue;
      await atomicWrite(join(dir, `${h.name}.safetensors`), encodeSafetensors(this.headWeights(h.name)));
    }
    await atomicWrite(join(dir, 'head_configs.json'), headConfigsJson([...this.heads]));
  }

  /**
   * Writes the backbone's current weights (full finetuning included) as a Hugging Face model folder, as
   * Backbone.saveBackbone does; the heads are not part of it (save() writes them). A LoRA model saves its base
   * weights without the adapters (mergeAndUnload() first to save merged weights). A quantized model is refused:
   * its dequantized weights would not be the original ones; after mergeAndUnload() it is dense and can be saved.
   */
  async saveBackbone(dir: string): Promise<void> {
    if (typeof dir !== 'string' || !dir) invalidArg('dir', 'a folder path', dir);
    const native = this._live();
    return this._enqueue(async () => {
      const state = await nativeCall(() => native.backboneState());
      const info = native.info();
      await writeHfFolder(dir, state, { config: info.config, tokenizer: info.tokenizer || null, tokenizerConfig: info.tokenizerConfig || null });
    });
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
 * Loads a model (TorchScript archive or Hugging Face model folder) with heads: new ones from `heads`, or saved ones from `headFolder`
 * (predictions after reload are bit-identical to before saving).
 */
export async function loadHeaded(modelPath: string, options: LoadHeadedOptions): Promise<HeadedModel> {
  if (typeof modelPath !== 'string' || !modelPath) invalidArg('modelPath', 'a non-empty string', modelPath);
  if (typeof options !== 'object' || options === null) invalidArg('options', 'an object with heads or headFolder', options);
  if ((options.heads === undefined) === (options.headFolder === undefined)) {
    throw new TransformerHeadsError('give exactly one of heads and headFolder', 'ERR_TH_CONFIG');
  }
  const heads = options.heads ?? (await readHeadConfigs(options.headFolder!));
  return buildHeaded(modelPath, heads, options, {});
}

async function buildHeaded(
  modelPath: string,
  heads: HeadConfig[],
  options: LoadHeadedOptions,
  extra: { lora?: LoraConfig; fullyTrainedHeads?: boolean; baseModelNameOrPath?: string },
): Promise<HeadedModel> {
  const freezeBaseModel = options.freezeBaseModel ?? true;
  const onlyInference = options.onlyInference ?? false;
  const quantization = options.quantization === undefined ? null : checkQuantization(options.quantization);
  if (quantization && !freezeBaseModel && !extra.lora && !onlyInference) {
    throw new TransformerHeadsError(
      'a quantized backbone cannot be fully finetuned (freezeBaseModel: false), as in the Python library; freeze it, or train LoRA adapters on it with createHeadedQLoRA',
      'ERR_TH_CONFIG',
    );
  }
  const lora = extra.lora ? checkLora(extra.lora, null) : null;
  const added = new Set<string>();
  if (options.extraHeads !== undefined && options.extraHeads !== null) {
    if (!options.headFolder) throw new TransformerHeadsError('extraHeads adds heads to those of headFolder; without a folder, list every head in heads', 'ERR_TH_CONFIG');
    if (!Array.isArray(options.extraHeads)) invalidArg('options.extraHeads', 'an array of head configs', options.extraHeads);
    for (const h of options.extraHeads) added.add(h.name);
    heads = [...heads, ...options.extraHeads];
  }
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
      ...(quantization ? { quantization } : {}),
      ...(lora ? { lora: { ...lora, targetModules: lora.targetModules.length ? lora.targetModules : undefined, seed: options.seed ?? 42 } } : {}),
      ...(extra.fullyTrainedHeads !== undefined ? { fullyTrainedHeads: extra.fullyTrainedHeads } : {}),
      gradientCheckpointing: options.gradientCheckpointing ?? false,
    }),
  );
  const info = native.info();
  const modelType = parseModelConfig(info.config).modelType;
  const model = new HeadedModel(native, modelPath, heads, {
    freezeBaseModel: freezeBaseModel || lora !== null,
    onlyInference,
    quantization,
    lora: lora ? { ...lora, targetModules: lora.targetModules.length ? lora.targetModules : defaultTargetModules(modelType) } : null,
    baseModelNameOrPath: extra.baseModelNameOrPath,
  });
  if (options.headFolder) {
    try {
      for (const h of model.heads) {
        if (h.name === 'lm_head' || added.has(h.name)) continue;
        model.loadHeadWeights(h.name, await readSafetensors(join(options.headFolder, `${h.name}.safetensors`)));
      }
    } catch (e) {
      model.dispose();
      throw e instanceof TransformerHeadsError ? e : new TransformerHeadsError((e as Error).message, 'ERR_TH_CONFIG', { cause: e });
    }
  }
  return model;
}

// Python's float repr for the config numbers PEFT writes (0.0, 16, 0.05).
function pyNum(x: number, float: boolean): string {
  return float && Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** adapter_config.json as PEFT 0.8 writes it: every LoraConfig field, sorted keys, indent 2, inference_mode true. */
export function adapterConfigJson(l: ResolvedLoraConfig, base: string, fanInFanOut: boolean): string {
  const cfg: Record<string, unknown> = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: base,
    bias: l.bias,
    fan_in_fan_out: fanInFanOut,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: l.alpha,
    lora_dropout: l.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: l.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...l.targetModules].sort(),
    task_type: 'CAUSAL_LM',
    use_rslora: l.useRslora,
  };
  return JSON.stringify(cfg, null, 2).replace(/"lora_dropout": (\S+?),/, (_, v) => `"lora_dropout": ${pyNum(Number(v), true)},`);
}

export interface CreateHeadedQLoRAOptions extends Omit<LoadHeadedOptions, 'headFolder' | 'freezeBaseModel'> {
  heads: HeadConfig[];
  lora: LoraConfig;
  /** Train the (trainable) heads with the adapters. Defaults to true. */
  fullyTrainedHeads?: boolean;
  /** Recompute each block in the backward pass instead of keeping its activations (long sequences). Defaults to false. */
  gradientCheckpointing?: boolean;
  /** base_model_name_or_path written in adapter_config.json. Defaults to the model path. */
  baseModelNameOrPath?: string;
}

/**
 * A (optionally 4/8-bit quantized) backbone with LoRA adapters on its projections and new heads: the Python
 * library's create_headed_qlora. Only the adapters, the chosen biases and the heads train.
 */
export async function createHeadedQLoRA(modelPath: string, options: CreateHeadedQLoRAOptions): Promise<HeadedModel> {
  if (typeof modelPath !== 'string' || !modelPath) invalidArg('modelPath', 'a non-empty string', modelPath);
  if (typeof options !== 'object' || options === null || !options.lora) invalidArg('options', 'an object with heads and lora', options);
  return buildHeaded(modelPath, options.heads, { ...options, freezeBaseModel: true }, {
    lora: options.lora,
    fullyTrainedHeads: options.fullyTrainedHeads ?? true,
    baseModelNameOrPath: options.baseModelNameOrPath,
  });
}

export interface LoadLoraWithHeadsOptions extends Omit<LoadHeadedOptions, 'heads' | 'headFolder' | 'freezeBaseModel'> {
  /** The base model; defaults to base_model_name_or_path from adapter_config.json. */
  modelPath?: string;
  fullyTrainedHeads?: boolean;
}

/**
 * Loads a folder written by save() on a LoRA model (or by the Python library / PEFT): adapter_config.json,
 * adapter_model.safetensors, head_configs.json and the head files. Unknown adapter_config keys are ignored.
 */
export async function loadLoraWithHeads(dir: string, options: LoadLoraWithHeadsOptions = {}): Promise<HeadedModel> {
  if (typeof dir !== 'string' || !dir) invalidArg('dir', 'a folder path', dir);
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
  } catch (e) {
    throw new TransformerHeadsError(`no readable adapter_config.json in '${dir}': ${(e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') throw new TransformerHeadsError(`adapter type ${String(cfg.peft_type)} is not LoRA`, 'ERR_TH_CONFIG');
  const modelPath = options.modelPath ?? (typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : '');
  if (!modelPath) throw new TransformerHeadsError(`adapter_config.json in '${dir}' names no base model; pass modelPath`, 'ERR_TH_CONFIG');
  const tm = cfg.target_modules;
  if (typeof tm === 'string') {
    throw new TransformerHeadsError('target_modules given as a regular expression is not supported; list the module names', 'ERR_TH_CONFIG');
  }
  const lora: LoraConfig = {
    r: Number(cfg.r ?? 8),
    alpha: Number(cfg.lora_alpha ?? 8),
    dropout: Number(cfg.lora_dropout ?? 0),
    bias: (cfg.bias as LoraConfig['bias']) ?? 'none',
    useRslora: Boolean(cfg.use_rslora ?? false),
    ...(Array.isArray(tm) ? { targetModules: tm.map(String) } : {}),
  };
  const heads = await readHeadConfigs(dir);
  const model = await buildHeaded(modelPath, heads, { ...options, freezeBaseModel: true, headFolder: dir }, {
    lora,
    fullyTrainedHeads: options.fullyTrainedHeads ?? true,
    baseModelNameOrPath: modelPath,
  });
  try {
    const tensors = (await readSafetensors(join(dir, 'adapter_model.safetensors'))).map((t) => ({ ...t, key: t.key.replace(/^base_model\.model\./, '') }));
    const lora2 = tensors.filter((t) => t.key.includes('lora_')).map((t) => ({ ...t, key: t.key.replace(/\.lora_([AB])\.[^.]+\.weight$/, '.lora_$1.weight') }));
    model.loadLoraWeights(lora2);
    const biases = tensors.filter((t) => !t.key.includes('lora_') && t.key.endsWith('.bias'));
    if (biases.length) model.loadBackboneWeights(biases);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

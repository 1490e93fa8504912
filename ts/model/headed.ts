import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { fromNative, invalidArg, nativeCall, TransformerHeadsError } from '../errors.js';
import { loadTokenizer, parseJson, parseModelConfig, safetensorsParts, saveFolder, writeHfFolder, type FileData, type ModelConfig, type NamedTensor, type Tokenizer } from '../io/index.js';
import { fromRaw, NativeHandle, type Batch, type NativeGenerator, type NativeHeaded, type PackedTokens, type PositionMode, type RawTensor, type Tensor } from '../native/index.js';
import { packBatch, type Dtype } from './backbone.js';
import {
  assemble,
  packPrompt,
  resolveGenerateOptions,
  TextTracker,
  toStep,
  type GenerateOptions,
  type GeneratedHeadName,
  type GenerateOutput,
  type GenerationStep,
  type Prompt,
} from './generate.js';
import { headConfigsJson, resolveHeadConfigs, type HeadConfig, type ResolvedHeadConfig } from './heads.js';
import { packLabel, type HeadedBatch, type LabelInput, type PackedLabel } from './labels.js';
import { adapterConfigJson, type ResolvedLoraConfig } from './lora.js';
import type { QuantizationConfig } from './quantization.js';

/**
 * What forward() returns: the total loss, the loss of each head (raw and, with adaptiveLoss, adapted), and each head's
 * predictions when asked for.
 */
export interface HeadedOutput<H extends string = string> {
  /** Weighted sum of the finite head losses. */
  loss: number;
  lossByHead: Record<H, number>;
  /** Equal to lossByHead unless adaptive loss is on. */
  adaptedLossByHead: Record<H, number>;
  /** Every head's output [B, T, C] (float32), when asked for with returnPreds. */
  predsByHead: Map<H, Tensor> | null;
}

/** AdamW settings of optimizerStep(): betas, epsilon, weight decay and gradient clipping. */
export interface OptimizerSettings {
  lr: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Gradient-norm clipping; 0 disables. Defaults to 1.0. */
  maxGradNorm?: number;
}

// The native side names the heads of this model, so the keys are H.
const pairsToRecord = <H extends string>(p: Array<[string, number]>) => Object.fromEntries(p) as Record<H, number>;

/** Files a head folder save always owns, whether this save writes them or not (adapters of an earlier LoRA save). */
const HEAD_FOLDER_FILES = ['head_configs.json', 'adapter_config.json', 'adapter_model.safetensors'];

/** The head files the folder's current head_configs.json names: a save replaces (or drops) them. */
async function savedHeadFiles(dir: string): Promise<string[]> {
  try {
    const cfg = parseJson(await readFile(join(dir, 'head_configs.json')), 'head_configs.json') as Record<string, unknown>;
    const names = Object.entries(cfg).flatMap(([k, v]) => [k, (v as { name?: unknown } | null)?.name]);
    return names.filter((n): n is string => typeof n === 'string' && n !== '' && !/[/\\\0]/.test(n) && n !== '.' && n !== '..').map((n) => `${n}.safetensors`);
  } catch {
    return []; // no folder yet, or an unreadable config: nothing of its heads to own
  }
}

/**
 * A backbone with heads: forward with losses, training steps, saving and loading in the Python library's format.
 * Calls run one at a time, in order, off the event loop.
 */
export class HeadedModel<H extends string = string, T extends string = string> extends NativeHandle<NativeHeaded> {
  readonly config: ModelConfig;
  readonly heads: readonly ResolvedHeadConfig<H>[];
  readonly modelPath: string;
  readonly device: string;
  readonly dtype: Dtype;
  /** Position ids of batches without a position_ids column ('sequential' = the Python library's forward). */
  readonly positions: PositionMode;
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
    heads: HeadConfig<H>[],
    opts: { freezeBaseModel: boolean; onlyInference: boolean; quantization?: Required<QuantizationConfig> | null; lora?: ResolvedLoraConfig | null; baseModelNameOrPath?: string },
  ) {
    super(native);
    this.quantization = opts.quantization ?? null;
    this.#lora = opts.lora ?? null;
    this.baseModelNameOrPath = opts.baseModelNameOrPath ?? modelPath;
    const info = native.info();
    this.config = parseModelConfig(info.normalizedConfig, info.config);
    this.heads = resolveHeadConfigs(heads, this.config);
    this.modelPath = modelPath;
    this.device = info.device;
    this.dtype = info.dtype as Dtype;
    this.positions = info.positions as PositionMode;
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

  /** LoRA tensors by PEFT name (without "base_model.model."), read after the calls already made. */
  async loraWeights(): Promise<NamedTensor[]> {
    const raw = await this._call((n) => n.loraState());
    return raw.map((t) => ({ key: t.key, ...fromRaw(t) }));
  }

  /**
   * Folds the LoRA adapters into the projections (4-bit ones become dense) and removes them; resolves with this
   * model. The merge is queued after the calls already made; calls made after this one (save(), lora) see the merged
   * model at once, and memoryFootprint() once the Promise resolves.
   */
  async mergeAndUnload(): Promise<this> {
    const lora = this.#lora;
    if (!lora) throw new TransformerHeadsError('this model has no LoRA adapters to merge', 'ERR_TH_CONFIG');
    const merged = this._call((n) => n.mergeLora());
    this.#lora = null;
    try {
      await merged;
    } catch (e) {
      // The core merges every projection or none (it checks before it writes): the adapters are still there.
      this.#lora = lora;
      throw e;
    }
    return this;
  }

  /**
   * @internal Runs a data-parallel call (ts/train/distributed.ts) on the native model, in order with the model's
   * other calls.
   */
  _withNative<R>(fn: (native: NativeHeaded) => Promise<R>): Promise<R> {
    return this._call(fn);
  }

  /** Number of weights that train (heads, and the backbone unless frozen). */
  trainableParameters(): number {
    return this._live().info().trainableParameters;
  }

  /** Number of parameters of the whole model: backbone, heads and adapters. */
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

  /**
   * Losses and, with returnPreds, every head's predictions. No autograd; adaptive-loss statistics untouched. A head
   * whose every target is ignored (-100) has loss 0; any other NaN or infinite loss is returned as computed.
   */
  forward(batch: HeadedBatch<T>, options?: { returnPreds?: boolean; outputHiddenStates?: false } | null): Promise<HeadedOutput<H>>;
  /**
   * With outputHiddenStates, also every hidden state of the trunk (Python's `output_hidden_states=True`):
   * `hiddenStates[i]` [B, T, H] float32 with Hugging Face's indexing (0 = embeddings, L = final-norm output), from
   * the same forward. It runs every block, however shallow the heads hook.
   */
  forward(batch: HeadedBatch<T>, options: { returnPreds?: boolean; outputHiddenStates: true }): Promise<HeadedOutput<H> & { hiddenStates: Tensor[] }>;
  async forward(batch: HeadedBatch<T>, options?: { returnPreds?: boolean; outputHiddenStates?: boolean } | null): Promise<HeadedOutput<H> & { hiddenStates?: Tensor[] }> {
    const returnPreds = options?.returnPreds ?? false;
    const { ids, mask, positions, labels } = this.#pack(batch);
    const native = this._live();
    if (options?.outputHiddenStates) {
      // One queued unit: the hidden states come from a forward of the same weights as the losses and predictions.
      const L = this.config.numLayers;
      return this._enqueue(async () => {
        const raw = await nativeCall(() => native.hookedHidden(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, positions?.data ?? null, positions?.shape ?? null, true));
        const hidden = raw.map((t) => ({ layer: Number(t.layer), data: fromRaw(t).data, shape: t.shape }));
        const o = await nativeCall(() => native.forward(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, labels, returnPreds, hidden.filter((h) => this.hookedLayers.includes(h.layer)), positions?.data ?? null, positions?.shape ?? null));
        const hiddenStates = Array.from({ length: L + 1 }, (_, i) => {
          const h = hidden.find((x) => x.layer === i)!;
          return { data: h.data, shape: h.shape };
        });
        return { ...this.#output(o, returnPreds), hiddenStates };
      });
    }
    return this._enqueue(async () => {
      const o = await nativeCall(() => native.forward(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, labels, returnPreds, null, positions?.data ?? null, positions?.shape ?? null));
      return this.#output(o, returnPreds);
    });
  }

  /**
   * One training micro-batch: forward with autograd and backward of loss x scale (use 1 / gradient-accumulation
   * steps). `hidden` replaces the backbone with cached hidden states (frozen backbones only). Usually driven by Trainer.
   */
  async trainStep(batch: HeadedBatch<T>, opts?: { scale?: number; hidden?: Map<number, Tensor> } | null): Promise<Omit<HeadedOutput<H>, 'predsByHead'>> {
    const options = opts ?? {};
    const { ids, mask, positions, labels } = this.#pack(batch);
    const hidden = options.hidden ? [...options.hidden].map(([layer, t]) => ({ layer, data: t.data, shape: t.shape })) : null;
    const native = this._live();
    return this._enqueue(async () => {
      const o = await nativeCall(() =>
        native.trainStep(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, labels, options.scale ?? 1, hidden, positions?.data ?? null, positions?.shape ?? null),
      );
      const { predsByHead: _, ...rest } = this.#output(o, false);
      return rest;
    });
  }

  /** Sets up AdamW (weight decay on weight matrices only) over every trainable tensor, after the calls already made. */
  async configureOptimizer(settings: OptimizerSettings): Promise<void> {
    if (typeof settings?.lr !== 'number' || !(settings.lr > 0)) invalidArg('lr', 'a positive number', settings?.lr);
    return this._call((n) => n.configureOptimizer(settings));
  }

  /**
   * Clips gradients, steps AdamW at learning rate `lr`, clears gradients; resolves with the gradient norm before
   * clipping. A NaN or infinite result means nothing was applied (weights and AdamW state unchanged, gradients
   * dropped): the norm was not finite, or a trainStep since the last optimizer step had a NaN or infinite loss.
   */
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
    const { ids, mask, positions } = packBatch(batch);
    const native = this._live();
    return this._enqueue(async () => {
      const out = await nativeCall(() => native.hookedHidden(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, positions?.data ?? null, positions?.shape ?? null));
      return new Map(out.map((t) => [Number(t.layer), fromRaw(t)]));
    });
  }

  /** A snapshot of one head's weights (keys lins.K.weight|bias, [out, in]), after the calls already made. */
  async headWeights(name: H): Promise<NamedTensor[]> {
    const raw = await this._call((n) => n.headState(name));
    return raw.map((t) => ({ key: t.key, ...fromRaw(t) }));
  }

  /** Gradients accumulated on one head since the last optimizer step (empty when it has none). */
  async headGradients(name: H): Promise<NamedTensor[]> {
    const raw = await this._call((n) => n.headGrads(name));
    return raw.map((t) => ({ key: t.key, ...fromRaw(t) }));
  }

  /** L2 norm of the gradients accumulated on the backbone's weights (0 when frozen or blocked). */
  async backboneGradNorm(): Promise<number> {
    return this._call((n) => n.backboneGradNorm());
  }

  /** Replaces the LoRA weights (strict: every adapter tensor, right shapes). Keys as loraWeights() gives them. */
  async loadLoraWeights(tensors: NamedTensor[]): Promise<void> {
    return this._call((n) => n.loadLoraState(tensors));
  }

  /** Replaces backbone weights by Hugging Face name (e.g. the biases an adapter file carries). */
  async loadBackboneWeights(tensors: NamedTensor[]): Promise<void> {
    return this._call((n) => n.loadBackboneTensors(tensors));
  }

  /** Replaces one head's weights (strict: every key, right shapes). */
  async loadHeadWeights(name: H, tensors: NamedTensor[]): Promise<void> {
    return this._call((n) => n.loadHeadState(name, tensors));
  }

  /**
   * Generates text with the causal-LM head (usually 'lm_head') and reports every other head's output at each step
   * (the Python library's generate). Greedy by default; sampling with temperature / topK / topP / minP and a seed.
   * Returns typed arrays with shapes: sequences [B, P + steps], logprobs [B, steps], headOutputs[name] [B, steps, C].
   */
  async generate(prompt: Prompt, options?: GenerateOptions | null): Promise<GenerateOutput<GeneratedHeadName<H>>> {
    const steps: GenerationStep[] = [];
    const stream = this.#generate(prompt, options);
    let r = await stream.next();
    while (!r.done) {
      steps.push(r.value);
      r = await stream.next();
    }
    const { prompt: packed, tracker, hasTokenizer } = r.value;
    return assemble(packed, steps, tracker, hasTokenizer) as GenerateOutput<GeneratedHeadName<H>>;
  }

  /**
   * Yields each step as it is generated: the tokens, the decoded text delta (`text` for row 0, `texts` per row),
   * log-probabilities and head outputs. Every step runs off the event loop; `options.signal` or leaving the loop
   * (break) stops generation and frees its cache.
   */
  async *generateStream(prompt: Prompt, options?: GenerateOptions | null): AsyncGenerator<GenerationStep<GeneratedHeadName<H>>, void, undefined> {
    // The steps' head outputs are keyed by this model's head names (typed H).
    yield* this.#generate(prompt, options) as AsyncGenerator<GenerationStep<GeneratedHeadName<H>>, unknown, undefined>;
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
    // Created in order with the model's other calls (the prompt is validated on the compute thread).
    const gen: NativeGenerator = await this._enqueue(() => nativeCall(() => native.generator(packed.ids, packed.shape, packed.mask, packed.shape, o.native)));
    const tracker = new TextTracker(tokenizer, packed.shape[0], o.stopSequences, o.native.eosTokenIds);
    try {
      for (;;) {
        o.signal?.throwIfAborted();
        const raw = await this._enqueue(() => nativeCall(() => gen.step()));
        const { deltas, stopped } = tracker.push(raw.tokens.data);
        // The generator's calls run on the model's compute thread in the order made: finish lands before the next step.
        if (stopped.length) await nativeCall(() => gen.finish(stopped));
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
   * @internal The files save() writes, name -> contents, snapshotted after the calls already made (training steps made
   * after this call do not change them):
   * `<name>.safetensors` for every head but 'lm_head', head_configs.json, and with LoRA adapter_model.safetensors and
   * adapter_config.json.
   */
  async saveFiles(): Promise<Map<string, FileData>> {
    const native = this._live();
    const lora = this.#lora; // as of this call: a mergeAndUnload() made before it has taken the adapters away
    // One queued call reads every tensor it writes, so that a training step made meanwhile cannot land between the
    // adapters and the heads; the reads run on the compute thread. The snapshots are copies (the core clones them),
    // so the pieces below stay as they are while training goes on.
    return this._enqueue(async () => {
      const read = async (fn: () => Promise<Array<RawTensor & { key: string }>>) => (await nativeCall(fn)).map((t) => ({ key: t.key, ...fromRaw(t) }));
      const files = new Map<string, FileData>();
      if (lora) {
        // PEFT's layout: adapter_config.json (sorted keys, indent 2) + adapter_model.safetensors {"format": "pt"}, with
        // the biases that trained (bias 'all' / 'lora_only') next to the adapters, as PEFT stores them.
        const trained = await read(() => native.trainedBackboneState());
        const adapters = await read(() => native.loraState());
        const tensors = [...adapters, ...trained].map((t) => ({ ...t, key: `base_model.model.${t.key}` }));
        files.set('adapter_model.safetensors', safetensorsParts(tensors, { format: 'pt' }));
        files.set('adapter_config.json', adapterConfigJson(lora, this.baseModelNameOrPath, this.config.modelType === 'gpt2' && !this.quantization));
      }
      for (const h of this.heads) {
        if (h.name === 'lm_head') continue;
        files.set(`${h.name}.safetensors`, safetensorsParts(await read(() => native.headState(h.name))));
      }
      files.set('head_configs.json', headConfigsJson([...this.heads]));
      return files;
    });
  }

  /**
   * Writes the Python library's head files into `dir`: `<name>.safetensors` for every head except 'lm_head'
   * (keys lins.K.weight|bias, F32, [out, in]) and head_configs.json; with LoRA, PEFT's adapter_config.json and
   * adapter_model.safetensors. The weights are those after the calls already made (training steps made after this
   * call do not change what is saved). The folder is replaced all-or-nothing: after a crash at any point it holds
   * exactly the previous save or exactly this one. The save owns those files and the head files the previous
   * head_configs.json names (a head removed since is removed); other files in the folder are kept.
   */
  async save(dir: string): Promise<void> {
    if (typeof dir !== 'string' || !dir) invalidArg('dir', 'a folder path', dir);
    const files = await this.saveFiles();
    const owned = new Set([...HEAD_FOLDER_FILES, ...files.keys(), ...(await savedHeadFiles(dir))]);
    await saveFolder(dir, (name) => owned.has(name), async (tmp) => {
      for (const [name, data] of files) await writeFile(join(tmp, name), data);
    });
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

  #pack(batch: HeadedBatch<T>): { ids: PackedTokens; mask: PackedTokens | null; positions: PackedTokens | null; labels: PackedLabel[] } {
    const { ids, mask, positions } = packBatch(batch);
    const labels: PackedLabel[] = [];
    const targets = new Map<string, boolean>(); // target -> every head using it is cross_entropy
    for (const h of this.heads) {
      if (h.lossFct === null) continue;
      targets.set(h.target, (targets.get(h.target) ?? true) && h.lossFct === 'cross_entropy');
    }
    for (const [target, integer] of targets) {
      const v = (batch as HeadedBatch)[target];
      if (v === undefined || v === null) continue;
      labels.push(packLabel(v as LabelInput, target, integer));
    }
    return { ids, mask, positions, labels };
  }

  #output(o: { loss: number; lossByHead: Array<[string, number]>; adaptedLossByHead: Array<[string, number]>; preds: Array<RawTensor & { name: string }> }, preds: boolean): HeadedOutput<H> {
    return {
      loss: o.loss,
      lossByHead: pairsToRecord(o.lossByHead),
      adaptedLossByHead: pairsToRecord(o.adaptedLossByHead),
      predsByHead: preds ? new Map(o.preds.map((p) => [p.name as H, fromRaw(p)])) : null,
    };
  }


}

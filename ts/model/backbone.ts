import { invalidArg, nativeCall, TransformerHeadsError } from '../errors.js';
import { hubOptionsOf, parseModelConfig, resolveModel, writeHfFolder, type HubOptions, type ModelConfig } from '../io/index.js';
import { ensureNative, fromRaw, NativeHandle, packTokens, refuseAsar, type Batch, type NativeBackbone, type NativeTorchScript, type PackedTokens, type PositionMode, type Tensor } from '../native/index.js';

/** Where a model runs: 'cpu', 'cuda' (device 0) or 'cuda:N'. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
/** Weight and compute dtype: 'float32', or 'bfloat16' / 'float16' (float16 on CUDA only). */
export type Dtype = 'float32' | 'bfloat16' | 'float16';

/**
 * Options of every loader that takes a model name: where a Hub model ("org/name") comes from (`revision`,
 * `cacheDir`, `offline`, `token`, `endpoint`) and how its download is followed (`onProgress`, `signal`).
 */
export interface LoadBackboneOptions extends HubOptions {
  /** 'cpu', 'cuda' or 'cuda:N'. Defaults to 'cpu'. */
  device?: Device;
  /** Weights and activations dtype. Defaults to 'float32'. float16 needs CUDA. */
  dtype?: Dtype;
  /**
   * Position ids of a batch without a `position_ids` column. 'from-mask' (default): cumsum(attention_mask) - 1, so a
   * row's first real token is position 0 whatever its padding (as Hugging Face's generate()). 'sequential': 0..T-1
   * in every row, pads included, as a Hugging Face forward with position_ids=None, which is what the Python
   * transformer-heads library's forward does: use it to reproduce Python's numbers on padded batches (on rows
   * without padding both are the same). Generation always derives positions from the mask.
   */
  positions?: PositionMode;
}

/** Which hidden states hiddenStates() returns. */
export interface HiddenStatesOptions {
  /**
   * Hidden-state indices as Hugging Face `output_hidden_states` numbers them: 0 = embeddings, i = output of block i,
   * L or -1 = the final-norm output. Negative values count from the end. The forward stops after the deepest one.
   * Defaults to every layer.
   */
  layers?: number[];
}

const DEVICE_RE = /^(cpu|cuda|cuda:\d{1,3})$/;
const DTYPES: readonly string[] = ['float32', 'bfloat16', 'float16'];

const POSITION_MODES: readonly string[] = ['from-mask', 'sequential'];

/** @internal checks a `positions` option (default 'from-mask') */
export function positionMode(v: unknown): PositionMode {
  if (v === undefined || v === null) return 'from-mask';
  if (typeof v !== 'string' || !POSITION_MODES.includes(v)) invalidArg('positions', "'from-mask' or 'sequential'", v);
  return v as PositionMode;
}

/** @internal ids, mask and position_ids of a batch, shapes checked against input_ids */
export function packBatch(batch: Batch): { ids: PackedTokens; mask: PackedTokens | null; positions: PackedTokens | null } {
  if (typeof batch !== 'object' || batch === null) invalidArg('batch', 'an object with input_ids', batch);
  const ids = packTokens(batch.input_ids, 'input_ids');
  const same = (t: PackedTokens | null, name: string) => {
    if (t && (t.shape[0] !== ids.shape[0] || t.shape[1] !== ids.shape[1])) {
      throw new TransformerHeadsError(`${name} shape [${t.shape.join(', ')}] does not match input_ids shape [${ids.shape.join(', ')}]`, 'ERR_TH_SHAPE');
    }
    return t;
  };
  const mask = same(batch.attention_mask === undefined ? null : packTokens(batch.attention_mask, 'attention_mask'), 'attention_mask');
  const positions = same(batch.position_ids === undefined || batch.position_ids === null ? null : packTokens(batch.position_ids, 'position_ids'), 'position_ids');
  return { ids, mask, positions };
}

/**
 * A pretrained transformer trunk (GPT-2 or Llama family) running natively in libtorch.
 * Calls on one model run one at a time, in order, off the event loop.
 */
export class Backbone extends NativeHandle<NativeBackbone> {
  /** The model's config.json, parsed. */
  readonly config: ModelConfig;
  /** The path it was loaded from (for a Hub model, its snapshot folder in the cache). */
  readonly path: string;
  readonly device: string;
  readonly dtype: Dtype;
  /** Position ids of batches without a position_ids column (LoadBackboneOptions.positions). */
  readonly positions: PositionMode;
  /** tokenizer.json / tokenizer_config.json text stored with the model, or null. */
  readonly tokenizerJson: string | null;
  readonly tokenizerConfigJson: string | null;

  /** @internal use loadBackbone() */
  constructor(native: NativeBackbone, path: string) {
    super(native);
    this.path = path;
    const info = native.info();
    this.config = parseModelConfig(info.normalizedConfig, info.config);
    this.device = info.device;
    this.dtype = info.dtype as Dtype;
    this.positions = info.positions as PositionMode;
    this.tokenizerJson = info.tokenizer || null;
    this.tokenizerConfigJson = info.tokenizerConfig || null;
  }

  /** Number of transformer blocks L. */
  get numLayers(): number {
    return this.config.numLayers;
  }

  /** Bytes held by the weights (tied tensors counted once). */
  get memoryBytes(): number {
    return this._live().info().parameterBytes;
  }

  /** Counters for inspection: `blocksRun` is the number of transformer blocks executed since load. */
  get stats(): { blocksRun: number } {
    return { blocksRun: this._live().info().blocksRun };
  }


  /**
   * Hidden states at the requested layers, keyed by the index as given.
   * `out.get(-1)` is `{ data: Float32Array, shape: [B, T, H] }`.
   */
  async hiddenStates(batch: Batch, options?: HiddenStatesOptions | null): Promise<Map<number, Tensor>> {
    const layers = options?.layers ?? Array.from({ length: this.numLayers + 1 }, (_, i) => i);
    const { hiddenStates } = await this.forward(batch, { layers, logits: false });
    return hiddenStates;
  }

  /** Next-token logits [B, T, V] from the model's LM head. */
  async logits(batch: Batch): Promise<Tensor> {
    const { logits } = await this.forward(batch, { layers: [], logits: true });
    return logits!;
  }

  /** Hidden states and, when asked, logits from one forward. */
  async forward(batch: Batch, options?: { layers?: number[]; logits?: boolean } | null): Promise<{ hiddenStates: Map<number, Tensor>; logits: Tensor | null }> {
    const layers = options?.layers ?? [];
    if (!Array.isArray(layers)) invalidArg('layers', 'an array of integers', layers);
    for (const l of layers) if (!Number.isInteger(l)) invalidArg('layers', 'integer layer indices', l);
    const { ids, mask, positions } = packBatch(batch);
    const native = this._live();
    return this._enqueue(async () => {
      const out = await nativeCall(() =>
        native.forward(ids.data, ids.shape, mask?.data ?? null, mask?.shape ?? null, layers, options?.logits ?? false, positions?.data ?? null, positions?.shape ?? null),
      );
      const hiddenStates = new Map<number, Tensor>();
      for (const h of out.hidden) hiddenStates.set(h.layer, fromRaw(h));
      return { hiddenStates, logits: out.logits ? fromRaw(out.logits) : null };
    });
  }

  /**
   * Writes the weights as a Hugging Face model folder that loadBackbone (and transformers' from_pretrained) reads:
   * model.safetensors (float32, Hugging Face names with the usual prefix, a tied lm_head left out), config.json,
   * and tokenizer.json / tokenizer_config.json when the model carries them. Each file is replaced atomically.
   */
  async saveBackbone(dir: string): Promise<void> {
    if (typeof dir !== 'string' || !dir) invalidArg('dir', 'a folder path', dir);
    const native = this._live();
    return this._enqueue(async () => {
      const state = await nativeCall(() => native.stateDict());
      const info = native.info();
      await writeHfFolder(dir, state, { config: info.config, tokenizer: info.tokenizer || null, tokenizerConfig: info.tokenizerConfig || null });
    });
  }
}

/**
 * Loads a model: a TorchScript archive made by scripts/export_torchscript.py, a Hugging Face model folder
 * (config.json + model.safetensors or a sharded model.safetensors.index.json, tokenizer.json optional), or a model
 * on the Hugging Face Hub by name ("org/name" or "org/name@revision"; fetched into the shared cache, see
 * resolveModel), for gpt2, llama, mistral and qwen2. A local path that exists always wins. Runs off the event loop.
 */
export async function loadBackbone(path: string, opts?: LoadBackboneOptions | null): Promise<Backbone> {
  const options = opts ?? {};
  if (typeof path !== 'string' || path.length === 0) invalidArg('path', 'a non-empty string', path);
  refuseAsar(path);
  const device = options.device ?? 'cpu';
  const dtype = options.dtype ?? 'float32';
  if (typeof device !== 'string' || !DEVICE_RE.test(device)) {
    throw new TransformerHeadsError(`unknown device '${String(device)}': use 'cpu', 'cuda' or 'cuda:N'`, 'ERR_TH_DEVICE');
  }
  if (!DTYPES.includes(dtype)) {
    throw new TransformerHeadsError(`unknown dtype '${String(dtype)}': use 'float32', 'bfloat16' or 'float16'`, 'ERR_TH_DEVICE');
  }
  const positions = positionMode(options.positions);
  const local = await resolveModel(path, hubOptionsOf(options));
  const native = await nativeCall(async () => (await ensureNative()).loadBackbone(local, { device, dtype, positions }));
  return new Backbone(native, local);
}

/**
 * The TorchScript archive's own forward, run by torch::jit: the reference the native backbone is checked against.
 * Useful to verify an exported model; not needed for normal use.
 */
export class TorchScriptModule {
  #native: NativeTorchScript | null;
  /** @internal */
  constructor(native: NativeTorchScript) {
    this.#native = native;
  }

  /** Logits [B, T, V] and all L+1 hidden states. */
  async forward(batch: Batch): Promise<{ logits: Tensor; hiddenStates: Tensor[] }> {
    if (!this.#native) throw new TransformerHeadsError('this module was disposed', 'ERR_TH_DISPOSED');
    const { ids, mask } = packBatch(batch);
    const toI32 = (p: PackedTokens) => (p.data instanceof Int32Array ? p.data : Int32Array.from(p.data, (v) => Number(v)));
    const maskData = mask ? toI32(mask) : new Int32Array(ids.shape[0] * ids.shape[1]).fill(1);
    const native = this.#native;
    const out = await nativeCall(() => native.forward(toI32(ids), ids.shape, maskData, ids.shape));
    return { logits: fromRaw(out.logits), hiddenStates: out.hidden.map(fromRaw) };
  }

  /** Frees the module now (the garbage collector would later). */
  dispose(): void {
    this.#native?.dispose();
    this.#native = null;
  }
}

/**
 * Loads a TorchScript archive to run its own scripted forward (the reference the parity tests compare against); off the
 * event loop.
 */
export async function loadTorchScript(path: string): Promise<TorchScriptModule> {
  if (typeof path !== 'string' || path.length === 0) invalidArg('path', 'a non-empty string', path);
  refuseAsar(path);
  return new TorchScriptModule(await nativeCall(async () => (await ensureNative()).loadTorchScript(path)));
}

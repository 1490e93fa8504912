// Loads the compiled addon and types its raw surface. Nothing else in ts/ touches the binding untyped.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { TransformerHeadsError } from '../errors.js';

/** A tensor as it crosses the boundary: float32 bytes plus a shape. Not public API (as every Native* type here). */
export interface RawTensor {
  data: Uint8Array;
  shape: number[];
}

/** The addon's backbone object. Not public API, but kept in the .d.ts: Backbone's declaration refers to it. */
export interface NativeBackbone {
  forward(
    ids: Int32Array | BigInt64Array,
    shape: number[],
    mask: Int32Array | BigInt64Array | null,
    maskShape: number[] | null,
    layers: number[],
    logits: boolean,
    positions?: Int32Array | BigInt64Array | null,
    positionsShape?: number[] | null,
  ): Promise<{ hidden: Array<RawTensor & { layer: number }>; logits: RawTensor | null }>;
  stateDict(): Promise<Array<RawTensor & { key: string }>>;
  info(): {
    /** config.json as stored with the model. */
    config: string;
    /** The core's validated, normalized fields of it (parseModelConfig's result). */
    normalizedConfig: string;
    tokenizer: string;
    tokenizerConfig: string;
    device: string;
    dtype: string;
    /** 'from-mask' | 'sequential', fixed at load. */
    positions: string;
    numLayers: number;
    parameterBytes: number;
    blocksRun: number;
  };
  dispose(): void;
}

/** @internal */
export interface NativeTorchScript {
  forward(ids: Int32Array, shape: number[], mask: Int32Array, maskShape: number[]): Promise<{ logits: RawTensor; hidden: RawTensor[] }>;
  dispose(): void;
}

type Ids = Int32Array | BigInt64Array;
type LabelTensor = { name: string; data: Float32Array | Int32Array | BigInt64Array; shape: number[] };
type HiddenTensor = { layer: number; data: Float32Array; shape: number[] };
type NativeOutput = { loss: number; lossByHead: Array<[string, number]>; adaptedLossByHead: Array<[string, number]>; preds: Array<RawTensor & { name: string }> };

/** The generation settings the native generator takes (model/generate.ts fills them in). */
export interface NativeGenerateOptions {
  maxNewTokens: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  seed?: number;
  eosTokenIds: number[];
  padTokenId?: number;
  useCache: boolean;
  keepLogits: boolean;
}

/** What the native generation step returns. */
export interface NativeStep {
  index: number;
  tokens: { data: Int32Array; shape: number[] };
  logprobs: RawTensor;
  finished: { data: Int32Array; shape: number[] };
  heads: Array<RawTensor & { name: string }>;
  logits?: RawTensor;
  done: boolean;
}

/** The addon's generator object. */
export interface NativeGenerator {
  step(): Promise<NativeStep>;
  finish(rows: number[]): Promise<void>;
  info(): { done: boolean; steps: number; lmHead: string; cacheBytes: number };
  dispose(): void;
}

/** The addon's headed-model object. Not public API, but kept in the .d.ts: HeadedModel's declaration refers to it. */
export interface NativeHeaded {
  forward(ids: Ids, shape: number[], mask: Ids | null, maskShape: number[] | null, labels: LabelTensor[], preds: boolean, hidden: HiddenTensor[] | null, positions?: Ids | null, positionsShape?: number[] | null): Promise<NativeOutput>;
  trainStep(ids: Ids, shape: number[], mask: Ids | null, maskShape: number[] | null, labels: LabelTensor[], scale: number, hidden: HiddenTensor[] | null, positions?: Ids | null, positionsShape?: number[] | null): Promise<NativeOutput>;
  optimizerStep(lr: number): Promise<number>;
  configureOptimizer(o: { lr: number; weightDecay?: number; beta1?: number; beta2?: number; eps?: number; maxGradNorm?: number }): Promise<void>;
  saveOptimizer(path: string): Promise<void>;
  loadOptimizer(path: string): Promise<void>;
  saveTrainable(path: string): Promise<void>;
  loadTrainable(path: string): Promise<void>;
  hookedHidden(ids: Ids, shape: number[], mask: Ids | null, maskShape: number[] | null, positions?: Ids | null, positionsShape?: number[] | null, allLayers?: boolean): Promise<Array<RawTensor & { layer: string }>>;
  headState(name: string): Promise<Array<RawTensor & { key: string }>>;
  headGrads(name: string): Promise<Array<RawTensor & { key: string }>>;
  backboneGradNorm(): Promise<number>;
  loraState(): Promise<Array<RawTensor & { key: string }>>;
  loadLoraState(tensors: Array<{ key: string; data: Float32Array; shape: number[] }>): Promise<void>;
  mergeLora(): Promise<void>;
  backboneState(): Promise<Array<RawTensor & { key: string }>>;
  trainedBackboneState(): Promise<Array<RawTensor & { key: string }>>;
  loadBackboneTensors(tensors: Array<{ key: string; data: Float32Array; shape: number[] }>): Promise<void>;
  loadHeadState(name: string, tensors: Array<{ key: string; data: Float32Array; shape: number[] }>): Promise<void>;
  generator(ids: Int32Array, shape: number[], mask: Int32Array, maskShape: number[], options: NativeGenerateOptions): Promise<NativeGenerator>;
  info(): ReturnType<NativeBackbone['info']> & {
    trainableParameters: number;
    totalParameters: number;
    backboneNeedsGrad: boolean;
    hookedLayers: number[];
    memory: { dense: number; quantized: number; lora: number; heads: number };
    quantized: boolean;
    quantizedParameters: number;
  };
  dispose(): void;
}

/** What runtimeInfo() reports (see ts/native/runtime.ts). */
export interface NativeRuntimeInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  /** libtorch's intra-op thread count on the compute threads. */
  numThreads: number;
  /** Compute threads started so far: one per device used (CPU, each CUDA device). */
  computeThreads: number;
  /** The process's OS threads (Linux /proc/self/status), -1 where unknown. */
  osThreads: number;
  /** glibc malloc settings the addon applied (null: left to glibc or to the environment). */
  malloc: { mmapThreshold: number | null; trimThreshold: number | null; arenaMax: number | null; source: 'addon' | 'environment' | 'off' | 'unsupported' };
}

/** @internal */
export interface NativeBinding {
  loadHeaded(
    path: string,
    options: {
      device: string;
      dtype: string;
      positions?: string;
      heads: string;
      freezeBase: boolean;
      onlyInference: boolean;
      adaptiveLoss: boolean;
      seed: number;
      quantization?: object;
      lora?: object;
      fullyTrainedHeads?: boolean;
      gradientCheckpointing?: boolean;
    },
  ): Promise<NativeHeaded>;
  loadBackbone(path: string, options: { device: string; dtype: string; positions?: string }): Promise<NativeBackbone>;
  loadTorchScript(path: string): Promise<NativeTorchScript>;
  setNumThreads(n: number): Promise<void>;
  /**
   * Swaps two existing paths atomically; false when the platform or filesystem cannot (ts/io/atomic.ts falls back).
   * Synchronous on the main thread: one metadata syscall, no tensor.
   */
  exchangePaths(a: string, b: string): boolean;
  /** config.json text validated by the loader's own checks (on the CPU compute thread); resolves with the normalized fields as JSON. */
  parseModelConfig(text: string): Promise<string>;
  runtimeInfo(): Promise<NativeRuntimeInfo>;
}

const require = createRequire(import.meta.url);
// dist/native/binding.js -> the package root, where node-gyp-build looks for prebuilds/ and build/.
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
let cached: NativeBinding | undefined;

/**
 * The addon: `TRANSFORMER_HEADS_BINDING` (a path to a .node file) if set, else node-gyp-build's search
 * (prebuilds/ first, then build/Release).
 * @internal
 */
export function binding(): NativeBinding {
  if (cached) return cached;
  const override = process.env.TRANSFORMER_HEADS_BINDING;
  // libgomp reads OMP_WAIT_POLICY once, when the addon's dlopen loads it. PASSIVE: intra-op workers sleep between
  // parallel regions instead of spinning for ~300k iterations, which on a few cores took CPU from the event loop and
  // from the compute thread itself (the tuned peer ran PASSIVE). Only for this load, and only when the user
  // did not choose: the variable is removed again so that child processes inherit the user's environment.
  const setWait = process.env.OMP_WAIT_POLICY === undefined;
  if (setWait) process.env.OMP_WAIT_POLICY = 'PASSIVE';
  try {
    cached = override ? (require(resolve(override)) as NativeBinding) : (require('node-gyp-build')(packageRoot) as NativeBinding);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new TransformerHeadsError(
      `The transformer-heads native addon could not be loaded: ${msg}\n` +
        'Possible solutions:\n' +
        '  - build it: `bash scripts/setup.sh` (Debian/Ubuntu: installs libtorch-dev and builds), or `npm run build:native`\n' +
        '  - with your own libtorch: `LIBTORCH=/path/to/libtorch npm run build:native`\n' +
        '  - "cannot open shared object file": the libtorch the addon was built against has moved; rebuild it\n' +
        '  - a specific binary: set TRANSFORMER_HEADS_BINDING=/path/to/transformer_heads.node',
      'ERR_TH_NATIVE',
      { cause: e },
    );
  } finally {
    if (setWait) delete process.env.OMP_WAIT_POLICY;
  }
  return cached;
}

// Loads the compiled addon and types its raw surface. Nothing else in ts/ touches the binding untyped.
//
// Loading is asynchronous: scripts/libtorch.mjs finds libtorch (the documented search order) and picks the binary
// that fits it (a local build, else a prebuild); the small loader addon (native/loader) dlopens libtorch's libraries
// on a worker thread (1-5 s, all of it off the event loop), and only then is the addon itself required, which takes
// milliseconds because every library it needs is already loaded. See README.md, "Finding libtorch".
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { TransformerHeadsError } from '../errors.js';
import { outsideAsar } from './asar.js';

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
  malloc: {
    mmapThreshold: number | null;
    trimThreshold: number | null;
    arenaMax: number | null;
    source: 'addon' | 'environment' | 'off' | 'unsupported';
    /**
     * The caching allocator of libtorch's CPU buffers of `minBytes` or more (docs/THREADS.md); null when off
     * (TRANSFORMER_HEADS_MALLOC=default or TRANSFORMER_HEADS_CPU_CACHE_MB=0). `cachedBytes` are freed buffers kept for
     * reuse, at most `limitBytes`; `mappedBytes` those plus the ones in use; hits/misses count large requests served
     * from the cache / from fresh memory.
     */
    cpuCache: { minBytes: number; limitBytes: number; mappedBytes: number; cachedBytes: number; peakMappedBytes: number; hits: number; misses: number } | null;
  };
  /**
   * Float32 CPU products of at most `maxRows` rows (generation's decoding steps) run on BLIS's unpacked kernels when
   * `library` is loaded (Debian: libblis4-pthread; native/core/small_gemm.h); null with the `reason` otherwise
   * (TRANSFORMER_HEADS_BLIS=0 turns it off). `calls`: products it has run in this process. `fused4bit`: 4-bit
   * projections of a decoding step multiply straight from their packed codes (AVX-512F CPUs;
   * TRANSFORMER_HEADS_Q4_FUSED=0 turns it off), instead of dequantizing tiles first.
   */
  smallGemm: { library: string | null; maxRows: number; reason?: string; calls: number; fused4bit: boolean };
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
  releaseCpuCache(): number;
  /** config.json text validated by the loader's own checks (on the CPU compute thread); resolves with the normalized fields as JSON. */
  parseModelConfig(text: string): Promise<string>;
  runtimeInfo(): Promise<NativeRuntimeInfo>;
  // Data parallel (native/addon/distributed.cc; ts/train/distributed.ts uses them): one process group per process.
  distInit(options: {
    rank: number;
    worldSize: number;
    localRank: number;
    masterAddr: string;
    masterPort: number;
    backend: string;
    timeoutMs: number;
    bucketBytes?: number;
  }): Promise<void>;
  distCheck(fields: Array<[string, string]>): Promise<void>;
  distFingerprint(model: NativeHeaded): Promise<Array<[string, string]>>;
  distAttach(model: NativeHeaded, attach: boolean): Promise<void>;
  distAllReduce(values: Float64Array): Promise<Float64Array>;
  distBarrier(what: string): Promise<void>;
  distStats(): Promise<{ reduceMs: number; reduceCount: number }>;
  distDestroy(): Promise<void>;
  distAvailable(backend: string): boolean;
}

const require = createRequire(import.meta.url);
// dist/native/binding.js -> the package root, which holds prebuilds/, build/ and scripts/libtorch.mjs.
// Under Electron, the unpacked copy of the package (asarUnpack): the binaries are dlopened by path.
const packageRoot = outsideAsar(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'));

/** @internal The package folder that holds prebuilds/, build/ and scripts/libtorch.mjs (unpacked under Electron). */
export function nativePackageRoot(): string {
  return packageRoot;
}

/** One library of the libtorch found. */
export interface LibtorchLibrary {
  name: string;
  /** The path found (may be a symlink). */
  path: string;
  /** The file it resolves to. */
  real: string;
  /** Its ELF SONAME: what the addon's DT_NEEDED names. */
  soname: string;
}

/** The libtorch the search found (README.md, "Finding libtorch", has the order). */
export interface LibtorchInfo {
  /** Which step of the search found it: 'TRANSFORMER_HEADS_LIBTORCH', 'LIBTORCH', 'Torch_DIR', 'python' or 'system'. */
  source: string;
  /** The same in words, with the path. */
  detail: string;
  libdir: string;
  /** e.g. '1.13.0a0' or '2.3.1+cu121'; null when no version file or versioned SONAME says. */
  version: string | null;
  /** 1: the C++11 libstdc++ ABI, 0: the old one, null: unknown. */
  cxx11Abi: number | null;
  /** Whether this libtorch has CUDA libraries (libtorch_cuda.so). */
  cuda: boolean;
  libraries: LibtorchLibrary[];
}

/** The binary that was loaded and what it was built against. */
export interface BinaryInfo {
  path: string;
  /** 'prebuild', 'local build' or 'TRANSFORMER_HEADS_BINDING'. */
  kind: string;
  /** The libtorch SONAMEs it links. */
  torchNeeded: string[];
  /** Its record of the libtorch it was built against (the .json next to it), when there is one. */
  meta: { torchVersion: string | null; cxx11Abi: number | null; cuda: boolean; builder?: string; libdir?: string; glibc?: string | null } | null;
  /** The loader addon used. */
  loader: string;
}

/** What loadNative() found and loaded. */
export interface NativeLocation {
  libtorch: LibtorchInfo;
  binary: BinaryInfo;
  /** The library files preloaded, in order. */
  preload: string[];
  /** Binaries that were passed over, with the reason. */
  rejected: string[];
}

interface LibtorchModule {
  locateNative(root: string, env: NodeJS.ProcessEnv): Promise<NativeLocation>;
}

interface Loader {
  preload(paths: string[], localCount?: number): Promise<void>;
  preloadSync(paths: string[], localCount?: number): void;
  isLoaded(name: string): boolean;
}

let loaded: { binding: NativeBinding; location: NativeLocation; loadMs: number } | undefined;
let pending: Promise<NativeBinding> | undefined;
const onLoad: Array<(b: NativeBinding) => void> = [];

function nativeError(e: unknown, detail: string): TransformerHeadsError {
  const msg = e instanceof Error ? e.message : String(e);
  const fix = (e as { fix?: string } | null)?.fix;
  return new TransformerHeadsError(
    `The transformer-heads native addon could not be loaded: ${msg}${fix ? `\nFix: ${fix}` : ''}${detail}\n` +
      'Check what was found with: npx transformer-heads doctor',
    'ERR_TH_NATIVE',
    { cause: e },
  );
}

async function load(): Promise<NativeBinding> {
  const started = performance.now();
  let location: NativeLocation;
  try {
    const lib = (await import(pathToFileURL(join(packageRoot, 'scripts', 'libtorch.mjs')).href)) as LibtorchModule;
    location = await lib.locateNative(packageRoot, process.env);
  } catch (e) {
    throw nativeError(e, '');
  }
  const { binary, preload } = location;
  // libgomp reads OMP_WAIT_POLICY once, when it is loaded (here, by the preload). PASSIVE: intra-op workers sleep
  // between parallel regions instead of spinning for ~300k iterations, which on a few cores took CPU from the event
  // loop and from the compute thread itself (the tuned peer of issue 15 ran PASSIVE). Only for this load, and only
  // when the user did not choose: the variable is removed again so that child processes inherit the user's
  // environment. Nothing else reads the environment meanwhile: the worker's dlopen is the only other thread at work.
  const setWait = process.env.OMP_WAIT_POLICY === undefined;
  if (setWait) process.env.OMP_WAIT_POLICY = 'PASSIVE';
  try {
    return await loadFound(location, started);
  } finally {
    if (setWait) delete process.env.OMP_WAIT_POLICY;
  }
}

async function loadFound(location: NativeLocation, started: number): Promise<NativeBinding> {
  const { binary, preload } = location;
  try {
    const loader = require(binary.loader) as Loader;
    await loader.preload(preload);
  } catch (e) {
    throw nativeError(e, `\nwhile loading libtorch ${location.libtorch.version ?? ''} from ${location.libtorch.detail}; a damaged or partial libtorch: reinstall it`);
  }
  try {
    // The addon too, RTLD_LOCAL: its relocations against libtorch then happen on the worker, and require() below
    // finds it loaded (see native/loader/loader.c).
    await (require(binary.loader) as Loader).preload([binary.path], 1);
  } catch {
    // require() below reports the failure with the full explanation
  }
  let b: NativeBinding;
  try {
    b = require(binary.path) as NativeBinding;
  } catch (e) {
    throw nativeError(
      e,
      `\nThe ${binary.kind} ${binary.path} did not load against libtorch ${location.libtorch.version ?? ''} from ${location.libtorch.detail}. ` +
        'An "undefined symbol" means it was built against another libtorch: rebuild it for this one with `npm rebuild transformer-heads`.',
    );
  }
  loaded = { binding: b, location, loadMs: performance.now() - started };
  for (const f of onLoad.splice(0)) f(b);
  return b;
}

/** @internal The addon, loaded on first use (see loadNative). */
export function ensureNative(): Promise<NativeBinding> {
  if (loaded) return Promise.resolve(loaded.binding);
  pending ??= load().catch((e: unknown) => {
    pending = undefined; // a later call tries again (after the user installed libtorch, say)
    throw e;
  });
  return pending;
}

/**
 * Loads the native addon (once): finds libtorch, picks the binary that fits it, loads libtorch off the event loop,
 * and says what it loaded. Every model loader does this itself; call it early to take the 1-5 s of loading libtorch
 * before the first model is needed, or to check an installation. Rejects with ERR_TH_NATIVE, whose message names
 * what is missing and the one command that fixes it.
 */
export async function loadNative(): Promise<NativeLocation & { loadMs: number }> {
  await ensureNative();
  return nativeLocation()!;
}

/** @internal The addon, once loading has finished; undefined before. */
export function loadedBinding(): NativeBinding | undefined {
  return loaded?.binding;
}

/** @internal Runs `f` with the addon now if it is loaded, else once it is. */
export function whenLoaded(f: (b: NativeBinding) => void): void {
  if (loaded) f(loaded.binding);
  else onLoad.push(f);
}

/** Where the addon and libtorch were loaded from, and how long loading took; undefined before loadNative() resolved. */
export function nativeLocation(): (NativeLocation & { loadMs: number }) | undefined {
  return loaded ? { ...loaded.location, loadMs: loaded.loadMs } : undefined;
}

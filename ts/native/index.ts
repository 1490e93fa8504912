// The native layer: loading the compiled addon and typing its raw surface, the handle that serialises calls on a
// native object, and tensors as they cross the boundary. Nothing above this folder touches the binding untyped.
// The re-exports tagged internal stay out of the published .d.ts (tsconfig stripInternal), as their declarations do.
export type { NativeBackbone, NativeGenerateOptions, NativeGenerator, NativeHeaded, NativeRuntimeInfo, NativeStep, RawTensor } from './binding.js';
export { loadNative, nativeLocation } from './binding.js';
/** @internal */
export { ensureNative } from './binding.js';
export type { BinaryInfo, LibtorchInfo, LibtorchLibrary, NativeLocation } from './binding.js';
/** @internal */
export type { NativeBinding, NativeTorchScript } from './binding.js';
export { diagnoseNative } from './diagnose.js';
export type { DiagnosedBinary, NativeDiagnosis } from './diagnose.js';
export { insideAsar, outsideAsar, refuseAsar } from './asar.js';
export { NativeHandle } from './handle.js';
export { releaseCachedMemory, runtimeInfo, setNumThreads, threadCounts } from './runtime.js';
export type { RuntimeInfo, ThreadCounts } from './runtime.js';
/** @internal */
export { fromRaw, packTokens } from './tensor.js';
/** @internal */
export type { PackedTokens } from './tensor.js';
export type { Batch, IntTensor, PositionMode, Tensor, TokenInput } from './tensor.js';

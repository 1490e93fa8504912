// The native layer: loading the compiled addon and typing its raw surface, the handle that serialises calls on a
// native object, and tensors as they cross the boundary. Nothing above this folder touches the binding untyped.
export { binding } from './binding.js';
export type { NativeBackbone, NativeBinding, NativeGenerateOptions, NativeGenerator, NativeHeaded, NativeStep, NativeTorchScript, RawTensor } from './binding.js';
export { NativeHandle } from './handle.js';
export { runtimeInfo, setNumThreads } from './runtime.js';
export { fromRaw, packTokens } from './tensor.js';
export type { Batch, IntTensor, PackedTokens, Tensor, TokenInput } from './tensor.js';

export { Backbone, loadBackbone, loadTorchScript, runtimeInfo, setNumThreads, TorchScriptModule } from './backbone.js';
export type { Device, Dtype, HiddenStatesOptions, LoadBackboneOptions } from './backbone.js';
export type { ModelConfig } from './config.js';
export { TransformerHeadsError } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Batch, IntTensor, Tensor, TokenInput } from './tensor.js';

// The file-format layer: what is read from and written to disk, with no model logic. safetensors, zip/TorchScript
// archives, Hugging Face model folders and their config.json, tokenizers, and atomic file writes.
// The re-exports tagged internal stay out of the published .d.ts (tsconfig stripInternal), as their declarations do.
export { readModelConfig, zipEntries } from './archive.js';
export { atomicWrite } from './atomic.js';
/** @internal */
export { writeHfFolder } from './hf-folder.js';
export type { HfFolderTexts } from './hf-folder.js';
/** @internal */
export { parseModelConfig } from './model-config.js';
export type { ModelConfig } from './model-config.js';
export { decodeSafetensors, encodeSafetensors, readSafetensors } from './safetensors.js';
/** @internal */
export { safetensorsParts } from './safetensors.js';
export type { NamedTensor } from './safetensors.js';
export { loadTokenizer, Tokenizer } from './tokenizer.js';

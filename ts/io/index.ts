// The file-format layer: what is read from and written to disk, with no model logic. safetensors, zip/TorchScript
// archives, Hugging Face model folders and their config.json, tokenizers, atomic file writes, and Hub repositories by
// name (hub/: the shared Hugging Face cache and downloads into it).
export { readModelConfig, zipEntries } from './archive.js';
export { atomicWrite } from './atomic.js';
export { writeHfFolder } from './hf-folder.js';
export type { HfFolderTexts } from './hf-folder.js';
export { parseModelConfig } from './model-config.js';
export type { ModelConfig } from './model-config.js';
export { decodeSafetensors, encodeSafetensors, readSafetensors } from './safetensors.js';
export type { NamedTensor } from './safetensors.js';
export { loadTokenizer, Tokenizer } from './tokenizer.js';
export { downloadModel, hubCacheDir, hubOptionsOf, isRepoId, parseRepoRef, resolveModel } from './hub/index.js';
export type { DownloadProgress, DownloadResult, HubFiles, HubOptions, ResolveModelOptions } from './hub/index.js';

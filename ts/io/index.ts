// The file-format layer: what is read from and written to disk, with no model logic. safetensors, zip/TorchScript
// archives, Hugging Face model folders and their config.json, tokenizers, JSON files from strangers, crash-safe
// writes of files and whole folders, and Hub repositories by name (hub/: the shared Hugging Face cache and downloads
// into it).
// The re-exports tagged internal stay out of the published .d.ts (tsconfig stripInternal), as their declarations do.
export { readModelConfig, zipEntriesFromFile } from './archive.js';
export { appendText, atomicWrite, ensureFolder, removePath, saveFolder, type FileData } from './atomic.js';
/** @internal */
export { hfFolderOwns, writeHfFolder } from './hf-folder.js';
export type { HfFolderTexts } from './hf-folder.js';
export { clip, jsonDepth, kindOf, MAX_JSON_DEPTH, parseJson, readJsonFile, shown } from './json.js';
export type { JsonOptions, JsonTop } from './json.js';
/** @internal */
export { parseModelConfig } from './model-config.js';
export type { ModelConfig } from './model-config.js';
export { decodeSafetensors, encodeSafetensors, readSafetensors } from './safetensors.js';
/** @internal */
export { safetensorsParts } from './safetensors.js';
export type { NamedTensor } from './safetensors.js';
export { loadTokenizer, Tokenizer } from './tokenizer.js';
export { downloadModel, hubCacheDir, isRepoId, parseRepoRef, resolveModel } from './hub/index.js';
/** @internal */
export { hubOptionsOf } from './hub/index.js';
export type { DownloadProgress, DownloadResult, HubFiles, HubOptions, ResolveModelOptions } from './hub/index.js';

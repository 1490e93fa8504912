// Hugging Face Hub repositories by name: the shared on-disk cache, downloads with resume and verification, offline
// mode. resolveModel() is what every loader calls on a model path.
export { downloadModel, resolveModel } from './resolve.js';
/** @internal */
export { hubOptionsOf } from './resolve.js';
export type { DownloadResult, HubFiles, HubOptions, ResolveModelOptions } from './resolve.js';
export type { DownloadProgress } from './progress.js';
export { isRepoId, parseRepoRef } from './repo.js';
export { hubCacheDir } from './settings.js';

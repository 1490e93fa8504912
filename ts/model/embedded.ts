// The embedded default model: models/tiny-llama-en, a Hugging Face Llama folder (float16 weights, its own byte-level
// BPE tokenizer) built by scripts/pretrain.mjs and committed, with its training record in training.json.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { TransformerHeadsError } from '../errors.js';
import { readJsonFile } from '../io/index.js';
import { outsideAsar } from '../native/index.js';
import type { HeadedModel } from './headed.js';
import { loadHeaded, type LoadHeadedOptions } from './load.js';

/** The embedded model shipped with this package: a Hugging Face Llama folder (from dist/model/). */
// Under Electron: the unpacked copy (asarUnpack), since the native core memory-maps the weights.
export const DEFAULT_MODEL_DIR = outsideAsar(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'tiny-llama-en'));

/** What training.json records about the embedded model (snake_case, as written). */
export interface EmbeddedModelInfo {
  /**
   * The random-init model of the same shape and tokenizer (a Hugging Face folder), relative to the model folder;
   * `node scripts/pretrain.mjs` makes it when missing.
   */
  init_dir: string;
  [key: string]: unknown;
}

/** training.json of a model folder made by scripts/pretrain.mjs. */
export async function readEmbeddedModelInfo(dir: string = DEFAULT_MODEL_DIR): Promise<EmbeddedModelInfo> {
  const info = (await readJsonFile(join(dir, 'training.json'), 'embedded model record', { code: 'ERR_TH_FILE', missing: 'null' })) as EmbeddedModelInfo | null;
  if (info === null) {
    throw new TransformerHeadsError(
      `no embedded model in '${dir}' (no training.json); it ships with the package (models/tiny-llama-en in git); rebuild it with \`npm run pretrain -- --force\` (about 90 min on 2 cores)`,
      'ERR_TH_FILE',
    );
  }
  return info;
}

/** Loads the embedded model (or another folder written by scripts/pretrain.mjs) with heads, as loadHeaded does. */
export async function loadEmbeddedModel(options: LoadHeadedOptions, dir: string = DEFAULT_MODEL_DIR): Promise<HeadedModel> {
  await readEmbeddedModelInfo(dir); // a clear error when the folder is missing
  return loadHeaded(dir, options);
}

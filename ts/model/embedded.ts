// The embedded default model: models/tiny-gpt2-en, a Hugging Face GPT-2 folder made by scripts/pretrain.mjs
// (`npm run pretrain`), with its training record in training.json.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { TransformerHeadsError } from '../errors.js';
import { readJsonFile } from '../io/index.js';
import { outsideAsar } from '../native/index.js';
import type { HeadedModel } from './headed.js';
import { loadHeaded, type LoadHeadedOptions } from './load.js';

/** Where `npm run pretrain` writes the embedded model: a Hugging Face GPT-2 folder inside this package. */
// Under Electron: the unpacked copy (asarUnpack), since the native core memory-maps the weights.
export const DEFAULT_MODEL_DIR = outsideAsar(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'tiny-gpt2-en')); // from dist/model/

/** What training.json records about the embedded model (snake_case, as written). */
export interface EmbeddedModelInfo {
  /** The random-init TorchScript archive the weights were trained from (same shape), relative to the model folder. */
  init_archive: string;
  [key: string]: unknown;
}

/** training.json of a model folder made by scripts/pretrain.mjs. */
export async function readEmbeddedModelInfo(dir: string = DEFAULT_MODEL_DIR): Promise<EmbeddedModelInfo> {
  const info = (await readJsonFile(join(dir, 'training.json'), 'embedded model record', { code: 'ERR_TH_FILE', missing: 'null' })) as EmbeddedModelInfo | null;
  if (info === null) {
    throw new TransformerHeadsError(`no embedded model in '${dir}' (no training.json); build it with \`npm run pretrain\` (a few minutes on 2 cores)`, 'ERR_TH_FILE');
  }
  return info;
}

/** Loads the embedded model (or another folder written by scripts/pretrain.mjs) with heads, as loadHeaded does. */
export async function loadEmbeddedModel(options: LoadHeadedOptions, dir: string = DEFAULT_MODEL_DIR): Promise<HeadedModel> {
  await readEmbeddedModelInfo(dir); // a clear "build it with npm run pretrain" when it is missing
  return loadHeaded(dir, options);
}

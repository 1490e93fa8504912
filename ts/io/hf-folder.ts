import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { fromRaw, type RawTensor } from '../native/index.js';
import { saveFolder } from './atomic.js';
import { safetensorsParts } from './safetensors.js';

/** What a Hugging Face model folder holds besides the weights: the texts stored with the model. */
export interface HfFolderTexts {
  config: string;
  tokenizer: string | null;
  tokenizerConfig: string | null;
}

/**
 * The entries of a Hugging Face model folder that saveBackbone replaces: the weights in any layout transformers
 * reads first (single file or shards), config.json and the tokenizer files it writes. A stale shard index next to a
 * new model.safetensors would describe other weights; a tokenizer.json left from another model would be wrong.
 * Everything else (README.md, generation_config.json, a user's files, head files) is kept.
 */
export function hfFolderOwns(name: string): boolean {
  return (
    ['config.json', 'model.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json'].includes(name) ||
    /^model-\d+-of-\d+\.safetensors$/.test(name)
  );
}

/**
 * @internal Writes a Hugging Face model folder: model.safetensors (F32, metadata {"format": "pt"} as
 * save_pretrained writes it, which transformers checks), config.json, and the tokenizer files when there are any.
 * The folder is replaced all-or-nothing (saveFolder): after a crash it holds the previous save or this one.
 */
export async function writeHfFolder(dir: string, state: Array<RawTensor & { key: string }>, texts: HfFolderTexts): Promise<void> {
  const tensors = state.map((t) => ({ key: t.key, ...fromRaw(t) }));
  // The weights in pieces (the header, then a view of each tensor): a 500 MB model is never joined into one buffer.
  const weights = safetensorsParts(tensors, { format: 'pt' });
  await saveFolder(dir, hfFolderOwns, async (tmp) => {
    await writeFile(join(tmp, 'model.safetensors'), weights);
    await writeFile(join(tmp, 'config.json'), texts.config);
    if (texts.tokenizer) await writeFile(join(tmp, 'tokenizer.json'), texts.tokenizer);
    if (texts.tokenizerConfig) await writeFile(join(tmp, 'tokenizer_config.json'), texts.tokenizerConfig);
  });
}

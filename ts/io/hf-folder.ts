import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { fromRaw, type RawTensor } from '../native/index.js';
import { atomicWrite } from './atomic.js';
import { safetensorsParts } from './safetensors.js';

/** What a Hugging Face model folder holds besides the weights: the texts stored with the model. */
export interface HfFolderTexts {
  config: string;
  tokenizer: string | null;
  tokenizerConfig: string | null;
}

/**
 * @internal Writes a Hugging Face model folder: model.safetensors (F32, metadata {"format": "pt"} as
 * save_pretrained writes it, which transformers checks), config.json, and the tokenizer files when there are any.
 * Each file is written atomically, so a crash leaves either the previous file or the new one.
 */
export async function writeHfFolder(dir: string, state: Array<RawTensor & { key: string }>, texts: HfFolderTexts): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = state.map((t) => ({ key: t.key, ...fromRaw(t) }));
  await atomicWrite(join(dir, 'model.safetensors'), safetensorsParts(tensors, { format: 'pt' }));
  await atomicWrite(join(dir, 'config.json'), texts.config);
  if (texts.tokenizer) await atomicWrite(join(dir, 'tokenizer.json'), texts.tokenizer);
  if (texts.tokenizerConfig) await atomicWrite(join(dir, 'tokenizer_config.json'), texts.tokenizerConfig);
}

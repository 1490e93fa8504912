// The embedded default model (models/tiny-gpt2-en, made by scripts/pretrain.mjs) and the GPT-2 weight layout it is
// stored in. Everything that knows how that folder is loaded lives here, so that switching to loading the Hugging Face
// folder directly is a change in one place.
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ModelConfig } from './config.js';
import { TransformerHeadsError } from './errors.js';
import { loadHeaded, type HeadedModel, type LoadHeadedOptions } from './headed.js';
import type { NativeHeaded } from './native.js';
import { readSafetensors, type NamedTensor } from './safetensors.js';
import { fromRaw } from './tensor.js';

/** Where `npm run pretrain` writes the embedded model: a Hugging Face GPT-2 folder inside this package. */
export const DEFAULT_MODEL_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny-gpt2-en');

/** What training.json records about the embedded model (snake_case, as written). */
export interface EmbeddedModelInfo {
  /** The random-init TorchScript archive the weights were trained from, relative to the model folder. */
  init_archive: string;
  [key: string]: unknown;
}

// Hugging Face's GPT-2 Conv1D projections store their weight as [in, out]; the native core keeps [out, in].
const CONV1D = /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;

function transpose2d(t: NamedTensor): NamedTensor {
  const [r, c] = t.shape as [number, number];
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j]!;
  return { key: t.key, data: out, shape: [c, r] };
}

/** The Hugging Face state-dict names of a GPT2LMHeadModel's weights (the tied lm_head.weight omitted, as save_pretrained does). */
export function gpt2WeightNames(config: Pick<ModelConfig, 'numLayers'>): string[] {
  const names = ['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.ln_f.weight', 'transformer.ln_f.bias'];
  for (let i = 0; i < config.numLayers; i++) {
    for (const m of ['ln_1', 'ln_2', 'attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']) {
      names.push(`transformer.h.${i}.${m}.weight`, `transformer.h.${i}.${m}.bias`);
    }
  }
  return names;
}

/**
 * Every backbone weight of a fully finetuned GPT-2 (loaded with `freezeBaseModel: false` and a trainable head named
 * 'lm_head'), by Hugging Face name and in Hugging Face's layout (Conv1D weights [in, out]), ready for
 * encodeSafetensors: a model.safetensors that transformers' GPT2LMHeadModel loads.
 */
export function gpt2StateDict(model: HeadedModel): NamedTensor[] {
  if (model.config.modelType !== 'gpt2') {
    throw new TransformerHeadsError(`gpt2StateDict needs a GPT-2 model, got model_type '${model.config.modelType}'`, 'ERR_TH_CONFIG');
  }
  // The public API has no reader for all backbone weights yet: trainedBackboneState() gives the trainable ones
  // except the LM head's weight, which on tied GPT-2 is wte and is read as the 'lm_head' head's weight.
  const native = (model as unknown as { _live(): NativeHeaded })._live();
  const tensors: NamedTensor[] = native.trainedBackboneState().map((t) => {
    const c = fromRaw(t);
    return { key: t.key, data: Float32Array.from(c.data), shape: c.shape };
  });
  const lm = model.heads.some((h) => h.name === 'lm_head') ? model.headWeights('lm_head').find((t) => t.key === 'lins.0.weight') : undefined;
  if (lm) tensors.push({ key: 'transformer.wte.weight', data: Float32Array.from(lm.data), shape: lm.shape });
  const byKey = new Map(tensors.map((t) => [t.key, t]));
  const missing = gpt2WeightNames(model.config).filter((k) => !byKey.has(k));
  if (missing.length) {
    throw new TransformerHeadsError(
      `only trainable backbone weights can be read back, and ${missing.length} are not (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''}): ` +
        "load the model with freezeBaseModel: false and a trainable head named 'lm_head'",
      'ERR_TH_CONFIG',
    );
  }
  return gpt2WeightNames(model.config).map((k) => {
    const t = byKey.get(k)!;
    return CONV1D.test(k) ? transpose2d(t) : t;
  });
}

/** Replaces a GPT-2 model's backbone weights with Hugging Face-named, Hugging Face-layout tensors (all of them). */
export function loadGpt2StateDict(model: HeadedModel, tensors: NamedTensor[]): void {
  const byKey = new Map(tensors.map((t) => [t.key.startsWith('transformer.') ? t.key : `transformer.${t.key}`, t]));
  const missing = gpt2WeightNames(model.config).filter((k) => !byKey.has(k));
  if (missing.length) throw new TransformerHeadsError(`the weights lack ${missing.length} tensors of this model (${missing.slice(0, 3).join(', ')})`, 'ERR_TH_CONFIG');
  const native: NamedTensor[] = [];
  for (const [k, t] of byKey) {
    if (k === 'transformer.lm_head.weight' || k === 'lm_head.weight') continue; // tied to wte
    native.push(CONV1D.test(k) ? { ...transpose2d(t), key: k } : { ...t, key: k });
  }
  model.loadBackboneWeights(native);
}

/** training.json of a model folder made by scripts/pretrain.mjs. */
export async function readEmbeddedModelInfo(dir: string = DEFAULT_MODEL_DIR): Promise<EmbeddedModelInfo> {
  let text: string;
  try {
    text = await readFile(join(dir, 'training.json'), 'utf8');
  } catch (e) {
    throw new TransformerHeadsError(
      `no embedded model in '${dir}' (${(e as Error).message}); build it with \`npm run pretrain\` (a few minutes on 2 cores)`,
      'ERR_TH_FILE',
      { cause: e },
    );
  }
  return JSON.parse(text) as EmbeddedModelInfo;
}

/**
 * Loads the embedded model (or another folder written by scripts/pretrain.mjs) with heads, as loadHeaded does.
 * Until Hugging Face folders load directly, this loads the random-init TorchScript archive the model was trained
 * from (named in training.json) and puts the trained weights of model.safetensors into it.
 */
export async function loadEmbeddedModel(options: LoadHeadedOptions, dir: string = DEFAULT_MODEL_DIR): Promise<HeadedModel> {
  if (options?.quantization) {
    throw new TransformerHeadsError('the embedded model cannot be quantized yet (its weights are loaded after the backbone is built)', 'ERR_TH_CONFIG');
  }
  const info = await readEmbeddedModelInfo(dir);
  const weights = await readSafetensors(join(dir, 'model.safetensors'));
  const model = await loadHeaded(resolve(dir, info.init_archive), options);
  try {
    loadGpt2StateDict(model, weights);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

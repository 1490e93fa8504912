// Building a HeadedModel: new heads (loadHeaded), saved heads in the Python library's layout (headFolder), LoRA
// adapters on a possibly quantized backbone (createHeadedQLoRA), and PEFT adapter folders (loadLoraWithHeads).
import { join } from 'node:path';

import { invalidArg, nativeCall, TransformerHeadsError } from '../errors.js';
import { hubOptionsOf, isRepoId, kindOf, parseModelConfig, parseRepoRef, readJsonFile, readSafetensors, resolveModel, shown, type HubOptions } from '../io/index.js';
import { ensureNative, refuseAsar } from '../native/index.js';
import { positionMode, type Device, type Dtype } from './backbone.js';
import type { PositionMode } from '../native/index.js';
import { HeadedModel } from './headed.js';
import { fromSnakeCase, resolveHeadConfigs, toSnakeCase, type HeadConfig } from './heads.js';
import { checkLora, defaultTargetModules, nativeLoraOptions, parseAdapterConfig, peftDefaultTargetModules, type LoraConfig } from './lora.js';
import { checkQuantization, type QuantizationConfig } from './quantization.js';

/** `N` and `T`: the head names and label columns of `heads` (see HeadConfig); string when the heads come from a folder. */
export interface LoadHeadedOptions<N extends string = string, T extends string = string> extends HubOptions {
  /** Heads to attach (new, initialised N(0, 0.02) as Hugging Face does). Give this or headFolder. */
  heads?: HeadConfig<N, T>[];
  /** A folder written by HeadedModel.save(): head_configs.json and <name>.safetensors (or a Hub repo holding one). */
  headFolder?: string;
  /** With headFolder: new heads to attach next to the saved ones (e.g. the pretrained lm_head, for generation). */
  extraHeads?: HeadConfig[];
  device?: Device;
  dtype?: Dtype;
  /**
   * Position ids of batches without a position_ids column, in every forward, training step, evaluation and the
   * activation cache: 'from-mask' (default) or 'sequential' (0..T-1 in every row, as the Python library's forward;
   * use it to reproduce Python's numbers on padded batches). See LoadBackboneOptions.positions.
   */
  positions?: PositionMode;
  /** Train heads only; the backbone runs without autograd up to the deepest hooked layer. Defaults to true. */
  freezeBaseModel?: boolean;
  /** No training at all. Defaults to false. */
  onlyInference?: boolean;
  /** Normalise each head's loss by its running mean and std (Welford, 5 warm-up steps). Defaults to false. */
  adaptiveLoss?: boolean;
  /** Seed of the new heads' initial weights (and of new LoRA adapters). Defaults to 42. */
  seed?: number;
  /** Recompute each block in the backward pass instead of keeping its activations (training only). Defaults to false. */
  gradientCheckpointing?: boolean;
  /**
   * Quantize the backbone's block projections (bitsandbytes NF4 / FP4 blockwise 4-bit, or 8-bit row-wise); heads,
   * norms, embeddings and the LM head stay dense. Needs a frozen backbone (or LoRA, see createHeadedQLoRA).
   */
  quantization?: QuantizationConfig;
}

/** Reads head_configs.json (the Python library's format) from a folder. */
export async function readHeadConfigs(folder: string): Promise<HeadConfig[]> {
  if (typeof folder !== 'string' || !folder) invalidArg('headFolder', 'a folder path', folder);
  const path = join(folder, 'head_configs.json');
  const parsed = (await readJsonFile(path, 'head config file', { missing: 'null' })) as Record<string, unknown> | null;
  if (parsed === null) throw new TransformerHeadsError(`no head_configs.json in '${folder}': it is not a head folder (written by save())`, 'ERR_TH_FILE');
  const out: HeadConfig[] = [];
  for (const [key, o] of Object.entries(parsed)) {
    if (typeof o !== 'object' || o === null || Array.isArray(o)) {
      throw new TransformerHeadsError(`'${path}': head ${shown(key)} must be an object of head config fields, got ${kindOf(o)}`, 'ERR_TH_CONFIG');
    }
    out.push(fromSnakeCase(o as Record<string, unknown>, `'${path}'`));
  }
  if (out.length === 0) throw new TransformerHeadsError(`'${path}' lists no heads`, 'ERR_TH_CONFIG');
  return out;
}

/**
 * Loads a model (TorchScript archive or Hugging Face model folder) with heads: new ones from `heads`, or saved ones from `headFolder`
 * (predictions after reload are bit-identical to before saving). With literal `heads`, the model's type carries their
 * names (N) and label columns (N and the targets, T): a misspelt head name or label column is a compile error.
 */
export async function loadHeaded<const N extends string = string, const T extends string = never>(
  modelPath: string,
  options: LoadHeadedOptions<N, T>,
): Promise<HeadedModel<N, N | T>> {
  if (typeof modelPath !== 'string' || !modelPath) invalidArg('modelPath', 'a non-empty string', modelPath);
  if (typeof options !== 'object' || options === null) invalidArg('options', 'an object with heads or headFolder', options);
  if ((options.heads === undefined) === (options.headFolder === undefined)) {
    throw new TransformerHeadsError('give exactly one of heads and headFolder', 'ERR_TH_CONFIG');
  }
  let headFolder = options.headFolder;
  if (headFolder !== undefined) {
    // the revision option is the model's; a heads repository takes its own as 'org/name@revision'
    headFolder = await resolveModel(headFolder, { ...hubOptionsOf(options), revision: undefined, files: 'heads' });
  }
  const heads = options.heads ?? (await readHeadConfigs(headFolder!));
  return typedHeads(buildHeaded(modelPath, heads, { ...options, ...(headFolder !== undefined ? { headFolder } : {}) }, {}));
}

/** The model built from a caller's heads, typed by their names and label columns (string when read from a folder). */
function typedHeads<N extends string, T extends string>(model: Promise<HeadedModel>): Promise<HeadedModel<N, N | T>> {
  return model as unknown as Promise<HeadedModel<N, N | T>>;
}

async function buildHeaded(
  modelPath: string,
  heads: HeadConfig[],
  options: LoadHeadedOptions,
  extra: { lora?: LoraConfig; peftDefaultTargets?: boolean; fullyTrainedHeads?: boolean; baseModelNameOrPath?: string },
): Promise<HeadedModel> {
  refuseAsar(modelPath);
  if (options.headFolder) refuseAsar(options.headFolder, 'head folder');
  const freezeBaseModel = options.freezeBaseModel ?? true;
  const onlyInference = options.onlyInference ?? false;
  const quantization = options.quantization === undefined ? null : checkQuantization(options.quantization);
  if (quantization && !freezeBaseModel && !extra.lora && !onlyInference) {
    throw new TransformerHeadsError(
      'a quantized backbone cannot be fully finetuned (freezeBaseModel: false), as in the Python library; freeze it, or train LoRA adapters on it with createHeadedQLoRA',
      'ERR_TH_CONFIG',
    );
  }
  const lora = extra.lora ? checkLora(extra.lora, null) : null;
  const added = new Set<string>();
  if (options.extraHeads !== undefined && options.extraHeads !== null) {
    if (!options.headFolder) throw new TransformerHeadsError('extraHeads adds heads to those of headFolder; without a folder, list every head in heads', 'ERR_TH_CONFIG');
    if (!Array.isArray(options.extraHeads)) invalidArg('options.extraHeads', 'an array of head configs', options.extraHeads);
    for (const h of options.extraHeads) added.add(h.name);
    heads = [...heads, ...options.extraHeads];
  }
  const positions = positionMode(options.positions);
  const resolved = resolveHeadConfigs(heads); // model-independent checks first: clearer errors, no load wasted
  const local = await resolveModel(modelPath, hubOptionsOf(options));
  const native = await nativeCall(async () =>
    (await ensureNative()).loadHeaded(local, {
      device: options.device ?? 'cpu',
      dtype: options.dtype ?? 'float32',
      positions,
      heads: JSON.stringify(resolved.map(toSnakeCase)),
      freezeBase: freezeBaseModel,
      onlyInference,
      adaptiveLoss: options.adaptiveLoss ?? false,
      seed: options.seed ?? 42,
      ...(quantization ? { quantization } : {}),
      ...(lora ? { lora: nativeLoraOptions(lora, options.seed ?? 42, extra.peftDefaultTargets ?? false) } : {}),
      ...(extra.fullyTrainedHeads !== undefined ? { fullyTrainedHeads: extra.fullyTrainedHeads } : {}),
      gradientCheckpointing: options.gradientCheckpointing ?? false,
    }),
  );
  const info = native.info();
  const modelType = parseModelConfig(info.normalizedConfig, info.config).modelType;
  const model = new HeadedModel(native, local, heads, {
    freezeBaseModel: freezeBaseModel || lora !== null,
    onlyInference,
    quantization,
    lora: lora ? { ...lora, targetModules: lora.targetModules.length ? lora.targetModules : extra.peftDefaultTargets ? peftDefaultTargetModules(modelType) : defaultTargetModules(modelType) } : null,
    // a Hub model is named by its id (what PEFT and transformers load it by), not by the cache folder
    baseModelNameOrPath: extra.baseModelNameOrPath ?? (local === modelPath ? undefined : options.revision && !modelPath.includes('@') ? `${modelPath}@${options.revision}` : modelPath),
  });
  if (options.headFolder) {
    try {
      for (const h of model.heads) {
        if (h.name === 'lm_head' || added.has(h.name)) continue;
        await model.loadHeadWeights(h.name, await readSafetensors(join(options.headFolder, `${h.name}.safetensors`)));
      }
    } catch (e) {
      model.dispose();
      throw e instanceof TransformerHeadsError ? e : new TransformerHeadsError((e as Error).message, 'ERR_TH_CONFIG', { cause: e });
    }
  }
  return model;
}

/**
 * Options of createHeadedQLoRA(): those of loadHeaded() with new heads, plus the LoRA adapters to train and an optional
 * quantization of the backbone.
 */
export interface CreateHeadedQLoRAOptions<N extends string = string, T extends string = string> extends Omit<LoadHeadedOptions<N, T>, 'headFolder' | 'freezeBaseModel'> {
  heads: HeadConfig<N, T>[];
  lora: LoraConfig;
  /** Train the (trainable) heads with the adapters. Defaults to true. */
  fullyTrainedHeads?: boolean;
  /** Recompute each block in the backward pass instead of keeping its activations (long sequences). Defaults to false. */
  gradientCheckpointing?: boolean;
  /** base_model_name_or_path written in adapter_config.json. Defaults to the model path (or Hub id). */
  baseModelNameOrPath?: string;
}

/**
 * A (optionally 4/8-bit quantized) backbone with LoRA adapters on its projections and new heads: the Python
 * library's create_headed_qlora. Only the adapters, the chosen biases and the heads train.
 */
export async function createHeadedQLoRA<const N extends string = string, const T extends string = never>(
  modelPath: string,
  options: CreateHeadedQLoRAOptions<N, T>,
): Promise<HeadedModel<N, N | T>> {
  if (typeof modelPath !== 'string' || !modelPath) invalidArg('modelPath', 'a non-empty string', modelPath);
  if (typeof options !== 'object' || options === null || !options.lora) invalidArg('options', 'an object with heads and lora', options);
  return typedHeads(
    buildHeaded(modelPath, options.heads, { ...options, freezeBaseModel: true }, {
      lora: options.lora,
      fullyTrainedHeads: options.fullyTrainedHeads ?? true,
      baseModelNameOrPath: options.baseModelNameOrPath,
    }),
  );
}

/**
 * Options of loadLoraWithHeads(): the base model (when the adapter folder does not name a reachable one), device, dtype
 * and quantization.
 */
export interface LoadLoraWithHeadsOptions extends Omit<LoadHeadedOptions, 'heads' | 'headFolder' | 'freezeBaseModel'> {
  /**
   * The base model (a path or a Hub id); defaults to base_model_name_or_path from adapter_config.json, at the
   * `revision` that adapter_config.json names when it is a Hub id. `revision` is the adapter repository's.
   */
  modelPath?: string;
  fullyTrainedHeads?: boolean;
}

/**
 * Loads a folder written by save() on a LoRA model (or by the Python library / PEFT): adapter_config.json,
 * adapter_model.safetensors, head_configs.json and the head files. Every adapter_config.json field PEFT defines is
 * type-checked; rank_pattern, alpha_pattern, layers_to_transform and layers_pattern apply as in PEFT, and fields this
 * library cannot apply as PEFT does (use_dora, other peft_types, modules_to_save other than the heads, ...) are
 * refused with ERR_TH_CONFIG. Unknown keys are ignored, as PEFT ignores them. The folder may be a Hub repository
 * ("org/name[@revision]"), and so may its base model.
 */
export async function loadLoraWithHeads(dirOrName: string, options: LoadLoraWithHeadsOptions = {}): Promise<HeadedModel> {
  if (typeof dirOrName !== 'string' || !dirOrName) invalidArg('dir', 'a folder path or a Hub repo id', dirOrName);
  const dir = await resolveModel(dirOrName, { ...hubOptionsOf(options), files: 'heads' });
  const cfgPath = join(dir, 'adapter_config.json');
  const cfg = (await readJsonFile(cfgPath, 'adapter config file', { missing: 'null' })) as Record<string, unknown> | null;
  if (cfg === null) throw new TransformerHeadsError(`no readable adapter_config.json in '${dir}': it is not a LoRA folder (written by save() on a LoRA model, or by PEFT)`, 'ERR_TH_FILE');
  const heads = await readHeadConfigs(dir);
  const parsed = parseAdapterConfig(cfg, cfgPath, heads.map((h) => h.name));
  let modelPath = options.modelPath ?? parsed.baseModelNameOrPath ?? '';
  if (!modelPath) throw new TransformerHeadsError(`adapter_config.json in '${dir}' names no base model; pass modelPath`, 'ERR_TH_CONFIG');
  // PEFT records the base model's revision next to its name
  const revision = parsed.revision;
  if (options.modelPath === undefined && revision && isRepoId(modelPath) && parseRepoRef(modelPath)?.revision === null) {
    modelPath = `${modelPath}@${revision}`;
  }
  const lora = parsed.lora;
  const model = await buildHeaded(modelPath, heads, { ...options, revision: undefined, freezeBaseModel: true, headFolder: dir }, {
    lora,
    peftDefaultTargets: parsed.peftDefaultTargets,
    fullyTrainedHeads: options.fullyTrainedHeads ?? true,
    baseModelNameOrPath: modelPath,
  });
  try {
    // Heads listed in modules_to_save are also in the adapter file; their <name>.safetensors (loaded above) wins, as
    // in the Python library, which loads the head files after the adapter.
    const saved = (k: string) => parsed.modulesToSave.length > 0 && k.startsWith('heads.');
    const tensors = (await readSafetensors(join(dir, 'adapter_model.safetensors')))
      .map((t) => ({ ...t, key: t.key.replace(/^base_model\.model\./, '') }))
      .filter((t) => !saved(t.key));
    const lora2 = tensors.filter((t) => t.key.includes('lora_')).map((t) => ({ ...t, key: t.key.replace(/\.lora_([AB])\.[^.]+\.weight$/, '.lora_$1.weight') }));
    await model.loadLoraWeights(lora2);
    const biases = tensors.filter((t) => !t.key.includes('lora_') && t.key.endsWith('.bias'));
    if (biases.length) await model.loadBackboneWeights(biases);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

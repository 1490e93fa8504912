import { invalidArg, TransformerHeadsError } from '../errors.js';
import { kindOf, parseRepoRef, shown } from '../io/index.js';

/** LoRA adapter settings, as PEFT's LoraConfig (camelCase). */
export interface LoraConfig {
  /** Rank. Defaults to 8. */
  r?: number;
  /** Scaling numerator: scaling = alpha / r (alpha / sqrt(r) with useRslora). Defaults to 8. */
  alpha?: number;
  /** Dropout on the adapter input while training. Defaults to 0. */
  dropout?: number;
  /** Which biases train with the adapters: 'none' (default), 'all', 'lora_only'. */
  bias?: 'none' | 'all' | 'lora_only';
  /**
   * Module names or name suffixes (a module matches when its full name equals an entry or ends with "." + entry, as
   * in PEFT); defaults to every projection of the blocks (GPT-2 c_attn/c_proj/c_fc, Llama q/k/v/o/gate/up/down).
   * 'lm_head' adapts the model's output projection (the head named 'lm_head', which the model must then have), as
   * Python's find_all_linear_names picks it for unquantized models; it is never adapted unless named. Must not be empty.
   */
  targetModules?: string[];
  useRslora?: boolean;
  /**
   * Per-module ranks (PEFT `rank_pattern`). Each key is a regular expression matched against the end of a module's
   * full name ("transformer.h.0.attn.c_attn", "model.layers.3.self_attn.q_proj"), either the whole name or the part
   * after a "."; the first matching key in insertion order gives that module's rank, the others use `r`. Example:
   * `{ 'c_fc': 16, 'h\\.0\\.attn\\.c_attn': 2 }`. Keys that match no module are ignored, as in PEFT.
   */
  rankPattern?: Record<string, number>;
  /** Per-module alphas (PEFT `alpha_pattern`), matched like rankPattern but on their own: scaling = alpha / r per module. */
  alphaPattern?: Record<string, number>;
  /**
   * Only the blocks with these indices (0-based) get adapters (PEFT `layers_to_transform`); defaults to every block.
   * The index is the first numbered segment of the module name (or the one after `layersPattern`).
   */
  layersToTransform?: number | number[];
  /**
   * With layersToTransform: the name (a regular expression) of the module list whose numbered children are the blocks
   * (PEFT `layers_pattern`: 'h' for GPT-2, 'layers' for Llama). Not needed for the models this library runs.
   */
  layersPattern?: string | string[];
}

/** A LoRA configuration with every default filled in (HeadedModel.lora). */
export interface ResolvedLoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  bias: 'none' | 'all' | 'lora_only';
  targetModules: string[];
  useRslora: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  /** null: every block. */
  layersToTransform: number[] | null;
  /** null: the first numbered segment of the module name. */
  layersPattern: string[] | null;
}

/** @internal */
export function defaultTargetModules(modelType: string): string[] {
  return modelType === 'gpt2' ? ['c_attn', 'c_proj', 'c_fc'] : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
}

/**
 * @internal PEFT's default when an adapter_config.json has `target_modules: null`
 * (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING); the core applies the same table (native/core/lora.cpp).
 */
export function peftDefaultTargetModules(modelType: string): string[] {
  return modelType === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj'];
}

// Pattern keys are handed to the core's ECMAScript std::regex; JavaScript's RegExp accepts the same core syntax, so a
// key it refuses is refused here, before a model is loaded. Over-long keys are refused as unreasonable for a name.
function checkPatternKey(what: string, key: string): void {
  if (key === '' || key.length > 1000) throw new TransformerHeadsError(`${what} keys must be regular expressions of 1 to 1000 characters, got ${shown(key)}`, 'ERR_TH_CONFIG');
  try {
    new RegExp(key);
  } catch {
    throw new TransformerHeadsError(`${what} key ${shown(key)} is not a valid regular expression`, 'ERR_TH_CONFIG');
  }
}

function checkPattern(what: string, p: unknown, ok: (v: unknown) => boolean, accepted: string): Record<string, number> {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) {
    throw new TransformerHeadsError(`${what} must be an object { pattern: ${accepted} }, got ${kindOf(p)} ${shown(p)}`, 'ERR_TH_CONFIG');
  }
  for (const [k, v] of Object.entries(p)) {
    checkPatternKey(what, k);
    if (!ok(v)) throw new TransformerHeadsError(`${what}[${shown(k)}] must be ${accepted}, got ${kindOf(v)} ${shown(v)}`, 'ERR_TH_CONFIG');
  }
  return { ...(p as Record<string, number>) };
}

// Ranks above 65536 are refused: A and B would take r * (in + out) floats per module (gigabytes for any real model),
// far beyond any useful rank, which never exceeds min(in, out).
const MAX_RANK = 65536;
const isPosInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0 && (v as number) <= MAX_RANK;
const isFiniteNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
const isIndex = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 1e9;

/** @internal Fills the defaults and checks the values (ERR_TH_CONFIG naming the field). */
export function checkLora(l: LoraConfig, modelType: string | null): ResolvedLoraConfig {
  if (typeof l !== 'object' || l === null) invalidArg('lora', 'an object { r, alpha, ... }', l);
  const r = l.r ?? 8;
  if (!isPosInt(r)) throw new TransformerHeadsError(`lora.r must be a positive integer (at most ${MAX_RANK}), got ${JSON.stringify(r)}`, 'ERR_TH_CONFIG');
  const alpha = l.alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new TransformerHeadsError(`lora.alpha must be a number, got ${JSON.stringify(alpha)}`, 'ERR_TH_CONFIG');
  const dropout = l.dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw new TransformerHeadsError(`lora.dropout must be in [0, 1), got ${JSON.stringify(dropout)}`, 'ERR_TH_CONFIG');
  const bias = l.bias ?? 'none';
  if (!['none', 'all', 'lora_only'].includes(bias)) throw new TransformerHeadsError(`lora.bias must be 'none', 'all' or 'lora_only', got '${bias}'`, 'ERR_TH_CONFIG');
  // PEFT reads target_modules: [] as "no module": an adapter that adapts nothing. Refused rather than read as "every module".
  if (Array.isArray(l.targetModules) && l.targetModules.length === 0) {
    throw new TransformerHeadsError('lora.targetModules must name at least one module (leave it out for every block projection)', 'ERR_TH_CONFIG');
  }
  const targetModules = l.targetModules ?? (modelType ? defaultTargetModules(modelType) : []);
  if (!Array.isArray(targetModules) || targetModules.some((t) => typeof t !== 'string' || !t)) invalidArg('lora.targetModules', 'an array of module names', targetModules);
  const useRslora = l.useRslora ?? false;
  if (typeof useRslora !== 'boolean') throw new TransformerHeadsError(`lora.useRslora must be true or false, got ${kindOf(useRslora)} ${shown(useRslora)}`, 'ERR_TH_CONFIG');
  const rankPattern = checkPattern('lora.rankPattern', l.rankPattern ?? {}, isPosInt, `a positive integer rank (at most ${MAX_RANK})`);
  const alphaPattern = checkPattern('lora.alphaPattern', l.alphaPattern ?? {}, isFiniteNum, 'a finite number');
  let layersToTransform: number[] | null = null;
  if (l.layersToTransform !== undefined && l.layersToTransform !== null) {
    const v = l.layersToTransform;
    if (!(isIndex(v) || (Array.isArray(v) && v.length > 0 && v.every(isIndex)))) {
      throw new TransformerHeadsError(`lora.layersToTransform must be a block index (an integer >= 0) or a non-empty array of them, got ${kindOf(v)} ${shown(v)}`, 'ERR_TH_CONFIG');
    }
    layersToTransform = Array.isArray(v) ? [...v] : [v];
  }
  let layersPattern: string[] | null = null;
  if (l.layersPattern !== undefined && l.layersPattern !== null) {
    const v = l.layersPattern;
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || list.some((p) => typeof p !== 'string' || p === '')) {
      throw new TransformerHeadsError(`lora.layersPattern must be a module-list name ('h', 'layers') or a non-empty array of them, got ${kindOf(v)} ${shown(v)}`, 'ERR_TH_CONFIG');
    }
    for (const p of list) checkPatternKey('lora.layersPattern', p);
    // PEFT raises the same: the pattern only says where the block index is.
    if (!layersToTransform) throw new TransformerHeadsError('lora.layersPattern needs lora.layersToTransform (it only says where the block index is in a module name)', 'ERR_TH_CONFIG');
    layersPattern = [...list];
  }
  return { r, alpha, dropout, bias, targetModules, useRslora, rankPattern, alphaPattern, layersToTransform, layersPattern };
}

/** @internal The LoRA options as the native loadHeaded takes them: patterns as ordered [key, value] pairs. */
export function nativeLoraOptions(l: ResolvedLoraConfig, seed: number, peftDefaultTargets: boolean): Record<string, unknown> {
  return {
    r: l.r,
    alpha: l.alpha,
    dropout: l.dropout,
    bias: l.bias,
    useRslora: l.useRslora,
    targetModules: l.targetModules.length ? l.targetModules : undefined,
    peftDefaultTargets,
    rankPattern: Object.entries(l.rankPattern),
    alphaPattern: Object.entries(l.alphaPattern),
    layersToTransform: l.layersToTransform ?? undefined,
    layersPattern: l.layersPattern ?? undefined,
    seed,
  };
}

// Python's float repr for the config numbers PEFT writes (0.0, 16, 0.05).
function pyNum(x: number, float: boolean): string {
  return float && Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** adapter_config.json as PEFT 0.8 writes it: every LoraConfig field, sorted keys, indent 2, inference_mode true. */
export function adapterConfigJson(l: ResolvedLoraConfig, base: string, fanInFanOut: boolean): string {
  // A Hub base model "org/name@revision" is written as PEFT writes it: the id, and the revision apart.
  const hub = parseRepoRef(base);
  const cfg: Record<string, unknown> = {
    alpha_pattern: l.alphaPattern,
    auto_mapping: null,
    base_model_name_or_path: hub?.revision ? hub.repoId : base,
    bias: l.bias,
    fan_in_fan_out: fanInFanOut,
    inference_mode: true,
    init_lora_weights: true,
    // PEFT 0.8 reads one layers_pattern as a string; a list only when there are several.
    layers_pattern: l.layersPattern === null ? null : l.layersPattern.length === 1 ? l.layersPattern[0] : l.layersPattern,
    layers_to_transform: l.layersToTransform,
    loftq_config: {},
    lora_alpha: l.alpha,
    lora_dropout: l.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: l.r,
    rank_pattern: l.rankPattern,
    revision: hub?.revision ?? null,
    target_modules: [...l.targetModules].sort(),
    task_type: 'CAUSAL_LM',
    use_rslora: l.useRslora,
  };
  return JSON.stringify(cfg, null, 2).replace(/"lora_dropout": (\S+?),/, (_, v) => `"lora_dropout": ${pyNum(Number(v), true)},`);
}

/** @internal An adapter_config.json read by parseAdapterConfig. */
export interface ParsedAdapterConfig {
  lora: LoraConfig;
  /** target_modules was null: PEFT's default modules for the model type (peftDefaultTargetModules). */
  peftDefaultTargets: boolean;
  baseModelNameOrPath: string | null;
  revision: string | null;
  /** modules_to_save entries, all of them heads of head_configs.json (their tensors in the adapter file are skipped). */
  modulesToSave: string[];
}

/*
 * adapter_config.json fields (PEFT LoraConfig and PeftConfig, v0.8.2 and HEAD 5d602fd), and what this reader does:
 *
 * Implemented (they change the computation, as PEFT applies them):
 *   peft_type ("LORA", required as PEFT requires it), r, lora_alpha, use_rslora, bias ('none' | 'all' | 'lora_only'),
 *   target_modules (a non-empty list; "all-linear" = every block projection; null = PEFT's per-model default),
 *   rank_pattern, alpha_pattern, layers_to_transform ([] = every block, as PEFT), layers_pattern,
 *   lora_dropout (training only).
 *   modules_to_save: accepted when every entry names a head of head_configs.json (or is "heads"): the heads are
 *   trained and saved in <name>.safetensors, which is what the Python library loads after the adapter, so their copy
 *   in the adapter file is skipped. Any other module (lm_head, embeddings, a classifier of the base model) is refused.
 * Accepted, no effect here (PEFT itself does not use them to compute an adapted forward):
 *   base_model_name_or_path and revision (the default base model), task_type (the PeftModel wrapper class),
 *   inference_mode, auto_mapping, peft_version, runtime_config, megatron_config / megatron_core (tensor-parallel
 *   layers with the same math), loftq_config / eva_config / corda_config / lora_ga_config (used by their init modes
 *   only), qalora_group_size (only with use_qalora), ensure_weight_tying (only with modules_to_save embeddings),
 *   fan_in_fan_out: PEFT overrides it by module type (true for GPT-2's Conv1D, false for Linear) and it only
 *   decides whether the merged delta is transposed; lora_A [r, in] and lora_B [out, r] are the same either way.
 *   init_lora_weights true, false, "gaussian" or "eva": how fresh A/B are drawn, overwritten by the saved weights.
 * Refused with ERR_TH_CONFIG unless at their "off" value (not implemented: the forward would differ from PEFT's):
 *   use_dora, use_qalora, lora_bias, exclude_modules, layer_replication, target_parameters, trainable_token_indices,
 *   alora_invocation_tokens, velora_config, kasa_config, monteclora_config, arrow_config, use_bdlora, a regular
 *   expression as target_modules, init_lora_weights modes that rewrite the base weights (pissa, olora, corda, loftq,
 *   lora_ga, ...), other peft_type values.
 * Unknown keys are ignored, as PEFT ignores them (with a warning) when it reads a config from a newer version.
 */
const isFalse = (v: unknown) => v === false;
const isEmptyList = (v: unknown) => Array.isArray(v) && v.length === 0;
const OFF_FIELDS: Record<string, [(v: unknown) => boolean, string]> = {
  use_dora: [isFalse, 'false or null'],
  use_qalora: [isFalse, 'false or null'],
  lora_bias: [isFalse, 'false or null'],
  exclude_modules: [isEmptyList, 'null or []'],
  layer_replication: [isEmptyList, 'null or []'],
  target_parameters: [isEmptyList, 'null or []'],
  trainable_token_indices: [() => false, 'null'],
  alora_invocation_tokens: [() => false, 'null'],
  velora_config: [() => false, 'null'],
  kasa_config: [() => false, 'null'],
  monteclora_config: [() => false, 'null'],
  arrow_config: [() => false, 'null'],
  use_bdlora: [() => false, 'null'],
};

const IGNORED_FIELDS: Record<string, [(v: unknown) => boolean, string]> = {
  base_model_name_or_path: [(v) => typeof v === 'string', 'a string or null'],
  revision: [(v) => typeof v === 'string', 'a string or null'],
  task_type: [(v) => typeof v === 'string', 'a string or null'],
  inference_mode: [(v) => typeof v === 'boolean', 'true or false'],
  fan_in_fan_out: [(v) => typeof v === 'boolean', 'true or false'],
  auto_mapping: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  peft_version: [(v) => typeof v === 'string', 'a string or null'],
  runtime_config: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  megatron_config: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  megatron_core: [(v) => typeof v === 'string', 'a string or null'],
  loftq_config: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  eva_config: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  corda_config: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  lora_ga_config: [(v) => typeof v === 'object' && !Array.isArray(v), 'an object or null'],
  qalora_group_size: [(v) => Number.isInteger(v) && (v as number) > 0, 'a positive integer or null'],
  ensure_weight_tying: [(v) => typeof v === 'boolean', 'true or false'],
  init_lora_weights: [(v) => v === true || v === false || v === 'gaussian' || v === 'eva', 'true, false, "gaussian" or "eva" (modes that rewrite the base weights are not supported)'],
};

/**
 * @internal The one reader of a PEFT adapter_config.json: checks the type of every field it knows (see the table
 * above) and refuses, with ERR_TH_CONFIG naming the field, the value's type and what is accepted, what it cannot
 * apply as PEFT would. `headNames`: the heads of the folder's head_configs.json (for modules_to_save).
 */
export function parseAdapterConfig(cfg: unknown, path: string, headNames: readonly string[]): ParsedAdapterConfig {
  const where = `'${path}'`;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) {
    throw new TransformerHeadsError(`${where} must hold a JSON object of LoRA config fields, got ${kindOf(cfg)}`, 'ERR_TH_CONFIG');
  }
  const c = cfg as Record<string, unknown>;
  const bad = (k: string, accepted: string): never => {
    throw new TransformerHeadsError(`${where}: ${k} must be ${accepted}, got ${kindOf(c[k])} ${shown(c[k])}`, 'ERR_TH_CONFIG');
  };
  const has = (k: string) => c[k] !== undefined && c[k] !== null;
  for (const [k, [ok, accepted]] of Object.entries(IGNORED_FIELDS)) if (has(k) && !ok(c[k])) bad(k, accepted);
  for (const [k, [off, accepted]] of Object.entries(OFF_FIELDS)) {
    if (has(k) && !off(c[k])) {
      throw new TransformerHeadsError(`${where}: ${k} is ${kindOf(c[k])} ${shown(c[k])}, which is not supported: this library computes plain LoRA, so ${k} must be ${accepted}`, 'ERR_TH_CONFIG');
    }
  }
  if (!has('peft_type')) throw new TransformerHeadsError(`${where}: peft_type is missing; PEFT requires it, and only "LORA" adapters load`, 'ERR_TH_CONFIG');
  if (c.peft_type !== 'LORA') {
    if (typeof c.peft_type !== 'string') bad('peft_type', '"LORA"');
    throw new TransformerHeadsError(`${where}: peft_type ${shown(c.peft_type)} is not supported; only "LORA" adapters load`, 'ERR_TH_CONFIG');
  }
  const lora: LoraConfig = {};
  if (has('r')) lora.r = isPosInt(c.r) ? (c.r as number) : bad('r', `a positive integer (at most ${MAX_RANK})`);
  if (has('lora_alpha')) lora.alpha = isFiniteNum(c.lora_alpha) ? (c.lora_alpha as number) : bad('lora_alpha', 'a finite number');
  if (has('lora_dropout')) {
    lora.dropout = isFiniteNum(c.lora_dropout) && (c.lora_dropout as number) >= 0 && (c.lora_dropout as number) < 1 ? (c.lora_dropout as number) : bad('lora_dropout', 'a number in [0, 1)');
  }
  if (has('bias')) lora.bias = c.bias === 'none' || c.bias === 'all' || c.bias === 'lora_only' ? c.bias : bad('bias', '"none", "all" or "lora_only"');
  if (has('use_rslora')) lora.useRslora = typeof c.use_rslora === 'boolean' ? c.use_rslora : bad('use_rslora', 'true or false');
  let peftDefaultTargets = false;
  const tm = c.target_modules;
  if (tm === undefined || tm === null) peftDefaultTargets = true;
  else if (tm === 'all-linear') {
    // PEFT's shorthand: every linear layer but the output layer, i.e. every block projection (the default here).
  } else if (typeof tm === 'string') {
    throw new TransformerHeadsError(`${where}: target_modules as a regular expression (${shown(tm)}) is not supported; list the module names`, 'ERR_TH_CONFIG');
  } else if (Array.isArray(tm) && tm.length > 0 && tm.every((t) => typeof t === 'string' && t !== '')) lora.targetModules = [...new Set(tm as string[])];
  else if (Array.isArray(tm) && tm.length === 0) {
    // PEFT matches no module with an empty list: its adapter would do nothing. Refused rather than guessed.
    throw new TransformerHeadsError(`${where}: target_modules is an empty list, which adapts no module; list the module names`, 'ERR_TH_CONFIG');
  } else bad('target_modules', 'a non-empty list of module names, "all-linear" or null');
  if (has('rank_pattern')) {
    if (typeof c.rank_pattern !== 'object' || Array.isArray(c.rank_pattern)) bad('rank_pattern', 'an object { pattern: rank }');
    lora.rankPattern = c.rank_pattern as Record<string, number>;
  }
  if (has('alpha_pattern')) {
    if (typeof c.alpha_pattern !== 'object' || Array.isArray(c.alpha_pattern)) bad('alpha_pattern', 'an object { pattern: alpha }');
    lora.alphaPattern = c.alpha_pattern as Record<string, number>;
  }
  if (has('layers_to_transform')) {
    const v = c.layers_to_transform;
    if (!(isIndex(v) || (Array.isArray(v) && v.every(isIndex)))) bad('layers_to_transform', 'a block index (an integer >= 0), a list of them, or null');
    // PEFT (0.8.2 and HEAD): an empty list uses no layer filter
    if (!Array.isArray(v) || v.length > 0) lora.layersToTransform = v as number | number[];
  }
  if (has('layers_pattern')) {
    const v = c.layers_pattern;
    if (!(typeof v === 'string' || (Array.isArray(v) && v.every((p) => typeof p === 'string')))) bad('layers_pattern', 'a string, a list of strings, or null');
    // PEFT: an empty layers_pattern ("" or []) means "any layer pattern"; without layers_to_transform PEFT refuses one
    const list = (typeof v === 'string' ? [v] : (v as string[])).filter((p) => p !== '');
    if (list.length) {
      if (lora.layersToTransform === undefined) bad('layers_pattern', 'null when layers_to_transform is not given (PEFT refuses it too)');
      lora.layersPattern = list;
    }
  }
  const modulesToSave: string[] = [];
  if (has('modules_to_save')) {
    const v = c.modules_to_save;
    if (!Array.isArray(v) || !v.every((m) => typeof m === 'string')) bad('modules_to_save', 'a list of module names or null');
    for (const m of v as string[]) {
      const head = m.startsWith('heads.') ? m.slice('heads.'.length) : m;
      if (m !== 'heads' && !headNames.includes(head)) {
        throw new TransformerHeadsError(
          `${where}: modules_to_save names ${shown(m)}, which is not a head of head_configs.json; saving other base-model modules with the adapter is not supported`,
          'ERR_TH_CONFIG',
        );
      }
      modulesToSave.push(m);
    }
  }
  // Checks the patterns' values and keys and the layer list now, before any model is loaded.
  try {
    checkLora(lora, null);
  } catch (e) {
    if (e instanceof TransformerHeadsError) throw new TransformerHeadsError(`${where}: ${e.message.replace(/\blora\.(rankPattern|alphaPattern|layersPattern|layersToTransform)/g, (_, f: string) => f.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`))}`, 'ERR_TH_CONFIG');
    throw e;
  }
  return {
    lora,
    peftDefaultTargets,
    baseModelNameOrPath: has('base_model_name_or_path') ? (c.base_model_name_or_path as string) : null,
    revision: has('revision') ? (c.revision as string) : null,
    modulesToSave,
  };
}

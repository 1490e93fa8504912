import { invalidArg, TransformerHeadsError } from '../errors.js';
import { parseRepoRef } from '../io/index.js';

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
  /** Module names or name suffixes; defaults to every projection of the blocks (GPT-2 c_attn/c_proj/c_fc, Llama q/k/v/o/gate/up/down). */
  targetModules?: string[];
  useRslora?: boolean;
}

/** A LoraConfig with every default filled in. */
export type ResolvedLoraConfig = Required<LoraConfig>;

/** @internal */
export function defaultTargetModules(modelType: string): string[] {
  return modelType === 'gpt2' ? ['c_attn', 'c_proj', 'c_fc'] : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
}

/** @internal Fills the defaults and checks the values (ERR_TH_CONFIG naming the field). */
export function checkLora(l: LoraConfig, modelType: string | null): ResolvedLoraConfig {
  if (typeof l !== 'object' || l === null) invalidArg('lora', 'an object { r, alpha, ... }', l);
  const r = l.r ?? 8;
  if (!Number.isInteger(r) || r <= 0) throw new TransformerHeadsError(`lora.r must be a positive integer, got ${JSON.stringify(r)}`, 'ERR_TH_CONFIG');
  const alpha = l.alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new TransformerHeadsError(`lora.alpha must be a number, got ${JSON.stringify(alpha)}`, 'ERR_TH_CONFIG');
  const dropout = l.dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw new TransformerHeadsError(`lora.dropout must be in [0, 1), got ${JSON.stringify(dropout)}`, 'ERR_TH_CONFIG');
  const bias = l.bias ?? 'none';
  if (!['none', 'all', 'lora_only'].includes(bias)) throw new TransformerHeadsError(`lora.bias must be 'none', 'all' or 'lora_only', got '${bias}'`, 'ERR_TH_CONFIG');
  const targetModules = l.targetModules ?? (modelType ? defaultTargetModules(modelType) : []);
  if (!Array.isArray(targetModules) || targetModules.some((t) => typeof t !== 'string' || !t)) invalidArg('lora.targetModules', 'an array of module names', targetModules);
  return { r, alpha, dropout, bias, targetModules, useRslora: l.useRslora ?? false };
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
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: hub?.revision ? hub.repoId : base,
    bias: l.bias,
    fan_in_fan_out: fanInFanOut,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: l.alpha,
    lora_dropout: l.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: l.r,
    rank_pattern: {},
    revision: hub?.revision ?? null,
    target_modules: [...l.targetModules].sort(),
    task_type: 'CAUSAL_LM',
    use_rslora: l.useRslora,
  };
  return JSON.stringify(cfg, null, 2).replace(/"lora_dropout": (\S+?),/, (_, v) => `"lora_dropout": ${pyNum(Number(v), true)},`);
}

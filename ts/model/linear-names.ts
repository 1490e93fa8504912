// find_all_linear_names of the Python library (reference/formats.md section 1.6): the LoRA targets it picks when
// target_modules is None. Kept as Python computes it, including the unquantized GPT-2 case (only lm_head), so that a
// script moving from Python can ask for exactly Python's targets; this library's own default is defaultTargetModules.
import { invalidArg } from '../errors.js';

const LLAMA_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/**
 * The last name component of every module of the class Python's find_all_linear_names(bits, model) looks for, in a
 * fixed order (Python returns a set's arbitrary order): bitsandbytes' Linear4bit (bits 4) or Linear8bitLt (8), which
 * Hugging Face puts in place of every block projection (GPT-2's Conv1D included) but not of lm_head; or
 * torch.nn.Linear (32), which for GPT-2 is only lm_head (its block projections are Conv1D) and for the Llama family
 * is every projection plus lm_head. Heads are never listed.
 */
export function findAllLinearNames(bits: 4 | 8 | 32, model: string | { modelType: string } | { config: { modelType: string } }): string[] {
  if (bits !== 4 && bits !== 8 && bits !== 32) invalidArg('bits', '4, 8 or 32', bits);
  const modelType = typeof model === 'string' ? model : 'config' in model ? model.config.modelType : model?.modelType;
  if (typeof modelType !== 'string' || !modelType) invalidArg('model', "a model, its config, or its model_type ('gpt2', 'llama', ...)", model);
  const gpt2 = modelType === 'gpt2';
  if (bits === 32) return gpt2 ? ['lm_head'] : [...LLAMA_PROJECTIONS, 'lm_head'];
  return gpt2 ? ['c_attn', 'c_proj', 'c_fc'] : [...LLAMA_PROJECTIONS];
}

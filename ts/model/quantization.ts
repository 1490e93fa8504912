import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { Dtype } from './backbone.js';

/**
 * Quantization of the backbone's projections, as bitsandbytes does it: 4-bit NF4 / FP4 (optionally double-quantized) or
 * 8-bit.
 */
export interface QuantizationConfig {
  /** 4 or 8. */
  bits: 4 | 8;
  /** 4-bit code: 'nf4' (default) or 'fp4'. */
  quantType?: 'nf4' | 'fp4';
  /** Elements per absmax block (power of two, 32..4096). Defaults to 64. */
  blocksize?: number;
  /** Quantize the absmax values too (8-bit, blocks of 256): about 4.13 instead of 4.5 bits per weight. Defaults to false. */
  doubleQuant?: boolean;
  /** Dtype the dequantized weights multiply in. Defaults to 'float32'. */
  computeDtype?: Dtype;
  /**
   * 8-bit only: LLM.int8()'s outlier threshold, as bitsandbytes' `llm_int8_threshold` (Hugging Face's
   * BitsAndBytesConfig). Input features with any |x| >= threshold are multiplied in the compute dtype against the
   * dequantized weight columns, the others in int8 with row-wise (activation) and column-wise (weight) scales.
   * 0 quantizes every feature to int8 (no decomposition). Defaults to 6.0, as bitsandbytes.
   */
  llmInt8Threshold?: number;
  /**
   * 4-bit only: quantize the token-embedding table too (as bitsandbytes' `Embedding4bit`), and with it the LM head
   * when that is tied to the embeddings (GPT-2, tied Llama / Qwen2): lookups dequantize only the rows they read,
   * logits multiply through the same tiles as the projections. PEFT's QLoRA leaves both in float, hence the default
   * false; on a small model the table is a large share of the weights (GPT-2 small: 147 of 475 MiB), on a 7B model
   * about 2%. An untied LM head stays dense, as bitsandbytes keeps it.
   */
  quantizeEmbeddings?: boolean;
}

/** @internal Fills the defaults and checks the ranges (ERR_TH_CONFIG naming the field). */
export function checkQuantization(q: QuantizationConfig): Required<QuantizationConfig> {
  if (typeof q !== 'object' || q === null) invalidArg('quantization', 'an object { bits: 4 | 8, ... }', q);
  if (q.bits !== 4 && q.bits !== 8) throw new TransformerHeadsError(`quantization.bits must be 4 or 8, got ${JSON.stringify(q.bits)}`, 'ERR_TH_CONFIG');
  const blocksize = q.blocksize ?? 64;
  if (!Number.isInteger(blocksize) || blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) !== 0) {
    throw new TransformerHeadsError(`quantization.blocksize must be a power of two from 32 to 4096, got ${blocksize}`, 'ERR_TH_CONFIG');
  }
  const quantType = q.quantType ?? 'nf4';
  if (quantType !== 'nf4' && quantType !== 'fp4') throw new TransformerHeadsError(`quantization.quantType must be 'nf4' or 'fp4', got '${quantType}'`, 'ERR_TH_CONFIG');
  const llmInt8Threshold = q.llmInt8Threshold ?? 6.0;
  if (typeof llmInt8Threshold !== 'number' || !Number.isFinite(llmInt8Threshold) || llmInt8Threshold < 0) {
    throw new TransformerHeadsError(`quantization.llmInt8Threshold must be a finite number >= 0, got ${JSON.stringify(q.llmInt8Threshold)}`, 'ERR_TH_CONFIG');
  }
  const quantizeEmbeddings = q.quantizeEmbeddings ?? false;
  if (typeof quantizeEmbeddings !== 'boolean') {
    throw new TransformerHeadsError(`quantization.quantizeEmbeddings must be a boolean, got ${JSON.stringify(q.quantizeEmbeddings)}`, 'ERR_TH_CONFIG');
  }
  if (quantizeEmbeddings && q.bits !== 4) {
    throw new TransformerHeadsError('quantization.quantizeEmbeddings needs bits: 4 (bitsandbytes has no 8-bit embedding)', 'ERR_TH_CONFIG');
  }
  return { bits: q.bits, quantType, blocksize, doubleQuant: q.doubleQuant ?? false, computeDtype: q.computeDtype ?? 'float32', llmInt8Threshold, quantizeEmbeddings };
}

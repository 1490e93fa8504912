import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { RawTensor } from './binding.js';

/** A dense float32 tensor in row-major order. */
export interface Tensor {
  data: Float32Array;
  shape: number[];
}

/** An integer tensor given with its shape. */
export interface IntTensor {
  data: Int32Array | BigInt64Array | ArrayLike<number>;
  shape: number[];
}

/**
 * Token ids or a mask: one sequence (`number[]`, a flat typed array), a batch of equal-length sequences
 * (`number[][]`), or `{ data, shape: [batch, seq] }`.
 */
export type TokenInput = ArrayLike<number> | number[][] | Int32Array | BigInt64Array | IntTensor;

/** A batch in Hugging Face column names. attention_mask defaults to all ones. */
export interface Batch {
  input_ids: TokenInput;
  attention_mask?: TokenInput;
  /**
   * Position of each token, [batch, seq] like input_ids (Hugging Face's `position_ids`). When absent the model's
   * `positions` option decides: 'from-mask' (default) or 'sequential' (0..T-1, the Python library's forward).
   */
  position_ids?: TokenInput;
}

/** The model's rule for position ids when a batch has none (see LoadBackboneOptions.positions). */
export type PositionMode = 'from-mask' | 'sequential';

/** @internal */
export interface PackedTokens {
  data: Int32Array | BigInt64Array;
  shape: [number, number];
}

function isIntTensor(v: unknown): v is IntTensor {
  return typeof v === 'object' && v !== null && 'data' in v && 'shape' in v;
}

/** @internal Normalizes any TokenInput to a 2-D typed array, checking that values are integers. */
export function packTokens(value: TokenInput, name: string): PackedTokens {
  if (isIntTensor(value)) {
    const { data, shape } = value;
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      invalidArg(`${name}.shape`, 'an array [batch, seq] of non-negative integers', shape);
    }
    const n = shape[0]! * shape[1]!;
    if (data.length !== n) {
      throw new TransformerHeadsError(`${name} has ${data.length} values but its shape [${shape.join(', ')}] needs ${n}`, 'ERR_TH_SHAPE');
    }
    return { data: toTyped(data, name), shape: [shape[0]!, shape[1]!] };
  }
  if (Array.isArray(value) && value.length > 0 && Array.isArray(value[0])) {
    const rows = value as number[][];
    const T = rows[0]!.length;
    const out = new Int32Array(rows.length * T);
    rows.forEach((row, b) => {
      if (!Array.isArray(row) || row.length !== T) {
        throw new TransformerHeadsError(
          `${name} rows must all have the same length (row 0 has ${T}, row ${b} has ${Array.isArray(row) ? row.length : 'no array'}); pad them or use DataCollatorWithPadding`,
          'ERR_TH_SHAPE',
        );
      }
      for (let t = 0; t < T; t++) out[b * T + t] = checkInt(row[t], name);
    });
    return { data: out, shape: [rows.length, T] };
  }
  if (value instanceof BigInt64Array) return { data: value, shape: [1, value.length] };
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    const flat = value as ArrayLike<number>;
    return { data: toTyped(flat, name), shape: [1, flat.length] };
  }
  return invalidArg(name, 'token ids (number[], number[][], Int32Array, BigInt64Array or { data, shape })', value);
}

function checkInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
    return invalidArg(`${name} values`, 'integers', v);
  }
  return v;
}

function toTyped(data: ArrayLike<number> | Int32Array | BigInt64Array, name: string): Int32Array | BigInt64Array {
  if (data instanceof Int32Array || data instanceof BigInt64Array) return data;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = checkInt(data[i], name);
  return out;
}

/** @internal Wraps the native float32 bytes as a Float32Array without copying. */
export function fromRaw(raw: RawTensor): Tensor {
  const { data, shape } = raw;
  if (data.byteOffset % 4 === 0) return { data: new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4), shape };
  return { data: new Float32Array(data.slice().buffer), shape };
}

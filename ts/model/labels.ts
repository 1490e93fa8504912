// Label columns of a batch: the public input shapes, and packing them into the typed arrays the native side takes
// (integer class indices for cross_entropy heads, float32 otherwise).
import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { Batch, TokenInput } from '../native/index.js';

/** Labels: nested number arrays, a flat typed array (one value per row), or `{ data, shape }`. */
export type LabelInput = number[] | number[][] | number[][][] | Float32Array | Float64Array | Int32Array | BigInt64Array | { data: ArrayLike<number> | BigInt64Array; shape: number[] };

/**
 * A batch with label columns named by the heads' `target`s. `T` is the union of those names when loadHeaded inferred
 * them (a misspelt column is then a compile error), else string.
 */
export type HeadedBatch<T extends string = string> = Batch & { [K in T]?: LabelInput | TokenInput };

/** @internal */
export interface PackedLabel {
  name: string;
  data: Float32Array | Int32Array | BigInt64Array;
  shape: number[];
}

function nestedShape(v: unknown, name: string): number[] {
  const shape: number[] = [];
  let cur: unknown = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

/** @internal */
export function packLabel(value: LabelInput, name: string, integer: boolean): PackedLabel {
  let data: ArrayLike<number> | BigInt64Array;
  let shape: number[];
  if (typeof value === 'object' && value !== null && 'shape' in value && 'data' in value) {
    data = value.data;
    shape = value.shape;
  } else if (Array.isArray(value)) {
    shape = nestedShape(value, name);
    const flat = (value as unknown[]).flat(Infinity) as unknown[];
    const n = shape.reduce((a, b) => a * b, 1);
    if (flat.length !== n) {
      throw new TransformerHeadsError(`labels '${name}' are ragged (rows of different lengths); pad them, e.g. with DataCollatorWithPadding (pads labels with -100)`, 'ERR_TH_SHAPE');
    }
    for (const x of flat) if (typeof x !== 'number') invalidArg(`labels '${name}'`, 'numbers', x);
    data = flat as number[];
  } else if (ArrayBuffer.isView(value)) {
    data = value as ArrayLike<number>;
    shape = [(value as ArrayLike<number>).length];
  } else {
    return invalidArg(`labels '${name}'`, 'an array, a typed array or { data, shape }', value);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new TransformerHeadsError(`labels '${name}' have ${data.length} values but shape [${shape}] needs ${n}`, 'ERR_TH_SHAPE');
  if (data instanceof BigInt64Array) return { name, data, shape };
  if (integer) {
    if (data instanceof Int32Array) return { name, data, shape };
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const x = Number(data[i]);
      if (!Number.isFinite(x)) nonFinite(name, x, i, n);
      if (!Number.isInteger(x)) {
        throw new TransformerHeadsError(`labels '${name}' must be class indices (integers) for cross_entropy, got ${x}`, 'ERR_TH_SHAPE');
      }
      out[i] = x;
    }
    return { name, data: out, shape };
  }
  const out = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  // Checked after the conversion: a finite double beyond float32's range (1e39) arrives as Infinity. The core
  // checks again and also bounds the magnitude for value-comparing losses (it knows each head's loss).
  for (let i = 0; i < n; i++) if (!Number.isFinite(out[i])) nonFinite(name, Number(data[i]), i, n);
  return { name, data: out, shape };
}

function nonFinite(name: string, x: number, i: number, n: number): never {
  const shown = Number.isFinite(x) ? `${x} (beyond float32's range)` : String(x);
  throw new TransformerHeadsError(`labels '${name}' hold ${shown} at index ${i} (of ${n} values); labels must be finite numbers: fix or drop that example`, 'ERR_TH_VALUE');
}

import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { Example } from './data.js';

/** A collated column: values in row-major order with their shape. */
export interface Column {
  data: Int32Array | Float32Array;
  shape: number[];
}

/** A batch made by DataCollatorWithPadding: one padded column per key. */
export type CollatedBatch = Record<string, Column>;

/**
 * Right-pads the listed columns to the longest sequence in the batch (with the given value per column, e.g.
 * `{ input_ids: tokenizer.padTokenId, attention_mask: 0, labels: -100 }`) and stacks every other numeric column.
 * Non-numeric columns (such as raw text) are left out. As the Python library's DataCollatorWithPadding.
 */
export class DataCollatorWithPadding {
  readonly padValues: Readonly<Record<string, number>>;

  constructor(padValues: Record<string, number>) {
    if (typeof padValues !== 'object' || padValues === null) invalidArg('padValues', 'an object {column: pad value}', padValues);
    for (const [k, v] of Object.entries(padValues)) if (typeof v !== 'number' || !Number.isFinite(v)) invalidArg(`padValues.${k}`, 'a number', v);
    this.padValues = { ...padValues };
  }

  /** Pads each column of these examples to the longest row and stacks them into one batch. */
  collate(examples: readonly Example[]): CollatedBatch {
    if (examples.length === 0) throw new TransformerHeadsError('cannot collate an empty batch', 'ERR_TH_VALUE');
    const out: CollatedBatch = {};
    const first = examples[0]!;
    for (const col of Object.keys(first)) {
      const values = examples.map((e, i) => {
        if (!(col in e)) throw new TransformerHeadsError(`example ${i} of the batch has no column '${col}'`, 'ERR_TH_VALUE');
        return e[col];
      });
      if (col in this.padValues) out[col] = padColumn(values, col, this.padValues[col]!);
      else {
        const stacked = stackColumn(values, col);
        if (stacked) out[col] = stacked;
      }
    }
    return out;
  }
}

function isNumeric(v: unknown): boolean {
  return typeof v === 'number' || (ArrayBuffer.isView(v) && !(v instanceof DataView)) || (Array.isArray(v) && (v.length === 0 || typeof v[0] === 'number' || Array.isArray(v[0])));
}

function flatNumbers(v: unknown, col: string): { values: ArrayLike<number>; inner: number[] } {
  if (ArrayBuffer.isView(v)) return { values: v as unknown as ArrayLike<number>, inner: [] };
  if (!Array.isArray(v)) throw new TransformerHeadsError(`column '${col}': expected an array of numbers, got ${typeof v}`, 'ERR_TH_VALUE');
  if (v.length > 0 && Array.isArray(v[0])) {
    const inner = (v[0] as unknown[]).length;
    const flat = (v as unknown[][]).flat();
    if (flat.length !== v.length * inner) throw new TransformerHeadsError(`column '${col}': nested rows of different lengths`, 'ERR_TH_SHAPE');
    return { values: flat as number[], inner: [inner] };
  }
  return { values: v as number[], inner: [] };
}

function allInts(arrs: ArrayLike<number>[]): boolean {
  for (const a of arrs) for (let i = 0; i < a.length; i++) if (!Number.isInteger(a[i])) return false;
  return true;
}

function padColumn(values: unknown[], col: string, pad: number): Column {
  const rows = values.map((v) => flatNumbers(v, col));
  const inner = rows[0]!.inner;
  const per = inner.reduce((a, b) => a * b, 1);
  const lens = rows.map((r) => r.values.length / per);
  const T = Math.max(...lens);
  const ints = Number.isInteger(pad) && allInts(rows.map((r) => r.values));
  const data = ints ? new Int32Array(rows.length * T * per) : new Float32Array(rows.length * T * per);
  data.fill(pad);
  rows.forEach((r, b) => {
    for (let i = 0; i < r.values.length; i++) {
      const x = r.values[i]!;
      if (typeof x !== 'number' || Number.isNaN(x)) throw new TransformerHeadsError(`column '${col}' row ${b}: ${x} is not a number`, 'ERR_TH_VALUE');
      data[b * T * per + i] = x;
    }
  });
  return { data, shape: [rows.length, T, ...inner] };
}

function stackColumn(values: unknown[], col: string): Column | null {
  if (!values.every(isNumeric)) return null;
  if (typeof values[0] === 'number') {
    const nums = values as number[];
    return { data: allInts([nums]) ? Int32Array.from(nums) : Float32Array.from(nums), shape: [nums.length] };
  }
  const rows = values.map((v) => flatNumbers(v, col));
  const n = rows[0]!.values.length;
  if (rows.some((r) => r.values.length !== n)) {
    throw new TransformerHeadsError(`column '${col}' has sequences of different lengths; list it in DataCollatorWithPadding's pad values`, 'ERR_TH_SHAPE');
  }
  const ints = allInts(rows.map((r) => r.values));
  const data = ints ? new Int32Array(rows.length * n) : new Float32Array(rows.length * n);
  rows.forEach((r, b) => data.set(Array.from(r.values), b * n));
  return { data, shape: [rows.length, n / rows[0]!.inner.reduce((a, b) => a * b, 1), ...rows[0]!.inner].filter((d, i) => i === 0 || d !== undefined) };
}

import { readFile } from 'node:fs/promises';

import { invalidArg, TransformerHeadsError } from '../errors.js';
import { parseJson } from '../io/index.js';

/** One example: column name -> value (numbers, strings, arrays of numbers). */
export type Example = Record<string, unknown>;

/** A small deterministic PRNG (mulberry32), so shuffles are reproducible from a seed across runs and machines. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates permutation of 0..n-1 from a seed. */
export function permutation(n: number, seed: number): number[] {
  const r = rng(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** An in-memory, immutable list of examples. */
export class Dataset<T extends Example = Example> implements Iterable<T> {
  readonly rows: readonly T[];

  constructor(rows: readonly T[]) {
    if (!Array.isArray(rows)) invalidArg('rows', 'an array of examples', rows);
    this.rows = rows;
  }

  get length(): number {
    return this.rows.length;
  }

  /** The row at index `i` (negative counts from the end). */
  at(i: number): T {
    const r = this.rows[i];
    if (r === undefined) throw new TransformerHeadsError(`example index ${i} is outside the dataset (length ${this.length})`, 'ERR_TH_VALUE');
    return r;
  }

  /** Iterates over the rows in order. */
  [Symbol.iterator](): Iterator<T> {
    return this.rows[Symbol.iterator]();
  }

  /** A new dataset of `fn` applied to every row. */
  map<U extends Example>(fn: (row: T, index: number) => U): Dataset<U> {
    return new Dataset(this.rows.map(fn));
  }

  /** A new dataset of the rows for which `fn` is true. */
  filter(fn: (row: T, index: number) => boolean): Dataset<T> {
    return new Dataset(this.rows.filter(fn));
  }

  /** A new dataset of the rows at these indices, in this order. */
  select(indices: readonly number[]): Dataset<T> {
    return new Dataset(indices.map((i) => this.at(i)));
  }

  /** A new dataset with the rows in a seeded random order (the same seed, the same order on every machine). */
  shuffle(seed = 42): Dataset<T> {
    return this.select(permutation(this.length, seed));
  }

  /** A seeded random split: `testFraction` of the rows go to `test`. */
  trainTestSplit(testFraction: number, seed = 42): { train: Dataset<T>; test: Dataset<T> } {
    if (!(testFraction > 0 && testFraction < 1)) invalidArg('testFraction', 'a number between 0 and 1', testFraction);
    const p = permutation(this.length, seed);
    const nTest = Math.round(this.length * testFraction);
    return { test: this.select(p.slice(0, nTest)), train: this.select(p.slice(nTest)) };
  }

  /** One JSON object per line. */
  static async fromJsonl(path: string): Promise<Dataset> {
    const text = await readText(path);
    const rows: Example[] = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      rows.push(parseJson(line, `${path}:${i + 1}`, { code: 'ERR_TH_FILE', top: 'object' }) as Example);
    });
    return new Dataset(rows);
  }

  /**
   * A CSV file with a header row (RFC 4180 quoting). Fields that read as finite numbers become numbers unless
   * `{ numbers: false }`, except in `textColumns`, which always stay strings (a text "1999" is a text).
   */
  static async fromCsv(path: string, options: { delimiter?: string; numbers?: boolean; textColumns?: readonly string[] } = {}): Promise<Dataset> {
    const keep = new Set(options.textColumns ?? []);
    const records = parseCsv(await readText(path), options.delimiter ?? ',', path);
    const [header, ...body] = records;
    if (!header) return new Dataset([]);
    const rows = body.map((rec, i) => {
      if (rec.length !== header.length) {
        throw new TransformerHeadsError(`${path}: row ${i + 2} has ${rec.length} fields but the header has ${header.length}`, 'ERR_TH_FILE');
      }
      const o: Example = {};
      header.forEach((h, k) => {
        const v = rec[k]!;
        o[h] = options.numbers !== false && !keep.has(h) && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
      });
      return o;
    });
    return new Dataset(rows);
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new TransformerHeadsError(`cannot read '${path}': ${(e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
}

function parseCsv(text: string, delim: string, where: string): string[][] {
  const out: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  if (text.charCodeAt(0) === 0xfeff) i = 1; // BOM
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === delim) {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      field = '';
      if (row.length > 1 || row[0] !== '') out.push(row);
      row = [];
    } else field += c;
  }
  if (quoted) throw new TransformerHeadsError(`${where}: unterminated quoted field`, 'ERR_TH_FILE');
  if (field !== '' || row.length) {
    row.push(field);
    out.push(row);
  }
  return out;
}

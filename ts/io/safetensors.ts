import { readFile } from 'node:fs/promises';

import { TransformerHeadsError } from '../errors.js';
import { kindOf, parseJson, shown } from './json.js';

/** A float32 tensor as stored in a safetensors file. */
export interface NamedTensor {
  key: string;
  data: Float32Array;
  shape: number[];
}

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const MAX_HEADER = 100_000_000;

/**
 * Serialises float32 tensors as safetensors: u64 header length, compact JSON header (no __metadata__, as
 * safetensors.torch.save_file writes for head files), padded with spaces to 8 bytes, then the data in key order.
 */
export function encodeSafetensors(tensors: NamedTensor[], metadata?: Record<string, string>): Uint8Array {
  const parts = safetensorsParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.byteLength;
  }
  return out;
}

/**
 * @internal The file as its pieces, in order: the length and header, then a view of each tensor's bytes (no copy).
 * Written with atomicWrite, a 500 MB model never exists twice in memory nor is copied on the event loop.
 */
export function safetensorsParts(tensors: NamedTensor[], metadata?: Record<string, string>): Uint8Array[] {
  const sorted = [...tensors].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of sorted) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new TransformerHeadsError(`tensor '${t.key}': shape [${t.shape}] does not match ${t.data.length} values`, 'ERR_TH_SHAPE');
    header[t.key] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const head = new Uint8Array(8 + hb.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(hb.length), true);
  head.set(hb, 8);
  return [head, ...sorted.map((t) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
}

/** Parses a safetensors file holding F32 tensors (heads are float32), checking every bound. */
export function decodeSafetensors(buf: Uint8Array, where: string): NamedTensor[] {
  const bad = (m: string): never => {
    throw new TransformerHeadsError(`${where} is not a valid safetensors file: ${m}`, 'ERR_TH_FILE');
  };
  if (buf.length < 8) bad('shorter than its 8-byte header length');
  const n = Number(new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(0, true));
  if (n > MAX_HEADER) bad(`header length ${n} exceeds ${MAX_HEADER}`);
  if (8 + n > buf.length) bad(`header length ${n} runs past the end of the file (${buf.length} bytes)`);
  const header = parseJson(buf.subarray(8, 8 + n), `${where} is not a valid safetensors file: its header`, { code: 'ERR_TH_FILE' }) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const data = buf.subarray(8 + n);
  const spans: Array<[number, number, string]> = [];
  const out: NamedTensor[] = [];
  for (const [rawKey, info] of Object.entries(header)) {
    if (rawKey === '__metadata__') continue;
    const key = shown(rawKey, 80).replace(/^"|"$/g, '');
    if (typeof info !== 'object' || info === null || Array.isArray(info)) bad(`tensor '${key}' is ${kindOf(info)}, not {dtype, shape, data_offsets}`);
    const { dtype, shape, data_offsets: off } = info ?? ({} as never);
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) bad(`tensor '${key}' has unknown dtype ${shown(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`tensor '${key}' has a bad shape ${shown(shape)}`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0]! > off[1]!) bad(`tensor '${key}' has bad data_offsets ${shown(off)}`);
    const [b, e] = off;
    if (e > data.length) bad(`tensor '${key}' ends at ${e}, past the data buffer (${data.length} bytes)`);
    const numel = shape.reduce((a, d) => a * d, 1);
    if (numel * DTYPE_BYTES[dtype]! !== e - b) bad(`tensor '${key}' has ${e - b} bytes but shape ${shown(shape)} of ${dtype} needs ${numel * DTYPE_BYTES[dtype]!}`);
    spans.push([b, e, key]);
    if (dtype !== 'F32') {
      throw new TransformerHeadsError(`${where}: tensor '${key}' is ${dtype}; head files must hold F32 tensors`, 'ERR_TH_FILE');
    }
    const copy = new Float32Array(numel);
    new Uint8Array(copy.buffer).set(data.subarray(b, e));
    out.push({ key: rawKey, data: copy, shape });
  }
  spans.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) if (spans[i]![0] < spans[i - 1]![1]) bad(`tensors '${spans[i - 1]![2]}' and '${spans[i]![2]}' overlap`);
  return out;
}

/**
 * Reads every tensor of a .safetensors file (names, dtypes, shapes and data), with the header checked as the native
 * reader checks it.
 */
export async function readSafetensors(path: string): Promise<NamedTensor[]> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new TransformerHeadsError(`cannot read '${path}': ${(e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
  return decodeSafetensors(buf, `'${path}'`);
}

import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';

import { invalidArg, nativeCall, TransformerHeadsError } from '../errors.js';
import { ensureNative } from '../native/index.js';
import { resolveModel, type HubOptions } from './hub/index.js';
import { parseModelConfig, type ModelConfig } from './model-config.js';

/** Reads `length` bytes at `offset`; a short read (past the end) comes back shorter. */
type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/**
 * The stored files of a zip archive whose path ends with one of `suffixes` (TorchScript archives are zip files; extra
 * files are stored under `<archive>/extra/`). Reads only the central directory and the wanted entries: a model
 * archive is hundreds of MB to GB of weights, and reading it whole for a config.json of 1 KB left that much garbage in
 * the process (external memory that V8 frees late: +480 MiB after readModelConfig on GPT-2 small, still resident
 * while the model was loaded next to it; issue 15). Files over 2 GiB could not be read whole at all.
 */
export async function zipEntriesFromFile(path: string, suffixes: string[], where: string): Promise<Map<string, Buffer>> {
  const bad = (m: string): never => {
    throw new TransformerHeadsError(`${where} is not a readable zip/TorchScript archive: ${m}`, 'ERR_TH_FILE');
  };
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const readAt: ReadAt = async (offset, length) => {
      const b = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      if (b.length === 0) return b;
      const { bytesRead } = await fh.read(b, 0, b.length, offset);
      return b.subarray(0, bytesRead);
    };
    return await readZip(size, readAt, suffixes, bad);
  } catch (e) {
    // Offsets read from the file point anywhere: a read past the end (RangeError) or a corrupt deflate stream is a
    // malformed archive, not a bug.
    if (e instanceof TransformerHeadsError) throw e;
    return bad(e instanceof Error ? e.message : String(e));
  } finally {
    await fh.close();
  }
}

/** Largest extra file inflated from an archive (config and tokenizer files are a few MB at most). */
const MAX_INFLATED = 256 * 1024 * 1024;
/** Largest central directory read (a TorchScript archive's lists a few hundred to a few thousand entries). */
const MAX_CENTRAL_DIRECTORY = 64 * 1024 * 1024;

async function readZip(size: number, readAt: ReadAt, suffixes: string[], bad: (m: string) => never): Promise<Map<string, Buffer>> {
  // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes.
  const tailStart = Math.max(0, size - 65557);
  const tail = await readAt(tailStart, size - tailStart);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) bad('no end-of-central-directory record');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  // zip64: torch writes it for large archives
  if (cdOffset === 0xffffffff || count === 0xffff || cdSize === 0xffffffff) {
    const loc = tailStart + eocd - 20;
    if (loc < 0) bad('zip64 locator missing');
    const locator = await readAt(loc, 20);
    if (locator.length < 20 || locator.readUInt32LE(0) !== 0x07064b50) bad('zip64 locator missing');
    const z64 = Number(locator.readBigUInt64LE(8));
    const rec = await readAt(z64, 56);
    if (rec.length < 56 || rec.readUInt32LE(0) !== 0x06064b50) bad('zip64 record missing');
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOffset = Number(rec.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > size) bad('the central directory runs past the end');
  if (cdSize > MAX_CENTRAL_DIRECTORY) bad(`a central directory of ${cdSize} bytes`);
  const cd = await readAt(cdOffset, cdSize);
  const out = new Map<string, Buffer>();
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) bad('corrupt central directory');
    const method = cd.readUInt16LE(p + 10);
    let csize = cd.readUInt32LE(p + 20);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen > cd.length) bad('corrupt central directory');
    const name = cd.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    // zip64 extra field for sizes/offset
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (cd.readUInt32LE(p + 24) === 0xffffffff) q += 8;
        if (csize === 0xffffffff) {
          csize = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (local === 0xffffffff) local = Number(cd.readBigUInt64LE(q));
      }
      e += 4 + len;
    }
    if (suffixes.some((s) => name.endsWith(s))) {
      const header = await readAt(local, 30);
      if (header.length < 30 || header.readUInt32LE(0) !== 0x04034b50) bad(`bad local header for ${name}`);
      const start = local + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
      if (start + csize > size) bad(`entry ${name} runs past the end`);
      if (csize > MAX_INFLATED) bad(`entry ${name} is ${csize} bytes`);
      const raw = await readAt(start, csize);
      out.set(name, method === 0 ? raw : method === 8 ? inflateRawSync(raw, { maxOutputLength: MAX_INFLATED }) : bad(`entry ${name} uses compression method ${method}`));
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

/**
 * The Hugging Face config of a model without loading its weights: config.json from a TorchScript archive's extra
 * files, or from a model folder, or of a Hub model ("org/name", only its config.json is fetched). Handy for head
 * sizes: `inSize: (await readModelConfig(path)).hiddenSize`.
 */
export async function readModelConfig(nameOrPath: string, options?: HubOptions): Promise<ModelConfig> {
  if (typeof nameOrPath !== 'string' || nameOrPath.length === 0) invalidArg('path', 'a model path or a Hub repo id', nameOrPath);
  const path = await resolveModel(nameOrPath, { ...options, files: 'config' });
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new TransformerHeadsError(`model file '${path}' does not exist`, 'ERR_TH_FILE', { cause: e });
  }
  let text: string | null = null;
  try {
    if (st.isDirectory()) {
      text = await readFile(join(path, 'config.json'), 'utf8').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return null;
        throw e;
      });
    } else {
      for (const [, v] of await zipEntriesFromFile(path, ['/extra/config.json'], `'${path}'`)) text = v.toString('utf8');
    }
  } catch (e) {
    if (e instanceof TransformerHeadsError) throw e;
    throw new TransformerHeadsError(`cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
  if (text === null) throw new TransformerHeadsError(`'${path}' has no config.json`, 'ERR_TH_CONFIG');
  // The loader's own validation (the native core's parse_config), so that a config this accepts also loads and one
  // the loader refuses is refused here with the same message. It loads the addon (once per process).
  const configText = text;
  let normalized: string;
  try {
    normalized = await nativeCall(async () => (await ensureNative()).parseModelConfig(configText));
  } catch (e) {
    const err = e as TransformerHeadsError;
    if (err.code !== 'ERR_TH_CONFIG') throw err;
    throw new TransformerHeadsError(`config.json of '${path}': ${err.message}`, 'ERR_TH_CONFIG', { cause: e });
  }
  return parseModelConfig(normalized, text, `config.json of '${path}'`);
}

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';

import { invalidArg, nativeCall, TransformerHeadsError } from '../errors.js';
import { ensureNative } from '../native/index.js';
import { resolveModel, type HubOptions } from './hub/index.js';
import { parseModelConfig, type ModelConfig } from './model-config.js';

/**
 * Reads the stored files of a zip archive (TorchScript archives are zip files; extra files are stored under
 * `<archive>/extra/`). Returns the named entries whose path ends with one of `suffixes`.
 */
export function zipEntries(buf: Buffer, suffixes: string[], where: string): Map<string, Buffer> {
  const bad = (m: string): never => {
    throw new TransformerHeadsError(`${where} is not a readable zip/TorchScript archive: ${m}`, 'ERR_TH_FILE');
  };
  try {
    return readZip(buf, suffixes, bad);
  } catch (e) {
    // Offsets read from the file point anywhere: a read past the end (RangeError) or a corrupt deflate stream is a
    // malformed archive, not a bug.
    if (e instanceof TransformerHeadsError) throw e;
    return bad(e instanceof Error ? e.message : String(e));
  }
}

/** Largest extra file inflated from an archive (config and tokenizer files are a few MB at most). */
const MAX_INFLATED = 256 * 1024 * 1024;

function readZip(buf: Buffer, suffixes: string[], bad: (m: string) => never): Map<string, Buffer> {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) bad('no end-of-central-directory record');
  let count = buf.readUInt16LE(eocd + 10);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  // zip64: torch writes it for large archives
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20;
    if (loc < 0 || buf.readUInt32LE(loc) !== 0x07064b50) bad('zip64 locator missing');
    const z64 = Number(buf.readBigUInt64LE(loc + 8));
    if (buf.readUInt32LE(z64) !== 0x06064b50) bad('zip64 record missing');
    count = Number(buf.readBigUInt64LE(z64 + 32));
    cdOffset = Number(buf.readBigUInt64LE(z64 + 48));
  }
  const out = new Map<string, Buffer>();
  let p = cdOffset;
  for (let k = 0; k < count; k++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) bad('corrupt central directory');
    const method = buf.readUInt16LE(p + 10);
    let csize = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    let local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    // zip64 extra field for sizes/offset
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = buf.readUInt16LE(e);
      const len = buf.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (buf.readUInt32LE(p + 24) === 0xffffffff) q += 8;
        if (csize === 0xffffffff) {
          csize = Number(buf.readBigUInt64LE(q));
          q += 8;
        }
        if (local === 0xffffffff) local = Number(buf.readBigUInt64LE(q));
      }
      e += 4 + len;
    }
    if (suffixes.some((s) => name.endsWith(s))) {
      if (local + 30 > buf.length || buf.readUInt32LE(local) !== 0x04034b50) bad(`bad local header for ${name}`);
      const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
      if (start + csize > buf.length) bad(`entry ${name} runs past the end`);
      const raw = buf.subarray(start, start + csize);
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
      for (const [, v] of zipEntries(await readFile(path), ['/extra/config.json'], `'${path}'`)) text = v.toString('utf8');
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

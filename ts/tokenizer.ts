import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { invalidArg, TransformerHeadsError } from './errors.js';

/** A Hugging Face tokenizer (tokenizer.json) with the special-token ids the heads need. */
export class Tokenizer {
  readonly #tok: HfTokenizer;
  readonly eosTokenId: number | null;
  readonly bosTokenId: number | null;
  /** pad_token from tokenizer_config.json, else the eos token (as the Python library's load_tokenizer does). */
  readonly padTokenId: number;
  readonly vocabSize: number;

  /** @internal use loadTokenizer() */
  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>, modelConfig?: Record<string, unknown>) {
    this.#tok = new HfTokenizer(tokenizerJson as never, tokenizerConfig as never);
    const idOf = (v: unknown): number | null => {
      const s = typeof v === 'string' ? v : typeof v === 'object' && v !== null && 'content' in v ? String((v as { content: unknown }).content) : null;
      if (s === null) return null;
      const ids = this.#tok.encode(s, { add_special_tokens: false } as never).ids as number[];
      return ids.length === 1 ? ids[0]! : null;
    };
    const num = (v: unknown) => (typeof v === 'number' ? v : Array.isArray(v) && typeof v[0] === 'number' ? (v[0] as number) : null);
    this.eosTokenId = idOf(tokenizerConfig.eos_token) ?? num(modelConfig?.eos_token_id);
    this.bosTokenId = idOf(tokenizerConfig.bos_token) ?? num(modelConfig?.bos_token_id);
    const pad = idOf(tokenizerConfig.pad_token) ?? num(modelConfig?.pad_token_id) ?? this.eosTokenId;
    if (pad === null) throw new TransformerHeadsError('the tokenizer has neither a pad nor an eos token', 'ERR_TH_CONFIG');
    this.padTokenId = pad;
    const model = (tokenizerJson.model ?? {}) as { vocab?: Record<string, number> | unknown[] };
    const added = (tokenizerJson.added_tokens ?? []) as Array<{ id: number }>;
    const base = Array.isArray(model.vocab) ? model.vocab.length : Object.keys(model.vocab ?? {}).length;
    this.vocabSize = Math.max(base, ...added.map((t) => t.id + 1));
  }

  /** Token ids and attention mask of one text. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): { ids: number[]; attentionMask: number[] } {
    if (typeof text !== 'string') invalidArg('text', 'a string', text);
    const e = this.#tok.encode(text, { add_special_tokens: options.addSpecialTokens ?? true } as never) as { ids: number[] };
    return { ids: e.ids, attentionMask: e.ids.map(() => 1) };
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    return this.#tok.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false } as never);
  }
}

/**
 * Reads the stored files of a zip archive (TorchScript archives are zip files; extra files are stored under
 * `<archive>/extra/`). Returns the named entries whose path ends with one of `suffixes`.
 */
function zipEntries(buf: Buffer, suffixes: string[], where: string): Map<string, Buffer> {
  const bad = (m: string): never => {
    throw new TransformerHeadsError(`${where} is not a readable zip/TorchScript archive: ${m}`, 'ERR_TH_FILE');
  };
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
      out.set(name, method === 0 ? raw : method === 8 ? inflateRawSync(raw) : bad(`entry ${name} uses compression method ${method}`));
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

async function tokenizerFiles(source: string): Promise<{ tokenizer: string; config: string | null; model: string | null }> {
  let st;
  try {
    st = await stat(source);
  } catch (e) {
    throw new TransformerHeadsError(`'${source}' does not exist`, 'ERR_TH_FILE', { cause: e });
  }
  if (st.isDirectory()) {
    const read = (f: string) => readFile(join(source, f), 'utf8').catch(() => null);
    const tokenizer = await read('tokenizer.json');
    if (tokenizer === null) throw new TransformerHeadsError(`'${source}' has no tokenizer.json`, 'ERR_TH_FILE');
    return { tokenizer, config: await read('tokenizer_config.json'), model: await read('config.json') };
  }
  const files = zipEntries(await readFile(source), ['/extra/tokenizer.json', '/extra/tokenizer_config.json', '/extra/config.json'], `'${source}'`);
  const get = (suffix: string) => {
    for (const [k, v] of files) if (k.endsWith(suffix)) return v.toString('utf8');
    return null;
  };
  const tokenizer = get('/extra/tokenizer.json');
  if (!tokenizer) {
    throw new TransformerHeadsError(
      `'${source}' carries no tokenizer.json; export it with a tokenizer (scripts/export_torchscript.py --tokenizer-dir DIR) or load one from a folder`,
      'ERR_TH_FILE',
    );
  }
  return { tokenizer, config: get('/extra/tokenizer_config.json'), model: get('/extra/config.json') };
}

/**
 * The tokenizer stored with a model: a TorchScript archive (extra files), a Hugging Face model folder with
 * tokenizer.json, or a loaded model (its tokenizerJson).
 */
export async function loadTokenizer(source: string | { tokenizerJson: string | null; tokenizerConfigJson: string | null; config?: { raw: Record<string, unknown> } }): Promise<Tokenizer> {
  let files: { tokenizer: string; config: string | null; model: string | null };
  if (typeof source === 'string') files = await tokenizerFiles(source);
  else if (source && typeof source === 'object' && source.tokenizerJson) {
    files = { tokenizer: source.tokenizerJson, config: source.tokenizerConfigJson, model: source.config ? JSON.stringify(source.config.raw) : null };
  } else {
    throw new TransformerHeadsError('this model carries no tokenizer.json', 'ERR_TH_FILE');
  }
  const parse = (t: string | null, what: string) => {
    if (t === null) return {};
    try {
      return JSON.parse(t) as Record<string, unknown>;
    } catch (e) {
      throw new TransformerHeadsError(`${what} is not valid JSON: ${(e as Error).message}`, 'ERR_TH_FILE');
    }
  };
  return new Tokenizer(parse(files.tokenizer, 'tokenizer.json'), parse(files.config, 'tokenizer_config.json'), parse(files.model, 'config.json'));
}

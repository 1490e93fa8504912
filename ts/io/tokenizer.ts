// A Hugging Face tokenizer.json through @huggingface/tokenizers. The package trusts its input: a tokenizer.json of
// the wrong shape surfaces as its own TypeError / Error / SyntaxError from deep inside it, at load or at the first
// encode. Here the file's top-level shape is checked before the package sees it, and every call into the package is
// wrapped so that what it throws becomes an ERR_TH_FILE naming the tokenizer file.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { invalidArg, TransformerHeadsError } from '../errors.js';
import { zipEntriesFromFile } from './archive.js';
import { kindOf, parseJson, shown } from './json.js';

type Json = Record<string, unknown>;

/** Runs a call into the tokenizer package; what it throws becomes ERR_TH_FILE naming the tokenizer file. */
function guarded<T>(where: string, doing: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TransformerHeadsError) throw e;
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    throw new TransformerHeadsError(`${where} could not ${doing}: ${shown(msg, 200).replace(/^"|"$/g, '')}; is it a tokenizer.json written by Hugging Face tokenizers?`, 'ERR_TH_FILE', { cause: e });
  }
}

const SECTIONS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;
const MODEL_TYPES: readonly string[] = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'];

/** Checks the parts of tokenizer.json the package reads without checking (shapes, not every tokenizer type's fields). */
function checkTokenizerJson(t: Json, where: string): void {
  const bad = (m: string): never => {
    throw new TransformerHeadsError(`${where} ${m}`, 'ERR_TH_FILE');
  };
  const model = t.model;
  if (typeof model !== 'object' || model === null || Array.isArray(model)) bad(`has no "model" object (got ${kindOf(model)}); a tokenizer.json names its model (BPE, WordPiece, Unigram, ...) there`);
  const m = model as Json;
  // Without a type the package infers one from the fields (old files); an unknown one it would silently guess too.
  if (m.type !== undefined && !MODEL_TYPES.includes(m.type as string)) bad(`"model.type" ${shown(m.type)} is not a tokenizer model this library reads (${MODEL_TYPES.join(', ')})`);
  const vocab = m.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], ...]
    for (const [i, e] of vocab.entries()) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') bad(`"model.vocab"[${i}] must be [piece, score], got ${shown(e)}`);
    }
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const [k, v] of Object.entries(vocab)) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(`"model.vocab" maps ${shown(k)} to ${shown(v)}; token ids must be integers >= 0`);
    }
  } else bad(`"model.vocab" must be an object {token: id} or a list, got ${kindOf(vocab)}`);
  if (m.merges !== undefined && m.merges !== null) {
    if (!Array.isArray(m.merges)) bad(`"model.merges" must be a list, got ${kindOf(m.merges)}`);
    for (const [i, e] of (m.merges as unknown[]).entries()) {
      const ok = typeof e === 'string' || (Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'string');
      if (!ok) bad(`"model.merges"[${i}] must be "a b" or ["a", "b"], got ${shown(e)}`);
    }
  }
  if (t.added_tokens !== undefined && t.added_tokens !== null) {
    if (!Array.isArray(t.added_tokens)) bad(`"added_tokens" must be a list, got ${kindOf(t.added_tokens)}`);
    for (const [i, a] of (t.added_tokens as unknown[]).entries()) {
      const o = a as Json;
      if (typeof a !== 'object' || a === null || typeof o.content !== 'string' || typeof o.id !== 'number' || !Number.isInteger(o.id) || o.id < 0) {
        bad(`"added_tokens"[${i}] must be {"id": integer >= 0, "content": string, ...}, got ${shown(a)}`);
      }
    }
  }
  for (const s of SECTIONS) {
    const v = t[s];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'object' || Array.isArray(v)) bad(`"${s}" must be an object or null, got ${kindOf(v)}`);
    if ((v as Json).type !== undefined && typeof (v as Json).type !== 'string') bad(`"${s}.type" must be a string, got ${shown((v as Json).type)}`);
  }
}
import { resolveModel, type HubOptions } from './hub/index.js';

/** A Hugging Face tokenizer (tokenizer.json) with the special-token ids the heads need. */
export class Tokenizer {
  readonly #tok: HfTokenizer;
  readonly #where: string;
  readonly eosTokenId: number | null;
  readonly bosTokenId: number | null;
  /** pad_token from tokenizer_config.json, else the eos token (as the Python library's load_tokenizer does). */
  readonly padTokenId: number;
  readonly vocabSize: number;

  /** @internal use loadTokenizer() */
  constructor(tokenizerJson: Json, tokenizerConfig: Json, modelConfig?: Json, where = 'tokenizer.json') {
    this.#where = where;
    checkTokenizerJson(tokenizerJson, where);
    this.#tok = guarded(where, 'be loaded', () => new HfTokenizer(tokenizerJson as never, tokenizerConfig as never));
    const idOf = (v: unknown): number | null => {
      const s = typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as Json).content === 'string' ? ((v as Json).content as string) : null;
      if (s === null) return null;
      const ids = guarded(where, `encode the special token ${shown(s)}`, () => this.#tok.encode(s, { add_special_tokens: false }).ids);
      return ids.length === 1 ? ids[0]! : null;
    };
    const num = (v: unknown) => {
      const n = typeof v === 'number' ? v : Array.isArray(v) && typeof v[0] === 'number' ? (v[0] as number) : null;
      return n !== null && Number.isInteger(n) && n >= 0 ? n : null;
    };
    this.eosTokenId = idOf(tokenizerConfig.eos_token) ?? num(modelConfig?.eos_token_id);
    this.bosTokenId = idOf(tokenizerConfig.bos_token) ?? num(modelConfig?.bos_token_id);
    const pad = idOf(tokenizerConfig.pad_token) ?? num(modelConfig?.pad_token_id) ?? this.eosTokenId;
    if (pad === null) {
      throw new TransformerHeadsError(`${where}: the tokenizer has neither a pad nor an eos token (set pad_token or eos_token in tokenizer_config.json)`, 'ERR_TH_CONFIG');
    }
    this.padTokenId = pad;
    const model = tokenizerJson.model as { vocab: Record<string, number> | unknown[] };
    let size = Array.isArray(model.vocab) ? model.vocab.length : Object.keys(model.vocab).length;
    for (const t of (tokenizerJson.added_tokens ?? []) as Array<{ id: number }>) size = Math.max(size, t.id + 1);
    this.vocabSize = size;
  }

  /** Token ids and attention mask of one text. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): { ids: number[]; attentionMask: number[] } {
    if (typeof text !== 'string') invalidArg('text', 'a string', text);
    const ids = guarded(this.#where, 'encode a text', () => this.#tok.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids);
    return { ids, attentionMask: ids.map(() => 1) };
  }

  /** Token ids back to text (`skipSpecialTokens` drops special tokens such as eos). */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) invalidArg('ids', 'an array of token ids', ids);
    if (ids.length === 0) return ''; // the underlying decoder refuses an empty list
    for (const id of ids) if (!Number.isInteger(id) || id < 0) invalidArg('ids', 'token ids (integers >= 0)', id);
    return guarded(this.#where, 'decode token ids', () => this.#tok.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false }));
  }
}

interface TokenizerTexts {
  tokenizer: string | Uint8Array;
  config: string | Uint8Array | null;
  model: string | Uint8Array | null;
  /** How messages name the files: "'dir'" or "'model.pt'". */
  where: string;
}

async function tokenizerFiles(source: string): Promise<TokenizerTexts> {
  let st;
  try {
    st = await stat(source);
  } catch (e) {
    throw new TransformerHeadsError(`'${source}' does not exist`, 'ERR_TH_FILE', { cause: e });
  }
  if (st.isDirectory()) {
    const read = async (f: string) => {
      try {
        return await readFile(join(source, f));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new TransformerHeadsError(`cannot read '${join(source, f)}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'ERR_TH_FILE', { cause: e });
      }
    };
    const tokenizer = await read('tokenizer.json');
    if (tokenizer === null) throw new TransformerHeadsError(`'${source}' has no tokenizer.json`, 'ERR_TH_FILE');
    return { tokenizer, config: await read('tokenizer_config.json'), model: await read('config.json'), where: `'${source}'` };
  }
  let files: Map<string, Buffer>;
  try {
    files = await zipEntriesFromFile(source, ['/extra/tokenizer.json', '/extra/tokenizer_config.json', '/extra/config.json'], `'${source}'`);
  } catch (e) {
    if (e instanceof TransformerHeadsError) throw e;
    throw new TransformerHeadsError(`cannot read '${source}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'ERR_TH_FILE', { cause: e });
  }
  const get = (suffix: string) => {
    for (const [k, v] of files) if (k.endsWith(suffix)) return v;
    return null;
  };
  const tokenizer = get('/extra/tokenizer.json');
  if (!tokenizer) {
    throw new TransformerHeadsError(
      `'${source}' carries no tokenizer.json; export it with a tokenizer (scripts/export_torchscript.py --tokenizer-dir DIR) or load one from a folder`,
      'ERR_TH_FILE',
    );
  }
  return { tokenizer, config: get('/extra/tokenizer_config.json'), model: get('/extra/config.json'), where: `'${source}'` };
}

/**
 * The tokenizer stored with a model: a TorchScript archive (extra files), a Hugging Face model folder with
 * tokenizer.json, a Hub model ("org/name": only its tokenizer files and config.json are fetched), or a loaded model
 * (its tokenizerJson).
 */
export async function loadTokenizer(
  source: string | { tokenizerJson: string | null; tokenizerConfigJson: string | null; config?: { raw: Record<string, unknown> } },
  options?: HubOptions,
): Promise<Tokenizer> {
  let files: TokenizerTexts;
  if (typeof source === 'string') {
    if (source.length === 0) invalidArg('source', 'a model path, a Hub repo id or a loaded model', source);
    files = await tokenizerFiles(await resolveModel(source, { ...options, files: 'tokenizer' }));
  } else if (source && typeof source === 'object' && typeof source.tokenizerJson === 'string' && source.tokenizerJson) {
    files = { tokenizer: source.tokenizerJson, config: source.tokenizerConfigJson, model: source.config ? JSON.stringify(source.config.raw) : null, where: 'the model' };
  } else if (source && typeof source === 'object' && 'tokenizerJson' in source) {
    throw new TransformerHeadsError('this model carries no tokenizer.json', 'ERR_TH_FILE');
  } else {
    return invalidArg('source', 'a model path or a loaded model', source);
  }
  const parse = (t: string | Uint8Array | null, name: string): Json => (t === null ? {} : (parseJson(t, `${name} of ${files.where}`, { code: 'ERR_TH_FILE' }) as Json));
  const where = `tokenizer.json of ${files.where}`;
  return new Tokenizer(parse(files.tokenizer, 'tokenizer.json'), parse(files.config, 'tokenizer_config.json'), parse(files.model, 'config.json'), where);
}

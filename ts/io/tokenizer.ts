import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { invalidArg, TransformerHeadsError } from '../errors.js';
import { zipEntries } from './archive.js';

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

  /** Token ids back to text (`skipSpecialTokens` drops special tokens such as eos). */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // the underlying decoder refuses an empty list
    return this.#tok.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false } as never);
  }
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

// The one way the library reads a JSON file (head_configs.json, adapter_config.json, config.json, tokenizer files,
// run.json, trainer_state.json, ...). Files come from strangers: a deep nesting would overflow the stack of whatever
// walks the value recursively later (our code, or the tokenizer package), a byte-order mark would be a SyntaxError,
// and JSON.parse's own messages are not TransformerHeadsErrors. Everything here ends as ERR_TH_FILE or ERR_TH_CONFIG
// naming the file and the problem.
import { readFile } from 'node:fs/promises';

import { TransformerHeadsError, type ErrorCode } from '../errors.js';

/**
 * Deepest nesting of objects and arrays accepted. Every file the library reads nests at most 6 levels
 * (tokenizer.json's post_processor); 64 leaves room for files written by newer tools and stays far from any stack limit.
 */
export const MAX_JSON_DEPTH = 64;

export type JsonTop = 'object' | 'array' | 'any';

export interface JsonOptions {
  /** Code of a malformed file: ERR_TH_CONFIG for configs (the default), ERR_TH_FILE for data files. */
  code?: Extract<ErrorCode, 'ERR_TH_FILE' | 'ERR_TH_CONFIG'>;
  /** What the top-level value must be. Defaults to 'object'. */
  top?: JsonTop;
  maxDepth?: number;
}

/** A short, printable rendering of an untrusted value for an error message (never the whole value). */
export function shown(v: unknown, max = 60): string {
  let s: string;
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}

/** An untrusted string cut to `max` characters for a message, unquoted (keys, names). */
export function clip(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}

/** What a JSON value is, in words ('null', 'an array', 'a string', ...). */
export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

/** The deepest nesting of objects/arrays in JSON text, by one pass outside strings; stops early past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses JSON text (or UTF-8 bytes) from a file: strips a UTF-8 byte-order mark (as Python's utf-8-sig), refuses
 * invalid UTF-8, nesting deeper than MAX_JSON_DEPTH and a top-level value of the wrong kind. `where` names the
 * file in messages ("head_configs.json in 'out/heads'").
 */
export function parseJson(input: string | Uint8Array, where: string, options: JsonOptions = {}): unknown {
  const code = options.code ?? 'ERR_TH_CONFIG';
  const top = options.top ?? 'object';
  const limit = options.maxDepth ?? MAX_JSON_DEPTH;
  const bad = (m: string, cause?: unknown): never => {
    throw new TransformerHeadsError(`${where} ${m}`, code, cause === undefined ? undefined : { cause });
  };
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = utf8.decode(input);
    } catch (e) {
      return bad('is not valid UTF-8 text; save it as UTF-8', e);
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') bad('is empty; it must hold a JSON ' + (top === 'array' ? 'array' : top === 'object' ? 'object' : 'value'));
  const depth = jsonDepth(text, limit);
  if (depth > limit) bad(`nests objects/arrays deeper than ${limit} levels; no file this library reads needs that (is it the right file?)`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    // V8's message quotes the input around the error: bound it.
    return bad(`is not valid JSON: ${shown((e as Error).message, 160).replace(/^"|"$/g, '')}`, e);
  }
  if (top === 'object' && (typeof v !== 'object' || v === null || Array.isArray(v))) bad(`must hold a JSON object {...}, got ${kindOf(v)}`);
  if (top === 'array' && !Array.isArray(v)) bad(`must hold a JSON array [...], got ${kindOf(v)}`);
  return v;
}

/**
 * Reads and parses a JSON file (see parseJson). A missing or unreadable file is ERR_TH_FILE; with
 * `{ missing: 'null' }` a missing file gives null instead.
 */
export async function readJsonFile(path: string, what: string, options: JsonOptions & { missing: 'null' }): Promise<unknown>;
export async function readJsonFile(path: string, what: string, options?: JsonOptions & { missing?: 'error' }): Promise<unknown>;
export async function readJsonFile(path: string, what: string, options: JsonOptions & { missing?: 'error' | 'null' } = {}): Promise<unknown> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (options.missing === 'null' && err.code === 'ENOENT') return null;
    const why = err.code === 'ENOENT' ? 'does not exist' : err.code === 'EISDIR' ? 'is a folder, not a file' : `cannot be read (${err.code ?? err.message})`;
    throw new TransformerHeadsError(`${what} '${path}' ${why}`, 'ERR_TH_FILE', { cause: e });
  }
  return parseJson(buf, `${what} '${path}'`, options);
}

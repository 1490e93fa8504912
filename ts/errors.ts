/**
 * Codes carried by every error the library throws (`err.code`), as listed in the README's "Errors" section. Every
 * error the public API throws or rejects with is a TransformerHeadsError with one of these codes.
 */
export type ErrorCode =
  | 'ERR_TH_ARG' // a JS argument of the wrong type or form
  | 'ERR_TH_CONFIG' // a model, its config.json or a head/adapter config that cannot be used
  | 'ERR_TH_SHAPE' // tensor shapes or values that do not fit the model
  | 'ERR_TH_FILE' // a missing, unreadable or malformed file (model, safetensors, JSON, tokenizer, archive)
  | 'ERR_TH_DEVICE' // an unknown or unavailable device or dtype
  | 'ERR_TH_VALUE' // a number outside its allowed range (layer index, thread count), an empty dataset, a NaN / infinite label
  | 'ERR_TH_DIVERGED' // training produced a NaN or infinite loss or gradient norm (the Trainer stops)
  | 'ERR_TH_DISTRIBUTED' // data-parallel training: a rank died or timed out, the rendezvous failed, or the ranks' configurations differ
  | 'ERR_TH_DISPOSED' // use of a model after dispose()
  | 'ERR_TH_TORCH' // libtorch itself failed (message kept, C++ backtrace dropped)
  | 'ERR_TH_MEMORY' // an allocation failed (out of memory)
  | 'ERR_TH_NATIVE' // the native addon could not be loaded
  | 'ERR_TH_HUB_AUTH' // the Hub refused access: a gated or private model without a token that has access, or a bad token
  | 'ERR_TH_HUB_NOT_FOUND' // no such model, revision or file on the Hub, or a model without the files this library needs
  | 'ERR_TH_NETWORK' // the Hub could not be reached, failed, or sent a file that does not match its size or checksum
  | 'ERR_TH_OFFLINE' // offline mode (HF_HUB_OFFLINE, --offline) and the files are not in the cache
  | 'ERR_TH_ABORTED' // a download stopped by its AbortSignal (the partial file is kept and resumed next time)
  | 'ERR_TH_INTERNAL'; // a failure the library did not expect: a bug, please report it with the message

/** Every ErrorCode, in the order the README lists them. */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([
  'ERR_TH_ARG',
  'ERR_TH_CONFIG',
  'ERR_TH_SHAPE',
  'ERR_TH_FILE',
  'ERR_TH_DEVICE',
  'ERR_TH_VALUE',
  'ERR_TH_DIVERGED',
  'ERR_TH_DISTRIBUTED',
  'ERR_TH_DISPOSED',
  'ERR_TH_TORCH',
  'ERR_TH_MEMORY',
  'ERR_TH_NATIVE',
  'ERR_TH_HUB_AUTH',
  'ERR_TH_HUB_NOT_FOUND',
  'ERR_TH_NETWORK',
  'ERR_TH_OFFLINE',
  'ERR_TH_ABORTED',
  'ERR_TH_INTERNAL',
]);

/** The error type of this library. `code` is stable; the message says what was wrong and what to do. */
export class TransformerHeadsError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransformerHeadsError';
    this.code = code;
  }
}

/** Throws ERR_TH_ARG with the sharp-style message "Expected X for NAME but received VALUE". */
export function invalidArg(name: string, expected: string, value: unknown): never {
  const shown = typeof value === 'string' ? `'${value}'` : Array.isArray(value) ? `an array` : String(value);
  throw new TransformerHeadsError(`Expected ${expected} for ${name} but received ${shown} of type ${typeof value}`, 'ERR_TH_ARG');
}

/**
 * Runs a native call and rethrows its failure as a TransformerHeadsError whose stack points at the caller's code
 * (the native stack would only show the addon's internals).
 * @internal
 */
export async function nativeCall<T>(fn: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await fn();
  } catch (e) {
    throw fromNative(e, site);
  }
}

/** @internal */
export function fromNative(e: unknown, site?: Error): Error {
  if (e instanceof TransformerHeadsError) return e;
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const err = new TransformerHeadsError(e.message, typeof code === 'string' && code.startsWith('ERR_TH_') ? (code as ErrorCode) : 'ERR_TH_INTERNAL');
    if (site?.stack) err.stack = `${err.name}: ${err.message}\n${site.stack.split('\n').slice(1).join('\n')}`;
    return err;
  }
  return new TransformerHeadsError(String(e), 'ERR_TH_INTERNAL');
}

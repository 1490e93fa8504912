// Text generation around the native generator: prompt packing (left padding), option checks, text deltas and stop
// strings (the tokenizer lives here), and assembling the steps into the Python library's output shapes.
import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { Tokenizer } from '../io/index.js';
import type { NativeGenerateOptions, NativeStep, RawTensor, Tensor } from '../native/index.js';

/**
 * Options of generate() and generateStream(): length, decoding (greedy or sampling with its processors), stopping,
 * cache and cancellation.
 */
export interface GenerateOptions {
  /** Tokens to generate per row (default 20). */
  maxNewTokens?: number;
  /** Sample from the distribution instead of taking the most likely token (default false). */
  doSample?: boolean;
  /** Divides the logits when sampling (default 1; 0 = greedy). */
  temperature?: number;
  /** Keep only the k most likely tokens when sampling (0 = off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p when sampling (1 = off). */
  topP?: number;
  /** Drop tokens less likely than minP times the most likely one when sampling (0 = off). */
  minP?: number;
  /** Hugging Face's repetition penalty over the prompt and generated tokens (1 = off). */
  repetitionPenalty?: number;
  /** Seed of the sampler: the same seed, prompt and options give the same tokens. */
  seed?: number;
  /** Token id(s) that end a row. Default: the tokenizer's eos token, else config.json's eos_token_id; null: none. */
  eosTokenId?: number | number[] | null;
  /** Appended to finished rows and used to left-pad prompts. Default: the first eos id. */
  padTokenId?: number | null;
  /** Strings that end a row once its generated text contains them (needs a tokenizer). */
  stopSequences?: string[];
  /** Decodes text deltas and stop strings, and encodes string prompts. Default: the model's own tokenizer.json. */
  tokenizer?: Tokenizer | null;
  /** Reuse keys and values of earlier positions (default true); false recomputes the whole sequence each step. */
  useCache?: boolean;
  /** Also return the raw LM logits of every step (B x V floats per step). */
  outputLogits?: boolean;
  /** Stops generation between two steps; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Token ids of one prompt, or of several (ragged rows are left-padded), or text when a tokenizer is available. */
export type Prompt = string | string[] | readonly number[] | readonly (readonly number[])[] | Int32Array;

/**
 * The heads generation reports (headOutputs), given a model's head names H: every head except the causal-LM head that
 * generates (the one named 'lm_head', else the first causal-LM head). With the names known (inferred by loadHeaded)
 * and an 'lm_head' among them, that is exactly the other heads, and a misspelt name is a compile error; otherwise
 * which head generates is known only at run time, and the names are plain strings.
 */
export type GeneratedHeadName<H extends string> = 'lm_head' extends H ? Exclude<H, 'lm_head'> : string;

/** `O`: the names of the heads in headOutputs (see GeneratedHeadName). */
export interface GenerationStep<O extends string = string> {
  /** 0-based step number. */
  step: number;
  /** The token appended to each row, [B]. */
  tokens: Int32Array;
  /** tokens[0]. */
  tokenId: number;
  /** Text added to row 0 by this step ('' without a tokenizer, or while a multi-byte character is incomplete). */
  text: string;
  /** Text added to each row. */
  texts: string[];
  /** log_softmax of the raw LM logits at each row's token, [B]. */
  logprobs: Float32Array;
  /** Every non-LM head's output at the last input position of this step, [B, C]. */
  headOutputs: Record<O, Tensor>;
  /** Rows finished after this step (eos, stop string). */
  finished: boolean[];
  /** Raw LM logits [B, V] (with outputLogits). */
  logits?: Tensor;
}

/** Why a row stopped generating: its eos token, one of `stopSequences`, or `maxNewTokens`. */
export type FinishReason = 'eos' | 'stop' | 'length';

/** `O`: the names of the heads in headOutputs (see GeneratedHeadName). */
export interface GenerateOutput<O extends string = string> {
  /** Left-padded prompts followed by the generated tokens, [B, promptLength + steps]. Finished rows hold the pad token. */
  sequences: { data: Int32Array; shape: [number, number] };
  /** Attention mask of sequences (0 on left padding). */
  attentionMask: { data: Int32Array; shape: [number, number] };
  promptLength: number;
  steps: number;
  /** log-probability of each generated token under the raw logits, [B, steps]. */
  logprobs: Tensor;
  /** Every non-LM head's output at each step, [B, steps, C]: step 0 at the last prompt token, step s at generated token s-1. */
  headOutputs: Record<O, Tensor>;
  /** Generated text of each row, without the eos token (null without a tokenizer). */
  texts: string[] | null;
  finishReasons: FinishReason[];
  /** Raw LM logits, [B, steps, V] (with outputLogits). */
  logits?: Tensor;
}

/** @internal */
export interface ResolvedGenerate {
  native: NativeGenerateOptions;
  stopSequences: string[];
  signal: AbortSignal | null;
  pad: number;
}

function f32(raw: RawTensor): Float32Array {
  return new Float32Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength / 4);
}

function fromRawTensor(raw: RawTensor): Tensor {
  return { data: f32(raw), shape: [...raw.shape] };
}

/** @internal Checks the JS-side types; the core checks the ranges and names the field. */
export function resolveGenerateOptions(
  options: GenerateOptions | null | undefined,
  tokenizer: Tokenizer | null,
  configEos: number | null,
  rawEos: unknown,
): ResolvedGenerate {
  const o = options ?? {};
  if (typeof o !== 'object') invalidArg('options', 'an object', o);
  const int = (name: keyof GenerateOptions, fallback: number) => {
    const v = o[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v)) invalidArg(`options.${name}`, 'an integer', v);
    return v;
  };
  const real = (name: keyof GenerateOptions, fallback: number) => {
    const v = o[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || Number.isNaN(v)) invalidArg(`options.${name}`, 'a number', v);
    return v;
  };
  const bool = (name: keyof GenerateOptions, fallback: boolean) => {
    const v = o[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') invalidArg(`options.${name}`, 'a boolean', v);
    return v;
  };
  let eos: number[];
  if (o.eosTokenId === null) eos = [];
  else if (o.eosTokenId !== undefined) {
    eos = Array.isArray(o.eosTokenId) ? o.eosTokenId : [o.eosTokenId];
    for (const e of eos) if (!Number.isInteger(e)) invalidArg('options.eosTokenId', 'a token id or an array of token ids', o.eosTokenId);
  } else if (tokenizer?.eosTokenId != null) eos = [tokenizer.eosTokenId];
  else if (Array.isArray(rawEos)) eos = rawEos.filter((e): e is number => Number.isInteger(e));
  else eos = configEos === null ? [] : [configEos];
  const padOpt = o.padTokenId;
  if (padOpt !== undefined && padOpt !== null && !Number.isInteger(padOpt)) invalidArg('options.padTokenId', 'a token id', padOpt);
  const stops = o.stopSequences ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0)) {
    invalidArg('options.stopSequences', 'an array of non-empty strings', stops);
  }
  if (stops.length && !tokenizer) {
    throw new TransformerHeadsError('stopSequences need a tokenizer: pass options.tokenizer (this model carries no tokenizer.json)', 'ERR_TH_CONFIG');
  }
  if (o.signal != null && !(o.signal instanceof AbortSignal)) invalidArg('options.signal', 'an AbortSignal', o.signal);
  const seed = o.seed;
  if (seed !== undefined && seed !== null && (!Number.isSafeInteger(seed) || seed < 0)) invalidArg('options.seed', 'a non-negative integer', seed);
  const pad = padOpt ?? eos[0] ?? tokenizer?.padTokenId ?? 0;
  return {
    native: {
      maxNewTokens: int('maxNewTokens', 20),
      doSample: bool('doSample', false),
      temperature: real('temperature', 1),
      topK: int('topK', 0),
      topP: real('topP', 1),
      minP: real('minP', 0),
      repetitionPenalty: real('repetitionPenalty', 1),
      ...(seed !== undefined && seed !== null ? { seed } : {}),
      eosTokenIds: eos,
      ...(padOpt !== undefined && padOpt !== null ? { padTokenId: padOpt } : {}),
      useCache: bool('useCache', true),
      keepLogits: bool('outputLogits', false),
    },
    stopSequences: stops,
    signal: o.signal ?? null,
    pad,
  };
}

/** @internal Left-pads the prompts into [B, T] ids and mask. */
export function packPrompt(prompt: Prompt, tokenizer: Tokenizer | null, pad: number): { ids: Int32Array; mask: Int32Array; shape: [number, number] } {
  let rows: number[][];
  const encode = (s: string) => {
    if (!tokenizer) throw new TransformerHeadsError('a text prompt needs a tokenizer: pass options.tokenizer (this model carries no tokenizer.json) or token ids', 'ERR_TH_CONFIG');
    return tokenizer.encode(s).ids;
  };
  if (typeof prompt === 'string') rows = [encode(prompt)];
  else if (prompt instanceof Int32Array) rows = [Array.from(prompt)];
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'string')) rows = (prompt as string[]).map(encode);
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p: unknown) => Array.isArray(p) || p instanceof Int32Array)) {
    rows = (prompt as unknown as ArrayLike<number>[]).map((r) => Array.from(r));
  } else if (Array.isArray(prompt) && prompt.every((p) => typeof p === 'number')) rows = [Array.from(prompt as number[])];
  else invalidArg('prompt', 'a string, an array of strings, token ids (number[]) or rows of token ids (number[][])', prompt);
  for (const [i, r] of rows.entries()) {
    if (r.length === 0) throw new TransformerHeadsError(`prompt ${i} is empty: generation needs at least one token`, 'ERR_TH_SHAPE');
    for (const t of r) if (!Number.isInteger(t)) invalidArg(`prompt ${i}`, 'integer token ids', t);
  }
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(B * T).fill(pad);
  const mask = new Int32Array(B * T);
  rows.forEach((r, b) => {
    ids.set(r, b * T + T - r.length);
    mask.fill(1, b * T + T - r.length, (b + 1) * T);
  });
  return { ids, mask, shape: [B, T] };
}

/** @internal Per-row text of the generated tokens, released as deltas, and stop-string matching. */
export class TextTracker {
  readonly #tok: Tokenizer | null;
  readonly #stops: string[];
  readonly #eos: Set<number>;
  readonly tokens: number[][];
  readonly text: string[];
  readonly reasons: Array<FinishReason | null>;

  constructor(tokenizer: Tokenizer | null, rows: number, stops: string[], eos: number[]) {
    this.#tok = tokenizer;
    this.#stops = stops;
    this.#eos = new Set(eos);
    this.tokens = Array.from({ length: rows }, () => []);
    this.text = Array.from({ length: rows }, () => '');
    this.reasons = Array.from({ length: rows }, () => null);
  }

  /** Takes one step's tokens; returns each row's text delta and the rows a stop string has just finished. */
  push(tokens: Int32Array): { deltas: string[]; stopped: number[] } {
    const deltas: string[] = [];
    const stopped: number[] = [];
    for (let r = 0; r < tokens.length; ++r) {
      if (this.reasons[r] !== null) {
        deltas.push('');
        continue;
      }
      const t = tokens[r]!;
      if (this.#eos.has(t)) {
        this.reasons[r] = 'eos';
        deltas.push(this.#flush(r));
        continue;
      }
      this.tokens[r]!.push(t);
      if (!this.#tok) {
        deltas.push('');
        continue;
      }
      const full = this.#tok.decode(this.tokens[r]!);
      // A byte-level BPE token can end inside a UTF-8 character: hold the text back until the character completes.
      if (full.endsWith('\uFFFD')) {
        deltas.push('');
        continue;
      }
      const prev = this.text[r]!;
      const delta = full.startsWith(prev) ? full.slice(prev.length) : full.slice(Math.min(prev.length, full.length));
      this.text[r] = full;
      deltas.push(delta);
      for (const s of this.#stops) {
        if (full.indexOf(s, Math.max(0, prev.length - s.length + 1)) >= 0) {
          this.reasons[r] = 'stop';
          stopped.push(r);
          break;
        }
      }
    }
    return { deltas, stopped };
  }

  /** Text still held back (an incomplete character at the end): released as is. */
  #flush(r: number): string {
    if (!this.#tok) return '';
    const full = this.#tok.decode(this.tokens[r]!);
    const prev = this.text[r]!;
    this.text[r] = full;
    return full.startsWith(prev) ? full.slice(prev.length) : '';
  }

  finishLength(): void {
    for (let r = 0; r < this.reasons.length; ++r) {
      if (this.reasons[r] === null) {
        this.#flush(r);
        this.reasons[r] = 'length';
      }
    }
  }
}

/** @internal Turns a native step into the public step. */
export function toStep(s: NativeStep, deltas: string[], finished: boolean[]): GenerationStep {
  const headOutputs: Record<string, Tensor> = {};
  for (const h of s.heads) headOutputs[h.name] = fromRawTensor(h);
  return {
    step: s.index,
    tokens: s.tokens.data,
    tokenId: s.tokens.data[0]!,
    text: deltas[0] ?? '',
    texts: deltas,
    logprobs: f32(s.logprobs),
    headOutputs,
    finished,
    ...(s.logits ? { logits: fromRawTensor(s.logits) } : {}),
  };
}

/** @internal Stacks the steps into the Python library's output: [B, steps] and [B, steps, C]. */
export function assemble(
  prompt: { ids: Int32Array; mask: Int32Array; shape: [number, number] },
  steps: GenerationStep[],
  tracker: TextTracker,
  hasTokenizer: boolean,
): GenerateOutput {
  const [B, P] = prompt.shape;
  const S = steps.length;
  const W = P + S;
  const seq = new Int32Array(B * W);
  const mask = new Int32Array(B * W);
  const logprobs = new Float32Array(B * S);
  for (let b = 0; b < B; ++b) {
    seq.set(prompt.ids.subarray(b * P, (b + 1) * P), b * W);
    mask.set(prompt.mask.subarray(b * P, (b + 1) * P), b * W);
    mask.fill(1, b * W + P, (b + 1) * W);
    for (let s = 0; s < S; ++s) {
      seq[b * W + P + s] = steps[s]!.tokens[b]!;
      logprobs[b * S + s] = steps[s]!.logprobs[b]!;
    }
  }
  const stack = (pick: (st: GenerationStep) => Tensor | undefined): Tensor | null => {
    const first = S ? pick(steps[0]!) : undefined;
    if (!first) return null;
    const C = first.shape[1]!;
    const data = new Float32Array(B * S * C);
    for (let s = 0; s < S; ++s) {
      const t = pick(steps[s]!)!;
      for (let b = 0; b < B; ++b) data.set(t.data.subarray(b * C, (b + 1) * C), (b * S + s) * C);
    }
    return { data, shape: [B, S, C] };
  };
  const headOutputs: Record<string, Tensor> = {};
  for (const name of S ? Object.keys(steps[0]!.headOutputs) : []) headOutputs[name] = stack((st) => st.headOutputs[name])!;
  const logits = stack((st) => st.logits);
  tracker.finishLength();
  return {
    sequences: { data: seq, shape: [B, W] },
    attentionMask: { data: mask, shape: [B, W] },
    promptLength: P,
    steps: S,
    logprobs: { data: logprobs, shape: [B, S] },
    headOutputs,
    texts: hasTokenizer ? [...tracker.text] : null,
    finishReasons: tracker.reasons.map((r) => r ?? 'length'),
    ...(logits ? { logits } : {}),
  };
}

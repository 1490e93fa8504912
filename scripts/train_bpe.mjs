// A byte-level BPE tokenizer trained from text, written as a standard Hugging Face tokenizer.json (model BPE,
// ByteLevel pre-tokenizer and decoder, a TemplateProcessing post-processor that puts the bos token first) that
// @huggingface/tokenizers and Python's `tokenizers` load. The same scheme as GPT-2's tokenizer: GPT-2's
// pre-tokenization regex, its byte-to-unicode map, merges learnt by pair frequency over the pre-tokenized words.
// Deterministic: ties between equally frequent pairs go to the pair of smaller token ids (first symbol, then
// second); words are visited in a fixed (sorted) order.
//
//   node scripts/train_bpe.mjs OUT_DIR [VOCAB_SIZE]   trains on the embedded model's training documents

/** GPT-2's pre-tokenizer: contractions, optional space + letters / digits / other, whitespace. */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards, in byte order. */
export function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map = new Array(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return map;
}

/** A binary max-heap of [count, a, b] ordered by count, then smaller a, then smaller b. */
class PairHeap {
  constructor() {
    this.h = [];
  }
  static before(x, y) {
    return x[0] > y[0] || (x[0] === y[0] && (x[1] < y[1] || (x[1] === y[1] && x[2] < y[2])));
  }
  push(e) {
    const h = this.h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!PairHeap.before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }
  pop() {
    const h = this.h;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && PairHeap.before(h[l], h[m])) m = l;
        if (r < h.length && PairHeap.before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
  get size() {
    return this.h.length;
  }
}

/**
 * Learns merges until the vocabulary (special tokens, then the 256 byte symbols in byte order, then one token per
 * merge) has `vocabSize` entries. Returns the vocabulary as an array of token strings (index = id) and the merges.
 */
export function trainByteLevelBpe(texts, { vocabSize, specialTokens = [] }) {
  const b2u = bytesToUnicode();
  const enc = new TextEncoder();
  // Word counts over the pre-tokenized texts.
  const counts = new Map();
  for (const text of texts) {
    for (const m of text.matchAll(GPT2_PATTERN)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  }
  const tokens = [...specialTokens, ...b2u];
  const byteBase = specialTokens.length;
  const words = [];
  const freqs = [];
  for (const [w, c] of [...counts].sort((x, y) => (x[0] < y[0] ? -1 : 1))) {
    words.push(Array.from(enc.encode(w), (b) => byteBase + b));
    freqs.push(c);
  }
  const key = (a, b) => a * 65536 + b;
  const pairCount = new Map();
  const pairWords = new Map(); // pair -> set of word indices where it may occur
  const add = (a, b, wi, c) => {
    const k = key(a, b);
    pairCount.set(k, (pairCount.get(k) ?? 0) + c);
    let s = pairWords.get(k);
    if (!s) pairWords.set(k, (s = new Set()));
    s.add(wi);
  };
  words.forEach((w, wi) => {
    for (let i = 0; i + 1 < w.length; i++) add(w[i], w[i + 1], wi, freqs[wi]);
  });
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push([c, Math.floor(k / 65536), k % 65536]);
  const merges = [];
  while (tokens.length < vocabSize && heap.size > 0) {
    const [c, a, b] = heap.pop();
    const k = key(a, b);
    if ((pairCount.get(k) ?? 0) !== c || c <= 0) continue; // stale entry
    const id = tokens.length;
    tokens.push(tokens[a] + tokens[b]);
    merges.push([tokens[a], tokens[b]]);
    const touched = new Map();
    for (const wi of pairWords.get(k)) {
      const w = words[wi];
      const f = freqs[wi];
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) has = true;
      if (!has) continue;
      for (let i = 0; i + 1 < w.length; i++) {
        const kk = key(w[i], w[i + 1]);
        pairCount.set(kk, pairCount.get(kk) - f);
        touched.set(kk, true);
      }
      const out = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(w[i]);
      }
      words[wi] = out;
      for (let i = 0; i + 1 < out.length; i++) {
        add(out[i], out[i + 1], wi, f);
        touched.set(key(out[i], out[i + 1]), true);
      }
    }
    pairWords.delete(k);
    pairCount.delete(k);
    for (const kk of touched.keys()) {
      const cc = pairCount.get(kk);
      if (cc === undefined) continue;
      if (cc <= 0) pairCount.delete(kk);
      else heap.push([cc, Math.floor(kk / 65536), kk % 65536]);
    }
  }
  return { tokens, merges };
}

/**
 * tokenizer.json for the trained vocabulary. The special tokens are added tokens (never split, skipped by
 * decode(skip_special_tokens)); encode() with special tokens puts `bos` before the text, as Llama's tokenizers do.
 */
export function tokenizerJson({ tokens, merges }, { specialTokens, bos }) {
  const special = (content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const bosId = tokens.indexOf(bos);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specialTokens.map((t) => special(t, tokens.indexOf(t))),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
    },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '', // '' rather than null: older Python tokenizers read these as strings
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(tokens.map((t, i) => [t, i])),
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** tokenizer_config.json as transformers writes it for a fast tokenizer with these special tokens. */
export function tokenizerConfigJson({ specialTokens, bos, eos, pad, modelMaxLength }) {
  const decoder = {};
  specialTokens.forEach((t, i) => (decoder[String(i)] = { content: t, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }));
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: decoder,
    bos_token: bos,
    clean_up_tokenization_spaces: false,
    eos_token: eos,
    model_max_length: modelMaxLength,
    pad_token: pad,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}

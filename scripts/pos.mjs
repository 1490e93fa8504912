// Part-of-speech data for the probing demo and its test: held-out Brown documents (never seen by the embedded
// model's pretraining or its tokenizer), tags collapsed to the 12 universal tags of Petrov, Das & McDonald (2012),
// each word's tag put on the first (or last) sub-token of the word, every other position -100 (ignored by the loss and the
// metrics).
import { brownDocuments, heldOutBrownIds } from './corpus.mjs';

export const UNIVERSAL_TAGS = Object.freeze(['.', 'ADJ', 'ADP', 'ADV', 'CONJ', 'DET', 'NOUN', 'NUM', 'PRON', 'PRT', 'VERB', 'X']);

// Brown base tag -> universal tag (the en-brown mapping of the universal tag set, written out for the base tags).
const BASE = {
  nn: 'NOUN', nns: 'NOUN', np: 'NOUN', nps: 'NOUN', nr: 'NOUN', nrs: 'NOUN',
  vb: 'VERB', vbd: 'VERB', vbg: 'VERB', vbn: 'VERB', vbz: 'VERB', md: 'VERB',
  be: 'VERB', bed: 'VERB', bedz: 'VERB', beg: 'VERB', bem: 'VERB', ben: 'VERB', ber: 'VERB', bez: 'VERB',
  do: 'VERB', dod: 'VERB', doz: 'VERB', hv: 'VERB', hvd: 'VERB', hvg: 'VERB', hvn: 'VERB', hvz: 'VERB',
  jj: 'ADJ', jjr: 'ADJ', jjs: 'ADJ', jjt: 'ADJ', od: 'ADJ',
  rb: 'ADV', rbr: 'ADV', rbt: 'ADV', rn: 'ADV', ql: 'ADV', qlp: 'ADV', wql: 'ADV', wrb: 'ADV', '*': 'ADV',
  pn: 'PRON', pp: 'PRON', ppl: 'PRON', ppls: 'PRON', ppo: 'PRON', pps: 'PRON', ppss: 'PRON', wpo: 'PRON', wps: 'PRON', wp: 'PRON',
  at: 'DET', ap: 'DET', abn: 'DET', abl: 'DET', abx: 'DET', dt: 'DET', dti: 'DET', dts: 'DET', dtx: 'DET', wdt: 'DET', ex: 'DET',
  in: 'ADP', cd: 'NUM', cc: 'CONJ', cs: 'CONJ', rp: 'PRT', to: 'PRT',
  '.': '.', ',': '.', ':': '.', '(': '.', ')': '.', '--': '.', '``': '.', "''": '.', "'": '.',
  uh: 'X', nil: 'X',
};

/**
 * Brown tag as written in the corpus -> universal tag. Brown's marks are dropped first: the fw- prefix (foreign
 * word: X), the -tl (title), -hl (headline) and -nc (cited) suffixes, a contraction's second half (ppss+ber: the
 * first word's tag), the $ possessive and the * negation on verbs (bedz*: VERB).
 */
export function universalTag(brownTag) {
  let t = brownTag.toLowerCase();
  if (t.startsWith('fw-')) return 'X';
  t = t.split('+')[0].replace(/(-(tl|hl|nc))+$/, '');
  if (t === '*' || t === '*-hl') return 'ADV';
  if (t.length > 1) t = t.replace(/[$*]+$/, '');
  return BASE[t] ?? 'X';
}

/** The held-out Brown documents split for probing: every third one (in file-id order) tests, the rest train. */
export function posDocuments() {
  const held = new Set(heldOutBrownIds());
  const docs = brownDocuments().filter((d) => held.has(d.id));
  return { train: docs.filter((_, i) => i % 3 !== 2), test: docs.filter((_, i) => i % 3 === 2) };
}

/**
 * Token offsets by decoding each token: the byte-level BPE decodes token by token back to the text, so the
 * running length is each token's start. Returns null when the pieces do not spell the text (a character split
 * across tokens), and the caller drops that chunk.
 */
function tokenStarts(tokenizer, ids, text) {
  const starts = [];
  let at = 0;
  for (const id of ids) {
    const piece = tokenizer.decode([id]);
    if (text.slice(at, at + piece.length) !== piece) return null;
    starts.push(at);
    at += piece.length;
  }
  return at === text.length ? starts : null;
}

/**
 * align 'first' puts each word's tag on its first sub-token (the convention for bidirectional encoders); 'last' on
 * its last sub-token, the first position where a causal model has read the whole word.
 *
 * One document's sentences packed into chunks of up to maxTokens tokens (whole sentences; a longer sentence is cut),
 * each { input_ids, attention_mask, tag, words } where tag[t] is the universal-tag index of the word whose first
 * sub-token is t (else -100) and words[t] that word (lower case; null elsewhere).
 */
export function documentChunks(tokenizer, doc, maxTokens = 96, align = 'last') {
  const chunks = [];
  let dropped = 0;
  const tagIndex = new Map(UNIVERSAL_TAGS.map((t, i) => [t, i]));
  const flush = (sents) => {
    if (sents.length === 0) return;
    const start = sents[0][0].start;
    const end = sents.at(-1).at(-1).end;
    const text = doc.text.slice(start, end);
    const ids = tokenizer.encode(text, { addSpecialTokens: false }).ids;
    const starts = tokenStarts(tokenizer, ids, text);
    if (!starts) return void dropped++;
    const at = new Map(starts.map((s, t) => [s, t]));
    // the token holding each character
    const owner = new Int32Array(text.length);
    starts.forEach((s, t) => owner.fill(t, s, t + 1 < starts.length ? starts[t + 1] : text.length));
    const tag = ids.map(() => -100);
    const words = ids.map(() => null);
    for (const w of sents.flat()) {
      // first: the word starts a token at its first character, or one before when the token carries the leading
      // space; a word that starts inside a token (glued to the one before) has no first sub-token of its own.
      // last: the token holding the word's last character.
      const t = align === 'first' ? (at.get(w.start - start) ?? at.get(w.start - start - 1)) : owner[w.end - 1 - start];
      if (t === undefined || tag[t] !== -100) continue;
      tag[t] = tagIndex.get(universalTag(w.tag));
      words[t] = w.word.toLowerCase();
    }
    const n = Math.min(ids.length, maxTokens);
    chunks.push({ input_ids: ids.slice(0, n), attention_mask: ids.slice(0, n).map(() => 1), tag: tag.slice(0, n), words: words.slice(0, n) });
  };
  let cur = [];
  let chars = 0;
  for (const s of doc.sentences) {
    const len = s.at(-1).end - s[0].start;
    // about 4 characters a token in Brown for this BPE
    if (cur.length > 0 && (chars + len) / 4 > maxTokens * 0.9) {
      flush(cur);
      cur = [];
      chars = 0;
    }
    cur.push(s);
    chars += len + 1;
  }
  flush(cur);
  return { chunks, dropped };
}

/**
 * Chunks from a list of documents, taken round-robin across documents (so every genre is in) until `tokens` labelled
 * positions are collected.
 */
export function posRows(tokenizer, docs, tokens, maxTokens = 96, align = 'last') {
  const per = docs.map((d) => documentChunks(tokenizer, d, maxTokens, align).chunks);
  const rows = [];
  let labelled = 0;
  for (let k = 0; labelled < tokens && per.some((c) => k < c.length); k++) {
    for (const c of per) {
      if (k >= c.length || labelled >= tokens) continue;
      rows.push(c[k]);
      labelled += c[k].tag.filter((t) => t !== -100).length;
    }
  }
  return rows;
}

/**
 * The most-frequent-tag-per-word baseline: each word's most frequent tag in the training rows, the overall most
 * frequent tag for a word never seen there. Returns its accuracy on the test rows (same labelled positions as the
 * probes).
 */
export function mostFrequentTagBaseline(train, test) {
  const byWord = new Map();
  const overall = new Array(UNIVERSAL_TAGS.length).fill(0);
  for (const r of train) {
    r.tag.forEach((y, t) => {
      if (y === -100) return;
      const c = byWord.get(r.words[t]) ?? new Array(UNIVERSAL_TAGS.length).fill(0);
      c[y]++;
      byWord.set(r.words[t], c);
      overall[y]++;
    });
  }
  const argmax = (c) => c.indexOf(Math.max(...c));
  const fallback = argmax(overall);
  let ok = 0;
  let n = 0;
  let unseen = 0;
  for (const r of test) {
    r.tag.forEach((y, t) => {
      if (y === -100) return;
      const c = byWord.get(r.words[t]);
      if (!c) unseen++;
      ok += (c ? argmax(c) : fallback) === y ? 1 : 0;
      n++;
    });
  }
  return { accuracy: ok / n, positions: n, unseenWords: unseen / n, majorityTag: UNIVERSAL_TAGS[fallback], majorityAccuracy: test.flatMap((r) => r.tag.filter((y) => y !== -100)).filter((y) => y === fallback).length / n };
}

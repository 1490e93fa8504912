// A linear probe: part of speech (12 universal tags) of each word, read from the hidden state of one layer of the
// frozen model at the word's last sub-token (the first position where a causal model has read the whole word).
// Token-level classification on Brown documents the embedded model never saw (scripts/pos.mjs): the probe trains on
// words of some held-out documents and is tested on others. Baselines: always the most frequent tag, and each word's
// most frequent tag in the probe's training words (the overall most frequent tag for unseen words).
//   node examples/linear-probe.mjs [model] [--layer=L] [--train-words=N] [--test-words=N] [--epochs=E] [--seed=S]
import { parseArgs } from 'node:util';

import { DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { mostFrequentTagBaseline, posDocuments, posRows, UNIVERSAL_TAGS } from '../scripts/pos.mjs';
import { defaultModel, report } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    layer: { type: 'string', default: '2' },
    'train-words': { type: 'string', default: '12000' },
    'test-words': { type: 'string', default: '6000' },
    epochs: { type: 'string', default: '10' },
    seed: { type: 'string', default: '42' },
  },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const docs = posDocuments();
const trainRows = posRows(tokenizer, docs.train, Number(opt['train-words']));
const testRows = posRows(tokenizer, docs.test, Number(opt['test-words']));
const baseline = mostFrequentTagBaseline(trainRows, testRows);
const strip = (rows) => new Dataset(rows.map(({ words, ...r }) => r));

const layer = Number(opt.layer);
const seed = Number(opt.seed);
const model = await loadHeaded(modelPath, {
  heads: [{ name: 'pos', inSize: config.hiddenSize, numOutputs: UNIVERSAL_TAGS.length, layerHook: layer, target: 'tag', ignorePads: false }],
  freezeBaseModel: true,
  seed,
});
const trainer = new Trainer(
  model,
  { outputDir: 'out/linear-probe', learningRate: 2e-2, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, loggingSteps: 50, seed },
  { trainDataset: strip(trainRows), evalDataset: strip(testRows), dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0, tag: -100 }) },
);
const t0 = performance.now();
await trainer.train();
const m = await trainer.evaluate();
report({
  example: 'linear probe: part of speech of each word (12 universal tags), held-out Brown documents',
  layer,
  seed,
  train_words: trainRows.reduce((n, r) => n + r.tag.filter((y) => y !== -100).length, 0),
  test_words: baseline.positions,
  seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  test_accuracy: Number(m.eval_pos_accuracy.toFixed(4)),
  test_f1_macro: Number(m.eval_pos_f1_macro.toFixed(4)),
  most_frequent_tag_baseline: Number(baseline.accuracy.toFixed(4)),
  majority_baseline: Number(baseline.majorityAccuracy.toFixed(4)),
});
model.dispose();

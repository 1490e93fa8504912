// Text classification with a linear probe on the last real token's hidden state (predForSequence) of a frozen model.
// Default task: is a sentence from Moby-Dick or from the Brown corpus? Sentences of documents the embedded model never
// saw (held-out chapters and Brown documents), balanced, split 80/20 at random. --task=spam: spam vs ham on the
// SpamAssassin corpus, which the embedded model cannot do (README, Examples).
//   node examples/text-classification.mjs [model] [--task=source|spam] [--examples N] [--epochs E] [--layer L]
// Data parallel (docs/distributed.md): npx transformer-heads launch --nproc-per-node 2 examples/text-classification.mjs
import { parseArgs } from 'node:util';

import { currentProcessGroup, DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, sourceSentences, spamAssassin } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    examples: { type: 'string', default: '2000' },
    epochs: { type: 'string', default: '6' },
    'max-tokens': { type: 'string', default: '64' },
    layer: { type: 'string', default: '-1' },
    task: { type: 'string', default: 'source' },
    seed: { type: 'string', default: '1' },
    lr: { type: 'string', default: '2e-2' },
  },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const maxTokens = Number(opt['max-tokens']);

const all = new Dataset(opt.task === 'spam' ? await spamAssassin() : await sourceSentences(270)).shuffle(0);
const data = all.select([...Array(Math.min(Number(opt.examples), all.length)).keys()]).map(({ text, label }) => {
  const ids = tokenizer.encode(text).ids.slice(0, maxTokens);
  return { input_ids: ids, attention_mask: ids.map(() => 1), label };
});
const { train, test } = data.trainTestSplit(0.2, Number(opt.seed));

const model = await loadHeaded(modelPath, {
  heads: [{ name: 'label', inSize: config.hiddenSize, numOutputs: 2, predForSequence: true, layerHook: Number(opt.layer) }],
});
const trainer = new Trainer(
  model,
  { outputDir: 'out/text-classification', learningRate: Number(opt.lr), numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, perDeviceEvalBatchSize: 32, loggingSteps: 20 },
  { trainDataset: train, evalDataset: test, dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0 }) },
);
const t0 = performance.now();
const result = await trainer.train();
const metrics = await trainer.evaluate();
// Under `launch` every rank trains; rank 0 reports and saves (the weights are the same on every rank).
if ((currentProcessGroup()?.rank ?? 0) !== 0) process.exit(0);
const baseline = majorityBaseline(test.rows.map((r) => r.label));
console.log(
  JSON.stringify({
    example: `text-classification (${opt.task === 'spam' ? 'spam vs ham' : 'sentence from Moby-Dick or Brown'}, linear probe on the last token)`,
    model: modelPath,
    train_examples: train.length,
    test_examples: test.length,
    epochs: Number(opt.epochs),
    activation_cache: result.activationCache,
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    test_accuracy: Number(metrics.eval_label_accuracy.toFixed(4)),
    test_f1_macro: Number(metrics.eval_label_f1_macro.toFixed(4)),
    majority_baseline: Number(baseline.toFixed(4)),
  }),
);
await model.save('out/text-classification/heads');
model.dispose();

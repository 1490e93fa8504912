// A linear probe: does the hidden state at one layer tell whether a link ('http') has appeared so far in the email?
// Token-level classification on SpamAssassin text, frozen backbone, one linear head.
//   node examples/linear-probe.mjs [model] [--layer=L] [--examples=N] [--epochs=E]
import { parseArgs } from 'node:util';

import { DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, report, tokenizedSpam } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { layer: { type: 'string', default: '-1' }, examples: { type: 'string', default: '1200' }, epochs: { type: 'string', default: '6' } },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const data = new Dataset(await tokenizedSpam(tokenizer, { examples: Number(opt.examples) }));
const { train, test } = data.trainTestSplit(0.2, 1);

const layer = Number(opt.layer);
const model = await loadHeaded(modelPath, { heads: [{ name: 'link_seen', inSize: config.hiddenSize, numOutputs: 2, layerHook: layer }] });
const trainer = new Trainer(
  model,
  { outputDir: 'out/linear-probe', learningRate: 2e-2, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, loggingSteps: 50 },
  { trainDataset: train, evalDataset: test, dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0, link_seen: -100 }) },
);
const t0 = performance.now();
await trainer.train();
const m = await trainer.evaluate();
report({
  example: "linear probe: has a link ('http') appeared so far?",
  layer,
  seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  test_accuracy: Number(m.eval_link_seen_accuracy.toFixed(4)),
  test_f1_macro: Number(m.eval_link_seen_f1_macro.toFixed(4)),
  majority_baseline: Number(majorityBaseline(test.rows.flatMap((r) => r.link_seen)).toFixed(4)),
});
model.dispose();

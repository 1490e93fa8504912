// Many linear probes at once, one per hidden state (embeddings, every block, the final norm), all trained together
// on the same frozen forward pass: accuracy by layer for "has a link ('http') appeared so far?" and "is this email
// spam?" (read at the last token).
//   node examples/multi-probe.mjs [model] [--examples=N] [--epochs=E]
import { parseArgs } from 'node:util';

import { DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, report, tokenizedSpam } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '1500' }, epochs: { type: 'string', default: '6' } },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const data = new Dataset(await tokenizedSpam(tokenizer, { examples: Number(opt.examples) }));
const { train, test } = data.trainTestSplit(0.2, 1);

const layers = Array.from({ length: config.numLayers + 1 }, (_, i) => i);
const heads = layers.flatMap((l) => [
  { name: `link_L${l}`, inSize: config.hiddenSize, numOutputs: 2, layerHook: l, target: 'link_seen' },
  { name: `spam_L${l}`, inSize: config.hiddenSize, numOutputs: 2, layerHook: l, target: 'spam', predForSequence: true },
]);
const model = await loadHeaded(modelPath, { heads });
const trainer = new Trainer(
  model,
  { outputDir: 'out/multi-probe', learningRate: 2e-2, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, loggingSteps: 50, evalStrategy: 'no' },
  { trainDataset: train, evalDataset: test, dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0, link_seen: -100 }) },
);
const t0 = performance.now();
const res = await trainer.train();
const m = await trainer.evaluate();
const seconds = (performance.now() - t0) / 1000;

console.log(`\n${heads.length} probes on ${layers.length} hidden states, trained together in ${seconds.toFixed(1)} s (activation cache: ${res.activationCache})`);
console.log('layer  what                 link seen: acc   spam: acc   spam: macro-F1');
for (const l of layers) {
  const what = l === 0 ? 'embeddings' : l === config.numLayers ? 'final norm (-1)' : `block ${l}`;
  console.log(
    `${String(l).padStart(5)}  ${what.padEnd(20)} ${m[`eval_link_L${l}_accuracy`].toFixed(3).padStart(14)} ${m[`eval_spam_L${l}_accuracy`].toFixed(3).padStart(11)} ${m[`eval_spam_L${l}_f1_macro`].toFixed(3).padStart(16)}`,
  );
}
const baseLink = majorityBaseline(test.rows.flatMap((r) => r.link_seen));
const baseSpam = majorityBaseline(test.rows.map((r) => r.spam));
console.log(`majority baseline       ${baseLink.toFixed(3).padStart(14)} ${baseSpam.toFixed(3).padStart(11)}`);
report({
  example: 'multi-probe',
  seconds: Number(seconds.toFixed(1)),
  accuracy_by_layer: Object.fromEntries(layers.map((l) => [l, { link_seen: Number(m[`eval_link_L${l}_accuracy`].toFixed(4)), spam: Number(m[`eval_spam_L${l}_accuracy`].toFixed(4)) }])),
  majority_baseline: { link_seen: Number(baseLink.toFixed(4)), spam: Number(baseSpam.toFixed(4)) },
});
model.dispose();

// Many linear probes at once, one per hidden state (embeddings, every block, the final norm), all trained together
// on the same frozen forward pass, for two tasks on two datasets in one run:
//   - link seen (every token of SpamAssassin emails): has a link ('http') appeared so far? A fact about earlier
//     tokens, readable only where attention has mixed the context in.
//   - source (the last token of a sentence): is it from Moby-Dick or from the Brown corpus? Held-out chapters and
//     documents, as in text-classification.mjs.
// Each row carries the labels of its own task and -100 (ignored by the loss and the metrics) for the other, so one
// Trainer trains every probe of both tasks in each step.
//   node examples/multi-probe.mjs [model] [--examples=N] [--sentences=N] [--epochs=E]
import { parseArgs } from 'node:util';

import { DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, report, sourceSentences, tokenizedSpam } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '1500' }, sentences: { type: 'string', default: '270' }, epochs: { type: 'string', default: '6' } },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);

const emails = new Dataset((await tokenizedSpam(tokenizer, { examples: Number(opt.examples) })).map(({ input_ids, attention_mask, link_seen }) => ({ input_ids, attention_mask, link_seen, source: -100 })));
const sentences = new Dataset(await sourceSentences(Number(opt.sentences))).map(({ text, label }) => {
  const ids = tokenizer.encode(text).ids.slice(0, 64);
  return { input_ids: ids, attention_mask: ids.map(() => 1), link_seen: ids.map(() => -100), source: label };
});
const e = emails.trainTestSplit(0.2, 1);
const s = sentences.trainTestSplit(0.2, 1);
const train = new Dataset([...e.train.rows, ...s.train.rows]).shuffle(0);
const test = new Dataset([...e.test.rows, ...s.test.rows]);

const layers = Array.from({ length: config.numLayers + 1 }, (_, i) => i);
const heads = layers.flatMap((l) => [
  { name: `link_L${l}`, inSize: config.hiddenSize, numOutputs: 2, layerHook: l, target: 'link_seen' },
  { name: `source_L${l}`, inSize: config.hiddenSize, numOutputs: 2, layerHook: l, target: 'source', predForSequence: true },
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
console.log('layer  what                 link seen: acc   source: acc   source: macro-F1');
for (const l of layers) {
  const what = l === 0 ? 'embeddings' : l === config.numLayers ? 'final norm (-1)' : `block ${l}`;
  console.log(
    `${String(l).padStart(5)}  ${what.padEnd(20)} ${m[`eval_link_L${l}_accuracy`].toFixed(3).padStart(14)} ${m[`eval_source_L${l}_accuracy`].toFixed(3).padStart(13)} ${m[`eval_source_L${l}_f1_macro`].toFixed(3).padStart(18)}`,
  );
}
const baseLink = majorityBaseline(e.test.rows.flatMap((r) => r.link_seen));
const baseSource = majorityBaseline(s.test.rows.map((r) => r.source));
console.log(`majority baseline       ${baseLink.toFixed(3).padStart(14)} ${baseSource.toFixed(3).padStart(13)}`);
report({
  example: 'multi-probe',
  seconds: Number(seconds.toFixed(1)),
  test_emails: e.test.length,
  test_sentences: s.test.length,
  accuracy_by_layer: Object.fromEntries(layers.map((l) => [l, { link_seen: Number(m[`eval_link_L${l}_accuracy`].toFixed(4)), source: Number(m[`eval_source_L${l}_accuracy`].toFixed(4)) }])),
  majority_baseline: { link_seen: Number(baseLink.toFixed(4)), source: Number(baseSource.toFixed(4)) },
});
model.dispose();

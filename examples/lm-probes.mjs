// Causal-LM linear probes on every layer (the Python library's linear_probe / multi_linear_probe notebooks): one
// linear head per hidden state predicts the next token, all trained together on the frozen model. The held-out loss
// by layer shows how much of the next-token prediction each layer already holds; the model's own lm_head is the
// reference. Text: the end of Moby-Dick that scripts/pretrain.mjs held out from the embedded model's training.
//   node examples/lm-probes.mjs [model] [--epochs=E] [--blocks=N]
import { parseArgs } from 'node:util';

import { Dataset, DataCollatorWithPadding, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { corpusBlocks } from '../scripts/pretrain.mjs';
import { defaultModel, report } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { epochs: { type: 'string', default: '2' }, blocks: { type: 'string', default: '64' } },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const blocks = (await corpusBlocks(tokenizer)).heldOut.slice(0, Number(opt.blocks)); // 128-token blocks
const rows = blocks.map((b) => ({ input_ids: Array.from(b), attention_mask: Array.from(b, () => 1), next: Array.from(b) }));
const { train, test } = new Dataset(rows).trainTestSplit(0.25, 1);

const layers = Array.from({ length: config.numLayers + 1 }, (_, i) => i);
const probe = (l) => ({ name: `lm_L${l}`, inSize: config.hiddenSize, numOutputs: config.vocabSize, layerHook: l, isCausalLm: true, target: 'next' });
// The pretrained head, frozen: the loss the probes are measured against.
const own = { name: 'lm_head', inSize: config.hiddenSize, numOutputs: config.vocabSize, isCausalLm: true, trainable: false, target: 'next' };
const model = await loadHeaded(modelPath, { heads: [...layers.map(probe), own] });
const trainer = new Trainer(
  model,
  { outputDir: 'out/lm-probes', learningRate: 1e-2, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 8, loggingSteps: 5, evalStrategy: 'no', disableProgressBar: true },
  { trainDataset: train, dataCollator: new DataCollatorWithPadding({ attention_mask: 0 }) },
);
// Held-out loss per head, token-weighted over the test blocks (forward without predictions: 6 x [8, 128, 50257]
// logits would be 1.2 GB per batch).
const collator = new DataCollatorWithPadding({ attention_mask: 0 });
async function heldOutLoss() {
  const sums = {};
  for (let i = 0; i < test.length; i += 8) {
    const batch = test.rows.slice(i, i + 8);
    const out = await model.forward(collator.collate(batch));
    for (const [k, v] of Object.entries(out.lossByHead)) sums[k] = (sums[k] ?? 0) + v * batch.length;
  }
  return Object.fromEntries(Object.entries(sums).map(([k, v]) => [`eval_${k}_loss`, v / test.length]));
}
const before = await heldOutLoss();
const t0 = performance.now();
await trainer.train();
const seconds = (performance.now() - t0) / 1000;
const m = await heldOutLoss();

console.log(`\n${layers.length} next-token probes (${config.hiddenSize} x ${config.vocabSize} each) on ${train.length * 128} tokens, held-out ${test.length * 128} tokens, ${seconds.toFixed(1)} s`);
console.log('layer  hidden state       held-out loss   perplexity');
for (const l of layers) {
  const what = l === 0 ? 'embeddings' : l === config.numLayers ? 'final norm' : `block ${l}`;
  const loss = m[`eval_lm_L${l}_loss`];
  console.log(`${String(l).padStart(5)}  ${what.padEnd(18)} ${loss.toFixed(3).padStart(13)} ${Math.exp(loss).toFixed(0).padStart(12)}`);
}
const ownLoss = m.eval_lm_head_loss;
console.log(`       the model's lm_head ${ownLoss.toFixed(3).padStart(13)} ${Math.exp(ownLoss).toFixed(0).padStart(12)}`);
console.log(`       untrained probe     ${before.eval_lm_L0_loss.toFixed(3).padStart(13)} ${Math.exp(before.eval_lm_L0_loss).toFixed(0).padStart(12)}`);
report({
  example: 'causal-LM probes by layer',
  seconds: Number(seconds.toFixed(1)),
  held_out_loss_by_layer: Object.fromEntries(layers.map((l) => [l, Number(m[`eval_lm_L${l}_loss`].toFixed(4))])),
  lm_head_loss: Number(ownLoss.toFixed(4)),
  untrained_probe_loss: Number(before.eval_lm_L0_loss.toFixed(4)),
});
model.dispose();

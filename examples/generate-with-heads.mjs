// Generation that reports a head at every token (the Python library's generate with head_outputs): train a linear
// probe "has a link ('http') appeared so far?" on SpamAssassin emails, then generate with the model's own lm_head
// and print, token by token, what the probe reads from the hidden state at that position.
//   node examples/generate-with-heads.mjs [model] [--examples=N] [--epochs=E] [--tokens=N]
import { parseArgs } from 'node:util';

import { DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, report, tokenizedSpam } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '800' }, epochs: { type: 'string', default: '4' }, tokens: { type: 'string', default: '12' } },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const { train, test } = new Dataset(await tokenizedSpam(tokenizer, { examples: Number(opt.examples) })).trainTestSplit(0.2, 1);

const probe = { name: 'link_seen', inSize: config.hiddenSize, numOutputs: 2, layerHook: -1 };
const lmHead = { name: 'lm_head', inSize: config.hiddenSize, numOutputs: config.vocabSize, isCausalLm: true, trainable: false, lossFct: null };
const model = await loadHeaded(modelPath, { heads: [probe, lmHead] });
const trainer = new Trainer(
  model,
  { outputDir: 'out/generate-with-heads', learningRate: 2e-2, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, disableProgressBar: true },
  { trainDataset: train, evalDataset: test, dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0, link_seen: -100 }) },
);
const t0 = performance.now();
await trainer.train();
const m = await trainer.evaluate();

const prompts = ['For more information visit http://www.', 'Dear friend, I am writing to you because'];
const t1 = performance.now();
const out = await model.generate(prompts, { maxNewTokens: Number(opt.tokens), eosTokenId: null });
const genSeconds = (performance.now() - t1) / 1000;
const { data, shape } = out.headOutputs.link_seen; // [B, steps, 2] logits
const [B, S] = shape;
const meanP = [];
for (let b = 0; b < B; ++b) {
  const W = out.sequences.shape[1];
  const gen = Array.from(out.sequences.data.subarray(b * W + out.promptLength, (b + 1) * W));
  const atTokens = [out.sequences.data[b * W + out.promptLength - 1], ...gen.slice(0, S - 1)];
  const pLink = Array.from({ length: S }, (_, s) => {
    const [a, c] = [data[(b * S + s) * 2], data[(b * S + s) * 2 + 1]];
    return 1 / (1 + Math.exp(a - c));
  });
  meanP.push(pLink.reduce((x, y) => x + y, 0) / S);
  console.log(`\n${JSON.stringify(prompts[b])} -> ${JSON.stringify(out.texts[b])}`);
  console.log(atTokens.map((t, s) => `  ${JSON.stringify(tokenizer.decode([t])).padEnd(14)} P(link seen) = ${pLink[s].toFixed(3)}`).join('\n'));
}
report({
  example: 'generation with a probe read at every token',
  probe_test_accuracy: Number(m.eval_link_seen_accuracy.toFixed(4)),
  majority_baseline: Number(majorityBaseline(test.rows.flatMap((r) => r.link_seen)).toFixed(4)),
  // the probe's mean P(link seen) over the generated positions, for the prompt with a link and the one without
  mean_p_link: meanP.map((p) => Number(p.toFixed(3))),
  train_seconds: Number(((t1 - t0) / 1000).toFixed(1)),
  generated_tokens: B * S,
  generation_seconds: Number(genSeconds.toFixed(2)),
});
model.dispose();

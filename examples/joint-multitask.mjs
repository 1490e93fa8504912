// Joint multi-task learning: one model finetuned on three tasks at once over SpamAssassin emails:
//   - spam:      classification at the last token (cross entropy)
//   - valence:   token-level regression: at each word's last sub-token, the word's AFINN-165 valence (-5..5; 0 for
//                a word not in the lexicon), masked mse (other positions are -100). A sentence-level target, the
//                email's mean valence, was tried first: it is a few sparse words averaged over 48 tokens and the
//                model did not beat the mean predictor on it (R² -0.14), so the regression reads each word instead,
//                from block 2 (where the part-of-speech demo finds word identity most readable) with a loss weight of
//                4 (its targets are mostly 0, so its mse is small next to the two cross entropies).
//   - lm_head:   the model's own causal LM head (next-token cross entropy), on the same text
// The total loss is the weighted sum of the three; each head's metrics are reported. By default the backbone is
// 4-bit (NF4 + double quantization) with LoRA adapters (QLoRA); --mode=full finetunes every weight instead.
//   node examples/joint-multitask.mjs [model] [--examples=N] [--epochs=E] [--mode=qlora|full]
import { parseArgs } from 'node:util';

import { createHeadedQLoRA, DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { afinn, defaultModel, majorityBaseline, report, spamAssassin } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '800' }, epochs: { type: 'string', default: '2' }, 'max-tokens': { type: 'string', default: '48' }, mode: { type: 'string', default: 'qlora' } },
});
const modelPath = positionals[0] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const lexicon = new Map((await afinn()).map(({ word, valence }) => [word, valence]));

const maxTokens = Number(opt['max-tokens']);
const rows = new Dataset(await spamAssassin())
  .shuffle(0)
  .select([...Array(Number(opt.examples)).keys()])
  .map(({ text, label }) => {
    const ids = tokenizer.encode(text).ids.slice(0, maxTokens);
    const pieces = ids.map((id) => tokenizer.decode([id]));
    // the text decoded so far ends a word at token t when t ends in a letter and the next token does not start with
    // one; the last token may cut a word, so it gets no target
    let sofar = '';
    const valence = pieces.map((p, t) => {
      sofar += p;
      if (t === pieces.length - 1 || !/[a-z']$/i.test(p) || /^[a-z']/i.test(pieces[t + 1])) return -100;
      const word = sofar.match(/[a-z']+$/i)[0].toLowerCase();
      return lexicon.get(word) ?? 0;
    });
    return { input_ids: ids, attention_mask: ids.map(() => 1), spam: label, valence, lm_labels: ids };
  });
const { train, test } = rows.trainTestSplit(0.2, 1);

const H = config.hiddenSize;
const heads = [
  { name: 'spam', inSize: H, numOutputs: 2, predForSequence: true },
  { name: 'valence', inSize: H, numOutputs: 1, predForSequence: false, isRegression: true, lossFct: 'masked_mse', numLayers: 2, hiddenSize: 64, lossWeight: 4, layerHook: 2 },
  { name: 'lm_head', inSize: H, isCausalLm: true, target: 'lm_labels', lossWeight: 0.2 },
];
const qlora = opt.mode === 'qlora';
const model = qlora
  ? await createHeadedQLoRA(modelPath, { heads, quantization: { bits: 4, quantType: 'nf4', doubleQuant: true }, lora: { r: 16, alpha: 32 } })
  : await loadHeaded(modelPath, { heads, freezeBaseModel: false });
const trainer = new Trainer(
  model,
  { outputDir: 'out/joint-multitask', learningRate: qlora ? 1e-3 : 1e-4, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, warmupRatio: 0.1, loggingSteps: 20 },
  { trainDataset: train, evalDataset: test, dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0, lm_labels: -100, valence: -100 }) },
);
const before = await trainer.evaluate();
const t0 = performance.now();
await trainer.train();
const after = await trainer.evaluate();
const pick = (m) => ({
  spam_accuracy: Number(m.eval_spam_accuracy.toFixed(4)),
  valence_mse: Number(m.eval_valence_mse.toFixed(4)),
  valence_r2: Number(m.eval_valence_r2.toFixed(4)),
  lm_loss: Number(m.eval_loss_lm_head.toFixed(4)),
  lm_next_token_accuracy: Number(m.eval_lm_head_accuracy.toFixed(4)),
});
const testValence = test.rows.flatMap((r) => r.valence.filter((v) => v !== -100));
const variance = (xs) => xs.reduce((a, x) => a + x * x, 0) / xs.length - (xs.reduce((a, x) => a + x, 0) / xs.length) ** 2;
report({
  example: `joint multi-task (spam classification + word valence regression (AFINN) + causal LM), ${qlora ? 'QLoRA (NF4+DQ, LoRA r=16)' : 'full finetuning'}`,
  trainable_parameters: model.trainableParameters(),
  seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  before: pick(before),
  after: pick(after),
  spam_majority_baseline: Number(majorityBaseline(test.rows.map((r) => r.spam)).toFixed(4)),
  // the mean predictor's R² is 0 by definition; its MSE is the variance of the test targets
  valence_words: testValence.length,
  valence_sentiment_words: testValence.filter((v) => v !== 0).length,
  valence_variance: Number(variance(testValence).toFixed(4)),
});
model.dispose();

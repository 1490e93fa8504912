// Full finetuning: spam vs ham with the whole model trained together with the classification head
// (freezeBaseModel: false), compared in the same run with a linear probe on the frozen model.
//   node examples/full-finetune.mjs [model] [--examples=N] [--epochs=E]
import { parseArgs } from 'node:util';

import { loadHeaded, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, report, spamTask } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '1200' }, epochs: { type: 'string', default: '2' }, lr: { type: 'string', default: '1e-3' } },
});
const modelPath = positionals[0] ?? defaultModel;
const { config, train, test, collator } = await spamTask(modelPath, Number(opt.examples));
const head = { name: 'spam', inSize: config.hiddenSize, numOutputs: 2, predForSequence: true };

const results = {};
for (const [mode, freezeBaseModel, lr] of [['linear probe (frozen)', true, 2e-2], ['full finetuning', false, Number(opt.lr)]]) {
  const model = await loadHeaded(modelPath, { heads: [head], freezeBaseModel });
  const trainer = new Trainer(
    model,
    { outputDir: `out/full-finetune/${freezeBaseModel ? 'probe' : 'full'}`, learningRate: lr, numTrainEpochs: Number(opt.epochs), perDeviceTrainBatchSize: 16, warmupRatio: 0.1, weightDecay: 0.01, loggingSteps: 20 },
    { trainDataset: train, evalDataset: test, dataCollator: collator },
  );
  const t0 = performance.now();
  const r = await trainer.train();
  const m = await trainer.evaluate();
  results[mode] = {
    trainable_parameters: model.trainableParameters(),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    final_train_loss: Number(r.trainingLoss.toFixed(4)),
    test_accuracy: Number(m.eval_spam_accuracy.toFixed(4)),
    test_f1_macro: Number(m.eval_spam_f1_macro.toFixed(4)),
  };
  model.dispose();
}
report({ example: 'full finetuning vs linear probe (spam)', epochs: Number(opt.epochs), majority_baseline: Number(majorityBaseline(test.rows.map((r) => r.spam)).toFixed(4)), ...results });

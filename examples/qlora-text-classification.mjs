// QLoRA text classification: spam vs ham with the backbone's projections quantized to NF4 (double quantization)
// and LoRA adapters (r=8) trained together with the classification head; compared in the same run with a linear
// probe on the frozen float32 model. Saves the adapter (PEFT layout) and the head, and reloads them.
//   node examples/qlora-text-classification.mjs [model] [--examples=N] [--epochs=E]
import { parseArgs } from 'node:util';

import { createHeadedQLoRA, loadHeaded, loadLoraWithHeads, Trainer } from 'transformer-heads';

import { defaultModel, majorityBaseline, report, spamTask } from './data.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '1200' }, epochs: { type: 'string', default: '3' } },
});
const modelPath = positionals[0] ?? defaultModel;
const { config, train, test, collator } = await spamTask(modelPath, Number(opt.examples));
const heads = [{ name: 'spam', inSize: config.hiddenSize, numOutputs: 2, predForSequence: true }];
const epochs = Number(opt.epochs);

async function run(name, model, lr) {
  const trainer = new Trainer(model, { outputDir: `out/qlora/${name}`, learningRate: lr, numTrainEpochs: epochs, perDeviceTrainBatchSize: 16, warmupRatio: 0.1, loggingSteps: 20 }, {
    trainDataset: train,
    evalDataset: test,
    dataCollator: collator,
  });
  const t0 = performance.now();
  await trainer.train();
  const m = await trainer.evaluate();
  return {
    trainable_parameters: model.trainableParameters(),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    test_accuracy: Number(m.eval_spam_accuracy.toFixed(4)),
    test_f1_macro: Number(m.eval_spam_f1_macro.toFixed(4)),
  };
}

const probe = await loadHeaded(modelPath, { heads });
const probeResult = await run('probe', probe, 2e-2);
probe.dispose();

const qlora = await createHeadedQLoRA(modelPath, {
  heads,
  quantization: { bits: 4, quantType: 'nf4', doubleQuant: true, computeDtype: 'float32' },
  lora: { r: 8, alpha: 16, dropout: 0.05 },
});
const qloraResult = await run('qlora', qlora, 2e-3);
const footprint = qlora.memoryFootprint();
await qlora.save('out/qlora/adapter');
const reloaded = await loadLoraWithHeads('out/qlora/adapter', { quantization: { bits: 4, quantType: 'nf4', doubleQuant: true } });
const sample = { input_ids: [test.at(0).input_ids] };
const a = (await qlora.forward(sample, { returnPreds: true })).predsByHead.get('spam').data;
const b = (await reloaded.forward(sample, { returnPreds: true })).predsByHead.get('spam').data;
report({
  example: 'QLoRA text classification (spam), NF4 + double quant, LoRA r=8, vs a frozen linear probe',
  epochs,
  majority_baseline: Number(majorityBaseline(test.rows.map((r) => r.spam)).toFixed(4)),
  'linear probe (frozen fp32)': probeResult,
  'QLoRA (NF4+DQ base, LoRA r=8 + head)': { ...qloraResult, quantized_bits_per_weight: Number(footprint.quantizedBitsPerParameter.toFixed(3)), weight_bytes: footprint },
  reloaded_predictions_identical: a.every((v, i) => Object.is(v, b[i])),
});
qlora.dispose();
reloaded.dispose();

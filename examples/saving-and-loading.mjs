// Saving and loading heads in the Python library's format: train two heads, save them (head_configs.json +
// <name>.safetensors), load them into a fresh model, and check that the predictions are bit-identical.
//   node examples/saving-and-loading.mjs [model]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { DataCollatorWithPadding, Dataset, loadHeaded, loadTokenizer, readModelConfig, Trainer } from 'transformer-heads';

import { defaultModel, report, tokenizedSpam } from './data.mjs';

const modelPath = process.argv[2] ?? defaultModel;
const config = await readModelConfig(modelPath);
const tokenizer = await loadTokenizer(modelPath);
const rows = new Dataset(await tokenizedSpam(tokenizer, { examples: 400 }));
const H = config.hiddenSize;

const model = await loadHeaded(modelPath, {
  heads: [
    { name: 'spam', inSize: H, numOutputs: 2, predForSequence: true, numLayers: 2, hiddenSize: 32, outputBias: true },
    { name: 'link_seen', inSize: H, numOutputs: 2, layerHook: 1 },
  ],
});
await new Trainer(
  model,
  { outputDir: 'out/saving-and-loading', learningRate: 1e-2, numTrainEpochs: 1, perDeviceTrainBatchSize: 16, disableProgressBar: true },
  { trainDataset: rows, dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0, link_seen: -100 }) },
).train();

const dir = 'out/saving-and-loading/heads';
await model.save(dir);
const files = Object.fromEntries(readdirSync(dir).map((f) => [f, statSync(join(dir, f)).size]));

const text = 'Subject: You have WON a FREE prize!!! Click http://example.com now';
const ids = tokenizer.encode(text).ids;
const before = (await model.forward({ input_ids: [ids] }, { returnPreds: true })).predsByHead;
const reloaded = await loadHeaded(modelPath, { headFolder: dir });
const after = (await reloaded.forward({ input_ids: [ids] }, { returnPreds: true })).predsByHead;
const identical = [...before].every(([k, t]) => t.data.every((v, i) => Object.is(v, after.get(k).data[i])));
const last = (t) => Array.from(t.data.subarray(t.data.length - t.shape[2]));
report({
  example: 'saving and loading',
  saved_files: files,
  spam_logits_last_token: last(before.get('spam')).map((v) => Number(v.toFixed(5))),
  reloaded_predictions_bit_identical: identical,
  // The model class for Python is the one config.json names (LlamaForCausalLM for the embedded model).
  python: `from transformers import ${config.modelType === 'gpt2' ? 'GPT2LMHeadModel as M' : 'LlamaForCausalLM as M'}; from transformer_heads import load_headed; load_headed(M, '${modelPath}', head_folder_path='${dir}')`,
});
model.dispose();
reloaded.dispose();

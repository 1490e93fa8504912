#!/usr/bin/env node
// The demo (`npm run demo`): where in the embedded model does part of speech live? One token-level linear probe on
// each hidden state (embeddings, each block, the final norm), trained together on the frozen model on held-out
// Brown documents (the model and its tokenizer never saw them), accuracy by layer against the
// most-frequent-tag-per-word baseline and against the same probes on the random-init model of the same shape.
// Writes the table, accuracy-by-layer.svg and report.html.
// The older sentence-level demo (one probe per layer at the last token on a built-in dataset) is kept:
//   node scripts/demo.mjs --dataset=stop-words|spam-assassin|afinn
// Usage: node scripts/demo.mjs [model] [--align=last|first] [--train-tokens=N] [--test-tokens=N] [--epochs=N] [--out=DIR]
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const th = await import(resolve(root, 'dist/index.js'));

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dataset: { type: 'string', default: 'pos' },
    examples: { type: 'string', default: '2000' },
    epochs: { type: 'string' },
    align: { type: 'string', default: 'last' },
    'train-tokens': { type: 'string', default: '12000' },
    'test-tokens': { type: 'string', default: '6000' },
    out: { type: 'string', default: resolve(root, 'out/demo') },
  },
});
const model = positionals[0] ? resolve(positionals[0]) : th.defaultModelPath();
if (opt.dataset === 'pos') {
  await posDemo();
  process.exit(0);
}
const dataset = th.BUILTIN_DATASETS.find((d) => d.name === opt.dataset);
if (!dataset) throw new Error(`unknown dataset '${opt.dataset}' (${th.BUILTIN_DATASETS.map((d) => d.name).join(', ')})`);

const rt = await th.runtimeInfo();
const c = await th.readModelConfig(model);
console.log(`libtorch ${rt.torchVersion}, ${rt.numThreads} threads, CUDA ${rt.cudaAvailable ? 'available' : 'not available'}`);
console.log(`model ${model}: ${c.modelType}, ${c.numLayers} layers, hidden size ${c.hiddenSize}, vocabulary ${c.vocabSize}`);
console.log(`task: ${dataset.description}`);
console.log(`one linear probe on each of the ${c.numLayers + 1} hidden states, read at the last token, trained together on the frozen model\n`);

const common = { dataset: dataset.name, maxExamples: Number(opt.examples), epochs: Number(opt.epochs ?? 5), log: (m) => console.error(m) };
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

async function posDemo() {
  const { posData, posProbes } = await import('./demo-pos.mjs');
  if (opt.align !== 'last' && opt.align !== 'first') throw new Error(`--align is 'last' or 'first', got '${opt.align}'`);
  const t0 = performance.now();
  const rt = await th.runtimeInfo();
  const c = await th.readModelConfig(model);
  console.log(`libtorch ${rt.torchVersion}, ${rt.numThreads} threads, CUDA ${rt.cudaAvailable ? 'available' : 'not available'}`);
  console.log(`model ${model}: ${c.modelType}, ${c.numLayers} layers, hidden size ${c.hiddenSize}, vocabulary ${c.vocabSize}`);
  const data = await posData(model, { trainTokens: Number(opt['train-tokens']), testTokens: Number(opt['test-tokens']), align: opt.align });
  const words = (rows) => rows.reduce((n, r) => n + r.tag.filter((y) => y !== -100).length, 0);
  console.log(`task: part of speech (12 universal tags) of each word in held-out Brown documents, read at the ${opt.align} sub-token of the word`);
  console.log(`probes trained on ${words(data.train)} words from ${data.docs.train.length} documents, tested on ${words(data.test)} words from ${data.docs.test.length} other documents`);
  console.log(`one linear probe on each of the ${c.numLayers + 1} hidden states, trained together on the frozen model\n`);
  const epochs = Number(opt.epochs ?? 10);
  const trained = await posProbes(model, data, { epochs, outputDir: join(opt.out, 'trainer') });
  let random = null;
  const info = positionals[0] ? null : await th.readEmbeddedModelInfo();
  const init = info ? resolve(th.DEFAULT_MODEL_DIR, info.init_dir) : null; // made by `node scripts/pretrain.mjs`
  if (init && existsSync(init)) random = await posProbes(init, data, { epochs, outputDir: join(opt.out, 'trainer-init') });
  const base = data.baseline.accuracy;
  const f = (x) => x.toFixed(3);
  const sg = (x) => (x >= 0 ? '+' : '') + x.toFixed(3);
  const bar = (x) => '█'.repeat(Math.round(Math.max(0, Math.min(1, x)) * 20));
  const lines = [`${'layer'.padStart(5)}  ${'hidden state'.padEnd(12)} ${'accuracy'.padStart(8)} ${'vs baseline'.padStart(11)} ${'random init'.padStart(11)} ${'vs random'.padStart(9)}`];
  for (const l of trained.layers) {
    const r = random?.layers[l.layer].accuracy;
    lines.push(`${String(l.layer).padStart(5)}  ${l.name.padEnd(12)} ${f(l.accuracy).padStart(8)} ${sg(l.accuracy - base).padStart(11)} ${(r === undefined ? '-' : f(r)).padStart(11)} ${(r === undefined ? '-' : sg(l.accuracy - r)).padStart(9)}  ${bar(l.accuracy)}`);
  }
  lines.push(`       most frequent tag of the word (unseen: ${data.baseline.majorityTag}) ${f(base)}   (${(data.baseline.unseenWords * 100).toFixed(1)}% of test words unseen in training)`);
  lines.push(`       always ${data.baseline.majorityTag} ${f(data.baseline.majorityAccuracy)}`);
  console.log(lines.join('\n'));
  const best = trained.layers.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  console.log(`\nbest: layer ${best.layer} (${best.name}) ${f(best.accuracy)}, ${sg(best.accuracy - base)} over the most-frequent-tag baseline${random ? `, ${sg(best.accuracy - random.layers[best.layer].accuracy)} over the random-init model at that layer` : ''}`);

  await mkdir(opt.out, { recursive: true });
  const categories = trained.layers.map((l) => `${l.layer} ${l.name}`);
  const svg = th.barChart({
    title: 'Part of speech by layer: linear probe accuracy on held-out Brown documents',
    xLabel: 'hidden state',
    yLabel: 'held-out accuracy (12 tags)',
    categories,
    series: [
      { name: 'embedded model', values: trained.layers.map((l) => l.accuracy) },
      ...(random ? [{ name: 'random init, same shape', values: random.layers.map((l) => l.accuracy) }] : []),
    ],
    referenceLines: [
      { name: `most frequent tag per word ${f(base)}`, value: base, color: '#e15759' },
      { name: `always ${data.baseline.majorityTag} ${f(data.baseline.majorityAccuracy)}`, value: data.baseline.majorityAccuracy, color: '#bab0ac' },
    ],
    yDomain: [0, 1],
    valueDigits: 3,
  });
  const results = {
    task: 'part of speech, 12 universal tags, held-out Brown documents',
    model,
    align: opt.align,
    train: { documents: data.docs.train.map((d) => d.id), words: words(data.train), chunks: data.train.length },
    test: { documents: data.docs.test.map((d) => d.id), words: words(data.test), chunks: data.test.length },
    baseline: data.baseline,
    epochs,
    layers: trained.layers,
    randomInit: random?.layers ?? null,
    seconds: (performance.now() - t0) / 1000,
  };
  const files = { accuracySvg: join(opt.out, 'accuracy-by-layer.svg'), report: join(opt.out, 'report.html'), results: join(opt.out, 'results.json') };
  await writeFile(files.accuracySvg, svg);
  await writeFile(files.results, JSON.stringify(results, null, 2) + '\n');
  await writeFile(
    files.report,
    th.htmlReport({
      title: 'Part of speech by layer',
      subtitle: `Which hidden state of ${model} makes a word's part of speech linearly decodable? One linear probe per layer, trained together on the frozen model.`,
      facts: {
        data: `held-out Brown documents; probes trained on ${results.train.words} words (${results.train.documents.length} documents), tested on ${results.test.words} words (${results.test.documents.length} other documents)`,
        tags: '12 universal tags (Petrov, Das & McDonald 2012), read at the ' + opt.align + ' sub-token of each word',
        baseline: `most frequent tag of the word in the probes' training words: ${f(base)}; always ${data.baseline.majorityTag}: ${f(data.baseline.majorityAccuracy)}`,
        best: `layer ${best.layer} (${best.name}): ${f(best.accuracy)}`,
        training: `${epochs} epochs, ${trained.steps} steps per model, ${trained.seconds.toFixed(1)} s (embedded) ${random ? `+ ${random.seconds.toFixed(1)} s (random init)` : ''}`,
      },
      sections: [
        { title: 'Accuracy by layer', svg },
        {
          title: 'Results',
          table: {
            columns: ['layer', 'hidden state', 'accuracy', 'vs most frequent tag', 'random init', 'vs random init'],
            rows: trained.layers.map((l) => [l.layer, l.name, Number(f(l.accuracy)), Number((l.accuracy - base).toFixed(3)), random ? Number(f(random.layers[l.layer].accuracy)) : '-', random ? Number((l.accuracy - random.layers[l.layer].accuracy).toFixed(3)) : '-']),
          },
        },
        { title: 'results.json', json: results },
      ],
    }),
  );
  console.log(`\nplot:    ${files.accuracySvg}`);
  console.log(`report:  ${files.report}`);
  console.log(`results: ${files.results}`);
  console.log(`\ndone in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log('the stop-word demo (one probe per layer at the last token): node scripts/demo.mjs --dataset stop-words');
}

// The child of test/save-kill.test.ts: saves a folder over and over, alternating two versions whose files differ in
// number and shape, until the parent kills it with SIGKILL. Prints "ready" once the two reference saves are written,
// then "begin K" / "end K" around every save.
//   node test/save-kill-child.mjs MODE DIR REFS FIXTURES
// MODE: heads (HeadedModel.save), lora (save of a LoRA model: adapters + heads), backbone (saveBackbone of a GPT-2
// and a Llama model), checkpoint (Trainer checkpoints every step, saveTotalLimit 2).
import { join } from 'node:path';

import * as api from '../dist/index.js';

const [mode, dir, refs, fixtures] = process.argv.slice(2);
const say = (s) => process.stdout.write(`${s}\n`);
const gpt2 = join(fixtures, 'tiny-gpt2.pt');
const H = 64;

// Two versions that differ in every way a mixed folder could show: a head that changes shape, a head that exists in
// one version only, different LoRA ranks, different architectures.
const headsA = [
  { name: 'shape', inSize: H, numOutputs: 2 },
  { name: 'only_a', inSize: H, numOutputs: 3000, layerHook: 1 },
];
const headsB = [
  { name: 'shape', inSize: H, numOutputs: 5, outputBias: true },
  { name: 'only_b', inSize: H, numOutputs: 2500, layerHook: 2, numLayers: 2, hiddenSize: 32 },
];

let save;
if (mode === 'heads' || mode === 'lora') {
  const load = (heads, seed, r) =>
    mode === 'heads' ? api.loadHeaded(gpt2, { heads, seed }) : api.createHeadedQLoRA(gpt2, { heads, seed, lora: { r, alpha: 2 * r }, baseModelNameOrPath: gpt2 });
  const a = await load(headsA, 1, 2);
  const b = await load(headsB, 2, 8);
  await a.save(join(refs, 'A'));
  await b.save(join(refs, 'B'));
  save = (k) => (k % 2 ? b : a).save(dir);
} else if (mode === 'backbone') {
  const a = await api.loadBackbone(gpt2);
  const b = await api.loadBackbone(join(fixtures, 'tiny-llama.pt'));
  await a.saveBackbone(join(refs, 'A'));
  await b.saveBackbone(join(refs, 'B'));
  save = (k) => (k % 2 ? b : a).saveBackbone(dir);
} else if (mode === 'checkpoint') {
  const m = await api.loadHeaded(gpt2, { heads: headsA, seed: 1 });
  const rows = Array.from({ length: 4 }, (_, i) => ({ input_ids: [1 + i, 2, 3], attention_mask: [1, 1, 1], shape: [i % 2, 1, 0], only_a: [5, 6, 7 + i] }));
  const collator = new api.DataCollatorWithPadding({ input_ids: 100, attention_mask: 0, shape: -100, only_a: -100 });
  const trainer = new api.Trainer(
    m,
    { outputDir: dir, maxSteps: 1_000_000, perDeviceTrainBatchSize: 4, learningRate: 1e-3, saveSteps: 1, saveTotalLimit: 2, loggingSteps: 1_000_000, activationCache: false, disableProgressBar: true },
    {
      trainDataset: new api.Dataset(rows),
      dataCollator: collator,
      callbacks: {
        onStepEnd: (s) => say(`begin ${s.step}`),
        onSave: (d) => say(`end ${d}`),
      },
    },
  );
  say('ready');
  await trainer.train();
} else throw new Error(`unknown mode ${mode}`);

if (save) {
  say('ready');
  for (let k = 0; ; k++) {
    say(`begin ${k}`);
    await save(k);
    say(`end ${k}`);
  }
}

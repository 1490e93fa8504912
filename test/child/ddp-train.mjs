// Child of test/distributed.test.ts: trains tiny-gpt2 with the Trainer, as one process or as one rank of a
// data-parallel run (the torchrun environment, set by the test or by `transformer-heads launch`). Rank 0 (or the only
// process) writes result.json into the output folder: every trainable tensor after training, the loss and the steps.
// On failure every rank prints {"error": {code, message}} on stdout and exits 1.
// usage: node ddp-train.mjs '<json options>'   (see `o` below)
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const th = await import('transformer-heads');
const o = JSON.parse(process.argv[2]);
// o: { model, mode: probe|lora|full, out, n, bs, accum, maxSteps, saveSteps?, resume?, killRank?, killAtStep?,
//      rank1: { learningRate?, heads? } (a different setting on rank 1: the mismatch test), tokenHead?, fixedLength? }
const rank = Number(process.env.RANK ?? 0);

// Sequences of 4..11 random tokens (never the pad id 100); ends7: does it end in 7 (one label per sequence);
// has7: is each token 7 (a label per token).
function rows(n) {
  let a = 12345;
  const rand = () => {
    a = (a * 1103515245 + 12345) % 2147483648;
    return a / 2147483648;
  };
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = o.fixedLength ?? 4 + Math.floor(rand() * 8);
    const ids = Array.from({ length: len }, () => (rand() < 0.3 ? 7 : Math.floor(rand() * 99)));
    out.push({ input_ids: ids, attention_mask: ids.map(() => 1), has7: ids.map((t) => (t === 7 ? 1 : 0)), ends7: ids.at(-1) === 7 ? 1 : 0 });
  }
  return out;
}

const seqHead = { name: 'ends7', inSize: 64, numOutputs: 2, layerHook: 2, predForSequence: true };
const tokHead = { name: 'has7', inSize: 64, numOutputs: 2, layerHook: 1 };
let heads = o.tokenHead ? [seqHead, tokHead] : [seqHead];
if (rank === 1 && o.rank1?.heads) heads = [{ ...seqHead, ...o.rank1.heads }];

try {
  const model =
    o.mode === 'lora'
      ? await th.createHeadedQLoRA(o.model, { heads, seed: 3, lora: { r: 4, alpha: 8, dropout: 0 } })
      : await th.loadHeaded(o.model, { heads, seed: 3, freezeBaseModel: o.mode !== 'full' });
  const trainer = new th.Trainer(
    model,
    {
      outputDir: o.out,
      learningRate: rank === 1 && o.rank1?.learningRate ? o.rank1.learningRate : 1e-3,
      perDeviceTrainBatchSize: o.bs,
      gradientAccumulationSteps: o.accum ?? 1,
      maxSteps: o.maxSteps,
      loggingSteps: 1,
      seed: 5,
      warmupSteps: 1,
      // Above the rounding noise of gradients that are zero in exact arithmetic (GPT-2's key biases under a softmax):
      // with 1e-8 AdamW turns that noise into full learning-rate steps whose sign depends on the summation order.
      adamEpsilon: 1e-6,
      ...(o.saveSteps ? { saveSteps: o.saveSteps } : {}),
      ...(o.resume ? { resumeFromCheckpoint: o.resume } : {}),
    },
    {
      trainDataset: new th.Dataset(rows(o.n)),
      dataCollator: new th.DataCollatorWithPadding({ input_ids: 100, attention_mask: 0, has7: -100 }),
      callbacks: {
        onStepEnd(s) {
          if (o.killRank === rank && s.step === o.killAtStep) process.kill(process.pid, 'SIGKILL');
        },
      },
    },
  );
  const res = await trainer.train();
  if (rank === 0) {
    const weights = {};
    for (const h of heads) for (const t of await model.headWeights(h.name)) weights[`${h.name}.${t.key}`] = Array.from(t.data);
    if (o.mode === 'lora') for (const t of await model.loraWeights()) weights[t.key] = Array.from(t.data);
    if (o.mode === 'full') {
      await model.saveBackbone(join(o.out, 'backbone'));
      for (const t of await th.readSafetensors(join(o.out, 'backbone', 'model.safetensors'))) weights[t.key] = Array.from(t.data);
    }
    writeFileSync(join(o.out, 'result.json'), JSON.stringify({ weights, trainLoss: res.trainingLoss, globalStep: res.globalStep, activationCache: res.activationCache, log: res.logHistory }));
  }
  model.dispose();
} catch (e) {
  process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message } }) + '\n');
  process.exitCode = 1;
}

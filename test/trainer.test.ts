import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { DataCollatorWithPadding, Dataset, learningRateAt, loadHeaded, Trainer, type HeadConfig } from '../ts/index.js';
import { rng as rngForTests } from '../ts/train/data.js';
import { expectRel, F32_EPS, fixture, relDiff, relErr, root, sumRelErr } from './helpers.js';

const H = 64;
const PAD = 100; // tiny-gpt2: no pad token, eos = 100
const collator = new DataCollatorWithPadding({ input_ids: PAD, attention_mask: 0, has7: -100 });
const tmp = () => mkdtempSync(join(tmpdir(), 'th-trainer-'));

/** Sequences of random tokens (never the pad id); label per token: is it token 7? and per sequence: does it end in 7? */
function tokenDataset(n: number, seed: number): Dataset {
  const r = rngForTests(seed);
  const rows = [];
  for (let i = 0; i < n; i++) {
    const len = 4 + Math.floor(r() * 8);
    const ids = Array.from({ length: len }, () => (r() < 0.3 ? 7 : Math.floor(r() * 99)));
    rows.push({ input_ids: ids, attention_mask: ids.map(() => 1), has7: ids.map((t) => (t === 7 ? 1 : 0)), ends7: ids.at(-1) === 7 ? 1 : 0 });
  }
  return new Dataset(rows);
}

const probe: HeadConfig = { name: 'has7', inSize: H, numOutputs: 2, layerHook: 0 };
const seqHead: HeadConfig = { name: 'ends7', inSize: H, numOutputs: 2, layerHook: 2, predForSequence: true };

describe('learning-rate schedules (transformers formulas)', () => {
  it('linear, cosine and constant with warmup', () => {
    expect(learningRateAt('linear', 1, 0, 10, 100)).toBe(0);
    expect(learningRateAt('linear', 1, 5, 10, 100)).toBe(0.5);
    expect(learningRateAt('linear', 1, 10, 10, 100)).toBe(1);
    expect(learningRateAt('linear', 1, 55, 10, 100)).toBe(0.5);
    expect(learningRateAt('linear', 1, 100, 10, 100)).toBe(0);
    // double arithmetic of a few operations (a cosine): a few double epsilons
    expect(relErr(learningRateAt('cosine', 1, 55, 10, 100), 0.5)).toBeLessThanOrEqual(8 * Number.EPSILON);
    expect(learningRateAt('cosine', 1, 10, 10, 100)).toBe(1);
    expect(relErr(learningRateAt('constant_with_warmup', 2, 3, 10, 100), 0.6)).toBeLessThanOrEqual(8 * Number.EPSILON);
    expect(learningRateAt('constant', 2, 3, 10, 100)).toBe(2);
  });
});

describe('training', () => {
  it('a linear probe learns a linearly decodable fact (is this token 7?) to >= 95% held-out accuracy', async () => {
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [probe] });
    const out = tmp();
    const trainer = new Trainer(model, { outputDir: out, learningRate: 2e-2, numTrainEpochs: 4, perDeviceTrainBatchSize: 16, loggingSteps: 10 }, {
      trainDataset: tokenDataset(400, 1),
      evalDataset: tokenDataset(100, 2),
      dataCollator: collator,
    });
    const before = await trainer.evaluate();
    const res = await trainer.train();
    const after = await trainer.evaluate();
    console.log(`probe accuracy ${before.eval_has7_accuracy} -> ${after.eval_has7_accuracy}, loss ${before.eval_loss} -> ${after.eval_loss}`);
    expect(after.eval_has7_accuracy).toBeGreaterThanOrEqual(0.95);
    expect(after.eval_loss).toBeLessThan(before.eval_loss);
    expect(res.activationCache).toBe(true);
    const log = readFileSync(join(out, 'log_history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.some((e) => 'loss' in e && 'learning_rate' in e && 'grad_norm' in e)).toBe(true);
    expect(log.some((e) => 'eval_loss' in e)).toBe(true); // evaluated each epoch
    model.dispose();
  });

  it('the activation cache gives the same weights as recomputing the backbone, and skips it after epoch 1', async () => {
    const ds = tokenDataset(48, 3);
    const run = async (activationCache: boolean) => {
      const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [probe, seqHead], seed: 5 });
      const blocks: number[] = [];
      const trainer = new Trainer(model, { outputDir: tmp(), learningRate: 1e-2, numTrainEpochs: 3, perDeviceTrainBatchSize: 8, activationCache, loggingSteps: 1 }, {
        trainDataset: ds,
        dataCollator: collator,
        callbacks: { onStepEnd: () => void blocks.push(model.blocksRun) },
      });
      const res = await trainer.train();
      const w = [...(await model.headWeights('has7')), ...(await model.headWeights('ends7'))];
      model.dispose();
      return { res, w, blocks };
    };
    const cached = await run(true);
    const plain = await run(false);
    expect(cached.res.activationCache).toBe(true);
    expect(plain.res.activationCache).toBe(false);
    // The cached hidden states come from forwards of the same rows in other batches (other padding): float32 rounding
    // differences, carried through 18 steps (measured 3.3e-7).
    cached.w.forEach((t, i) => expectRel(relDiff(t, plain.w[i]!), 64 * F32_EPS, t.key));
    const losses = (r: typeof cached) => r.res.logHistory.filter((e) => 'loss' in e).map((e) => e.loss!);
    expect(losses(cached)).toHaveLength(losses(plain).length);
    losses(cached).forEach((l, i) => expectRel(relErr(l, losses(plain)[i]!), 64 * F32_EPS, `loss ${i}`));
    // 6 steps per epoch: after epoch 1 no more transformer blocks run with the cache; without it they keep running.
    expect(cached.blocks[17]).toBe(cached.blocks[5]);
    expect(plain.blocks[17]!).toBeGreaterThan(plain.blocks[5]!);
  });

  it('gradient accumulation over 2 x 4 equals one batch of 8', async () => {
    const ds = tokenDataset(8, 4);
    const run = async (bs: number, accum: number) => {
      const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead], seed: 9 });
      await new Trainer(model, { outputDir: tmp(), learningRate: 1e-2, maxSteps: 1, perDeviceTrainBatchSize: bs, gradientAccumulationSteps: accum, lrSchedulerType: 'constant' }, {
        trainDataset: ds,
        dataCollator: collator,
      }).train();
      const w = await model.headWeights('ends7');
      model.dispose();
      return w;
    };
    const a = await run(8, 1);
    const b = await run(4, 2);
    // The mean of two half-batch gradients against the full batch's: a few roundings of the gradient, scaled by the
    // learning rate into the weights (measured 7.3e-8).
    a.forEach((t, i) => expectRel(relDiff(b[i]!, t), 8 * F32_EPS, t.key));
  });

  it('frozen backbone: no backbone weight changes; full finetuning: they do', async () => {
    const batch = { input_ids: [[1, 2, 3, 4]] };
    for (const freezeBaseModel of [true, false]) {
      const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead], freezeBaseModel });
      const before = (await model.hookedHiddenStates(batch)).get(2)!.data.slice();
      await new Trainer(model, { outputDir: tmp(), learningRate: 1e-2, maxSteps: 3, perDeviceTrainBatchSize: 8 }, { trainDataset: tokenDataset(24, 5), dataCollator: collator }).train();
      const after = (await model.hookedHiddenStates(batch)).get(2)!.data;
      const changed = before.some((v, i) => v !== after[i]);
      expect(changed, `freezeBaseModel ${freezeBaseModel}`).toBe(!freezeBaseModel);
      expect(model.trainableParameters()).toBe(freezeBaseModel ? 2 * H : model.totalParameters());
      model.dispose();
    }
  });

  it('blockGradients keeps the gradient of a head out of the backbone', async () => {
    const batch = { input_ids: [[1, 2, 3, 4], [5, 6, 7, 8]], ends7: [0, 1] };
    for (const blockGradients of [true, false]) {
      const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ ...seqHead, blockGradients }], freezeBaseModel: false });
      await model.trainStep(batch);
      expect((await model.headGradients('ends7')).length).toBe(1);
      if (blockGradients) expect(await model.backboneGradNorm()).toBe(0);
      else expect(await model.backboneGradNorm()).toBeGreaterThan(0);
      model.dispose();
    }
  });

  it('the last epoch is evaluated and saved too (epoch strategies)', async () => {
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead] });
    const out = tmp();
    await new Trainer(model, { outputDir: out, learningRate: 1e-2, numTrainEpochs: 2, perDeviceTrainBatchSize: 8, evalStrategy: 'epoch', saveStrategy: 'epoch', activationCache: false }, {
      trainDataset: tokenDataset(24, 8),
      evalDataset: tokenDataset(8, 9),
      dataCollator: collator,
    }).train();
    const log = readFileSync(join(out, 'log_history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.filter((e) => 'eval_loss' in e).map((e) => e.epoch)).toEqual([1, 2]);
    expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-3', 'checkpoint-6']);
    model.dispose();
  });

  it('stops cleanly on abort, and resumes from a checkpoint to the same weights as an uninterrupted run', async () => {
    const ds = tokenDataset(40, 6);
    const args = { learningRate: 1e-2, maxSteps: 4, perDeviceTrainBatchSize: 8, saveSteps: 2, activationCache: false as const };
    const full = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead], seed: 1 });
    await new Trainer(full, { ...args, outputDir: tmp() }, { trainDataset: ds, dataCollator: collator }).train();

    const out = tmp();
    const ac = new AbortController();
    const first = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead], seed: 1 });
    const res = await new Trainer(first, { ...args, outputDir: out }, {
      trainDataset: ds,
      dataCollator: collator,
      signal: ac.signal,
      callbacks: { onStepEnd: ({ step }) => void (step === 2 && ac.abort()) },
    }).train();
    expect(res.stopped).toBe(true);
    expect(res.globalStep).toBe(2);
    expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-'))).toEqual(['checkpoint-2']);
    for (const f of ['head_configs.json', 'ends7.safetensors', 'optimizer.pt', 'trainable.pt', 'trainer_state.json']) {
      expect(existsSync(join(out, 'checkpoint-2', f)), f).toBe(true);
    }
    const resumed = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead], seed: 999 });
    const res2 = await new Trainer(resumed, { ...args, outputDir: out, resumeFromCheckpoint: true }, { trainDataset: ds, dataCollator: collator }).train();
    expect(res2.globalStep).toBe(4);
    const a = await full.headWeights('ends7');
    const b = await resumed.headWeights('ends7');
    // Weights and optimizer state are restored bit for bit and the same steps run again: measured bit-identical.
    a.forEach((t, i) => expectRel(relDiff(b[i]!, t), 8 * F32_EPS, t.key));
    for (const m of [full, first, resumed]) m.dispose();
  });
});

describe('save and load', () => {
  it('reloads to bit-identical predictions, in files Python reads with the exact keys and shapes', async () => {
    const heads: HeadConfig[] = [
      { name: 'mlp', inSize: H, numOutputs: 3, numLayers: 3, hiddenSize: 16, layerHook: -2, outputBias: true, lossWeight: 0.5 },
      // A trainable lm_head would train the tied embeddings (as in Python), which a head folder cannot restore.
      { name: 'lm_head', inSize: H, numOutputs: 101, isCausalLm: true, trainable: false },
      seqHead,
    ];
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads, seed: 3 });
    await model.trainStep({ input_ids: [[1, 2, 3]], mlp: [[0, 1, 2]], ends7: [1] });
    await model.configureOptimizer({ lr: 0.1 });
    await model.optimizerStep(0.1);
    const dir = tmp();
    await model.save(dir);
    expect(readdirSync(dir).sort()).toEqual(['ends7.safetensors', 'head_configs.json', 'mlp.safetensors']); // lm_head never saved
    const text = readFileSync(join(dir, 'head_configs.json'), 'utf8');
    expect(text).not.toContain('\n');
    expect(text.startsWith('{"mlp": {"name": "mlp", "in_size": 64, "num_outputs": 3, "layer_hook": -2, "hidden_size": 16, "num_layers": 3,')).toBe(true);
    expect(text).toContain('"loss_weight": 0.5, "ignore_pads": true, "block_gradients": false}');
    expect(text).toContain('"lm_head": {"name": "lm_head", "in_size": 64, "num_outputs": 101');

    const batch = { input_ids: [[5, 6, 7, 8, 9], [1, 2, 3, PAD, PAD]], attention_mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]] };
    const p1 = (await model.forward(batch, { returnPreds: true })).predsByHead!;
    const again = await loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir });
    const p2 = (await again.forward(batch, { returnPreds: true })).predsByHead!;
    for (const [name, t] of p1) expect(Buffer.compare(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), Buffer.from(p2.get(name)!.data.buffer, p2.get(name)!.data.byteOffset, p2.get(name)!.data.byteLength)), name).toBe(0);

    // Python: parse the files as safetensors (format only: header JSON + raw little-endian F32) and compare values.
    const py = execFileSync('bash', [join(root, 'scripts/find_torch_python.sh')]).toString().trim();
    const script = `
import json, struct, sys, torch
d = sys.argv[1]
out = {}
for name in ["mlp", "ends7"]:
    b = open(f"{d}/{name}.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    assert "__metadata__" not in h
    out[name] = {k: [v["dtype"], v["shape"], torch.frombuffer(bytearray(b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]), dtype=torch.float32).sum().item()] for k, v in h.items()}
cfg = json.load(open(f"{d}/head_configs.json"))
out["configs"] = [list(c.keys()) for c in cfg.values()]
print(json.dumps(out))`;
    const res = JSON.parse(execFileSync(py, ['-c', script, dir]).toString());
    expect(Object.keys(res.mlp).sort()).toEqual(['lins.0.bias', 'lins.0.weight', 'lins.1.bias', 'lins.1.weight', 'lins.2.bias', 'lins.2.weight']);
    expect(res.mlp['lins.0.weight'].slice(0, 2)).toEqual(['F32', [16, 64]]);
    expect(res.mlp['lins.2.weight'].slice(0, 2)).toEqual(['F32', [3, 16]]);
    expect(Object.keys(res.ends7)).toEqual(['lins.0.weight']);
    const ours = (await model.headWeights('mlp')).find((t) => t.key === 'lins.1.weight')!;
    // torch's float32 sum against a double sum: at most n eps of the sum of the magnitudes (n = 256 terms).
    expect(sumRelErr(res.mlp['lins.1.weight'][2], ours.data.reduce((a, b) => a + b, 0), ours.data)).toBeLessThanOrEqual(ours.data.length * F32_EPS);
    expect(res.configs[0]).toEqual(['name', 'in_size', 'num_outputs', 'layer_hook', 'hidden_size', 'num_layers', 'output_activation', 'target', 'is_causal_lm', 'pred_for_sequence', 'is_regression', 'output_bias', 'loss_fct', 'trainable', 'loss_weight', 'ignore_pads', 'block_gradients']);
    model.dispose();
    again.dispose();
  });
});

describe('adaptive loss', () => {
  it('zero during warm-up, then the z-score against a Welford mean/std of the past raw losses', async () => {
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [seqHead], adaptiveLoss: true });
    const raw: number[] = [];
    const ds = tokenDataset(64, 8);
    for (let i = 0; i < 7; i++) {
      const batch = collator.collate(ds.rows.slice(i * 8, i * 8 + 8));
      const out = await model.trainStep(batch as never);
      if (i < 5) expect(out.adaptedLossByHead.ends7).toBe(0);
      else {
        const mean = raw.reduce((a, b) => a + b, 0) / raw.length;
        const std = Math.sqrt(raw.reduce((a, b) => a + (b - mean) ** 2, 0) / raw.length); // population std
        // (loss - mean) / std in float32 (the library) against double here: the rounding of loss and mean, a few eps of
        // their magnitudes, is divided by std.
        const want = (out.lossByHead.ends7! - mean) / std;
        const scale = (Math.abs(out.lossByHead.ends7!) + Math.abs(mean)) / std + Math.abs(want);
        expect(Math.abs(out.adaptedLossByHead.ends7! - want) / scale).toBeLessThanOrEqual(4 * F32_EPS);
      }
      raw.push(out.lossByHead.ends7!);
    }
    model.dispose();
  });
});

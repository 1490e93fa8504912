// Every invalid head configuration and bad training input gives a TransformerHeadsError that names the problem.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataCollatorWithPadding, Dataset, loadHeaded, resolveHeadConfig, Trainer, TransformerHeadsError, type HeadConfig, type HeadedModel } from '../ts/index.js';
import { fixture } from './helpers.js';

const model = { hiddenSize: 64, numLayers: 4, vocabSize: 101 };
const base: HeadConfig = { name: 'h', inSize: 64, numOutputs: 2 };

function configError(cfg: unknown): string {
  try {
    resolveHeadConfig(cfg as HeadConfig, model);
  } catch (e) {
    expect(e).toBeInstanceOf(TransformerHeadsError);
    expect((e as TransformerHeadsError).code).toBe('ERR_TH_CONFIG');
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(cfg)}`);
}

describe('HeadConfig validation', () => {
  it('fills the Python defaults', () => {
    expect(resolveHeadConfig(base, model)).toEqual({
      name: 'h', inSize: 64, numOutputs: 2, layerHook: -1, hiddenSize: 0, numLayers: 1, outputActivation: 'linear', target: 'h',
      isCausalLm: false, predForSequence: false, isRegression: false, outputBias: false, lossFct: 'cross_entropy', trainable: true,
      lossWeight: 1, ignorePads: true, blockGradients: false,
    });
    expect(resolveHeadConfig({ ...base, isCausalLm: true }, model).ignorePads).toBe(false);
    expect(resolveHeadConfig({ name: 'lm_head', inSize: 64 }, model).numOutputs).toBe(101);
  });

  it.each([
    [{ ...base, predForSequence: true, isCausalLm: true }, /head 'h': predForSequence cannot be combined with isCausalLm/],
    [{ ...base, inSize: 768 }, /head 'h': inSize must equal the model's hidden size 64, got 768/],
    [{ name: 'h', inSize: 64 }, /head 'h': numOutputs is required/],
    [{ ...base, lossFct: 'hinge' }, /head 'h': lossFct must be one of cross_entropy, mse, masked_mse, bce, bce_with_logits or null, got "hinge"/],
    [{ ...base, outputActivation: 'tanh' }, /head 'h': outputActivation must be one of linear, sigmoid, relu, got "tanh"/],
    [{ ...base, layerHook: 5 }, /head 'h': layerHook must be from -5 to 4 \(this model has 4 layers\), got 5/],
    [{ ...base, layerHook: -6 }, /layerHook must be from -5 to 4/],
    [{ ...base, numLayers: 0 }, /numLayers must be an integer >= 1, got 0/],
    [{ ...base, numLayers: 2 }, /hiddenSize must be positive for an MLP head/],
    [{ ...base, numOutputs: 0 }, /numOutputs must be an integer >= 1, got 0/],
    [{ ...base, lossWeight: Number.NaN }, /lossWeight must be a finite number/],
    [{ ...base, trainable: 'yes' }, /trainable must be true or false, got "yes"/],
    [{ ...base, layer_hook: 2 }, /unknown field 'layer_hook' \(did you mean 'layerHook'\?\)/],
    [{ ...base, name: '' }, /head name must be a non-empty string/],
    [{ ...base, name: '../evil' }, /usable as a file name/],
    [{ name: 'lm_head', inSize: 64, numOutputs: 50 }, /'lm_head' \(the model's own LM head\) must be the vocabulary size/],
  ])('%j', (cfg, message) => {
    expect(configError(cfg)).toMatch(message);
  });

  it('rejects duplicate names and an empty list at load', async () => {
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [base, base] })).rejects.toThrow(/two heads are named 'h'/);
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [] })).rejects.toThrow(/non-empty array/);
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ ...base, inSize: 32 }] })).rejects.toThrow(/in_size 32 does not match the model's hidden size 64/);
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ ...base, layerHook: 9 }] })).rejects.toThrow(/layer_hook/);
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [base], headFolder: '/tmp' })).rejects.toThrow(/exactly one of heads and headFolder/);
  });
});

describe('bad training input', () => {
  let m: HeadedModel;
  beforeAll(async () => {
    m = await loadHeaded(fixture('tiny-gpt2.pt'), {
      heads: [
        { name: 'cls', inSize: 64, numOutputs: 3, predForSequence: true },
        { name: 'reg', inSize: 64, numOutputs: 1, isRegression: true, lossFct: 'mse' },
      ],
    });
  });
  afterAll(() => m.dispose());

  it('labels missing for a head: no loss for it, no crash', async () => {
    const out = await m.forward({ input_ids: [[1, 2, 3]], cls: [2] });
    expect(Object.keys(out.lossByHead)).toEqual(['cls']);
    const none = await m.forward({ input_ids: [[1, 2, 3]] });
    expect(none.lossByHead).toEqual({});
    expect(none.loss).toBe(0);
    await m.trainStep({ input_ids: [[1, 2, 3]] }); // nothing to learn from: still fine
  });

  it('label shape mismatch', async () => {
    const e = m.forward({ input_ids: [[1, 2, 3], [4, 5, 6]], cls: [1, 2, 0] });
    await expect(e).rejects.toThrow(/labels 'cls' for head 'cls' have shape \[3\] but the batch has 2 rows/);
    await expect(m.forward({ input_ids: [[1, 2, 3]], reg: [[1]] })).rejects.toThrow(/head 'reg': labels 'reg' of shape \[1, 1\] do not fit its predictions of shape \[1, 3, 1\]/);
    await expect(m.forward({ input_ids: [[1, 2, 3]], reg: [[1, 2], [3]] as never })).rejects.toThrow(/ragged/);
  });

  it('NaN or non-integer labels', async () => {
    await expect(m.forward({ input_ids: [[1, 2, 3]], reg: [[0.5, Number.NaN, 1]] })).rejects.toMatchObject({ code: 'ERR_TH_VALUE', message: expect.stringMatching(/labels 'reg' hold NaN at index 1/) });
    await expect(m.forward({ input_ids: [[1, 2, 3]], cls: [1.5] })).rejects.toThrow(/must be class indices \(integers\) for cross_entropy/);
  });

  it('class index out of range is a clear error', async () => {
    await expect(m.forward({ input_ids: [[1, 2, 3]], cls: [7] })).rejects.toMatchObject({ code: 'ERR_TH_SHAPE' });
  });

  it('an empty dataset', async () => {
    const t = new Trainer(m, { outputDir: mkdtempSync(join(tmpdir(), 'th-')) }, { trainDataset: new Dataset([]), dataCollator: new DataCollatorWithPadding({ input_ids: 100 }) });
    await expect(t.train()).rejects.toThrow(/the training dataset is empty/);
    await expect(t.evaluate(new Dataset([]))).rejects.toThrow(/the evaluation dataset is empty/);
  });

  it('bad training arguments', () => {
    const data = { trainDataset: new Dataset([]), dataCollator: new DataCollatorWithPadding({ input_ids: 100 }) };
    expect(() => new Trainer(m, { outputDir: '/tmp/x', learningRate: -1 }, data)).toThrow(/Expected a positive number for args.learningRate but received -1/);
    expect(() => new Trainer(m, { outputDir: '/tmp/x', perDeviceTrainBatchSize: 2.5 }, data)).toThrow(/positive integer for args.perDeviceTrainBatchSize/);
    expect(() => new Trainer(m, { outputDir: '/tmp/x', lrSchedulerType: 'step' as never }, data)).toThrow(/lrSchedulerType/);
    expect(() => new Trainer(m, { outputDir: '/tmp/x' }, { ...data, dataCollator: {} as never })).toThrow(/DataCollatorWithPadding/);
  });

  it('a head folder without head_configs.json, or with a missing or malformed weights file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'th-heads-'));
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir })).rejects.toThrow(/no head_configs.json in/);
    writeFileSync(join(dir, 'head_configs.json'), JSON.stringify({ h: { name: 'h', in_size: 64, num_outputs: 2 } }));
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir })).rejects.toMatchObject({ code: 'ERR_TH_FILE' });
    writeFileSync(join(dir, 'h.safetensors'), Buffer.from([200, 0, 0, 0, 0, 0, 0, 0, 123]));
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir })).rejects.toThrow(/header length 200 runs past the end/);
    writeFileSync(join(dir, 'head_configs.json'), JSON.stringify({ h: { name: 'h', in_size: 64, num_outputs: 2, colour: 'red' } }));
    await expect(loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir })).rejects.toThrow(/unknown head config key 'colour'/);
  });

  it('activationCache: true where the heads read padded positions', async () => {
    const reg = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'r', inSize: 64, numOutputs: 1, isRegression: true, lossFct: 'mse', ignorePads: false }] });
    const t = new Trainer(reg, { outputDir: mkdtempSync(join(tmpdir(), 'th-')), activationCache: true }, {
      trainDataset: new Dataset([{ input_ids: [1, 2], r: [0.5, 1] }]),
      dataCollator: new DataCollatorWithPadding({ input_ids: 100, r: 0 }),
    });
    await expect(t.train()).rejects.toThrow(/activation cache cannot be used: head 'r' reads padded positions/);
    reg.dispose();
  });
});

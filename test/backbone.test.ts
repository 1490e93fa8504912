import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadBackbone, runtimeInfo, setNumThreads, type Backbone } from '../ts/index.js';
import { fixture, maxDiff } from './helpers.js';

describe('loadBackbone', () => {
  let model: Backbone;
  beforeAll(async () => {
    model = await loadBackbone(fixture('tiny-llama.pt'), { device: 'cpu', dtype: 'float32' });
  });
  afterAll(() => model.dispose());

  it('parses the Hugging Face config', () => {
    expect(model.config).toMatchObject({
      modelType: 'llama',
      hiddenSize: 64,
      numLayers: 4,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      headDim: 16,
      vocabSize: 101,
      tieWordEmbeddings: false,
      eosTokenId: 2,
    });
    expect(model.config.raw.model_type).toBe('llama');
    expect(model.device).toBe('cpu');
    expect(model.dtype).toBe('float32');
  });

  it('reports the bytes of its weights', () => {
    // embed [101,64] + lm_head [101,64] + 4 x (2 norms 64 + q 64x64 + k,v 32x64 + o 64x64 + 3 MLP 160x64) + norm 64
    const params = 2 * 101 * 64 + 4 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 160 * 64) + 64;
    expect(model.memoryBytes).toBe(params * 4);
  });

  it('indexes hidden states as Hugging Face does, negative indices included', async () => {
    const batch = { input_ids: [[5, 6, 7, 8, 9]] };
    const all = await model.hiddenStates(batch);
    expect([...all.keys()]).toEqual([0, 1, 2, 3, 4]);
    const some = await model.hiddenStates(batch, { layers: [-1, -5, -2, 0] });
    expect([...some.keys()]).toEqual([-1, -5, -2, 0]);
    expect(maxDiff(some.get(-1)!, all.get(4)!)).toBe(0);
    expect(maxDiff(some.get(-5)!, all.get(0)!)).toBe(0);
    expect(maxDiff(some.get(-2)!, all.get(3)!)).toBe(0);
    expect(some.get(-1)!.shape).toEqual([1, 5, 64]);
    expect(some.get(-1)!.data).toBeInstanceOf(Float32Array);
  });

  it('stops the forward after the deepest requested layer', async () => {
    const batch = { input_ids: [[1, 2, 3], [4, 5, 6]] };
    for (const [layers, blocks] of [[[0], 0], [[2], 2], [[1, 3], 3], [[-1], 4], [[-2], 3]] as const) {
      const before = model.stats.blocksRun;
      await model.hiddenStates(batch, { layers: [...layers] });
      expect(model.stats.blocksRun - before, `layers ${layers}`).toBe(blocks);
    }
    const before = model.stats.blocksRun;
    await model.logits(batch);
    expect(model.stats.blocksRun - before).toBe(4);
  });

  it('accepts every token input form with the same result', async () => {
    const ref = await model.logits({ input_ids: [[3, 1, 4, 1, 5]], attention_mask: [[1, 1, 1, 1, 1]] });
    const forms = [
      { input_ids: [3, 1, 4, 1, 5] },
      { input_ids: new Int32Array([3, 1, 4, 1, 5]) },
      { input_ids: new BigInt64Array([3n, 1n, 4n, 1n, 5n]) },
      { input_ids: { data: [3, 1, 4, 1, 5], shape: [1, 5] } },
      { input_ids: { data: new Int32Array([3, 1, 4, 1, 5]), shape: [1, 5] }, attention_mask: { data: new Int32Array(5).fill(1), shape: [1, 5] } },
    ];
    for (const f of forms) expect(maxDiff(await model.logits(f), ref)).toBe(0);
  });

  it('queues concurrent calls on one model and returns each its own result', async () => {
    const batches = [[[1, 2, 3]], [[4, 5, 6]], [[7, 8, 9]], [[10, 11, 12]]];
    const sequential = [];
    for (const b of batches) sequential.push(await model.logits({ input_ids: b }));
    const concurrent = await Promise.all(batches.map((b) => model.logits({ input_ids: b })));
    concurrent.forEach((c, i) => expect(maxDiff(c, sequential[i]!)).toBe(0));
  });

  it('bfloat16 weights halve the memory and stay close to float32', async () => {
    const bf = await loadBackbone(fixture('tiny-llama.pt'), { dtype: 'bfloat16' });
    expect(bf.dtype).toBe('bfloat16');
    expect(bf.memoryBytes * 2).toBe(model.memoryBytes);
    const batch = { input_ids: [[9, 8, 7, 6, 5, 4]] };
    const a = (await model.hiddenStates(batch, { layers: [-1] })).get(-1)!;
    const b = (await bf.hiddenStates(batch, { layers: [-1] })).get(-1)!;
    let num = 0;
    let den = 0;
    a.data.forEach((v, i) => {
      num += (v - b.data[i]!) ** 2;
      den += v * v;
    });
    const rel = Math.sqrt(num / den);
    expect(rel).toBeGreaterThan(0); // really ran in bf16
    expect(rel).toBeLessThan(0.05);
    bf.dispose();
  });
});

describe('runtime', () => {
  it('reports the libtorch it was built with and sets threads', async () => {
    const info = await runtimeInfo();
    expect(info.torchVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(typeof info.cudaAvailable).toBe('boolean');
    const n = info.numThreads;
    setNumThreads(1);
    expect((await runtimeInfo()).numThreads).toBe(1);
    setNumThreads(n);
    expect(() => setNumThreads(0)).toThrow(/positive integer/);
  });
});

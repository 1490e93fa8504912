// The native forward against two independent references: the TorchScript archive's own forward (torch::jit) and
// the eager Python module's outputs dumped at export time. float32, with and without padding.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadBackbone, loadTorchScript, type Backbone, type TorchScriptModule } from '../ts/index.js';
import { expectRel, fixture, FORWARD_RTOL as RTOL, readReference, relDiff, tinyFixtures } from './helpers.js';

describe.each(tinyFixtures)('%s', (name) => {
  let model: Backbone;
  let jit: TorchScriptModule;
  beforeAll(async () => {
    model = await loadBackbone(fixture(`${name}.pt`), { device: 'cpu', dtype: 'float32' });
    jit = await loadTorchScript(fixture(`${name}.pt`));
  });
  afterAll(() => {
    model.dispose();
    jit.dispose();
  });

  it('matches the eager Python module on a padded batch (full, right-padded, left-padded rows)', async () => {
    const ref = readReference(fixture(`${name}.ref.safetensors`));
    const ids = ref.input_ids!;
    const mask = ref.attention_mask!;
    const batch = { input_ids: { data: ids.data as BigInt64Array, shape: ids.shape }, attention_mask: { data: mask.data as BigInt64Array, shape: mask.shape } };
    const L = model.numLayers;
    const out = await model.forward(batch, { layers: Array.from({ length: L + 1 }, (_, i) => i), logits: true });
    for (let i = 0; i <= L; i++) {
      expectRel(relDiff(out.hiddenStates.get(i)!, ref[`hidden_states.${i}`]!, mask.data), RTOL, `hidden_states[${i}]`);
    }
    expectRel(relDiff(out.logits!, ref.logits!, mask.data), RTOL, 'logits');
  });

  it('matches the TorchScript module run through torch::jit, with and without padding', async () => {
    const V = model.config.vocabSize;
    const B = 3;
    const T = 17;
    const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 31 + t * 7 + 3) % V));
    const padded = [Array(T).fill(1), [...Array(T - 5).fill(1), ...Array(5).fill(0)], [...Array(6).fill(0), ...Array(T - 6).fill(1)]];
    for (const mask of [undefined, padded]) {
      const batch = mask ? { input_ids: ids, attention_mask: mask } : { input_ids: ids };
      const flatMask = mask?.flat();
      const ref = await jit.forward(batch);
      const hs = await model.hiddenStates(batch);
      expect(hs.size).toBe(model.numLayers + 1);
      ref.hiddenStates.forEach((r, i) => expectRel(relDiff(hs.get(i)!, r, flatMask), RTOL, `hidden_states[${i}]`));
      const logits = await model.logits(batch);
      expect(logits.shape).toEqual([B, T, V]);
      expectRel(relDiff(logits, ref.logits, flatMask), RTOL, 'logits');
    }
  });
});

it('a wrong reference is detected (the comparison can fail)', async () => {
  const model = await loadBackbone(fixture('tiny-gpt2.pt'));
  const other = await loadTorchScript(fixture('tiny-llama.pt'));
  const batch = { input_ids: [[1, 2, 3, 4]] };
  const ours = await model.hiddenStates(batch, { layers: [-1] });
  const ref = await other.forward(batch);
  expect(relDiff(ours.get(-1)!, ref.hiddenStates[ref.hiddenStates.length - 1]!)).toBeGreaterThan(0.1);
  model.dispose();
  other.dispose();
});

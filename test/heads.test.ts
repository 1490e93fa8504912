// Losses and gradients against PyTorch autograd (scripts/make_head_fixtures.py computes them from the Python
// library's rules, independently of the native code), on head files written in the Python library's format.
import { describe, expect, it } from 'vitest';

import { loadHeaded, type HeadedBatch } from '../ts/index.js';
import { fixture, readReference } from './helpers.js';

function refBatch(dir: string): HeadedBatch {
  const ref = readReference(fixture(`${dir}/batch.safetensors`));
  const batch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ref)) {
    const name = k.startsWith('label.') ? k.slice(6) : k;
    batch[name] = { data: v.data, shape: v.shape };
  }
  return batch as HeadedBatch;
}

describe.each(['heads-gpt2', 'heads-llama'])('%s', (dir) => {
  it('loads Python-format head files and reproduces every head loss (1e-6) and the total', async () => {
    const model = await loadHeaded(fixture(`${dir}/model.pt`), { headFolder: fixture(dir) });
    const exp = readReference(fixture(`${dir}/expected.safetensors`));
    const out = await model.forward(refBatch(dir), { returnPreds: true });
    const names = Object.keys(exp).filter((k) => k.startsWith('loss.')).map((k) => k.slice(5));
    expect(Object.keys(out.lossByHead).sort()).toEqual(names.sort());
    for (const n of names) {
      const want = Number(exp[`loss.${n}`]!.data[0]);
      expect(Math.abs(out.lossByHead[n]! - want), `${n}: ${out.lossByHead[n]} vs ${want}`).toBeLessThan(1e-6 * Math.max(1, Math.abs(want)));
    }
    expect(out.lossByHead.all_ignored).toBe(0); // every target -100: NaN replaced by 0, as in Python
    expect(out.adaptedLossByHead).toEqual(out.lossByHead);
    expect(Math.abs(out.loss - Number(exp.loss!.data[0]))).toBeLessThan(1e-5);
    // predictions for every head, [B, T, C]; relu head has no loss but predictions
    expect(out.predsByHead!.get('relu_noloss')!.shape).toEqual([3, 9, 2]);
    expect(out.predsByHead!.get('lm_head')!.shape).toEqual([3, 9, 50]);
    expect(out.predsByHead!.get('relu_noloss')!.data.every((x) => x >= 0)).toBe(true);
    model.dispose();
  });

  it('head gradients match torch autograd (1e-5) with a frozen backbone', async () => {
    const model = await loadHeaded(fixture(`${dir}/model.pt`), { headFolder: fixture(dir) });
    const exp = readReference(fixture(`${dir}/expected.safetensors`));
    await model.trainStep(refBatch(dir));
    let compared = 0;
    for (const h of model.heads) {
      const grads = await model.headGradients(h.name);
      const want = Object.keys(exp).filter((k) => k.startsWith(`grad.${h.name}.`));
      expect(grads.map((g) => `grad.${h.name}.${g.key}`).sort(), h.name).toEqual(want.sort());
      for (const g of grads) {
        const ref = exp[`grad.${h.name}.${g.key}`]!;
        expect(g.shape).toEqual(ref.shape);
        let maxd = 0;
        let scale = 1;
        g.data.forEach((v, i) => {
          maxd = Math.max(maxd, Math.abs(v - Number(ref.data[i])));
          scale = Math.max(scale, Math.abs(Number(ref.data[i])));
        });
        // 1e-5, relative to the gradient's magnitude where it exceeds 1 (float32 sums over the batch)
        expect(maxd, `${h.name}.${g.key} (largest |grad| ${scale})`).toBeLessThan(1e-5 * scale);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(10);
    expect(await model.backboneGradNorm()).toBe(0); // frozen: nothing reaches the backbone
    model.dispose();
  });
});

// Losses and gradients against PyTorch autograd (scripts/make_head_fixtures.py computes them from the Python
// library's rules, independently of the native code), on head files written in the Python library's format.
import { describe, expect, it } from 'vitest';

import { loadHeaded, type HeadedBatch } from '../ts/index.js';
import { expectRel, F32_EPS, fixture, GRAD_RTOL, LOSS_RTOL, readReference, relDiff, relErr, sumRelErr } from './helpers.js';

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
  it('loads Python-format head files and reproduces every head loss and the total', async () => {
    const model = await loadHeaded(fixture(`${dir}/model.pt`), { headFolder: fixture(dir) });
    const exp = readReference(fixture(`${dir}/expected.safetensors`));
    const out = await model.forward(refBatch(dir), { returnPreds: true });
    const names = Object.keys(exp).filter((k) => k.startsWith('loss.')).map((k) => k.slice(5));
    expect(Object.keys(out.lossByHead).sort()).toEqual(names.sort());
    for (const n of names) {
      const want = Number(exp[`loss.${n}`]!.data[0]);
      expectRel(relErr(out.lossByHead[n]!, want), LOSS_RTOL, `${n}: ${out.lossByHead[n]} vs ${want}`);
    }
    expect(out.lossByHead.all_ignored).toBe(0); // every target -100: NaN replaced by 0, as in Python
    expect(out.adaptedLossByHead).toEqual(out.lossByHead);
    // The total is the sum of the weighted head losses: each may be off by LOSS_RTOL of itself, and both sides add
    // 11 float32 terms in their own order.
    const weighted = model.heads.filter((h) => h.name in out.lossByHead).map((h) => out.lossByHead[h.name]! * h.lossWeight);
    expect(weighted).toHaveLength(names.length);
    expectRel(sumRelErr(out.loss, Number(exp.loss!.data[0])!, weighted), LOSS_RTOL + 12 * F32_EPS, 'total loss');
    // predictions for every head, [B, T, C]; relu head has no loss but predictions
    expect(out.predsByHead!.get('relu_noloss')!.shape).toEqual([3, 9, 2]);
    expect(out.predsByHead!.get('lm_head')!.shape).toEqual([3, 9, 50]);
    expect(out.predsByHead!.get('relu_noloss')!.data.every((x) => x >= 0)).toBe(true);
    model.dispose();
  });

  it('head gradients match torch autograd with a frozen backbone', async () => {
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
        expectRel(relDiff(g, ref), GRAD_RTOL, `${h.name}.${g.key}`);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(10);
    expect(await model.backboneGradNorm()).toBe(0); // frozen: nothing reaches the backbone
    model.dispose();
  });
});

import { describe, expect, it } from 'vitest';

import { DataCollatorWithPadding, Dataset, evaluateHeadWise, getTopNPreds, loadHeaded, loadTokenizer, loadTorchScript, Trainer } from '../ts/index.js';
import { expectRel, fixture, relErr } from './helpers.js';

describe('evaluation helpers', () => {
  it('getTopNPreds: the top tokens of the lm_head at the last position, as the TorchScript module ranks them', async () => {
    const path = fixture('random-gpt2-bpe.pt');
    const tok = await loadTokenizer(path);
    const model = await loadHeaded(path, { heads: [{ name: 'lm_head', inSize: 256, isCausalLm: true }] });
    const text = 'The quick brown fox jumps over the lazy';
    const top = await getTopNPreds(5, model, text, tok);
    const jit = await loadTorchScript(path);
    const ids = tok.encode(text).ids;
    const { logits } = await jit.forward({ input_ids: [ids] });
    const V = logits.shape[2]!;
    const last = logits.data.subarray((ids.length - 1) * V, ids.length * V);
    const want = Array.from(last.keys()).sort((a, b) => last[b]! - last[a]!).slice(0, 5).map((i) => tok.decode([i]));
    expect(top.lm_head).toEqual(want);
    model.dispose();
    jit.dispose();
  });

  it('evaluateHeadWise averages the per-batch losses', async () => {
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'c', inSize: 64, numOutputs: 3, predForSequence: true }] });
    const rows = Array.from({ length: 5 }, (_, i) => ({ input_ids: [i + 1, i + 2, i + 3], c: i % 3 }));
    const collator = new DataCollatorWithPadding({ input_ids: 100 });
    const res = await evaluateHeadWise(model, new Dataset(rows), collator, 2);
    const manual = [];
    for (const b of [rows.slice(0, 2), rows.slice(2, 4), rows.slice(4)]) manual.push((await model.forward(collator.collate(b) as never)).lossByHead.c!);
    // The same forwards on the same batches (identical float32 losses), averaged in double: a few double roundings.
    expectRel(relErr(res.lossByHead.c!, (manual[0]! + manual[1]! + manual[2]!) / 3), 8 * Number.EPSILON, 'head loss');
    expectRel(relErr(res.loss, res.lossByHead.c!), 8 * Number.EPSILON, 'total'); // one head of weight 1
    model.dispose();
  });
  it('Trainer.evaluate: rows whose sequence label is -100 (another task\'s rows) are left out of the accuracy, as at token level', async () => {
    const model = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'c', inSize: 64, numOutputs: 3, predForSequence: true }] });
    const rows = Array.from({ length: 9 }, (_, i) => ({ input_ids: [i + 1, i + 2, i + 3], c: i % 3 === 0 ? -100 : i % 3 }));
    const collator = new DataCollatorWithPadding({ input_ids: 100 });
    let seen: number[] = [];
    const trainer = new Trainer(
      model,
      { outputDir: 'out/test-evaluate', perDeviceEvalBatchSize: 4 },
      {
        evalDataset: new Dataset(rows),
        dataCollator: collator,
        computeMetrics: (p) => {
          seen = Array.from(p.heads.c!.labels);
          return {};
        },
      },
    );
    const m = await trainer.evaluate();
    // the reference: each labelled row's arg-max class from its own forward (all rows have 3 tokens: no padding)
    let ok = 0;
    let n = 0;
    for (const r of rows) {
      if (r.c === -100) continue;
      const out = await model.forward(collator.collate([r]) as never, { returnPreds: true });
      const p = out.predsByHead!.get('c')!;
      const last = Array.from(p.data.subarray(p.data.length - 3));
      ok += last.indexOf(Math.max(...last)) === r.c ? 1 : 0;
      n++;
    }
    expect(n).toBe(6);
    expect(seen).toEqual(rows.filter((r) => r.c !== -100).map((r) => r.c));
    expect(m.eval_c_accuracy).toBe(ok / n);
    model.dispose();
  });
});

import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { Tokenizer } from '../io/index.js';
import type { HeadedBatch, HeadedModel } from '../model/index.js';
import type { DataCollatorWithPadding } from './collator.js';
import type { Dataset, Example } from './data.js';

/** Mean total loss and mean loss per head over a dataset, batch by batch (the Python library's evaluate_head_wise). */
export async function evaluateHeadWise<H extends string = string>(
  model: HeadedModel<H, string>,
  dataset: Dataset,
  collator: DataCollatorWithPadding,
  batchSize = 8,
): Promise<{ loss: number; lossByHead: Record<H, number> }> {
  if (dataset.length === 0) throw new TransformerHeadsError('the evaluation dataset is empty', 'ERR_TH_VALUE');
  if (!Number.isInteger(batchSize) || batchSize < 1) invalidArg('batchSize', 'a positive integer', batchSize);
  const byHead: Record<string, number[]> = {};
  const losses: number[] = [];
  for (let i = 0; i < dataset.length; i += batchSize) {
    const batch = collator.collate(dataset.rows.slice(i, i + batchSize) as Example[]);
    const out = await model.forward(batch as unknown as HeadedBatch);
    losses.push(out.loss);
    for (const [k, v] of Object.entries<number>(out.lossByHead)) (byHead[k] ??= []).push(v);
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  return { loss: mean(losses), lossByHead: Object.fromEntries(Object.entries(byHead).map(([k, v]) => [k, mean(v)])) as Record<H, number> };
}

/**
 * For each head, the `n` highest-scoring outputs at the text's last token, decoded as tokens (the Python library's
 * get_top_n_preds; meant for causal-LM heads such as 'lm_head').
 */
export async function getTopNPreds<H extends string = string>(n: number, model: HeadedModel<H, string>, text: string, tokenizer: Tokenizer): Promise<Record<H, string[]>> {
  if (!Number.isInteger(n) || n < 1) invalidArg('n', 'a positive integer', n);
  const ids = tokenizer.encode(text).ids;
  if (ids.length === 0) throw new TransformerHeadsError('the text encodes to no tokens', 'ERR_TH_VALUE');
  const out = await model.forward({ input_ids: [ids] }, { returnPreds: true });
  const result = {} as Record<H, string[]>;
  for (const [name, t] of out.predsByHead!) {
    const [, T, C] = t.shape as [number, number, number];
    const row = t.data.subarray((T - 1) * C, T * C);
    const top = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, Math.min(n, C));
    result[name] = top.map((i) => tokenizer.decode([i]));
  }
  return result;
}

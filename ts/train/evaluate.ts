import { invalidArg, TransformerHeadsError } from '../errors.js';
import type { Tokenizer } from '../io/index.js';
import type { HeadedBatch, HeadedModel } from '../model/index.js';
import type { Tensor } from '../native/index.js';
import type { DataCollatorWithPadding } from './collator.js';
import type { Dataset, Example } from './data.js';

/**
 * Mean total loss and mean loss per head over a dataset, batch by batch (the Python library's
 * evaluate_head_wise(model, ds, collator, batch_size=8, epochs=1)). `epochs` as in Python, whose loop makes one pass
 * over the batches and stops after batch i once i >= batches x epochs: a fraction evaluates the first
 * floor(batches x epochs) + 1 batches, and more than 1 still evaluates each batch once.
 */
export async function evaluateHeadWise<H extends string = string>(
  model: HeadedModel<H, string>,
  dataset: Dataset,
  collator: DataCollatorWithPadding,
  batchSizeOrOptions: number | { batchSize?: number; epochs?: number } = 8,
  epochsArg = 1,
): Promise<{ loss: number; lossByHead: Record<H, number> }> {
  const opts = typeof batchSizeOrOptions === 'object' && batchSizeOrOptions !== null ? batchSizeOrOptions : { batchSize: batchSizeOrOptions, epochs: epochsArg };
  const batchSize = opts.batchSize ?? 8;
  const epochs = opts.epochs ?? 1;
  if (dataset.length === 0) throw new TransformerHeadsError('the evaluation dataset is empty', 'ERR_TH_VALUE');
  if (!Number.isInteger(batchSize) || batchSize < 1) invalidArg('batchSize', 'a positive integer', batchSize);
  if (typeof epochs !== 'number' || !(epochs > 0) || !Number.isFinite(epochs)) invalidArg('epochs', 'a positive number', epochs);
  const byHead: Record<string, number[]> = {};
  const losses: number[] = [];
  const batches = Math.ceil(dataset.length / batchSize);
  for (let b = 0; b < batches; b++) {
    const batch = collator.collate(dataset.rows.slice(b * batchSize, (b + 1) * batchSize) as Example[]);
    const out = await model.forward(batch as unknown as HeadedBatch);
    losses.push(out.loss);
    for (const [k, v] of Object.entries<number>(out.lossByHead)) (byHead[k] ??= []).push(v);
    if (b >= batches * epochs) break;
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

/** What getSomePreds returns (the Python library's `inputs, preds, ground_truths`). */
export interface SomePreds<H extends string = string> {
  /** Each example's input_ids decoded. */
  inputs: string[];
  /**
   * Per head, one entry per example: with `classification`, the arg-max class of the output at the last position;
   * otherwise the head's whole output for the example, [T, C].
   */
  preds: Record<H, Array<number | Tensor>>;
  /** Per head, the example's column named like the head (null when it has none), as Python's `batch[key]`. */
  groundTruths: Record<H, unknown[]>;
}

/**
 * Runs the first examples of a dataset one at a time (batch size 1, no padding) and collects every head's prediction
 * next to the decoded input and the label column named like the head: the Python library's
 * get_some_preds(model, ds, tokenizer, n=5, classification=True). As there, the loop stops after example i once
 * i >= n, so it returns n + 1 examples (all of them when the dataset is shorter). Python's classification=False
 * fails (its `p` is unset); here it gives each head's full output instead.
 */
export async function getSomePreds<H extends string = string>(
  model: HeadedModel<H, string>,
  dataset: Dataset,
  tokenizer: Tokenizer,
  options?: { n?: number; classification?: boolean } | null,
): Promise<SomePreds<H>> {
  const n = options?.n ?? 5;
  const classification = options?.classification ?? true;
  if (!Number.isInteger(n) || n < 0) invalidArg('n', 'an integer >= 0', n);
  const out: SomePreds<H> = { inputs: [], preds: {} as Record<H, Array<number | Tensor>>, groundTruths: {} as Record<H, unknown[]> };
  for (let i = 0; i < dataset.length; i++) {
    const row = dataset.rows[i]!;
    const ids = row.input_ids;
    if (!Array.isArray(ids) || ids.length === 0) {
      throw new TransformerHeadsError(`example ${i} has no input_ids (tokenize the dataset first)`, 'ERR_TH_VALUE');
    }
    out.inputs.push(tokenizer.decode(ids as number[]));
    const batch: Record<string, unknown> = { input_ids: [ids] };
    if (Array.isArray(row.attention_mask)) batch.attention_mask = [row.attention_mask];
    if (Array.isArray(row.position_ids)) batch.position_ids = [row.position_ids];
    const res = await model.forward(batch as unknown as HeadedBatch, { returnPreds: true });
    for (const [name, t] of res.predsByHead!) {
      const [, T, C] = t.shape as [number, number, number];
      (out.groundTruths[name] ??= []).push(row[name] ?? null);
      const last = t.data.subarray((T - 1) * C, T * C);
      let p: number | Tensor;
      if (classification) {
        p = 0;
        for (let c = 1; c < C; c++) if (last[c]! > last[p]!) p = c;
      } else {
        p = { data: t.data.slice(), shape: [T, C] };
      }
      (out.preds[name] ??= []).push(p);
    }
    if (i >= n) break;
  }
  return out;
}

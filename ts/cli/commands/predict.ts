// transformer-heads predict: runs saved heads on texts and prints one JSON object of predictions per text.
import { existsSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { basename, extname, resolve } from 'node:path';
import { createInterface } from 'node:readline';

import type { Tokenizer } from '../../io/index.js';
import { readHeadConfigs, type ResolvedHeadConfig } from '../../model/index.js';
import { DataCollatorWithPadding, readTable } from '../../train/index.js';
import { BIN, deviceFlag, intFlag, strFlag, usageError, type Command } from '../args.js';
import { resolveHeadsForModel } from '../config.js';
import { labelKind, prepareExamples } from '../labels.js';
import { labellingFor, loadRunModel, modelConfigOf, resolveRun, tryTokenizer } from '../run.js';
import { fetchModel } from '../hub.js';
import { CliError, jsonSafe } from '../ui.js';

export const PREDICT: Command = {
  summary: 'run trained heads on texts and print predictions (jsonl)',
  usage: `${BIN} predict RUN_DIR [TEXT ...] [--input FILE] [--text COL] [--top N] [--model PATH] [--out FILE]`,
  options: { input: { type: 'string', short: 'i' }, text: { type: 'string' }, top: { type: 'string' }, model: { type: 'string' }, 'batch-size': { type: 'string' } },
  help: `Runs saved heads on texts and prints one JSON object per text:
  {"text": "...", "predictions": {"<head>": {...}}}
    classification heads   {"label": "spam", "class": 1, "probability": 0.93, "probabilities": [0.07, 0.93]}
    regression heads       {"value": 0.41} (or "values" with several outputs)
    bce heads              {"probabilities": [...], "predicted": [0, 1]}
    token-level heads      {"tokens": [...], "labels": [...]} (or "values")
    causal-LM heads        {"next": [{"token": " the", "probability": 0.12}, ...]} (top N)
Texts come from the arguments, else from --input FILE (.jsonl objects with the text column, .csv, or plain text
with one text per line), else from stdin (one text per line, or JSON objects).
  RUN_DIR        a folder written by '${BIN} train', or a heads folder with --model (or a Hub repository
                 ORG/NAME holding one; LoRA adapters name their base model)
  --text COL     text column of jsonl / csv input (default: the run's, else 'text')
  --top N        next-token candidates for causal-LM heads (default 5)
  --batch-size N texts per forward pass (default 16)
  --out FILE     write the predictions to FILE instead of stdout`,
  async run(v, pos, ui) {
    if (pos.length < 1) usageError('predict needs a run folder (and texts, --input FILE or stdin)', 'predict');
    const run = await resolveRun(pos[0]!, v, 'predict', ui);
    await fetchModel(run.model, ui);
    const top = intFlag(v, 'top', 1) ?? 5;
    const batch = intFlag(v, 'batch-size', 1) ?? 16;
    const textCol = strFlag(v, 'text') ?? run.data.textColumn;
    const inputs = await predictInputs(pos.slice(1), strFlag(v, 'input'), textCol);
    if (inputs.length === 0) usageError('no texts to predict', 'predict');
    const mc = await modelConfigOf(run.model, 'model');
    const saved = await readHeadConfigs(run.headsDir);
    const { resolved } = resolveHeadsForModel(saved, mc, `${run.headsDir}/head_configs.json`);
    const labelling = await labellingFor(run, resolved, mc, textCol);
    const tokenizer = await tryTokenizer(run.data.tokenizer, run.model);
    const padId = run.data.padTokenId ?? tokenizer?.padTokenId ?? mc.padTokenId ?? mc.eosTokenId ?? 0;
    const collator = new DataCollatorWithPadding({ input_ids: padId, attention_mask: 0 });
    ui.log(`loading ${run.model} with the heads in ${run.headsDir}`);
    const model = await loadRunModel(run, deviceFlag(v));
    const outFlag = strFlag(v, 'out');
    const sink = outFlag ? await open(resolve(outFlag), 'w') : null;
    const bar = inputs.length > batch ? ui.progress('predict', 'texts') : null;
    try {
      for (let i = 0; i < inputs.length; i += batch) {
        const chunk = inputs.slice(i, i + batch);
        const examples = prepareExamples(chunk.map((c) => ({ [labelling.textColumn]: c.text })), 'input', labelling, tokenizer, { labels: false });
        const collated = collator.collate(examples);
        const out = await model.forward(collated as never, { returnPreds: true });
        const lines = chunk.map((c, b) => {
          const ids = examples[b]!.input_ids as number[];
          const predictions: Record<string, unknown> = {};
          for (const h of resolved) predictions[h.name] = describePrediction(h, out.predsByHead!.get(h.name)!, b, ids, tokenizer, labelling.labelMaps[h.target], top);
          return JSON.stringify({ ...(c.id !== undefined ? { id: c.id } : {}), text: c.text, predictions }, jsonSafe);
        });
        const text = lines.join('\n') + '\n';
        if (sink) await sink.write(text);
        else process.stdout.write(text);
        bar?.update(Math.min(i + batch, inputs.length), inputs.length);
      }
      bar?.end();
      if (sink) ui.log(`${inputs.length} predictions written to ${resolve(outFlag!)}`);
      return 0;
    } finally {
      await sink?.close();
      model.dispose();
    }
  },
};

async function predictInputs(args: string[], input: string | undefined, textCol: string): Promise<Array<{ text: string; id?: unknown }>> {
  if (args.length) return args.map((text) => ({ text }));
  const fromObject = (o: unknown, where: string): { text: string; id?: unknown } => {
    if (typeof o !== 'object' || o === null) throw new CliError(`${where}: expected a JSON object with a '${textCol}' field`, null, 2);
    const t = (o as Record<string, unknown>)[textCol];
    if (typeof t !== 'string') throw new CliError(`${where}: no text column '${textCol}'; the object has: ${Object.keys(o).join(', ')}`, 'pass --text COL', 2);
    const id = (o as Record<string, unknown>).id;
    return id === undefined ? { text: t } : { text: t, id };
  };
  if (input) {
    const p = resolve(input);
    if (!existsSync(p)) throw new CliError(`input file '${input}' does not exist`, 'pass --input FILE (.jsonl, .csv or a text file with one text per line)', 2);
    const ext = extname(p).toLowerCase();
    if (ext === '.jsonl' || ext === '.csv' || ext === '.tsv') {
      const ds = await readTable(p, undefined, { textColumns: [textCol] });
      return ds.rows.map((r, i) => fromObject(r, `${basename(p)} row ${i + 1}`));
    }
    return (await readFile(p, 'utf8')).split(/\r?\n/).filter((l) => l.trim()).map((text) => ({ text }));
  }
  if (process.stdin.isTTY) usageError('no texts: give them as arguments, with --input FILE, or on stdin', 'predict');
  const out: Array<{ text: string; id?: unknown }> = [];
  let n = 0;
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    n++;
    if (!line.trim()) continue;
    if (line.trimStart().startsWith('{')) {
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        out.push({ text: line });
        continue;
      }
      out.push(fromObject(o, `stdin line ${n}`));
    } else out.push({ text: line });
  }
  return out;
}

function softmax(row: ArrayLike<number>): number[] {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]!);
  const e = Array.from(row, (x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const r4 = (x: number) => Number(x.toFixed(4));

function describePrediction(
  h: ResolvedHeadConfig,
  preds: { data: Float32Array; shape: number[] },
  b: number,
  ids: number[],
  tokenizer: Tokenizer | null,
  labelMap: string[] | undefined,
  top: number,
): unknown {
  const [, T, C] = preds.shape as [number, number, number];
  const row = (t: number) => preds.data.subarray((b * T + t) * C, (b * T + t + 1) * C);
  const last = ids.length - 1;
  const kind = labelKind(h);
  const classOf = (r: ArrayLike<number>) => {
    const p = softmax(r);
    const k = p.indexOf(Math.max(...p));
    return { label: labelMap?.[k] ?? k, class: k, probability: r4(p[k]!), probabilities: p.map(r4) };
  };
  const values = (r: ArrayLike<number>) => {
    if (h.lossFct === 'bce' || h.lossFct === 'bce_with_logits') {
      const p = Array.from(r, (x) => (h.lossFct === 'bce_with_logits' ? sigmoid(x) : x));
      return { probabilities: p.map(r4), predicted: p.map((x) => (x > 0.5 ? 1 : 0)) };
    }
    return r.length === 1 ? { value: r4(r[0]!) } : { values: Array.from(r, r4) };
  };
  if (kind === 'causal') {
    const p = softmax(row(last));
    const order = Array.from(p.keys()).sort((x, y) => p[y]! - p[x]!).slice(0, top);
    return { next: order.map((k) => ({ token: tokenizer ? tokenizer.decode([k]) : k, id: k, probability: r4(p[k]!) })) };
  }
  if (h.predForSequence) return kind === 'class' ? classOf(row(last)) : values(row(last));
  const tokens = ids.map((id) => (tokenizer ? tokenizer.decode([id]) : id));
  if (kind === 'class-token') {
    const labels = ids.map((_, t) => {
      const c = classOf(row(t));
      return c.label;
    });
    return { tokens, labels };
  }
  return { tokens, values: ids.map((_, t) => Array.from(row(t), r4)) };
}

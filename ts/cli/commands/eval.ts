// transformer-heads eval: loss and metrics per head of saved heads on a labelled dataset.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';

import { atomicWrite, ensureFolder } from '../../io/index.js';
import { readHeadConfigs } from '../../model/index.js';
import { DataCollatorWithPadding, Dataset, Trainer } from '../../train/index.js';
import { BIN, deviceFlag, intFlag, strFlag, usageError, type Command } from '../args.js';
import { resolveHeadsForModel } from '../config.js';
import { buildLabelMaps, padValues, prepareExamples } from '../labels.js';
import { byHead, headTable, labellingFor, loadRunModel, modelConfigOf, readRows, resolveRun, tryTokenizer } from '../run.js';
import { fetchModel } from '../hub.js';
import { CliError, jsonSafe, textTable } from '../ui.js';

export const EVAL: Command = {
  summary: 'evaluate trained heads on a labelled dataset',
  usage: `${BIN} eval RUN_DIR | CONFIG.json [--data FILE] [--text COL] [--model PATH] [--batch-size N] [--out DIR] [--json]`,
  options: { data: { type: 'string' }, text: { type: 'string' }, model: { type: 'string' }, 'batch-size': { type: 'string' } },
  help: `Evaluates saved heads and prints loss and metrics per head (accuracy and macro-F1 for classification heads,
MSE and R² for regression heads).
  RUN_DIR        a folder written by '${BIN} train' (run.json names the model, columns and label names), or a
                 heads folder (head_configs.json) with --model, or a Hub repository ORG/NAME holding one
  CONFIG.json    a train config: its outputDir's heads, on its data.eval
  --data FILE    the labelled data (.jsonl or .csv); defaults to the run's eval file (or the rows its
                 data.evalFraction held out)
  --text COL     text column (default: the run's, else 'text')
  --model PATH   the base model, a path or a Hub id ORG/NAME[@REV] (default: the run's)
  --batch-size N examples per forward pass (default: the run's perDeviceEvalBatchSize, else 8; losses are
                 means over batches, so the same size reproduces the training run's numbers)
  --out DIR      also write DIR/eval_metrics.json`,
  async run(v, pos, ui) {
    if (pos.length !== 1) usageError('eval needs one run folder or config file', 'eval');
    const run = await resolveRun(pos[0]!, v, 'eval', ui);
    await fetchModel(run.model, ui);
    const dataFlag = strFlag(v, 'data');
    // --data, else the run's eval file, else the same held-out split of its training file (data.evalFraction).
    const split = !dataFlag && !run.data.eval && run.data.train && run.data.evalFraction ? run.data.evalFraction : null;
    const dataPath = dataFlag ? resolve(dataFlag) : (run.data.eval ?? (split ? run.data.train : null));
    if (!dataPath) usageError('no evaluation data: pass --data FILE (.jsonl or .csv)', 'eval');
    if (!existsSync(dataPath)) throw new CliError(`data file '${dataPath}' does not exist`, 'pass --data FILE with a .jsonl or .csv file', 2);
    const batch = intFlag(v, 'batch-size', 1) ?? run.evalBatchSize ?? 8;
    const mc = await modelConfigOf(run.model, 'model');
    const saved = await readHeadConfigs(run.headsDir);
    const { resolved } = resolveHeadsForModel(saved, mc, `${run.headsDir}/head_configs.json`);
    const labelling = await labellingFor(run, resolved, mc, strFlag(v, 'text'));
    let rows = await readRows(dataPath, { ...run.data, textColumn: labelling.textColumn });
    if (split) rows = [...new Dataset(rows).trainTestSplit(split, run.splitSeed ?? 42).test.rows];
    labelling.labelMaps = buildLabelMaps([{ rows, where: basename(dataPath) }], resolved, labelling.labelColumns, labelling.labelMaps);
    const tokenizer = await tryTokenizer(run.data.tokenizer, run.model);
    const ds = new Dataset(prepareExamples(rows, basename(dataPath), labelling, tokenizer));
    const padId = run.data.padTokenId ?? tokenizer?.padTokenId ?? mc.padTokenId ?? mc.eosTokenId ?? 0;
    ui.log(`loading ${run.model} with the heads in ${run.headsDir}`);
    const model = await loadRunModel(run, deviceFlag(v));
    try {
      ui.log(`evaluating ${resolved.length} head${resolved.length > 1 ? 's' : ''} on ${ds.length} examples`);
      const t0 = performance.now();
      const trainer = new Trainer(model, { outputDir: tmpdir(), perDeviceEvalBatchSize: batch }, { evalDataset: ds, dataCollator: new DataCollatorWithPadding(padValues(resolved, padId)) });
      const metrics = await trainer.evaluate();
      const seconds = Number(((performance.now() - t0) / 1000).toFixed(2));
      const result = { command: 'eval', model: run.model, heads: run.headsDir, data: dataPath, examples: ds.length, seconds, metrics, byHead: byHead(resolved, metrics) };
      const outFlag = strFlag(v, 'out');
      if (outFlag) {
        await ensureFolder(resolve(outFlag));
        await atomicWrite(join(resolve(outFlag), 'eval_metrics.json'), JSON.stringify(result, jsonSafe, 2) + '\n');
      }
      ui.emit(result);
      ui.print(`${ds.length} examples from ${dataPath}${split ? ` (the fraction ${split} held out in training)` : ''}\n\n${textTable(headTable(resolved, metrics))}`);
      return 0;
    } finally {
      model.dispose();
    }
  },
};

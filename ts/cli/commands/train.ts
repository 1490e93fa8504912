// transformer-heads train: trains the heads a JSON config file describes and writes them with the log, plots,
// metrics, run.json and a report.
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

import { TransformerHeadsError } from '../../errors.js';
import { atomicWrite, ensureFolder, saveFolder } from '../../io/index.js';
import { createHeadedQLoRA, loadHeaded, type Device, type ResolvedHeadConfig } from '../../model/index.js';
import { htmlReport, lossChart } from '../../report/index.js';
import { currentProcessGroup, DataCollatorWithPadding, Dataset, finalEvaluation, Trainer, type Example, type LogEntry, type TrainingArguments } from '../../train/index.js';
import { BIN, deviceFlag, strFlag, usageError, type Command } from '../args.js';
import { configError, readTrainConfig, resolveHeadsForModel, type TrainConfig } from '../config.js';
import { buildLabelMaps, labelKind, padValues, prepareExamples, type Labelling } from '../labels.js';
import { asConfigFieldError, byHead, defaultMaxLength, headTable, modelConfigOf, readRows, tryTokenizer, type RunInfo } from '../run.js';
import { fetchModel } from '../hub.js';
import { fmtNum, interruptible, jsonSafe, textTable, trainProgress, type Ui } from '../ui.js';

/** What a run writes into its output folder as one unit (the Trainer's log and checkpoints live there too, outside it). */
const RUN_OUTPUTS = ['heads', 'loss.svg', 'metrics.json', 'run.json', 'report.html'];

export const TRAIN: Command = {
  summary: 'train heads from a JSON config file',
  usage: `${BIN} train CONFIG.json [--out DIR] [--device DEV] [--threads N] [--json]`,
  options: {},
  help: `Trains the heads a config file describes and writes, under the output folder:
  heads/              head_configs.json + <name>.safetensors (+ adapter files with LoRA): the Python library's format
  log_history.jsonl   the Trainer's log (loss, learning rate, eval metrics by step)
  loss.svg            training and eval loss by step
  metrics.json        final training and evaluation metrics
  run.json            what eval and predict need (model, columns, label names)
  report.html         the plot and the tables on one page
  checkpoint-N/       with training.saveStrategy

The config (paths relative to the config file; snake_case keys accepted):
  {
    "model": "model.pt",                       TorchScript archive, Hugging Face folder, or Hub id ORG/NAME
    "outputDir": "out/spam",                   or --out
    "heads": [{ "name": "spam", "numOutputs": 2, "predForSequence": true, "layerHook": -1 }],
    "data": { "train": "train.jsonl", "eval": "eval.jsonl", "textColumn": "text",
              "labelColumns": { "spam": "label" }, "maxLength": 128 },
    "training": { "learningRate": 0.001, "numTrainEpochs": 3, "perDeviceTrainBatchSize": 16 },
    "freezeBaseModel": true, "quantization": { "bits": 4 }, "lora": { "r": 8, "alpha": 16 }
  }
Heads are HeadConfig objects (inSize defaults to the model's hidden size). Class labels may be strings (mapped to
sorted class indices, kept in run.json) or integers. Rows may carry input_ids instead of text.
The README's "Command line" section explains every field.`,
  async run(v, pos, ui) {
    if (pos.length !== 1) usageError(pos.length ? `train takes one config file, got ${pos.length} arguments` : 'train needs a config file', 'train');
    const cfg = await readTrainConfig(pos[0]!);
    const outFlag = strFlag(v, 'out');
    const outputDir = outFlag ? resolve(outFlag) : (cfg.outputDir ?? configError('config.outputDir', 'is required (or pass --out DIR)'));
    const device = deviceFlag(v) ?? (cfg.device as Device | null) ?? undefined;
    return train(cfg, outputDir, device, ui);
  },
};

async function train(cfg: TrainConfig, outputDir: string, device: Device | undefined, ui: Ui): Promise<number> {
  const t0 = performance.now();
  await fetchModel(cfg.model, ui);
  const mc = await modelConfigOf(cfg.model, 'config.model');
  const { heads, resolved } = resolveHeadsForModel(cfg.heads, mc);
  const maxLength = cfg.data.maxLength ?? defaultMaxLength(mc);
  if (mc.maxPositionEmbeddings > 0 && maxLength > mc.maxPositionEmbeddings) {
    configError('config.data.maxLength', `must be at most the model's ${mc.maxPositionEmbeddings} positions, got ${maxLength}`);
  }
  const tokenizer = await tryTokenizer(cfg.data.tokenizer, cfg.model);
  const trainRows = await readRows(cfg.data.train!, cfg.data);
  let evalRows: Example[] | null = cfg.data.eval ? await readRows(cfg.data.eval, cfg.data) : null;
  let trainSet = trainRows;
  if (!evalRows && cfg.data.evalFraction) {
    const split = new Dataset(trainRows).trainTestSplit(cfg.data.evalFraction, cfg.training.seed ?? 42);
    trainSet = [...split.train.rows];
    evalRows = [...split.test.rows];
  }
  const labelMaps = buildLabelMaps(
    [{ rows: trainSet, where: 'data.train' }, ...(evalRows ? [{ rows: evalRows, where: 'data.eval' }] : [])],
    resolved,
    cfg.data.labelColumns,
  );
  const labelling: Labelling = { heads: resolved, textColumn: cfg.data.textColumn, labelColumns: cfg.data.labelColumns, maxLength, labelMaps };
  ui.log(`tokenizing ${trainSet.length} training${evalRows ? ` and ${evalRows.length} eval` : ''} examples (first ${maxLength} tokens)`);
  const trainDs = new Dataset(prepareExamples(trainSet, basename(cfg.data.train!), labelling, tokenizer));
  const evalDs = evalRows ? new Dataset(prepareExamples(evalRows, cfg.data.eval ? basename(cfg.data.eval) : `${basename(cfg.data.train!)} (eval split)`, labelling, tokenizer)) : undefined;
  const padId = cfg.data.padTokenId ?? tokenizer?.padTokenId ?? mc.padTokenId ?? mc.eosTokenId ?? 0;
  const collator = new DataCollatorWithPadding(padValues(resolved, padId));

  const common = {
    heads,
    ...(device ? { device } : {}),
    ...(cfg.dtype ? { dtype: cfg.dtype } : {}),
    ...(cfg.positions ? { positions: cfg.positions } : {}),
    ...(cfg.seed !== null ? { seed: cfg.seed } : {}),
    ...(cfg.quantization ? { quantization: cfg.quantization } : {}),
    ...(cfg.gradientCheckpointing !== null ? { gradientCheckpointing: cfg.gradientCheckpointing } : {}),
    ...(cfg.adaptiveLoss !== null ? { adaptiveLoss: cfg.adaptiveLoss } : {}),
  };
  ui.log(`loading ${cfg.model} (${mc.modelType}, ${mc.numLayers} layers) with ${heads.length} head${heads.length > 1 ? 's' : ''}${cfg.lora ? ' and LoRA adapters' : ''}${cfg.quantization ? `, ${cfg.quantization.bits}-bit` : ''}`);
  const model = await (cfg.lora
    ? createHeadedQLoRA(cfg.model, { ...common, lora: cfg.lora, ...(cfg.fullyTrainedHeads !== null ? { fullyTrainedHeads: cfg.fullyTrainedHeads } : {}) })
    : loadHeaded(cfg.model, { ...common, ...(cfg.freezeBaseModel !== null ? { freezeBaseModel: cfg.freezeBaseModel } : {}) })
  ).catch(asConfigFieldError);
  const stop = interruptible(ui);
  const prog = trainProgress(ui);
  try {
    await ensureFolder(outputDir);
    // A fresh log for a fresh run (the Trainer appends; a resumed run keeps its history in the checkpoint).
    if (!cfg.training.resumeFromCheckpoint && (Number(process.env.WORLD_SIZE ?? 1) <= 1 || process.env.RANK === '0')) await atomicWrite(join(outputDir, 'log_history.jsonl'), '');
    let trainer: Trainer;
    try {
      const loggingSteps = cfg.training.loggingSteps ?? defaultLoggingSteps(trainDs.length, cfg.training);
      trainer = new Trainer(model, { ...cfg.training, loggingSteps, outputDir, disableProgressBar: true }, {
        trainDataset: trainDs,
        ...(evalDs ? { evalDataset: evalDs } : {}),
        dataCollator: collator,
        callbacks: prog,
        signal: stop.signal,
      });
    } catch (e) {
      const m = e instanceof TransformerHeadsError ? /for args\.(\w+)/.exec(e.message) : null;
      if (m) configError(`config.training.${m[1]}`, e instanceof Error ? e.message : String(e));
      throw e;
    }
    ui.log(`training ${model.trainableParameters().toLocaleString('en-US')} weights on ${trainDs.length} examples${evalDs ? `, evaluating on ${evalDs.length}` : ''}; output: ${outputDir}`);
    const res = await trainer.train();
    prog.end();
    const headsDir = join(outputDir, 'heads');
    const headFiles = await model.saveFiles(); // the weights as trained, before anything else runs on the model
    let evalMetrics: Record<string, number> | null = null;
    const logged = finalEvaluation(res);
    if (evalDs && !stop.interrupted()) {
      if (logged) evalMetrics = logged;
      else {
        ui.log(`evaluating on ${evalDs.length} examples`);
        evalMetrics = await trainer.evaluate();
      }
    }
    // loss.svg with the final evaluation (the Trainer logs it itself with an epoch or matching step strategy).
    const fullLog: LogEntry[] = evalMetrics && !logged ? [...res.logHistory, { step: res.globalStep, epoch: res.logHistory.at(-1)?.epoch ?? 0, ...evalMetrics }] : [...res.logHistory];
    // Data parallel: rank 0 writes the outputs and reports; the others are done (the Trainer's last barrier has passed).
    if (!(currentProcessGroup()?.isMain ?? true)) return res.stopped ? 130 : 0;
    const seconds = (performance.now() - t0) / 1000;
    const metrics = { steps: res.globalStep, stopped: res.stopped, activationCache: res.activationCache, seconds: Number(seconds.toFixed(2)), train: res.metrics, eval: evalMetrics };
    const run: RunInfo = {
      format: 'transformer-heads-run/1',
      model: cfg.model,
      headsDir: 'heads',
      lora: Boolean(cfg.lora),
      quantization: cfg.quantization,
      dtype: cfg.dtype,
      positions: cfg.positions,
      data: { ...cfg.data, maxLength },
      labelMaps,
      evalBatchSize: cfg.training.perDeviceEvalBatchSize ?? 8,
      splitSeed: cfg.training.seed ?? 42,
    };
    const files = {
      heads: headsDir,
      logHistory: join(outputDir, 'log_history.jsonl'),
      lossSvg: join(outputDir, 'loss.svg'),
      metrics: join(outputDir, 'metrics.json'),
      run: join(outputDir, 'run.json'),
      report: join(outputDir, 'report.html'),
    };
    // heads/ and the files that describe it (run.json's label names above all) are one save: a crash leaves this
    // run's outputs or the previous run's, never new heads with old class names.
    const outputs: Record<string, string> = {
      'loss.svg': lossChart(fullLog),
      'metrics.json': JSON.stringify(metrics, jsonSafe, 2) + '\n',
      'run.json': JSON.stringify(run, null, 2) + '\n',
      'report.html': trainReport(cfg, resolved, fullLog, metrics, outputDir, { train: trainDs.length, eval: evalDs?.length ?? 0 }),
    };
    await saveFolder(outputDir, (name) => RUN_OUTPUTS.includes(name), async (tmp) => {
      await mkdir(join(tmp, 'heads'));
      for (const [name, data] of headFiles) await writeFile(join(tmp, 'heads', name), data);
      for (const [name, data] of Object.entries(outputs)) await writeFile(join(tmp, name), data);
    });
    const per = evalMetrics ? byHead(resolved, evalMetrics) : null;
    ui.emit({ command: 'train', outputDir, steps: res.globalStep, stopped: res.stopped, trainLoss: res.trainingLoss, seconds: metrics.seconds, train: res.metrics, eval: evalMetrics, byHead: per, files });
    ui.print(
      [
        `trained ${res.globalStep} steps in ${seconds.toFixed(1)} s${res.stopped ? ' (stopped early)' : ''}, mean training loss ${fmtNum(res.trainingLoss)}`,
        ...(evalMetrics ? ['', textTable(headTable(resolved, evalMetrics)), ''] : []),
        `heads:   ${headsDir}`,
        `report:  ${files.report}`,
      ].join('\n'),
    );
    return res.stopped ? 130 : 0;
  } finally {
    prog.end();
    stop.dispose();
    model.dispose();
  }
}

/**
 * The CLI's logging interval when the config sets none: about 50 points on the loss plot (the Trainer's own default,
 * 500 as in Hugging Face, would log a short run only once, at its end).
 */
export function defaultLoggingSteps(examples: number, t: Omit<TrainingArguments, 'outputDir'>): number {
  const bs = t.perDeviceTrainBatchSize ?? 8;
  const accum = t.gradientAccumulationSteps ?? 1;
  const perEpoch = Math.max(1, Math.floor(Math.ceil(examples / bs) / accum));
  const steps = t.maxSteps && t.maxSteps > 0 ? t.maxSteps : Math.ceil((t.numTrainEpochs ?? 3) * perEpoch);
  return Math.max(1, Math.min(500, Math.round(steps / 50)));
}

function trainReport(
  cfg: TrainConfig,
  heads: readonly ResolvedHeadConfig[],
  log: readonly LogEntry[],
  metrics: { steps: number; seconds: number; train: Record<string, number>; eval: Record<string, number> | null; stopped: boolean },
  outputDir: string,
  counts: { train: number; eval: number },
): string {
  return htmlReport({
    title: `Training run: ${basename(outputDir)}`,
    subtitle: `${heads.length} head${heads.length > 1 ? 's' : ''} on ${cfg.model}`,
    facts: {
      model: cfg.model,
      data: `${counts.train} training examples${counts.eval ? `, ${counts.eval} eval examples` : ''}`,
      training: `${metrics.steps} steps in ${metrics.seconds} s${metrics.stopped ? ' (stopped early)' : ''}, mean training loss over the run ${fmtNum(metrics.train.train_loss)}`,
      adapters: cfg.lora ? `LoRA r=${cfg.lora.r ?? 8}${cfg.quantization ? `, ${cfg.quantization.bits}-bit base` : ''}` : cfg.freezeBaseModel === false ? 'full finetuning' : 'frozen backbone',
    },
    sections: [
      { title: 'Loss', svg: lossChart(log) },
      ...(metrics.eval ? [{ title: 'Evaluation by head', table: headTable(heads, metrics.eval) }] : []),
      {
        title: 'Heads',
        table: {
          columns: ['name', 'layer', 'outputs', 'labels', 'target', 'loss'],
          rows: heads.map((h) => [h.name, h.layerHook, h.numOutputs, labelKind(h), h.target, h.lossFct ?? 'none']),
        },
      },
      { title: 'metrics.json', json: metrics },
    ],
  });
}

#!/usr/bin/env node
// transformer-heads command line: train / eval / predict / probe / generate / export. Results go to stdout (tables, or one
// JSON object per line with --json); logs and progress go to stderr. Exit codes: 0 ok, 1 runtime failure,
// 2 usage or config error, 130 interrupted (outputs of a stopped training are still written).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { readModelConfig } from './archive.js';
import { loadBackbone, setNumThreads, type Device, type Dtype } from './backbone.js';
import {
  buildLabelMaps,
  checkDevice,
  CliError,
  configError,
  labelKind,
  padValues,
  prepareExamples,
  readTrainConfig,
  resolveHeadsForModel,
  type DataConfig,
  type Labelling,
  type TrainConfig,
} from './cli-config.js';
import type { ModelConfig } from './config.js';
import { DataCollatorWithPadding, Dataset, type Example } from './data.js';
import { BUILTIN_DATASETS, loadLabelledFile, readTable } from './datasets.js';
import { TransformerHeadsError } from './errors.js';
import { createHeadedQLoRA, loadHeaded, loadLoraWithHeads, readHeadConfigs, type HeadedModel, type QuantizationConfig } from './headed.js';
import type { ResolvedHeadConfig } from './heads.js';
import { lossChart } from './plot.js';
import { defaultModelPath, formatProbeTable, probeLayers } from './probe.js';
import { progress, type Progress } from './progress.js';
import { htmlReport, type Cell } from './report.js';
import { atomicWrite } from './safetensors.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import { finalEvaluation, Trainer, type LogEntry } from './trainer.js';

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = 'transformer-heads';

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Output: results on stdout, logs and progress on stderr

class Ui {
  readonly json: boolean;
  readonly quiet: boolean;
  #barActive = false;

  constructor(json: boolean, quiet: boolean) {
    this.json = json;
    this.quiet = quiet;
  }

  log(message: string): void {
    if (this.quiet) return;
    if (this.#barActive && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    process.stderr.write(`${message}\n`);
  }

  progress(label: string, unit: string): Progress {
    const p = progress({ label, unit, silent: this.quiet });
    this.#barActive = true;
    return {
      update: (d, t, i) => p.update(d, t, i),
      end: (i) => {
        p.end(i);
        this.#barActive = false;
      },
    };
  }

  /** Human output (stdout), unless --json. */
  print(text: string): void {
    if (!this.json) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** One JSON object on its own line (stdout), with --json. */
  emit(obj: unknown): void {
    if (this.json) process.stdout.write(`${JSON.stringify(obj, jsonSafe)}\n`);
  }
}

function jsonSafe(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments

type Values = Record<string, string | boolean | string[] | undefined>;

interface Command {
  summary: string;
  usage: string;
  help: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(v: Values, positionals: string[], ui: Ui): Promise<number>;
}

const COMMON: NonNullable<ParseArgsConfig['options']> = {
  json: { type: 'boolean' },
  device: { type: 'string' },
  threads: { type: 'string' },
  out: { type: 'string', short: 'o' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
};

const COMMON_HELP = `Common options:
  --json             machine-readable output: one JSON object per line on stdout (logs stay on stderr)
  --device DEV       cpu (default), cuda or cuda:N
  --threads N        libtorch threads (default: all cores, or OMP_NUM_THREADS)
  -o, --out PATH     where outputs go (see the command)
  -q, --quiet        no logs or progress on stderr
  -h, --help         this help`;

let currentCommand: string | undefined;

function usageError(message: string, cmd: string | undefined = currentCommand): never {
  throw new CliError(message, cmd ? `see '${BIN} ${cmd} --help'` : `see '${BIN} --help'`, 2);
}

const SUPPORTED_TYPES = ['gpt2', 'llama', 'mistral', 'qwen2'];

/** config.json of a model, refusing unsupported architectures up front (field: where the path came from). */
async function modelConfigOf(path: string, field: string): Promise<ModelConfig> {
  const mc = await readModelConfig(path);
  if (!SUPPORTED_TYPES.includes(mc.modelType)) {
    throw new CliError(`${field}: model_type '${mc.modelType}' of '${path}' is not supported (supported: ${SUPPORTED_TYPES.join(', ')})`, 'use a GPT-2 or Llama-family model', 2);
  }
  return mc;
}

/** Library errors about LoRA / quantization settings, named by their config field. */
function asConfigFieldError(e: unknown): never {
  if (e instanceof TransformerHeadsError && e.code === 'ERR_TH_CONFIG') {
    const m = /^(?:LoRA )?(lora|quantization|targetModules)\.?(\w*)/i.exec(e.message);
    if (m) {
      const field = m[1]!.toLowerCase() === 'quantization' ? `config.quantization${m[2] ? `.${m[2]}` : ''}` : `config.lora.${m[1] === 'targetModules' ? 'targetModules' : m[2] || 'targetModules'}`;
      configError(field, e.message.replace(/^(LoRA )?/, ''));
    }
  }
  throw e;
}

function intFlag(v: Values, name: string, min: number): number | undefined {
  const s = v[name];
  if (s === undefined) return undefined;
  const n = Number(s);
  if (typeof s !== 'string' || !/^-?\d+$/.test(s.trim()) || n < min) usageError(`--${name}: expected an integer >= ${min}, got '${String(s)}'`);
  return n;
}

function numFlag(v: Values, name: string, check: (n: number) => boolean, what: string): number | undefined {
  const s = v[name];
  if (s === undefined) return undefined;
  const n = Number(s);
  if (typeof s !== 'string' || s.trim() === '' || !Number.isFinite(n) || !check(n)) usageError(`--${name}: expected ${what}, got '${String(s)}'`);
  return n;
}

function strFlag(v: Values, name: string): string | undefined {
  const s = v[name];
  return typeof s === 'string' ? s : undefined;
}

function deviceFlag(v: Values): Device | undefined {
  const d = strFlag(v, 'device');
  if (d === undefined) return undefined;
  try {
    return checkDevice('--device', d) as Device;
  } catch {
    return usageError(`--device: expected cpu, cuda or cuda:N, got '${d}'`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Shared pieces

function interruptible(ui: Ui): { signal: AbortSignal; dispose(): void; interrupted(): boolean } {
  const ac = new AbortController();
  let count = 0;
  const onSigint = () => {
    count++;
    if (count === 1) {
      ac.abort();
      ui.log('interrupted: stopping after the current step and writing what was trained (Ctrl-C again to quit now)');
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', onSigint), interrupted: () => count > 0 };
}

function trainProgress(ui: Ui) {
  let bar: Progress | null = null;
  return {
    onStepEnd(s: { step: number; totalSteps: number; loss: number; epoch: number }) {
      bar ??= ui.progress('train', 'steps');
      bar.update(s.step, s.totalSteps, `epoch ${s.epoch.toFixed(2)} loss ${s.loss.toFixed(4)}`);
    },
    onEvaluate(m: Record<string, number>) {
      ui.log(`eval: loss ${fmtNum(m.eval_loss)}`);
    },
    onSave(dir: string) {
      ui.log(`checkpoint: ${dir}`);
    },
    end() {
      bar?.end();
      bar = null;
    },
  };
}

function fmtNum(x: number | undefined, digits = 4): string {
  return x === undefined || !Number.isFinite(x) ? '' : x.toFixed(digits);
}

function defaultMaxLength(mc: ModelConfig): number {
  return Math.min(mc.maxPositionEmbeddings > 0 ? mc.maxPositionEmbeddings : 1024, 1024);
}

async function tryTokenizer(source: string | null, model: string): Promise<Tokenizer | null> {
  if (source) return loadTokenizer(source);
  try {
    return await loadTokenizer(model);
  } catch {
    return null;
  }
}

async function readRows(path: string, data: Pick<DataConfig, 'format' | 'csvDelimiter'>): Promise<Example[]> {
  const ds = await readTable(path, data.format ?? undefined, data.csvDelimiter ? { delimiter: data.csvDelimiter } : {});
  if (ds.length === 0) throw new CliError(`'${path}' holds no examples`, 'a .jsonl file has one JSON object per line; a .csv file a header row and one row per example', 2);
  return [...ds.rows];
}

/** Metrics per head from Trainer.evaluate()'s flat keys. */
function byHead(heads: readonly ResolvedHeadConfig[], m: Record<string, number>): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const h of heads) {
    const r: Record<string, number> = {};
    const put = (k: string, key: string) => {
      if (m[key] !== undefined) r[k] = m[key]!;
    };
    put('loss', `eval_loss_${h.name}`);
    put('accuracy', `eval_${h.name}_accuracy`);
    put('f1Macro', `eval_${h.name}_f1_macro`);
    put('mse', `eval_${h.name}_mse`);
    put('r2', `eval_${h.name}_r2`);
    out[h.name] = r;
  }
  return out;
}

function headTable(heads: readonly ResolvedHeadConfig[], m: Record<string, number>): { columns: string[]; rows: Cell[][] } {
  const per = byHead(heads, m);
  const cols = ['loss', 'accuracy', 'f1Macro', 'mse', 'r2'].filter((k) => Object.values(per).some((r) => r[k] !== undefined));
  const names: Record<string, string> = { loss: 'loss', accuracy: 'accuracy', f1Macro: 'macro-F1', mse: 'MSE', r2: 'R²' };
  return {
    columns: ['head', 'layer', ...cols.map((c) => names[c]!)],
    rows: [
      ...heads.map((h) => [h.name, h.layerHook, ...cols.map((c) => (per[h.name]![c] === undefined ? null : Number(per[h.name]![c]!.toFixed(4))))]),
      ['total', null, ...cols.map((c) => (c === 'loss' ? Number(fmtNum(m.eval_loss)) : null))],
    ],
  };
}

/** A plain-text table: numbers right-aligned (and their column headers), everything else left-aligned. */
function textTable(t: { columns: string[]; rows: Cell[][] }): string {
  const text = (c: Cell) => (c === null || c === undefined ? '' : typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(4)) : String(c));
  const cells = [t.columns, ...t.rows.map((r) => r.map(text))];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const numeric = t.columns.map((_, i) => t.rows.some((r) => typeof r[i] === 'number') && t.rows.every((r) => typeof r[i] === 'number' || r[i] === null || r[i] === undefined));
  return cells
    .map((r) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

/** Everything eval and predict need to rebuild a trained model and its data handling. */
interface RunInfo {
  format: 'transformer-heads-run/1';
  model: string;
  /** Absolute path of the head files (and adapter files). */
  headsDir: string;
  lora: boolean;
  quantization: QuantizationConfig | null;
  dtype: Dtype | null;
  data: Omit<DataConfig, 'maxLength'> & { maxLength: number };
  labelMaps: Record<string, string[]>;
  /** The Trainer's eval batch size (eval losses are means over batches, so eval uses the same). */
  evalBatchSize: number;
  /** Seed of the data.evalFraction split, so eval can hold out the same rows. */
  splitSeed?: number;
}

async function readRunJson(dir: string): Promise<RunInfo | null> {
  const p = join(dir, 'run.json');
  if (!existsSync(p)) return null;
  try {
    const r = JSON.parse(await readFile(p, 'utf8')) as RunInfo & { headsDir: string };
    return { ...r, headsDir: resolve(dir, r.headsDir) };
  } catch (e) {
    throw new CliError(`'${p}' is not valid JSON: ${(e as Error).message}`, 'it is written by transformer-heads train; train again to rewrite it', 1);
  }
}

/** A run folder (run.json), a heads folder (head_configs.json), or a train config file. */
async function resolveRun(arg: string, v: Values, cmd: string): Promise<RunInfo> {
  const abs = resolve(arg);
  if (!existsSync(abs)) usageError(`'${arg}' does not exist (expected a config file or a folder written by '${BIN} train')`, cmd);
  const modelFlag = strFlag(v, 'model');
  const emptyData = (): RunInfo['data'] => ({ train: null, eval: null, evalFraction: null, format: null, csvDelimiter: null, textColumn: 'text', labelColumns: {}, maxLength: 0, padTokenId: null, tokenizer: null });
  if (statSync(abs).isFile()) {
    const cfg = await readTrainConfig(abs, { needTrain: false });
    if (!cfg.outputDir) configError('config.outputDir', 'is required to find the trained heads');
    const run = await readRunJson(cfg.outputDir);
    const headsDir = run?.headsDir ?? join(cfg.outputDir, 'heads');
    if (!existsSync(join(headsDir, 'head_configs.json'))) {
      throw new CliError(`no trained heads in '${headsDir}'`, `train them first: ${BIN} train ${arg}`, 1);
    }
    return {
      format: 'transformer-heads-run/1',
      model: modelFlag ? resolve(modelFlag) : cfg.model,
      headsDir,
      lora: existsSync(join(headsDir, 'adapter_config.json')),
      quantization: cfg.quantization,
      dtype: cfg.dtype,
      data: { ...cfg.data, maxLength: cfg.data.maxLength ?? 0 },
      labelMaps: run?.labelMaps ?? {},
      evalBatchSize: run?.evalBatchSize ?? cfg.training.perDeviceEvalBatchSize ?? 8,
      splitSeed: run?.splitSeed ?? cfg.training.seed ?? 42,
    };
  }
  let run = await readRunJson(abs);
  if (!run && existsSync(join(abs, 'head_configs.json'))) {
    const parent = await readRunJson(dirname(abs));
    if (parent && resolve(parent.headsDir) === abs) run = parent;
    else {
      if (!modelFlag) usageError(`'${arg}' holds heads but no run.json to name their model: pass --model PATH`, cmd);
      run = { format: 'transformer-heads-run/1', model: resolve(modelFlag), headsDir: abs, lora: existsSync(join(abs, 'adapter_config.json')), quantization: null, dtype: null, data: emptyData(), labelMaps: {}, evalBatchSize: 8 };
    }
  }
  if (!run) usageError(`'${arg}' has neither run.json nor head_configs.json: pass a folder written by '${BIN} train' (or its heads/ folder with --model)`, cmd);
  if (modelFlag) run.model = resolve(modelFlag);
  return run;
}

async function loadRunModel(run: RunInfo, device: Device | undefined): Promise<HeadedModel> {
  const common = { onlyInference: true, ...(device ? { device } : {}), ...(run.dtype ? { dtype: run.dtype } : {}), ...(run.quantization ? { quantization: run.quantization } : {}) };
  if (run.lora) return loadLoraWithHeads(run.headsDir, { modelPath: run.model, ...common });
  return loadHeaded(run.model, { headFolder: run.headsDir, ...common });
}

async function labellingFor(run: RunInfo, heads: readonly ResolvedHeadConfig[], mc: ModelConfig, textFlag: string | undefined): Promise<Labelling> {
  return {
    heads,
    textColumn: textFlag ?? run.data.textColumn,
    labelColumns: run.data.labelColumns,
    maxLength: run.data.maxLength > 0 ? run.data.maxLength : defaultMaxLength(mc),
    labelMaps: run.labelMaps,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// train

const TRAIN: Command = {
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
    "model": "model.pt",                       TorchScript archive or Hugging Face folder
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
    await mkdir(outputDir, { recursive: true });
    // A fresh log for a fresh run (the Trainer appends; a resumed run keeps its history in the checkpoint).
    if (!cfg.training.resumeFromCheckpoint) await atomicWrite(join(outputDir, 'log_history.jsonl'), '');
    let trainer: Trainer;
    try {
      trainer = new Trainer(model, { ...cfg.training, outputDir, disableProgressBar: true }, {
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
    await model.save(headsDir);
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
    await atomicWrite(join(outputDir, 'loss.svg'), lossChart(fullLog));
    const seconds = (performance.now() - t0) / 1000;
    const metrics = { steps: res.globalStep, stopped: res.stopped, activationCache: res.activationCache, seconds: Number(seconds.toFixed(2)), train: res.metrics, eval: evalMetrics };
    const run: RunInfo = {
      format: 'transformer-heads-run/1',
      model: cfg.model,
      headsDir: 'heads',
      lora: Boolean(cfg.lora),
      quantization: cfg.quantization,
      dtype: cfg.dtype,
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
    await atomicWrite(files.metrics, JSON.stringify(metrics, jsonSafe, 2) + '\n');
    await atomicWrite(files.run, JSON.stringify(run, null, 2) + '\n');
    await atomicWrite(files.report, trainReport(cfg, resolved, fullLog, metrics, outputDir, { train: trainDs.length, eval: evalDs?.length ?? 0 }));
    const per = evalMetrics ? byHead(resolved, evalMetrics) : null;
    ui.emit({ command: 'train', outputDir, steps: res.globalStep, stopped: res.stopped, trainLoss: res.trainingLoss, seconds: metrics.seconds, train: res.metrics, eval: evalMetrics, byHead: per, files });
    ui.print(
      [
        `trained ${res.globalStep} steps in ${seconds.toFixed(1)} s${res.stopped ? ' (stopped early)' : ''}, training loss ${fmtNum(res.trainingLoss)}`,
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
      training: `${metrics.steps} steps in ${metrics.seconds} s${metrics.stopped ? ' (stopped early)' : ''}, final training loss ${fmtNum(metrics.train.train_loss)}`,
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

// ---------------------------------------------------------------------------------------------------------------
// eval

const EVAL: Command = {
  summary: 'evaluate trained heads on a labelled dataset',
  usage: `${BIN} eval RUN_DIR | CONFIG.json [--data FILE] [--text COL] [--model PATH] [--batch-size N] [--out DIR] [--json]`,
  options: { data: { type: 'string' }, text: { type: 'string' }, model: { type: 'string' }, 'batch-size': { type: 'string' } },
  help: `Evaluates saved heads and prints loss and metrics per head (accuracy and macro-F1 for classification heads,
MSE and R² for regression heads).
  RUN_DIR        a folder written by '${BIN} train' (run.json names the model, columns and label names), or a
                 heads folder (head_configs.json) with --model
  CONFIG.json    a train config: its outputDir's heads, on its data.eval
  --data FILE    the labelled data (.jsonl or .csv); defaults to the run's eval file (or the rows its
                 data.evalFraction held out)
  --text COL     text column (default: the run's, else 'text')
  --model PATH   the base model (default: the run's)
  --batch-size N examples per forward pass (default: the run's perDeviceEvalBatchSize, else 8; losses are
                 means over batches, so the same size reproduces the training run's numbers)
  --out DIR      also write DIR/eval_metrics.json`,
  async run(v, pos, ui) {
    if (pos.length !== 1) usageError('eval needs one run folder or config file', 'eval');
    const run = await resolveRun(pos[0]!, v, 'eval');
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
    let rows = await readRows(dataPath, run.data);
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
        await mkdir(resolve(outFlag), { recursive: true });
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

// ---------------------------------------------------------------------------------------------------------------
// predict

const PREDICT: Command = {
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
  RUN_DIR        a folder written by '${BIN} train', or a heads folder with --model
  --text COL     text column of jsonl / csv input (default: the run's, else 'text')
  --top N        next-token candidates for causal-LM heads (default 5)
  --batch-size N texts per forward pass (default 16)
  --out FILE     write the predictions to FILE instead of stdout`,
  async run(v, pos, ui) {
    if (pos.length < 1) usageError('predict needs a run folder (and texts, --input FILE or stdin)', 'predict');
    const run = await resolveRun(pos[0]!, v, 'predict');
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
      const ds = await readTable(p);
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

// ---------------------------------------------------------------------------------------------------------------
// probe

const PROBE: Command = {
  summary: 'train a linear probe on every layer and report accuracy by layer',
  usage: `${BIN} probe [--model PATH] [--dataset NAME | --data FILE --text COL --label COL] [--out DIR] [--json]`,
  options: {
    model: { type: 'string', short: 'm' },
    dataset: { type: 'string' },
    data: { type: 'string' },
    text: { type: 'string' },
    label: { type: 'string' },
    layers: { type: 'string' },
    examples: { type: 'string' },
    epochs: { type: 'string' },
    lr: { type: 'string' },
    'batch-size': { type: 'string' },
    'max-length': { type: 'string' },
    'test-fraction': { type: 'string' },
    seed: { type: 'string' },
  },
  help: `Trains one linear probe per hidden state (0 = embeddings, 1..L-1 = blocks, L = final norm) on a labelled text
dataset, all together on the frozen model, and reports held-out accuracy by layer next to the majority-class
baseline. Writes results.json, accuracy-by-layer.svg, loss.svg, log_history.jsonl and report.html.
  -m, --model PATH      TorchScript archive or Hugging Face folder (default: ${defaultModelPath()})
  --dataset NAME        a built-in dataset (default stop-words):
${BUILTIN_DATASETS.map((d) => `                          ${d.name.padEnd(14)} ${d.description} (npm ${d.package})`).join('\n')}
  --data FILE           your own labelled data instead (.jsonl or .csv)
  --text COL            its text column (default 'text')
  --label COL           its label column (default 'label'; strings or integers)
  --layers LIST         hidden states to probe, e.g. 0,2,-1 (default: all)
  --examples N          use at most N examples, a seeded random subset (default 2000; 0 = all)
  --epochs N            default 5
  --lr X                learning rate (default 0.02)
  --batch-size N        default 16
  --max-length N        tokens kept per text (default 64)
  --test-fraction X     held out for accuracy (default 0.2)
  --seed N              default 42
  -o, --out DIR         default out/probe`,
  async run(v, pos, ui) {
    if (pos.length) usageError(`probe takes no positional arguments, got '${pos[0]}' (use --model / --data)`, 'probe');
    const dataFlag = strFlag(v, 'data');
    const datasetFlag = strFlag(v, 'dataset');
    if (dataFlag && datasetFlag) usageError('give --dataset or --data, not both', 'probe');
    if (!dataFlag && (strFlag(v, 'text') || strFlag(v, 'label'))) usageError('--text and --label name the columns of --data FILE', 'probe');
    if (datasetFlag && !BUILTIN_DATASETS.some((d) => d.name === datasetFlag)) {
      usageError(`unknown dataset '${datasetFlag}'; built-in: ${BUILTIN_DATASETS.map((d) => d.name).join(', ')} (or pass --data FILE)`, 'probe');
    }
    const modelFlag = strFlag(v, 'model');
    if (modelFlag && !existsSync(modelFlag)) throw new CliError(`model '${modelFlag}' does not exist`, 'pass --model with a TorchScript archive (.pt) or a Hugging Face model folder', 2);
    if (dataFlag && !existsSync(dataFlag)) throw new CliError(`data file '${dataFlag}' does not exist`, 'pass --data with a .jsonl or .csv file', 2);
    const layersFlag = strFlag(v, 'layers');
    let layers: number[] | undefined;
    if (layersFlag !== undefined) {
      layers = layersFlag.split(',').map((s) => {
        if (!/^\s*-?\d+\s*$/.test(s)) usageError(`--layers: expected integers separated by commas, got '${layersFlag}'`, 'probe');
        return Number(s);
      });
    }
    const examples = intFlag(v, 'examples', 0) ?? 2000;
    const out = resolve(strFlag(v, 'out') ?? join('out', 'probe'));
    const stop = interruptible(ui);
    const prog = trainProgress(ui);
    try {
      const result = await probeLayers({
        ...(modelFlag ? { model: resolve(modelFlag) } : {}),
        ...(dataFlag
          ? { examples: await labelledFileForProbe(dataFlag, strFlag(v, 'text') ?? 'text', strFlag(v, 'label') ?? 'label'), datasetName: basename(dataFlag) }
          : { dataset: datasetFlag ?? 'stop-words' }),
        ...(examples > 0 ? { maxExamples: examples } : {}),
        ...(layers ? { layers } : {}),
        epochs: numFlag(v, 'epochs', (n) => n > 0, 'a positive number') ?? 5,
        learningRate: numFlag(v, 'lr', (n) => n > 0, 'a positive number') ?? 2e-2,
        batchSize: intFlag(v, 'batch-size', 1) ?? 16,
        maxLength: intFlag(v, 'max-length', 1) ?? 64,
        testFraction: numFlag(v, 'test-fraction', (n) => n > 0 && n < 1, 'a number between 0 and 1') ?? 0.2,
        seed: intFlag(v, 'seed', 0) ?? 42,
        ...(deviceFlag(v) ? { device: deviceFlag(v)! } : {}),
        outputDir: out,
        callbacks: prog,
        signal: stop.signal,
        log: (m) => ui.log(m),
      });
      prog.end();
      ui.emit({ command: 'probe', ...result });
      ui.print(
        [
          `${result.model}: ${result.modelType}, ${result.numLayers} layers, hidden size ${result.hiddenSize}`,
          `${result.dataset}: ${result.classes.join(' / ')}, ${result.trainExamples} train / ${result.testExamples} test examples, ${result.training.steps} steps in ${result.training.seconds.toFixed(1)} s`,
          '',
          formatProbeTable(result),
          '',
          `results: ${result.files.results}`,
          `plot:    ${result.files.accuracySvg}`,
          `report:  ${result.files.report}`,
        ].join('\n'),
      );
      return result.training.stopped ? 130 : 0;
    } finally {
      prog.end();
      stop.dispose();
    }
  },
};

async function labelledFileForProbe(path: string, text: string, label: string) {
  try {
    return await loadLabelledFile(resolve(path), { text, label });
  } catch (e) {
    if (e instanceof TransformerHeadsError && e.code === 'ERR_TH_VALUE') throw new CliError(e.message, 'name the columns with --text COL and --label COL', 2);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// export

const EXPORT: Command = {
  summary: "show a model's architecture, or export a Hugging Face model to TorchScript",
  usage: `${BIN} export MODEL [--json]\n       ${BIN} export --hf NAME_OR_DIR --out MODEL.pt [--python PY]`,
  options: { hf: { type: 'string' }, python: { type: 'string' } },
  help: `MODEL (a .pt TorchScript archive or a Hugging Face folder): prints its architecture, layers, hidden size,
vocabulary, parameter count and whether it carries a tokenizer.
--hf NAME_OR_DIR --out MODEL.pt: exports a Hugging Face model (GPT-2, Llama, Mistral, Qwen2) to the TorchScript
archive this library loads, by running scripts/export_torchscript.py --hf. It needs Python with torch and
transformers (pip install torch transformers); --python or TH_PYTHON picks the interpreter.`,
  async run(v, pos, ui) {
    const hf = strFlag(v, 'hf');
    if (hf) {
      if (pos.length) usageError(`export --hf takes no positional arguments, got '${pos[0]}'`, 'export');
      const out = strFlag(v, 'out');
      if (!out) usageError('export --hf needs --out MODEL.pt', 'export');
      return exportHf(hf, resolve(out), strFlag(v, 'python'), ui);
    }
    if (pos.length !== 1) usageError('export needs one model path (or --hf NAME --out FILE)', 'export');
    const info = await modelInfo(pos[0]!, ui);
    ui.emit({ command: 'export', ...info });
    const t = info.tokenizer;
    ui.print(
      textTable({
        columns: ['model', info.path],
        rows: [
          ['format', info.format === 'torchscript' ? 'TorchScript archive' : 'Hugging Face folder'],
          ['size on disk', `${(info.fileBytes / 2 ** 20).toFixed(1)} MiB`],
          ['architecture', info.modelType],
          ['layers', `${info.numLayers} (hidden states 0..${info.numLayers}: 0 = embeddings, ${info.numLayers} = final norm)`],
          ['hidden size', info.hiddenSize],
          ['attention heads', info.numKeyValueHeads !== info.numAttentionHeads ? `${info.numAttentionHeads} (${info.numKeyValueHeads} key/value)` : info.numAttentionHeads],
          ['intermediate size', info.intermediateSize],
          ['vocabulary', info.vocabSize],
          ['max positions', info.maxPositionEmbeddings],
          ['tied embeddings', info.tieWordEmbeddings ? 'yes' : 'no'],
          ['parameters', info.parameters === null ? 'unknown' : info.parameters.toLocaleString('en-US')],
          ['tokenizer', t.present ? `yes (${t.vocabSize} tokens, pad id ${t.padTokenId}, eos id ${t.eosTokenId})` : 'no'],
        ],
      }),
    );
    return 0;
  },
};

interface ModelInfo {
  path: string;
  format: 'torchscript' | 'huggingface';
  fileBytes: number;
  modelType: string;
  numLayers: number;
  hiddenStates: number;
  hiddenSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  parameters: number | null;
  tokenizer: { present: true; vocabSize: number; padTokenId: number; eosTokenId: number | null } | { present: false };
}

async function safetensorsParameters(dir: string): Promise<{ parameters: number; bytes: number } | null> {
  let files: string[] = [];
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const map = (JSON.parse(await readFile(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    files = [...new Set(Object.values(map))];
  } else if (existsSync(join(dir, 'model.safetensors'))) files = ['model.safetensors'];
  else files = (await readdir(dir)).filter((f) => f.endsWith('.safetensors'));
  if (files.length === 0) return null;
  let parameters = 0;
  let bytes = 0;
  for (const f of files) {
    const fh = await open(join(dir, f), 'r');
    try {
      const head = Buffer.alloc(8);
      await fh.read(head, 0, 8, 0);
      const n = Number(head.readBigUInt64LE(0));
      if (n > 100_000_000) return null;
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, 8);
      const header = JSON.parse(buf.toString('utf8')) as Record<string, { shape: number[]; data_offsets: [number, number] }>;
      for (const [k, t] of Object.entries(header)) {
        if (k === '__metadata__') continue;
        parameters += t.shape.reduce((a, b) => a * b, 1);
        bytes += t.data_offsets[1] - t.data_offsets[0];
      }
    } finally {
      await fh.close();
    }
  }
  return { parameters, bytes };
}

async function modelInfo(path: string, ui: Ui): Promise<ModelInfo> {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new CliError(`model '${path}' does not exist`, 'pass a TorchScript archive (.pt) or a Hugging Face model folder', 2);
  const dir = statSync(abs).isDirectory();
  const mc = await readModelConfig(abs);
  let parameters: number | null = null;
  let fileBytes = 0;
  if (dir) {
    const st = await safetensorsParameters(abs);
    parameters = st?.parameters ?? null;
    fileBytes = st?.bytes ?? 0;
  } else {
    fileBytes = statSync(abs).size;
    ui.log(`loading ${abs} to count its parameters`);
    const b = await loadBackbone(abs, { device: 'cpu', dtype: 'float32' });
    parameters = Math.round(b.memoryBytes / 4); // float32, tied tensors counted once
    b.dispose();
  }
  let tokenizer: ModelInfo['tokenizer'] = { present: false };
  try {
    const t = await loadTokenizer(abs);
    tokenizer = { present: true, vocabSize: t.vocabSize, padTokenId: t.padTokenId, eosTokenId: t.eosTokenId };
  } catch {
    /* no tokenizer */
  }
  return {
    path: abs,
    format: dir ? 'huggingface' : 'torchscript',
    fileBytes,
    modelType: mc.modelType,
    numLayers: mc.numLayers,
    hiddenStates: mc.numLayers + 1,
    hiddenSize: mc.hiddenSize,
    numAttentionHeads: mc.numAttentionHeads,
    numKeyValueHeads: mc.numKeyValueHeads,
    headDim: mc.headDim,
    intermediateSize: mc.intermediateSize,
    vocabSize: mc.vocabSize,
    maxPositionEmbeddings: mc.maxPositionEmbeddings,
    tieWordEmbeddings: mc.tieWordEmbeddings,
    parameters,
    tokenizer,
  };
}

function findPython(flag: string | undefined): { python: string | null; tried: string[] } {
  const candidates = flag ? [flag] : process.env.TH_PYTHON ? [process.env.TH_PYTHON] : ['python3', '/usr/bin/python3', 'python'];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch, transformers'], { stdio: 'ignore', timeout: 120_000 });
    if (r.status === 0) return { python: py, tried: candidates };
  }
  return { python: null, tried: candidates };
}

async function exportHf(name: string, out: string, pythonFlag: string | undefined, ui: Ui): Promise<number> {
  const script = join(PACKAGE_ROOT, 'scripts', 'export_torchscript.py');
  if (!existsSync(script)) throw new CliError(`the export script is missing (${script})`, 'reinstall transformer-heads', 1);
  const { python, tried } = findPython(pythonFlag);
  if (!python) {
    throw new CliError(
      `exporting a Hugging Face model needs Python with torch and transformers; none found (tried ${tried.join(', ')})`,
      'pip install torch transformers, then rerun (or point --python / TH_PYTHON at a python that has them)',
      1,
    );
  }
  await mkdir(dirname(out), { recursive: true });
  ui.log(`exporting ${name} with ${python} ${script}`);
  const child = spawn(python, [script, '--hf', name, '--out', out], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const code: number = await new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (c) => res(c ?? 1));
  });
  if (code !== 0) throw new CliError(`scripts/export_torchscript.py --hf ${name} failed (exit code ${code})`, 'its own message is above', 1);
  let result: Record<string, unknown> = { out };
  try {
    result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
  } catch {
    /* keep the default */
  }
  ui.emit({ command: 'export', ...result });
  ui.print(`exported ${name} to ${out}`);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// generate

const GENERATE: Command = {
  summary: 'generate text, streaming it, with every trained head\'s output at each token',
  usage: `${BIN} generate [PROMPT ...] [--model PATH] [--heads RUN_DIR] [--max-new-tokens N] [--sample] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR]`,
  options: {
    model: { type: 'string', short: 'm' },
    heads: { type: 'string' },
    'max-new-tokens': { type: 'string', short: 'n' },
    sample: { type: 'boolean' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    'min-p': { type: 'string' },
    'repetition-penalty': { type: 'string' },
    seed: { type: 'string' },
    stop: { type: 'string', multiple: true },
    'no-cache': { type: 'boolean' },
  },
  help: `Generates a continuation of each PROMPT (or of stdin lines) with the model's causal-LM head ('lm_head') and
streams it to stdout. With --heads, the heads trained by '${BIN} train' ride along: their output at every generated
token is printed after the text (and is in the --json lines).
  PROMPT                   text to continue (several prompts run as one batch; default: stdin lines)
  -m, --model PATH         TorchScript archive or Hugging Face folder (default: the embedded model)
  --heads RUN_DIR          a folder written by '${BIN} train' (its model is used unless --model is given)
  -n, --max-new-tokens N   tokens to generate per prompt (default 40)
  --sample                 sample instead of taking the most likely token
  --temperature T          sampling temperature (default 1; 0 = greedy)
  --top-k K, --top-p P, --min-p P   sampling filters (off by default)
  --repetition-penalty R   Hugging Face's repetition penalty (default 1 = off)
  --seed S                 seed of the sampler (same seed, same text)
  --stop STR               stop a row once its text contains STR (repeatable)
  --no-cache               recompute the whole sequence each step (slow; for comparison)
With --json: one line per step {"step", "tokens", "texts", "logprobs", "heads"} and a last line with the texts,
finish reasons and tokens/s.`,
  async run(v, pos, ui) {
    let prompts = pos;
    if (prompts.length === 0) {
      if (process.stdin.isTTY) usageError('no prompt: give it as an argument or on stdin', 'generate');
      prompts = [];
      for await (const line of createInterface({ input: process.stdin })) if (line.trim()) prompts.push(line);
      if (prompts.length === 0) usageError('no prompt on stdin', 'generate');
    }
    const headsArg = strFlag(v, 'heads');
    const run = headsArg ? await resolveRun(headsArg, v, 'generate') : null;
    const modelPath = strFlag(v, 'model') ? resolve(strFlag(v, 'model')!) : (run?.model ?? defaultModelPath());
    const mc = await modelConfigOf(modelPath, '--model');
    const lmHead = { name: 'lm_head', inSize: mc.hiddenSize, numOutputs: mc.vocabSize, isCausalLm: true };
    const device = deviceFlag(v);
    const common = { onlyInference: true, ...(device ? { device } : {}) };
    let model: HeadedModel;
    if (run) {
      const saved = await readHeadConfigs(run.headsDir);
      const extraHeads = saved.some((h) => h.isCausalLm) ? [] : [lmHead];
      const opts = { ...common, ...(run.dtype ? { dtype: run.dtype } : {}), ...(run.quantization ? { quantization: run.quantization } : {}), extraHeads };
      model = run.lora ? await loadLoraWithHeads(run.headsDir, { modelPath, ...opts }) : await loadHeaded(modelPath, { headFolder: run.headsDir, ...opts });
    } else {
      model = await loadHeaded(modelPath, { heads: [lmHead], ...common });
    }
    const tokenizer = await tryTokenizer(run?.data.tokenizer ?? null, modelPath);
    if (!tokenizer) throw new CliError(`'${modelPath}' carries no tokenizer.json`, 'export the model with its tokenizer (scripts/export_torchscript.py --tokenizer-dir DIR)', 2);
    const temperature = numFlag(v, 'temperature', (n) => n >= 0, 'a number >= 0');
    const topP = numFlag(v, 'top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]');
    const minP = numFlag(v, 'min-p', (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
    const rep = numFlag(v, 'repetition-penalty', (n) => n > 0, 'a number > 0');
    const topK = intFlag(v, 'top-k', 0);
    const seed = intFlag(v, 'seed', 0);
    const stop = (v.stop as string[] | undefined) ?? [];
    const stopper = interruptible(ui);
    const options = {
      maxNewTokens: intFlag(v, 'max-new-tokens', 1) ?? 40,
      doSample: Boolean(v.sample),
      ...(temperature !== undefined ? { temperature } : {}),
      ...(topK !== undefined ? { topK } : {}),
      ...(topP !== undefined ? { topP } : {}),
      ...(minP !== undefined ? { minP } : {}),
      ...(rep !== undefined ? { repetitionPenalty: rep } : {}),
      ...(seed !== undefined ? { seed } : {}),
      ...(stop.length ? { stopSequences: stop } : {}),
      useCache: !v['no-cache'],
      tokenizer,
      signal: stopper.signal,
    };
    const single = prompts.length === 1;
    const texts = prompts.map(() => '');
    const perToken: Array<Array<{ token: string; heads: Record<string, number[]> }>> = prompts.map(() => []);
    const lastPromptToken = prompts.map((p) => tokenizer.encode(p).ids.at(-1) ?? 0);
    const prev: number[] = prompts.map(() => 0);
    const done: boolean[] = prompts.map(() => false);
    let steps = 0;
    const t0 = performance.now();
    let firstMs = 0;
    if (single && !ui.json) process.stdout.write(prompts[0]!);
    try {
      for await (const step of model.generateStream(prompts, options)) {
        if (steps++ === 0) firstMs = performance.now() - t0;
        const B = prompts.length;
        const heads: Record<string, number[][]> = {};
        for (const [name, t] of Object.entries(step.headOutputs)) {
          const C = t.shape[1]!;
          heads[name] = Array.from({ length: B }, (_, b) => Array.from(t.data.subarray(b * C, (b + 1) * C), (x) => Number(x.toFixed(4))));
        }
        for (let b = 0; b < B; ++b) {
          texts[b] += step.texts[b]!;
          // A step's head outputs are read at its input position: the last prompt token, then the token generated
          // one step earlier (as in the Python library).
          if (Object.keys(heads).length && !done[b]) {
            const at = step.step === 0 ? lastPromptToken[b]! : prev[b]!;
            perToken[b]!.push({ token: tokenizer.decode([at]), heads: Object.fromEntries(Object.entries(heads).map(([k, rows]) => [k, rows[b]!])) });
          }
          prev[b] = step.tokens[b]!;
          done[b] = step.finished[b]!;
        }
        if (single && !ui.json) process.stdout.write(step.text);
        ui.emit({ step: step.step, tokens: Array.from(step.tokens), texts: step.texts, logprobs: Array.from(step.logprobs, (x) => Number(x.toFixed(4))), heads });
      }
    } catch (e) {
      if (!stopper.interrupted()) throw e;
    } finally {
      stopper.dispose();
      model.dispose();
    }
    const seconds = (performance.now() - t0) / 1000;
    if (single && !ui.json) process.stdout.write('\n');
    if (!single) for (const [b, p] of prompts.entries()) ui.print(`${p}${texts[b]}\n`);
    if (!ui.json) {
      for (const [b, rows] of perToken.entries()) {
        if (!rows.length) continue;
        const names = Object.keys(rows[0]!.heads);
        ui.print(textTable({
          columns: ['step', 'at token', ...names],
          rows: rows.map((r, s) => [s, JSON.stringify(r.token), ...names.map((n) => r.heads[n]!.map((x) => x.toFixed(3)).join(' '))]),
        }) + (prompts.length > 1 ? `  (prompt ${b})\n` : ''));
      }
    }
    ui.log(`${steps} steps, ${((steps * prompts.length) / seconds).toFixed(1)} tokens/s, first token after ${firstMs.toFixed(0)} ms${stopper.interrupted() ? ' (interrupted)' : ''}`);
    ui.emit({ done: true, texts, steps, seconds: Number(seconds.toFixed(3)), tokens_per_s: Number(((steps * prompts.length) / seconds).toFixed(2)), time_to_first_token_ms: Number(firstMs.toFixed(1)), interrupted: stopper.interrupted() });
    return stopper.interrupted() ? 130 : 0;
  },
};

// ---------------------------------------------------------------------------------------------------------------
// main

const COMMANDS: Record<string, Command> = { train: TRAIN, eval: EVAL, predict: PREDICT, probe: PROBE, generate: GENERATE, export: EXPORT };

function mainUsage(): string {
  return `${BIN} ${version()}: attach, train and evaluate heads on GPT-2 / Llama models

Usage: ${BIN} <command> [options]

Commands:
${Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(9)} ${c.summary}`).join('\n')}

'${BIN} <command> --help' shows a command's options.

${COMMON_HELP}

Exit codes: 0 done, 1 failed while running, 2 bad command line or config, 130 interrupted.`;
}

function commandHelp(name: string, c: Command): string {
  return `Usage: ${c.usage}\n\n${c.help}\n\n${COMMON_HELP}\n`;
}

function describeError(e: unknown): { message: string; hint: string | null; exitCode: number; code?: string } {
  if (e instanceof CliError) return { message: e.message, hint: e.hint, exitCode: e.exitCode };
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    const msg = (e as Error).message.split('. ')[0]!.replace(/\.$/, '');
    return { message: msg, hint: null, exitCode: 2, code };
  }
  if (e instanceof TransformerHeadsError) {
    const [first, ...rest] = e.message.split('\n');
    const hints: Record<string, string> = {
      ERR_TH_FILE: 'check that the path exists, is readable and is the kind of file expected',
      ERR_TH_CONFIG: "check the model and the head settings (see the command's --help)",
      ERR_TH_ARG: "check the command's options (see its --help)",
      ERR_TH_SHAPE: 'check the data: label columns must match the heads (classes, number of outputs, one label per token)',
      ERR_TH_VALUE: 'check the data and the numeric settings',
      ERR_TH_DEVICE: 'use --device cpu, or a libtorch built with CUDA (see the README, Building)',
      ERR_TH_NATIVE: 'build the native addon: bash scripts/setup.sh (or npm run build:native)',
      ERR_TH_MEMORY: 'use smaller batches, a shorter data.maxLength, or a smaller model',
      ERR_TH_TORCH: 'libtorch failed; rerun with TH_DEBUG=1 for details',
    };
    const hint = e.code === 'ERR_TH_NATIVE' ? hints.ERR_TH_NATIVE! : (rest.find((l) => l.trim())?.trim().replace(/^- /, '') ?? hints[e.code] ?? null);
    return { message: first!, hint, exitCode: e.code === 'ERR_TH_CONFIG' || e.code === 'ERR_TH_ARG' ? 2 : 1, code: e.code };
  }
  const message = e instanceof Error ? e.message.split('\n')[0]! : String(e);
  return { message, hint: 'this looks like a bug in transformer-heads; rerun with TH_DEBUG=1 for the stack trace and report it', exitCode: 1 };
}

export async function main(argv: string[]): Promise<number> {
  const jsonMode = argv.includes('--json');
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined) {
      process.stderr.write(`${mainUsage()}\n`);
      return 2;
    }
    if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
      const sub = rest[0] ? COMMANDS[rest[0]] : undefined;
      process.stdout.write(sub ? commandHelp(rest[0]!, sub) : `${mainUsage()}\n`);
      return 0;
    }
    if (cmd === '--version' || cmd === '-v') {
      process.stdout.write(`${version()}\n`);
      return 0;
    }
    const command = COMMANDS[cmd];
    currentCommand = command ? cmd : undefined;
    if (!command) {
      if (cmd.startsWith('-')) usageError(`expected a command before options, got '${cmd}'`);
      usageError(`unknown command '${cmd}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
    }
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...COMMON, ...command.options }, allowPositionals: true, strict: true });
    } catch (e) {
      const d = describeError(e);
      throw new CliError(`${cmd}: ${d.message}`, `see '${BIN} ${cmd} --help'`, 2);
    }
    const v = parsed.values as Values;
    if (v.help) {
      process.stdout.write(commandHelp(cmd, command));
      return 0;
    }
    const ui = new Ui(Boolean(v.json), Boolean(v.quiet));
    const threads = intFlag(v, 'threads', 1);
    if (threads !== undefined) setNumThreads(threads);
    return await command.run(v, parsed.positionals, ui);
  } catch (e) {
    const d = describeError(e);
    process.stderr.write(`${BIN}: ${d.message.replace(/\s*\n\s*/g, ' ')}\n`);
    if (d.hint) process.stderr.write(`hint: ${d.hint}\n`);
    if (process.env.TH_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    if (jsonMode) process.stdout.write(`${JSON.stringify({ error: { message: d.message, hint: d.hint, exitCode: d.exitCode, ...(d.code ? { code: d.code } : {}) } })}\n`);
    return d.exitCode;
  }
}

// Run when executed (node dist/cli.js, or the npm bin link), not when imported.
const invokedAs = process.argv[1] ? resolve(process.argv[1]) : '';
const self = fileURLToPath(import.meta.url);
let isMain = invokedAs === self;
if (!isMain && invokedAs) {
  try {
    isMain = (await import('node:fs')).realpathSync(invokedAs) === self;
  } catch {
    isMain = false;
  }
}
if (isMain) {
  process.exitCode = await main(process.argv.slice(2));
}

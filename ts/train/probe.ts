// Linear probes on every hidden state of a model for one labelled text dataset: which layer makes the label
// linearly decodable? One frozen forward pass feeds all probes (one head per layer, trained together by the
// Trainer, with the activation cache after epoch 1).

import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { TransformerHeadsError } from '../errors.js';
import { atomicWrite, ensureFolder, loadTokenizer, readModelConfig, resolveModel, type HubOptions, type Tokenizer } from '../io/index.js';
import { DEFAULT_MODEL_DIR, loadHeaded, type Device, type Dtype, type HeadConfig } from '../model/index.js';
import { barChart, htmlReport, lossChart } from '../report/index.js';
import { DataCollatorWithPadding } from './collator.js';
import { Dataset, permutation } from './data.js';
import { loadBuiltinDataset, type LabelledText } from './datasets.js';
import { finalEvaluation, Trainer, type LogEntry, type TrainerCallbacks } from './trainer.js';

/** The model the demo, `transformer-heads probe` and `generate` use when none is given: the embedded model. */
export const DEFAULT_MODEL = 'models/tiny-llama-en';

/** DEFAULT_MODEL as an absolute path. */
export function defaultModelPath(): string {
  return DEFAULT_MODEL_DIR;
}

/** Options of probeLayers(): the model, the data, the layers and the training settings. */
export interface ProbeLayersOptions {
  /** Model path (TorchScript archive or Hugging Face folder) or Hub id ("org/name[@revision]"). Defaults to defaultModelPath(). */
  model?: string;
  /** Where a Hub model comes from and how its download is followed (revision, cacheDir, offline, onProgress, signal...). */
  hub?: HubOptions;
  /** Labelled texts. Give these or `dataset`. */
  examples?: readonly LabelledText[];
  /** A built-in dataset ('stop-words', 'spam-assassin', 'afinn'), used when `examples` is not given. Defaults to 'stop-words'. */
  dataset?: string;
  /** Name shown in results for `examples`. Defaults to 'custom'. */
  datasetName?: string;
  /** Use at most this many examples (a seeded random subset). Defaults to all. */
  maxExamples?: number;
  /** Hidden-state indices to probe (0 = embeddings, L or -1 = final norm). Defaults to all, 0..L. */
  layers?: readonly number[];
  /** Fraction held out for the accuracy. Defaults to 0.2. */
  testFraction?: number;
  /** Seed of the subset, the split, the head initialisation and the shuffling. Defaults to 42. */
  seed?: number;
  /** Tokens kept per text (the first ones). Defaults to 64. */
  maxLength?: number;
  /** Defaults to 5. */
  epochs?: number;
  /** Defaults to 2e-2 (a linear probe on frozen features takes a large rate). */
  learningRate?: number;
  /** Defaults to 16. */
  batchSize?: number;
  /** Evaluate on the held-out set after every epoch too (adds an eval-loss curve to loss.svg). Defaults to true. */
  evalEachEpoch?: boolean;
  device?: Device;
  dtype?: Dtype;
  /** Position ids ('from-mask' default, 'sequential' = the Python library's forward); see LoadHeadedOptions.positions. */
  positions?: 'from-mask' | 'sequential';
  /** Defaults to the model's own tokenizer. */
  tokenizer?: Tokenizer;
  /**
   * Where to write results.json, accuracy-by-layer.svg, report.html and the Trainer's log_history.jsonl and
   * loss.svg. Nothing is written when not given.
   */
  outputDir?: string;
  /** Passed to the Trainer (its own progress bar is off unless showProgressBar). */
  callbacks?: TrainerCallbacks;
  showProgressBar?: boolean;
  signal?: AbortSignal;
  /** Status lines (loading, tokenizing, evaluating). */
  log?: (message: string) => void;
}

/** The held-out result of one layer's probe. */
export interface LayerProbeResult {
  /** Hidden-state index, 0..L. */
  layer: number;
  /** 'embeddings', 'block i' or 'final norm'. */
  name: string;
  head: string;
  accuracy: number;
  f1Macro: number;
  loss: number;
}

/** What probeLayers() returns: the data split, the majority-class baseline and each layer's result. */
export interface ProbeResult {
  model: string;
  modelType: string;
  numLayers: number;
  hiddenSize: number;
  dataset: string;
  /** Label values in class-index order. */
  classes: string[];
  trainExamples: number;
  testExamples: number;
  /** Texts that encoded to no tokens (left out). */
  droppedExamples: number;
  maxLength: number;
  /** Test accuracy of always predicting the training set's most frequent class. */
  majorityBaseline: number;
  majorityClass: string;
  layers: LayerProbeResult[];
  best: { layer: number; name: string; accuracy: number };
  training: { epochs: number; steps: number; learningRate: number; batchSize: number; trainLoss: number; seconds: number; activationCache: boolean; stopped: boolean };
  seconds: number;
  /** Absolute paths of the files written (with outputDir). */
  files: Record<string, string>;
}

/** What hidden state `layer` is, for tables. */
export function layerName(layer: number, numLayers: number): string {
  return layer === 0 ? 'embeddings' : layer === numLayers ? 'final norm' : `block ${layer}`;
}

function sortClasses(values: Iterable<string | number>): Array<string | number> {
  const uniq = [...new Set(values)];
  const allNum = uniq.every((v) => typeof v === 'number');
  return allNum ? (uniq as number[]).sort((a, b) => a - b) : uniq.map(String).sort();
}

/** Trains one linear probe per hidden state on a labelled dataset and reports held-out accuracy by layer. */
export async function probeLayers(options: ProbeLayersOptions = {}): Promise<ProbeResult> {
  const t0 = performance.now();
  const o = options;
  const log = o.log ?? (() => undefined);
  const modelPath = o.model ?? defaultModelPath();
  if (!o.model && !existsSync(modelPath)) {
    throw new TransformerHeadsError(`the default model '${modelPath}' is missing; make it with scripts/make_fixtures.sh (npm run demo does), or pass a model`, 'ERR_TH_FILE');
  }
  const seed = o.seed ?? 42;
  const maxLength = o.maxLength ?? 64;
  const epochs = o.epochs ?? 5;
  const learningRate = o.learningRate ?? 2e-2;
  const batchSize = o.batchSize ?? 16;
  const testFraction = o.testFraction ?? 0.2;
  const posInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw new TransformerHeadsError(`${name} must be a positive integer, got ${v}`, 'ERR_TH_ARG');
  };
  posInt('maxLength', maxLength);
  posInt('batchSize', batchSize);
  if (!(epochs > 0)) throw new TransformerHeadsError(`epochs must be positive, got ${epochs}`, 'ERR_TH_ARG');
  if (!(learningRate > 0)) throw new TransformerHeadsError(`learningRate must be positive, got ${learningRate}`, 'ERR_TH_ARG');
  if (!(testFraction > 0 && testFraction < 1)) throw new TransformerHeadsError(`testFraction must be between 0 and 1, got ${testFraction}`, 'ERR_TH_ARG');
  if (o.maxExamples !== undefined) posInt('maxExamples', o.maxExamples);

  // a Hub model is fetched whole once, then read from its snapshot folder
  const local = await resolveModel(modelPath, o.hub ?? {});
  const config = await readModelConfig(local);
  const L = config.numLayers;
  const layers = [...new Set((o.layers ?? Array.from({ length: L + 1 }, (_, i) => i)).map((l) => {
    if (!Number.isInteger(l) || l < -(L + 1) || l > L) throw new TransformerHeadsError(`layer ${l} is outside this model's hidden states (0..${L}, or -${L + 1}..-1)`, 'ERR_TH_ARG');
    return l < 0 ? L + 1 + l : l;
  }))].sort((a, b) => a - b);
  if (layers.length === 0) throw new TransformerHeadsError('no layers to probe', 'ERR_TH_ARG');

  const datasetName = o.examples ? (o.datasetName ?? 'custom') : (o.dataset ?? 'stop-words');
  let examples: readonly LabelledText[] = o.examples ?? (await loadBuiltinDataset(datasetName));
  if (o.maxExamples !== undefined && examples.length > o.maxExamples) {
    examples = permutation(examples.length, seed).slice(0, o.maxExamples).map((i) => examples[i]!);
  }
  const classes = sortClasses(examples.map((e) => e.label));
  if (classes.length < 2) throw new TransformerHeadsError(`a probe needs at least two classes; the labels are all ${JSON.stringify(classes[0])}`, 'ERR_TH_VALUE');
  const classIndex = new Map(classes.map((c, i) => [c, i]));

  log(`tokenizing ${examples.length} examples (${datasetName}, ${classes.length} classes, first ${maxLength} tokens)`);
  const tokenizer = o.tokenizer ?? (await loadTokenizer(local));
  let dropped = 0;
  const rows = [];
  for (const e of examples) {
    const ids = tokenizer.encode(e.text).ids.slice(0, maxLength);
    if (ids.length === 0) {
      dropped++;
      continue;
    }
    const label = classIndex.get(typeof classes[0] === 'number' ? e.label : String(e.label))!;
    rows.push({ input_ids: ids, attention_mask: ids.map(() => 1), label });
  }
  const { train, test } = new Dataset(rows).trainTestSplit(testFraction, seed);
  if (train.length === 0 || test.length === 0) throw new TransformerHeadsError(`too few examples (${rows.length}) for a train / test split`, 'ERR_TH_VALUE');

  const heads: HeadConfig[] = layers.map((l) => ({ name: `layer_${l}`, inSize: config.hiddenSize, numOutputs: classes.length, layerHook: l, predForSequence: true, target: 'label' }));
  log(`loading ${modelPath} with ${heads.length} linear probes (hidden states ${layers.join(', ')})`);
  const model = await loadHeaded(local, {
    heads,
    freezeBaseModel: true,
    seed,
    ...(o.device ? { device: o.device } : {}),
    ...(o.dtype ? { dtype: o.dtype } : {}),
    ...(o.positions ? { positions: o.positions } : {}),
  });
  const outDir = o.outputDir ? resolve(o.outputDir) : await mkdtemp(join(tmpdir(), 'th-probe-'));
  let res;
  let metrics: Record<string, number>;
  const tTrain = performance.now();
  try {
    if (o.outputDir) await ensureFolder(outDir);
    const totalSteps = Math.ceil(epochs * Math.ceil(train.length / batchSize));
    const trainer = new Trainer(
      model,
      {
        outputDir: outDir,
        learningRate,
        numTrainEpochs: epochs,
        perDeviceTrainBatchSize: batchSize,
        perDeviceEvalBatchSize: 32,
        loggingSteps: Math.max(1, Math.round(totalSteps / 40)),
        evalStrategy: o.evalEachEpoch === false ? 'no' : 'epoch',
        seed,
        disableProgressBar: !o.showProgressBar,
      },
      {
        trainDataset: train,
        evalDataset: test,
        dataCollator: new DataCollatorWithPadding({ input_ids: tokenizer.padTokenId, attention_mask: 0 }),
        ...(o.callbacks ? { callbacks: o.callbacks } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      },
    );
    log(`training on ${train.length} examples, ${epochs} epochs (${totalSteps} steps), testing on ${test.length}`);
    res = await trainer.train();
    // The Trainer evaluates after the last epoch already (unless per-epoch evaluation is off).
    const logged = finalEvaluation(res);
    if (!logged) log(`evaluating ${heads.length} probes on ${test.length} held-out examples`);
    metrics = logged ?? (await trainer.evaluate(test));
    if (o.outputDir) {
      const log: LogEntry[] = logged ? res.logHistory : [...res.logHistory, { step: res.globalStep, epoch: res.logHistory.at(-1)?.epoch ?? epochs, ...metrics }];
      await atomicWrite(join(outDir, 'loss.svg'), lossChart(log, { title: 'Training and eval loss (sum over the probes)' }));
    }
  } finally {
    model.dispose();
    if (!o.outputDir) await rm(outDir, { recursive: true, force: true });
  }
  const trainSeconds = (performance.now() - tTrain) / 1000;

  const counts = new Array<number>(classes.length).fill(0);
  for (const r of train) counts[r.label] = counts[r.label]! + 1;
  const majority = counts.indexOf(Math.max(...counts));
  const majorityBaseline = test.rows.filter((r) => r.label === majority).length / test.length;
  const results: LayerProbeResult[] = layers.map((l) => ({
    layer: l,
    name: layerName(l, L),
    head: `layer_${l}`,
    accuracy: round(metrics[`eval_layer_${l}_accuracy`]!),
    f1Macro: round(metrics[`eval_layer_${l}_f1_macro`]!),
    loss: round(metrics[`eval_loss_layer_${l}`]!),
  }));
  const best = results.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  const result: ProbeResult = {
    model: modelPath,
    modelType: config.modelType,
    numLayers: L,
    hiddenSize: config.hiddenSize,
    dataset: datasetName,
    classes: classes.map(String),
    trainExamples: train.length,
    testExamples: test.length,
    droppedExamples: dropped,
    maxLength,
    majorityBaseline: round(majorityBaseline),
    majorityClass: String(classes[majority]),
    layers: results,
    best: { layer: best.layer, name: best.name, accuracy: best.accuracy },
    training: {
      epochs,
      steps: res.globalStep,
      learningRate,
      batchSize,
      trainLoss: round(res.trainingLoss),
      seconds: round(trainSeconds),
      activationCache: res.activationCache,
      stopped: res.stopped,
    },
    seconds: round((performance.now() - t0) / 1000),
    files: {},
  };
  if (o.outputDir) result.files = await writeProbeOutputs(result, outDir);
  return result;
}

function round(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1e4) / 1e4 : x;
}

/** The accuracy-by-layer bar chart (SVG) with the majority baseline as a dashed line. */
export function accuracyByLayerChart(r: ProbeResult): string {
  return barChart({
    title: `Linear probe accuracy by layer: ${r.dataset}`,
    xLabel: `hidden state (0 = embeddings, ${r.numLayers} = final norm)`,
    yLabel: 'held-out accuracy',
    categories: r.layers.map((l) => String(l.layer)),
    series: [{ name: 'probe accuracy', values: r.layers.map((l) => l.accuracy) }],
    referenceLines: [{ name: `majority baseline ${r.majorityBaseline.toFixed(3)}`, value: r.majorityBaseline, color: '#e15759' }],
    yDomain: [0, 1],
    valueDigits: 3,
  });
}

/** Writes results.json, accuracy-by-layer.svg and report.html (with loss.svg when the folder has one). */
export async function writeProbeOutputs(r: ProbeResult, dir: string): Promise<Record<string, string>> {
  await ensureFolder(dir);
  const files: Record<string, string> = {
    results: join(dir, 'results.json'),
    accuracySvg: join(dir, 'accuracy-by-layer.svg'),
    report: join(dir, 'report.html'),
  };
  const lossSvg = await readFile(join(dir, 'loss.svg'), 'utf8').catch(() => null);
  if (lossSvg !== null) files.lossSvg = join(dir, 'loss.svg');
  if (existsSync(join(dir, 'log_history.jsonl'))) files.logHistory = join(dir, 'log_history.jsonl');
  const withFiles = { ...r, files };
  const chart = accuracyByLayerChart(r);
  await atomicWrite(files.results!, JSON.stringify(withFiles, null, 2) + '\n');
  await atomicWrite(files.accuracySvg!, chart);
  const html = htmlReport({
    title: `Linear probes by layer: ${r.dataset}`,
    subtitle: `Which hidden state of ${r.model} makes the label linearly decodable? One linear probe per layer, trained together on the frozen model.`,
    facts: {
      model: `${r.model} (${r.modelType}, ${r.numLayers} layers, hidden size ${r.hiddenSize})`,
      dataset: `${r.dataset}: classes ${r.classes.join(', ')}; ${r.trainExamples} train / ${r.testExamples} test examples, first ${r.maxLength} tokens`,
      'majority baseline': `${r.majorityBaseline.toFixed(4)} (always '${r.majorityClass}')`,
      'best layer': `${r.best.layer} (${r.best.name}): accuracy ${r.best.accuracy.toFixed(4)}`,
      training: `${r.training.epochs} epochs, ${r.training.steps} steps, lr ${r.training.learningRate}, batch ${r.training.batchSize}, ${r.training.seconds.toFixed(1)} s${r.training.activationCache ? ' (activation cache)' : ''}`,
    },
    sections: [
      { title: 'Accuracy by layer', svg: chart },
      {
        title: 'Results',
        table: {
          columns: ['layer', 'hidden state', 'accuracy', 'macro-F1', 'loss', 'vs majority'],
          rows: r.layers.map((l) => [l.layer, l.name, l.accuracy, l.f1Macro, l.loss, Number((l.accuracy - r.majorityBaseline).toFixed(4))]),
        },
      },
      ...(lossSvg !== null ? [{ title: 'Loss (sum over the probes)', svg: lossSvg }] : []),
      { title: 'results.json', json: withFiles },
    ],
  });
  await atomicWrite(files.report!, html);
  return files;
}

/** The accuracy table as text (for a terminal). */
export function formatProbeTable(r: ProbeResult): string {
  const bar = (x: number) => '█'.repeat(Math.round(Math.max(0, Math.min(1, x)) * 20));
  const lines = [
    `${'layer'.padStart(5)}  ${'hidden state'.padEnd(14)} ${'accuracy'.padStart(8)} ${'macro-F1'.padStart(8)} ${'loss'.padStart(7)}`,
    ...r.layers.map(
      (l) =>
        `${String(l.layer).padStart(5)}  ${l.name.padEnd(14)} ${l.accuracy.toFixed(3).padStart(8)} ${l.f1Macro.toFixed(3).padStart(8)} ${l.loss.toFixed(3).padStart(7)}  ${bar(l.accuracy)}`,
    ),
    `${''.padStart(5)}  ${'majority class'.padEnd(14)} ${r.majorityBaseline.toFixed(3).padStart(8)} ${''.padStart(8)} ${''.padStart(7)}  ${bar(r.majorityBaseline)}`,
  ];
  const d = r.best.accuracy - r.majorityBaseline;
  lines.push(`best: layer ${r.best.layer} (${r.best.name}), accuracy ${r.best.accuracy.toFixed(3)}, ${d >= 0 ? '+' : ''}${d.toFixed(3)} over the majority class`);
  return lines.join('\n');
}

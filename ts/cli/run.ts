// What the commands share about models, data and trained runs: checking a model's architecture, default lengths and
// tokenizers, reading data files, metrics by head, and run.json (written by train, read back by eval, predict and
// generate to rebuild the model and its data handling).
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { TransformerHeadsError } from '../errors.js';
import { loadTokenizer, readJsonFile, readModelConfig, resolveModel, type ModelConfig, type Tokenizer } from '../io/index.js';
import { loadHeaded, loadLoraWithHeads, type Device, type Dtype, type HeadedModel, type QuantizationConfig, type ResolvedHeadConfig } from '../model/index.js';
import type { Cell } from '../report/index.js';
import { readTable, type Example } from '../train/index.js';
import { BIN, strFlag, usageError, type Values } from './args.js';
import { configError, readTrainConfig, type DataConfig } from './config.js';
import { hubProgress, isHubModel, modelArg } from './hub.js';
import type { Labelling } from './labels.js';
import { CliError, fmtNum, type Ui } from './ui.js';

const SUPPORTED_TYPES = ['gpt2', 'llama', 'mistral', 'qwen2'];

/** config.json of a model, refusing unsupported architectures up front (field: where the path came from). */
export async function modelConfigOf(path: string, field: string): Promise<ModelConfig> {
  const mc = await readModelConfig(path);
  if (!SUPPORTED_TYPES.includes(mc.modelType)) {
    throw new CliError(`${field}: model_type '${mc.modelType}' of '${path}' is not supported (supported: ${SUPPORTED_TYPES.join(', ')})`, 'use a GPT-2 or Llama-family model', 2);
  }
  return mc;
}

/** Library errors about LoRA / quantization settings, named by their config field. */
export function asConfigFieldError(e: unknown): never {
  if (e instanceof TransformerHeadsError && e.code === 'ERR_TH_CONFIG') {
    const m = /^(?:LoRA )?(lora|quantization|targetModules)\.?(\w*)/i.exec(e.message);
    if (m) {
      const field = m[1]!.toLowerCase() === 'quantization' ? `config.quantization${m[2] ? `.${m[2]}` : ''}` : `config.lora.${m[1] === 'targetModules' ? 'targetModules' : m[2] || 'targetModules'}`;
      configError(field, e.message.replace(/^(LoRA )?/, ''));
    }
  }
  throw e;
}

export function defaultMaxLength(mc: ModelConfig): number {
  return Math.min(mc.maxPositionEmbeddings > 0 ? mc.maxPositionEmbeddings : 1024, 1024);
}

export async function tryTokenizer(source: string | null, model: string): Promise<Tokenizer | null> {
  if (source) return loadTokenizer(source);
  try {
    return await loadTokenizer(model);
  } catch {
    return null;
  }
}

/** The rows of a data file; in a CSV, the text column stays text even where it reads as a number. */
export async function readRows(path: string, data: Pick<DataConfig, 'format' | 'csvDelimiter' | 'textColumn'>): Promise<Example[]> {
  const ds = await readTable(path, data.format ?? undefined, { ...(data.csvDelimiter ? { delimiter: data.csvDelimiter } : {}), textColumns: [data.textColumn] });
  if (ds.length === 0) throw new CliError(`'${path}' holds no examples`, 'a .jsonl file has one JSON object per line; a .csv file a header row and one row per example', 2);
  return [...ds.rows];
}

/** Metrics per head from Trainer.evaluate()'s flat keys. */
export function byHead(heads: readonly ResolvedHeadConfig[], m: Record<string, number>): Record<string, Record<string, number>> {
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

export function headTable(heads: readonly ResolvedHeadConfig[], m: Record<string, number>): { columns: string[]; rows: Cell[][] } {
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

/** Everything eval and predict need to rebuild a trained model and its data handling. */
export interface RunInfo {
  format: 'transformer-heads-run/1';
  model: string;
  /** Absolute path of the head files (and adapter files). */
  headsDir: string;
  lora: boolean;
  quantization: QuantizationConfig | null;
  dtype: Dtype | null;
  /** The training's position ids (absent in runs written before the option: the default, 'from-mask'). */
  positions?: 'from-mask' | 'sequential' | null;
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
  let r: RunInfo;
  try {
    r = (await readJsonFile(p, 'run file', { code: 'ERR_TH_FILE' })) as RunInfo;
    if (typeof r.headsDir !== 'string' || typeof r.model !== 'string') throw new Error('it names no model or heads folder');
    if (typeof r.data !== 'object' || r.data === null) throw new Error('it has no data settings');
    if (typeof r.labelMaps !== 'object' || r.labelMaps === null) r.labelMaps = {};
  } catch (e) {
    throw new CliError(`'${p}' cannot be used: ${(e as Error).message}`, 'it is written by transformer-heads train; train again to rewrite it', 1);
  }
  return { ...r, headsDir: resolve(dir, r.headsDir) };
}

/**
 * A run folder (run.json), a heads folder (head_configs.json), a train config file, or a heads folder on the Hub
 * (ORG/NAME[@REV], e.g. LoRA adapters with heads, fetched into the cache).
 */
export async function resolveRun(arg: string, v: Values, cmd: string, ui?: Ui): Promise<RunInfo> {
  let abs = resolve(arg);
  if (!existsSync(abs)) {
    if (!isHubModel(arg)) usageError(`'${arg}' does not exist (expected a config file or a folder written by '${BIN} train', or a Hub repository ORG/NAME holding heads)`, cmd);
    abs = await resolveModel(arg, { files: 'heads', ...(ui ? { onProgress: hubProgress(ui) } : {}) });
  }
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
      model: modelFlag ? modelArg(modelFlag, v) : cfg.model,
      headsDir,
      lora: existsSync(join(headsDir, 'adapter_config.json')),
      quantization: cfg.quantization,
      dtype: cfg.dtype,
      positions: cfg.positions,
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
      const lora = existsSync(join(abs, 'adapter_config.json'));
      const base = modelFlag ? modelArg(modelFlag, v) : lora ? await adapterBase(abs) : null;
      if (!base) usageError(`'${arg}' holds heads but no run.json to name their model: pass --model PATH`, cmd);
      run = { format: 'transformer-heads-run/1', model: base, headsDir: abs, lora, quantization: null, dtype: null, data: emptyData(), labelMaps: {}, evalBatchSize: 8 };
    }
  }
  if (!run) usageError(`'${arg}' has neither run.json nor head_configs.json: pass a folder written by '${BIN} train' (or its heads/ folder with --model)`, cmd);
  if (modelFlag) run.model = modelArg(modelFlag, v);
  return run;
}

/** The base model adapter_config.json names (with its revision, as PEFT records it), or null. */
async function adapterBase(dir: string): Promise<string | null> {
  try {
    const cfg = (await readJsonFile(join(dir, 'adapter_config.json'), 'adapter config file')) as { base_model_name_or_path?: unknown; revision?: unknown };
    const base = typeof cfg.base_model_name_or_path === 'string' && cfg.base_model_name_or_path ? cfg.base_model_name_or_path : null;
    if (!base) return null;
    if (existsSync(base)) return base;
    return typeof cfg.revision === 'string' && cfg.revision && isHubModel(base) && !base.includes('@') ? `${base}@${cfg.revision}` : base;
  } catch {
    return null;
  }
}

export async function loadRunModel(run: RunInfo, device: Device | undefined): Promise<HeadedModel> {
  const common = {
    onlyInference: true,
    ...(device ? { device } : {}),
    ...(run.dtype ? { dtype: run.dtype } : {}),
    ...(run.positions ? { positions: run.positions } : {}),
    ...(run.quantization ? { quantization: run.quantization } : {}),
  };
  if (run.lora) return loadLoraWithHeads(run.headsDir, { modelPath: run.model, ...common });
  return loadHeaded(run.model, { headFolder: run.headsDir, ...common });
}

export async function labellingFor(run: RunInfo, heads: readonly ResolvedHeadConfig[], mc: ModelConfig, textFlag: string | undefined): Promise<Labelling> {
  return {
    heads,
    textColumn: textFlag ?? run.data.textColumn,
    labelColumns: run.data.labelColumns,
    maxLength: run.data.maxLength > 0 ? run.data.maxLength : defaultMaxLength(mc),
    labelMaps: run.labelMaps,
  };
}

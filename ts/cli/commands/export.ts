// transformer-heads export: a model's architecture at a glance, or a Hugging Face model exported to TorchScript
// through scripts/export_torchscript.py.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, open, readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

import { loadTokenizer, parseJson, readJsonFile, readModelConfig, resolveModel } from '../../io/index.js';
import { loadBackbone } from '../../model/index.js';
import { BIN, PACKAGE_ROOT, strFlag, usageError, type Command } from '../args.js';
import { hubProgress, isHubModel } from '../hub.js';
import { CliError, textTable, type Ui } from '../ui.js';

export const EXPORT: Command = {
  summary: "show a model's architecture, or export a Hugging Face model to TorchScript",
  usage: `${BIN} export MODEL | ORG/NAME [--json]\n       ${BIN} export --hf NAME_OR_DIR --out MODEL.pt [--python PY]`,
  options: { hf: { type: 'string' }, python: { type: 'string' } },
  help: `MODEL (a .pt TorchScript archive or a Hugging Face folder): prints its architecture, layers, hidden size,
vocabulary, parameter count and whether it carries a tokenizer. For a Hub model (ORG/NAME[@REV]) only its
config.json and tokenizer files are fetched; the parameters are counted once its weights are in the cache.
--hf NAME_OR_DIR --out MODEL.pt: exports a Hugging Face model (GPT-2, Llama, Mistral, Qwen2) to a TorchScript
archive, by running scripts/export_torchscript.py --hf. It needs Python with torch and transformers (pip install
torch transformers); --python or TH_PYTHON picks the interpreter. Loading a model needs no export: every --model
option and the library's loaders take Hugging Face folders and Hub ids (ORG/NAME) directly.`,
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
    const map = ((await readJsonFile(index, 'shard index', { code: 'ERR_TH_FILE' })) as { weight_map?: unknown }).weight_map;
    if (typeof map !== 'object' || map === null) return null;
    files = [...new Set(Object.values(map as Record<string, unknown>))].filter((f): f is string => typeof f === 'string' && !/[/\\]/.test(f));
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
      const header = parseJson(buf, `safetensors header of '${join(dir, f)}'`, { code: 'ERR_TH_FILE' }) as Record<string, { shape?: unknown; data_offsets?: unknown }>;
      for (const [k, t] of Object.entries(header)) {
        if (k === '__metadata__') continue;
        const shape = t?.shape;
        const off = t?.data_offsets;
        if (!Array.isArray(shape) || !Array.isArray(off) || off.length !== 2) return null; // loading the model reports what is wrong
        parameters += shape.reduce((a: number, b: unknown) => a * Number(b), 1);
        bytes += Number(off[1]) - Number(off[0]);
      }
    } finally {
      await fh.close();
    }
  }
  return { parameters, bytes };
}

async function modelInfo(path: string, ui: Ui): Promise<ModelInfo> {
  let abs = resolve(path);
  if (!existsSync(abs) && isHubModel(path)) {
    // a Hub model: its config and tokenizer only; the parameters are counted when the weights are in the cache
    abs = await resolveModel(path, { files: 'config', onProgress: hubProgress(ui) });
    await resolveModel(path, { files: 'tokenizer', onProgress: hubProgress(ui) }).catch(() => undefined);
  }
  if (!existsSync(abs)) throw new CliError(`model '${path}' does not exist`, 'pass a TorchScript archive (.pt), a Hugging Face model folder, or a Hub model id ORG/NAME', 2);
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

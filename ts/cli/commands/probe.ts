// transformer-heads probe: a linear probe on every hidden state of a model, accuracy by layer (train/probe.ts).
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { TransformerHeadsError } from '../../errors.js';
import { BUILTIN_DATASETS, defaultModelPath, formatProbeTable, loadLabelledFile, probeLayers } from '../../train/index.js';
import { BIN, deviceFlag, intFlag, numFlag, strFlag, usageError, type Command } from '../args.js';
import { fetchModel, isHubModel, modelArg } from '../hub.js';
import { CliError, interruptible, trainProgress } from '../ui.js';

export const PROBE: Command = {
  summary: 'train a linear probe on every layer and report accuracy by layer',
  usage: `${BIN} probe [--model PATH | ORG/NAME] [--dataset NAME | --data FILE --text COL --label COL] [--out DIR] [--json]`,
  options: {
    model: { type: 'string', short: 'm' },
    revision: { type: 'string' },
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
  -m, --model PATH      TorchScript archive, Hugging Face folder, or Hub model ORG/NAME[@REV] (downloaded into
                        the Hugging Face cache on first use) (default: ${defaultModelPath()})
  --revision REV        branch, tag or commit of a Hub model (default main)
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
    if (modelFlag && !existsSync(modelFlag) && !isHubModel(modelFlag)) throw new CliError(`model '${modelFlag}' does not exist`, 'pass --model with a TorchScript archive (.pt), a Hugging Face model folder, or a Hub model id ORG/NAME', 2);
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
      const model = modelFlag ? await fetchModel(modelArg(modelFlag, v), ui, 'model', stop.signal) : undefined;
      const result = await probeLayers({
        ...(model ? { model } : {}),
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

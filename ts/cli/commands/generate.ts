// transformer-heads generate: streams generated text, with every trained head's output at each token.
import { createInterface } from 'node:readline';

import { loadHeaded, loadLoraWithHeads, readHeadConfigs, type HeadedModel } from '../../model/index.js';
import { defaultModelPath } from '../../train/index.js';
import { BIN, deviceFlag, intFlag, numFlag, strFlag, usageError, type Command } from '../args.js';
import { fetchModel, modelArg } from '../hub.js';
import { modelConfigOf, resolveRun, tryTokenizer } from '../run.js';
import { CliError, interruptible, textTable } from '../ui.js';

export const GENERATE: Command = {
  summary: 'generate text, streaming it, with every trained head\'s output at each token',
  usage: `${BIN} generate [PROMPT ...] [--model PATH | ORG/NAME] [--heads RUN_DIR] [--max-new-tokens N] [--sample] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR]`,
  options: {
    model: { type: 'string', short: 'm' },
    revision: { type: 'string' },
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
  -m, --model PATH         TorchScript archive, Hugging Face folder, or Hub model ORG/NAME[@REV] (downloaded into
                           the Hugging Face cache on first use) (default: the embedded model)
  --revision REV           branch, tag or commit of a Hub model (default main)
  --heads RUN_DIR          a folder written by '${BIN} train' (its model is used unless --model is given), or a
                           Hub repository ORG/NAME holding heads (and LoRA adapters)
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
    const run = headsArg ? await resolveRun(headsArg, v, 'generate', ui) : null;
    const modelPath = await fetchModel(strFlag(v, 'model') ? modelArg(strFlag(v, 'model')!, v) : (run?.model ?? defaultModelPath()), ui);
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
    // GPT-2 has learned positions: say so here, with the largest -n that fits, rather than as a shape error.
    const longest = prompts.reduce((m, p) => Math.max(m, tokenizer.encode(p).ids.length), 0);
    if (mc.modelType === 'gpt2' && mc.maxPositionEmbeddings > 0 && longest + options.maxNewTokens - 1 > mc.maxPositionEmbeddings) {
      model.dispose();
      stopper.dispose();
      const most = mc.maxPositionEmbeddings - longest + 1;
      throw new CliError(
        `--max-new-tokens ${options.maxNewTokens} does not fit: a prompt of ${longest} tokens plus ${options.maxNewTokens} new ones needs ${longest + options.maxNewTokens - 1} positions and this model has ${mc.maxPositionEmbeddings}`,
        most >= 1 ? `use --max-new-tokens ${most} or less (or a shorter prompt)` : 'use a shorter prompt',
        2,
      );
    }
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

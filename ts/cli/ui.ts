// The CLI's shared output: results on stdout (text, or one JSON object per line with --json), logs and progress on
// stderr, Ctrl-C handling, plain-text tables, and turning any error into the one-line message, hint and exit code
// every command prints.
import { TransformerHeadsError } from '../errors.js';
import { progress, type Cell, type Progress } from '../report/index.js';

/** An error the CLI prints as one line plus a hint, exiting with `exitCode` (2: usage or config, 1: runtime). */
export class CliError extends Error {
  readonly hint: string | null;
  readonly exitCode: number;
  constructor(message: string, hint: string | null = null, exitCode = 2) {
    super(message);
    this.name = 'CliError';
    this.hint = hint;
    this.exitCode = exitCode;
  }
}

/** Results on stdout (human text, or JSON lines with --json); logs and progress on stderr. */
export class Ui {
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

  progress(label: string, unit: string, format?: (n: number) => string): Progress {
    const p = progress({ label, unit, silent: this.quiet, ...(format ? { format } : {}) });
    this.#barActive = true;
    return {
      update: (d, t, i, eta) => p.update(d, t, i, eta),
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

export function jsonSafe(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}

/** Commands whose shape errors come from the data's label columns (elsewhere the message's sizes say it all). */
const DATA_COMMANDS = new Set(['train', 'eval', 'predict', 'probe']);

export function describeError(e: unknown, command?: string): { message: string; hint: string | null; exitCode: number; code?: string } {
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
      ERR_TH_SHAPE:
        command === undefined || DATA_COMMANDS.has(command)
          ? 'check the data: label columns must match the heads (classes, number of outputs, one label per token)'
          : 'the sizes in the message do not fit the model: change the option or input they name',
      ERR_TH_VALUE: 'check the data and the numeric settings',
      ERR_TH_DEVICE: 'use --device cpu, or a libtorch built with CUDA (see the README, Building)',
      ERR_TH_NATIVE: 'see what was found with: npx transformer-heads doctor',
      ERR_TH_MEMORY: 'use smaller batches, a shorter data.maxLength, or a smaller model',
      ERR_TH_TORCH: 'libtorch failed; rerun with TH_DEBUG=1 for details',
      ERR_TH_HUB_AUTH: 'accept the model\'s license on its Hub page and set HF_TOKEN',
      ERR_TH_HUB_NOT_FOUND: "check the model id ('organisation/name') and the revision",
      ERR_TH_NETWORK: 'check the connection; cached models load with --offline',
      ERR_TH_OFFLINE: "download the model once while online: transformer-heads download ORG/NAME",
      ERR_TH_ABORTED: 'run the command again: the download resumes where it stopped',
      ERR_TH_DIVERGED: 'lower training.learningRate, set training.maxGradNorm, check the labels, or set training.skipNonFiniteSteps: true',
    };
    // ERR_TH_NATIVE's message carries its own 'Fix: <command>' line (ts/native/binding.ts), the one to show.
    const lines = rest.map((l) => l.trim()).filter(Boolean);
    const hint =
      e.code === 'ERR_TH_NATIVE'
        ? (lines.find((l) => l.startsWith('Fix:'))?.slice(4).trim() ?? hints.ERR_TH_NATIVE!)
        : (lines[0]?.replace(/^- /, '') ?? hints[e.code] ?? null);
    return { message: first!, hint, exitCode: e.code === 'ERR_TH_CONFIG' || e.code === 'ERR_TH_ARG' ? 2 : 1, code: e.code };
  }
  const message = e instanceof Error ? e.message.split('\n')[0]! : String(e);
  return { message, hint: 'this looks like a bug in transformer-heads; rerun with TH_DEBUG=1 for the stack trace and report it', exitCode: 1 };
}

export function interruptible(ui: Ui): { signal: AbortSignal; dispose(): void; interrupted(): boolean } {
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

export function trainProgress(ui: Ui) {
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

export function fmtNum(x: number | undefined, digits = 4): string {
  return x === undefined || !Number.isFinite(x) ? '' : x.toFixed(digits);
}

/** A plain-text table: numbers right-aligned (and their column headers), everything else left-aligned. */
export function textTable(t: { columns: string[]; rows: Cell[][] }): string {
  const text = (c: Cell) => (c === null || c === undefined ? '' : typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(4)) : String(c));
  const cells = [t.columns, ...t.rows.map((r) => r.map(text))];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const numeric = t.columns.map((_, i) => t.rows.some((r) => typeof r[i] === 'number') && t.rows.every((r) => typeof r[i] === 'number' || r[i] === null || r[i] === undefined));
  return cells
    .map((r) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

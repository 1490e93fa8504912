// The command-line basics every command shares: the program name, the Command shape (options, help, action), the
// common options, and flag parsing with usage errors (exit code 2) that point at the command's --help.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ParseArgsConfig } from 'node:util';

import type { Device } from '../model/index.js';
import { checkDevice } from './config.js';
import { CliError, type Ui } from './ui.js';

/** The package folder (dist/cli/args.js is two levels below it): package.json, scripts/. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = 'transformer-heads';

export function version(): string {
  try {
    return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  summary: string;
  usage: string;
  help: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** The command parses its own arguments (launch: everything after its target belongs to the target). */
  rawArgs?: boolean;
  run(v: Values, positionals: string[], ui: Ui): Promise<number>;
}

export const COMMON: NonNullable<ParseArgsConfig['options']> = {
  json: { type: 'boolean' },
  device: { type: 'string' },
  threads: { type: 'string' },
  out: { type: 'string', short: 'o' },
  quiet: { type: 'boolean', short: 'q' },
  offline: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export const COMMON_HELP = `Common options:
  --json             machine-readable output: one JSON object per line on stdout (logs stay on stderr)
  --device DEV       cpu (default), cuda or cuda:N
  --threads N        libtorch threads (default: all cores, or OMP_NUM_THREADS)
  -o, --out PATH     where outputs go (see the command)
  -q, --quiet        no logs or progress on stderr
  --offline          Hub models (ORG/NAME) from the cache only, no network (as HF_HUB_OFFLINE=1)
  -h, --help         this help`;

let currentCommand: string | undefined;

export function usageError(message: string, cmd: string | undefined = currentCommand): never {
  throw new CliError(message, cmd ? `see '${BIN} ${cmd} --help'` : `see '${BIN} --help'`, 2);
}

/** The command being run, named by usage errors that do not name one. */
export function setCurrentCommand(cmd: string | undefined): void {
  currentCommand = cmd;
}

export function intFlag(v: Values, name: string, min: number): number | undefined {
  const s = v[name];
  if (s === undefined) return undefined;
  const n = Number(s);
  if (typeof s !== 'string' || !/^-?\d+$/.test(s.trim()) || n < min) usageError(`--${name}: expected an integer >= ${min}, got '${String(s)}'`);
  return n;
}

export function numFlag(v: Values, name: string, check: (n: number) => boolean, what: string): number | undefined {
  const s = v[name];
  if (s === undefined) return undefined;
  const n = Number(s);
  if (typeof s !== 'string' || s.trim() === '' || !Number.isFinite(n) || !check(n)) usageError(`--${name}: expected ${what}, got '${String(s)}'`);
  return n;
}

export function strFlag(v: Values, name: string): string | undefined {
  const s = v[name];
  return typeof s === 'string' ? s : undefined;
}

export function deviceFlag(v: Values): Device | undefined {
  const d = strFlag(v, 'device');
  if (d === undefined) return undefined;
  try {
    return checkDevice('--device', d) as Device;
  } catch {
    return usageError(`--device: expected cpu, cuda or cuda:N, got '${d}'`);
  }
}

// Every command of the CLI, in the order `transformer-heads --help` lists them. A new command is a module in this
// folder exporting a Command (options, help, action), added to this table.
import type { Command } from '../args.js';
import { DOWNLOAD } from './download.js';
import { DOCTOR } from './doctor.js';
import { EVAL } from './eval.js';
import { EXPORT } from './export.js';
import { GENERATE } from './generate.js';
import { launchCommand } from './launch.js';
import { PREDICT } from './predict.js';
import { PROBE } from './probe.js';
import { TRAIN } from './train.js';

export const COMMANDS: Record<string, Command> = { train: TRAIN, eval: EVAL, predict: PREDICT, probe: PROBE, generate: GENERATE, download: DOWNLOAD, export: EXPORT, launch: launchCommand(() => Object.keys(COMMANDS)), doctor: DOCTOR };

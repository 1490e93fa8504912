// transformer-heads command line: train / eval / predict / probe / generate / export. Results go to stdout (tables, or one
// JSON object per line with --json); logs and progress go to stderr. Exit codes: 0 ok, 1 runtime failure,
// 2 usage or config error, 130 interrupted (outputs of a stopped training are still written).
// This file parses the command line and dispatches; each command lives in commands/, registered in commands/index.ts.
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { setNumThreads } from '../native/index.js';
import { BIN, COMMON, COMMON_HELP, intFlag, setCurrentCommand, usageError, version, type Command, type Values } from './args.js';
import { COMMANDS } from './commands/index.js';
import { CliError, describeError, Ui } from './ui.js';

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

/**
 * `-n -5` as `--max-new-tokens=-5`: parseArgs takes a value that starts with '-' for an option ("ambiguous"), and the
 * option's own check then says what values it accepts.
 */
function negativeValues(args: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    const name = a.startsWith('--') ? a.slice(2) : /^-[^-]$/.test(a) ? Object.entries(options).find(([, o]) => o.short === a[1])?.[0] : undefined;
    if (name && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d|inf|nan)/i.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
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
    setCurrentCommand(command ? cmd : undefined);
    if (!command) {
      if (cmd.startsWith('-')) usageError(`expected a command before options, got '${cmd}'`);
      usageError(`unknown command '${cmd}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
    }
    if (command.rawArgs) {
      if (rest[0] === '--help' || rest[0] === '-h') {
        process.stdout.write(commandHelp(cmd, command));
        return 0;
      }
      return await command.run({}, rest, new Ui(false, false));
    }
    let parsed;
    const options = { ...COMMON, ...command.options };
    try {
      parsed = parseArgs({ args: negativeValues(rest, options), options, allowPositionals: true, strict: true });
    } catch (e) {
      const d = describeError(e);
      throw new CliError(`${cmd}: ${d.message}`, `see '${BIN} ${cmd} --help'`, 2);
    }
    const v = parsed.values as Values;
    if (v.help) {
      process.stdout.write(commandHelp(cmd, command));
      return 0;
    }
    // Data-parallel ranks other than 0 (launch, torchrun) keep quiet: rank 0 reports for all; errors still show.
    const quietRank = Number(process.env.WORLD_SIZE ?? 1) > 1 && Number(process.env.RANK ?? 0) > 0;
    const ui = new Ui(Boolean(v.json), Boolean(v.quiet) || quietRank);
    if (v.offline) process.env.HF_HUB_OFFLINE = '1'; // every Hub lookup of this process reads it
    const threads = intFlag(v, 'threads', 1);
    if (threads !== undefined) await setNumThreads(threads);
    return await command.run(v, parsed.positionals, ui);
  } catch (e) {
    const d = describeError(e, argv[0]);
    process.stderr.write(`${BIN}: ${d.message.replace(/\s*\n\s*/g, ' ')}\n`);
    if (d.hint) process.stderr.write(`hint: ${d.hint}\n`);
    if (process.env.TH_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    if (jsonMode) process.stdout.write(`${JSON.stringify({ error: { message: d.message, hint: d.hint, exitCode: d.exitCode, ...(d.code ? { code: d.code } : {}) } })}\n`);
    return d.exitCode;
  }
}

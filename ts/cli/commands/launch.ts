// transformer-heads launch: torchrun for Node scripts and this CLI's commands. Starts one process per local rank with
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT), splits
// the cores between them (OMP_NUM_THREADS), prefixes every line of their output with the rank, forwards SIGINT and
// SIGTERM to all, and stops every rank as soon as one fails, exiting with that rank's code.
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { constants } from 'node:os';

import { BIN, PACKAGE_ROOT, usageError, type Command } from '../args.js';

const HELP = `Starts N processes on this machine that train together (data parallel on PyTorch's c10d: Gloo on CPU, NCCL
on CUDA), as torchrun does for Python. TARGET is a Node script (.js, .mjs, .cjs) or a command of this CLI (train).
Every process gets torchrun's environment, which the Trainer reads:
  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT, OMP_NUM_THREADS
Options (before TARGET; everything after TARGET goes to it):
  --nproc-per-node N    processes on this machine (default 1)
  --nnodes M            machines (default 1)
  --node-rank R         this machine's index, 0..M-1 (default 0); machine 0 runs rank 0, which serves the rendezvous
  --master-addr HOST    rank 0's machine (default 127.0.0.1; required with --nnodes > 1)
  --master-port P       its port (default: a free port with one machine, 29500 with several)
  --backend B           gloo (default) or nccl (CUDA; rank i uses cuda:LOCAL_RANK)
  --timeout S           seconds a rank waits for the others in any collective (default 300)
  --threads-per-proc T  libtorch threads per process (default: the cores divided by N)
When a process fails, the others are stopped (SIGTERM, then SIGKILL after 10 s) and launch exits with its code.
Ctrl-C (SIGINT) and SIGTERM are passed to every process. Examples:
  ${BIN} launch --nproc-per-node 2 examples/train-probe.mjs
  ${BIN} launch --nproc-per-node 2 train config.json --out out/run
  ${BIN} launch --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 --nproc-per-node 4 train.mjs
docs/distributed.md has the whole guide (several machines, torchrun, Slurm, Kubernetes, NCCL).`;

interface LaunchOptions {
  nproc: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number | null;
  backend: string;
  timeout: number | null;
  threads: number | null;
}

// Launcher options come before the target; parsed here because everything after the target belongs to it.
function parseLaunchArgs(argv: string[]): { o: LaunchOptions; target: string; rest: string[] } {
  const o: LaunchOptions = { nproc: 1, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: null, backend: 'gloo', timeout: null, threads: null };
  let addrGiven = false;
  let i = 0;
  const int = (name: string, s: string | undefined, min: number, max = Infinity) => {
    const n = Number(s);
    if (s === undefined || !/^\d+$/.test(s) || n < min || n > max) usageError(`--${name}: expected an integer in [${min}, ${max}], got '${s ?? ''}'`, 'launch');
    return n;
  };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) break;
    const [name, inline] = a.includes('=') ? [a.slice(2, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a.slice(2), undefined];
    const value = () => inline ?? argv[++i];
    switch (name.replace(/_/g, '-')) {
      case 'nproc-per-node':
        o.nproc = int(name, value(), 1, 1024);
        break;
      case 'nnodes':
        o.nnodes = int(name, value(), 1, 65536);
        break;
      case 'node-rank':
        o.nodeRank = int(name, value(), 0, 65535);
        break;
      case 'master-addr':
        o.masterAddr = value() ?? usageError('--master-addr needs a host', 'launch');
        addrGiven = true;
        break;
      case 'master-port':
        o.masterPort = int(name, value(), 1, 65535);
        break;
      case 'backend': {
        const b = value();
        if (b !== 'gloo' && b !== 'nccl') usageError(`--backend: expected gloo or nccl, got '${b ?? ''}'`, 'launch');
        o.backend = b;
        break;
      }
      case 'timeout': {
        const s = value();
        const n = Number(s);
        if (!s || !(n > 0)) usageError(`--timeout: expected seconds > 0, got '${s ?? ''}'`, 'launch');
        o.timeout = n;
        break;
      }
      case 'threads-per-proc':
        o.threads = int(name, value(), 1, 4096);
        break;
      default:
        usageError(`unknown launch option '${a}'`, 'launch');
    }
  }
  if (o.nodeRank >= o.nnodes) usageError(`--node-rank ${o.nodeRank} must be below --nnodes ${o.nnodes}`, 'launch');
  if (o.nnodes > 1 && !addrGiven) usageError('--master-addr is required with --nnodes > 1 (the host of node 0)', 'launch');
  const target = argv[i];
  if (target === undefined) usageError('launch needs a script or a command to run', 'launch');
  return { o, target, rest: argv.slice(i + 1) };
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

// Writes a child's stream line by line with a prefix (torchrun's "[rank]:"), keeping a partial last line for later.
function prefixed(stream: NodeJS.ReadableStream, out: NodeJS.WritableStream, prefix: string): () => void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) out.write(`${prefix}${l}\n`);
  });
  return () => {
    if (buf) out.write(`${prefix}${buf}\n`);
    buf = '';
  };
}

const signalNumber = (s: NodeJS.Signals) => (constants.signals as Record<string, number>)[s] ?? 1;

/**
 * The launch command. It runs the CLI's other commands by name, so it is given their names by the command table
 * (commands/index.ts), which imports it: importing the table from here would be an import cycle.
 */
export function launchCommand(commandNames: () => string[]): Command {
  return {
    summary: 'run a script or command on several processes (data-parallel training, like torchrun)',
    usage: `${BIN} launch --nproc-per-node N [--nnodes M --node-rank R --master-addr HOST --master-port P] TARGET [ARGS...]`,
    options: {},
    rawArgs: true,
    help: HELP,
    async run(_v, argv) {
      const { o, target, rest } = parseLaunchArgs(argv);
      const names = commandNames().filter((n) => n !== 'launch');
      const isCommand = names.includes(target);
      if (!isCommand && !/\.(m|c)?js$/.test(target)) usageError(`launch runs a .js/.mjs/.cjs script or one of the commands (${names.join(', ')}); got '${target}'`);
      const port = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500);
      const threads = o.threads ?? Math.max(1, Math.floor(availableParallelism() / o.nproc));
      const world = o.nnodes * o.nproc;
      const cmd = isCommand ? [join(PACKAGE_ROOT, 'dist', 'cli.js'), target, ...rest] : [target, ...rest];
      const children: Array<{ rank: number; proc: ChildProcess; done: boolean; flush: Array<() => void> }> = [];
      let failure: { rank: number; code: number; how: string } | null = null;
      let stopping = false;
      let killTimer: NodeJS.Timeout | null = null;

      const stopAll = (sig: NodeJS.Signals) => {
        for (const c of children) if (!c.done) c.proc.kill(sig);
        if (!killTimer) {
          killTimer = setTimeout(() => {
            for (const c of children) if (!c.done) c.proc.kill('SIGKILL');
          }, 10_000);
          killTimer.unref();
        }
      };
      const onSignal = (sig: NodeJS.Signals) => {
        // A second Ctrl-C does not wait for the ranks to finish their step.
        if (stopping) stopAll('SIGKILL');
        stopping = true;
        process.stderr.write(`${BIN} launch: ${sig}: stopping every rank\n`);
        for (const c of children) if (!c.done) c.proc.kill(sig);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      // Ranks are detached: whatever ends the launcher (an uncaught error, process.exit) ends them too.
      const onExit = () => {
        for (const c of children) if (!c.done) c.proc.kill('SIGKILL');
      };
      process.on('exit', onExit);

      const exits: Array<Promise<void>> = [];
      for (let local = 0; local < o.nproc; local++) {
        const rank = o.nodeRank * o.nproc + local;
        const env = {
          ...process.env,
          RANK: String(rank),
          WORLD_SIZE: String(world),
          LOCAL_RANK: String(local),
          LOCAL_WORLD_SIZE: String(o.nproc),
          GROUP_RANK: String(o.nodeRank),
          MASTER_ADDR: o.masterAddr,
          MASTER_PORT: String(port),
          OMP_NUM_THREADS: String(threads),
          TH_DIST_BACKEND: o.backend,
          ...(o.timeout ? { TH_DIST_TIMEOUT: String(o.timeout) } : {}),
        };
        // Each rank in its own process group: Ctrl-C in a terminal signals the launcher's group only, and the launcher
        // passes it on once (a rank that got it twice would quit at once instead of finishing its step).
        const proc = spawn(process.execPath, [...process.execArgv, ...cmd], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        const c = { rank, proc, done: false, flush: [] as Array<() => void> };
        c.flush.push(prefixed(proc.stdout!, process.stdout, `[rank${rank}]: `), prefixed(proc.stderr!, process.stderr, `[rank${rank}]: `));
        children.push(c);
        exits.push(
          new Promise<void>((resolve) => {
            proc.on('error', (e) => {
              process.stderr.write(`${BIN} launch: rank ${rank} could not start: ${e.message}\n`);
              c.done = true;
              if (!failure) failure = { rank, code: 1, how: 'could not start' };
              stopAll('SIGTERM');
              resolve();
            });
            proc.on('close', (code, signal) => {
              c.done = true;
              c.flush.forEach((f) => f());
              const failed = code !== 0;
              if (failed && !failure && !stopping) {
                failure = { rank, code: signal ? 128 + signalNumber(signal) : (code ?? 1), how: signal ? `was killed by ${signal}` : `exited with code ${code}` };
                process.stderr.write(`${BIN} launch: rank ${rank} (pid ${proc.pid}) ${failure.how}; stopping the other ranks\n`);
                stopAll('SIGTERM');
              }
              resolve();
            });
          }),
        );
      }
      await Promise.all(exits);
      if (killTimer) clearTimeout(killTimer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('exit', onExit);
      if (failure) {
        const f = failure as { rank: number; code: number; how: string };
        process.stderr.write(`${BIN} launch: failed: rank ${f.rank} ${f.how} (the first rank to fail)\n`);
        return f.code;
      }
      if (stopping) return 130;
      const codes = children.map((c) => c.proc.exitCode ?? 1);
      return codes.find((x) => x !== 0) ?? 0;
    },
  };
}

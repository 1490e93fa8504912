// What every benchmark row reports about its process, and how a benchmark runs each row in a process of its own
// (a peak RSS is a process's high-water mark: rows sharing a process would report the largest of them).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function status(field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Peak resident memory of this process in MiB (VmHWM on Linux, getrusage's maxrss elsewhere). */
export function peakRssMib() {
  const kb = status('VmHWM') ?? process.resourceUsage().maxRSS;
  return Math.round(kb / 1024);
}

/** The process's OS threads right now (Linux), or null. */
export function osThreads() {
  return status('Threads');
}

/** The fields every row carries: peak RSS, OS threads, and the allocator settings in force. */
export function processFields(info) {
  return {
    peak_rss_mib: peakRssMib(),
    os_threads: osThreads(),
    malloc: info?.malloc
      ? `${info.malloc.source}${info.malloc.mmapThreshold ? ` mmap>=${info.malloc.mmapThreshold}` : ''}${info.malloc.arenaMax ? ` arenas<=${info.malloc.arenaMax}` : ''}${info.malloc.cpuCache ? ` cpu-cache<=${info.malloc.cpuCache.limitBytes / 2 ** 20}MiB` : ''}`
      : undefined,
  };
}

/**
 * Without `--row`, runs `script` once per row name, each in its own process, and returns the JSON lines they printed
 * (already written to stdout); with `--row NAME`, returns NAME for the caller to run that row alone.
 */
export function rowOrSpawn(scriptUrl, rows, extraArgs = []) {
  const i = process.argv.indexOf('--row');
  if (i >= 0) return { row: process.argv[i + 1], lines: null };
  const lines = [];
  for (const row of rows) {
    const r = spawnSync(process.execPath, [fileURLToPath(scriptUrl), ...extraArgs, '--row', row], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) process.exit(r.status ?? 1);
    process.stdout.write(r.stdout);
    for (const l of r.stdout.trim().split('\n')) if (l.startsWith('{')) lines.push(JSON.parse(l));
  }
  return { row: null, lines };
}

/** The peer harness (../shared/peers, or TH_PEERS), or null. */
export function peersDir() {
  for (const p of [process.env.TH_PEERS, resolve(root, '../shared/peers'), resolve(root, '../../shared/peers')]) {
    if (p && existsSync(resolve(p, 'peer_gpt2.py'))) return p;
  }
  return null;
}

/**
 * Runs a peer script (Debian's python3 with python3-torch) the way the peers' README tunes it: passive OpenMP waiting,
 * as this library's compute thread runs. Returns its last JSON line, or null (with the reason on stderr).
 */
export function runPeer(dir, script, args) {
  const r = spawnSync('/usr/bin/python3', [resolve(dir, script), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, NANOGPT_MODEL: resolve(dir, 'nanogpt_model.py'), OMP_WAIT_POLICY: 'PASSIVE' },
  });
  const line = r.stdout?.trim().split('\n').at(-1);
  if (r.status !== 0 || !line?.startsWith('{')) {
    console.error(`the peer ${script} ${args.join(' ')} failed (exit ${r.status})`);
    return null;
  }
  return JSON.parse(line);
}

/**
 * Median wall time (ms) of `n` training steps (trainStep + optimizerStep on `batch`) after one warm-up step, the
 * optimizer configured with `lr` first.
 */
export async function medianStepMs(model, batch, n, lr) {
  await model.configureOptimizer({ lr });
  const step = async () => {
    await model.trainStep(batch);
    await model.optimizerStep(lr);
  };
  await step();
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(n / 2)];
}

// Runs fuzz cases (cases.mjs) in child processes (runner.mjs): batches of cases per child, because a child spends
// about a second loading libtorch; a crash or a hang ends the child, is charged to the case after the last verdict,
// and that case is then replayed alone in a fresh child (does it crash by itself?) before the batch goes on.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { KINDS } from './cases.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');

/** CPU milliseconds a process has used (all its threads), from /proc; null where there is no /proc. */
function cpuMs(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on every Linux Node runs on

/**
 * Runs one child. A case hangs when it has used `caseCpuMs` of CPU (a loop) or `caseWallMs` of wall time (a
 * deadlock) since the previous verdict: CPU time, because on a busy machine (other builds, nice) a case that needs
 * 50 ms of CPU can take a minute of wall time.
 */
function runChild(job, { caseCpuMs, caseWallMs, startWallMs }) {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [join(here, 'runner.mjs'), JSON.stringify(job)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' },
    });
    const verdicts = [];
    let stderr = '';
    let ready = false;
    let hung = false;
    let since = { wall: Date.now(), cpu: 0 };
    const mark = () => {
      since = { wall: Date.now(), cpu: cpuMs(child.pid) ?? 0 };
    };
    const poll = setInterval(() => {
      const cpu = cpuMs(child.pid);
      const wall = Date.now() - since.wall;
      const over = ready ? (cpu !== null && cpu - since.cpu > caseCpuMs) || wall > caseWallMs : wall > startWallMs;
      if (over && !hung) {
        hung = true;
        child.kill('SIGKILL');
      }
    }, 250);
    child.stderr.on('data', (d) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      let o;
      try {
        o = JSON.parse(line);
      } catch {
        return; // something printed by a library: not a verdict
      }
      if (o.ready) ready = true;
      else if (typeof o.i === 'number') verdicts.push(o);
      mark();
    });
    child.on('close', (code, signal) => {
      clearInterval(poll);
      resolveRun({ verdicts, code, signal, hung, stderr });
    });
  });
}

/**
 * Runs `perKind` cases of each kind from `seed`. Returns figures by kind and every problem case with what it takes
 * to reproduce it: `node scripts/fuzz.mjs --kind K --seed S --replay INDEX`.
 */
export async function runFuzz(options) {
  const o = {
    kinds: KINDS,
    seed: 1,
    perKind: 50,
    batch: 100,
    parallel: 2,
    caseCpuMs: 20_000,
    caseWallMs: 600_000,
    startWallMs: 600_000,
    fixtures: resolve(root, 'fixtures'),
    start: 0,
    log: () => {},
    ...options,
  };
  const t0 = performance.now();
  const stats = {};
  for (const k of o.kinds) stats[k] = { cases: 0, ok: 0, refused: 0, codes: {}, problems: [], ms: 0 };
  const queue = [];
  for (const kind of o.kinds) {
    const n = typeof o.perKind === 'number' ? o.perKind : (o.perKind[kind] ?? 0);
    for (let s = o.start; s < o.start + n; s += o.batch) queue.push({ kind, start: s, count: Math.min(o.batch, o.start + n - s) });
  }
  const limits = { caseCpuMs: o.caseCpuMs, caseWallMs: o.caseWallMs, startWallMs: o.startWallMs };
  const job = (kind, start, count) => ({ kind, seed: o.seed, start, count, fixtures: o.fixtures, ...(o.dist ? { dist: o.dist } : {}) });

  const record = (kind, v) => {
    const st = stats[kind];
    st.cases++;
    st.ms += v.ms ?? 0;
    if (v.verdict === 'ok') st.ok++;
    else if (v.verdict === 'refused') {
      st.refused++;
      st.codes[v.code] = (st.codes[v.code] ?? 0) + 1;
    } else st.problems.push({ kind, seed: o.seed, index: v.i, ...v });
  };

  const worker = async () => {
    while (queue.length) {
      const { kind, start, count } = queue.shift();
      const r = await runChild(job(kind, start, count), limits);
      for (const v of r.verdicts) record(kind, v);
      const next = start + r.verdicts.length;
      if (next >= start + count) continue;
      if (r.verdicts.length === 0 && !r.hung && r.code !== 0 && r.signal === null && /Cannot find module|SyntaxError|ERR_MODULE/.test(r.stderr)) {
        throw new Error(`fuzz runner failed to start: ${r.stderr.slice(-1000)}`);
      }
      // The case after the last verdict crashed the child or hung: replay it alone to see whether it does so by itself.
      const alone = await runChild(job(kind, next, 1), limits);
      const verdict = r.hung ? 'hang' : 'crash';
      const aloneVerdict = alone.verdicts[0] ? alone.verdicts[0].verdict : alone.hung ? 'hang' : 'crash';
      record(kind, {
        i: next,
        verdict,
        what: alone.verdicts[0]?.what ?? null,
        signal: r.signal,
        exitCode: r.code,
        stderr: r.stderr.slice(-1500),
        alone: aloneVerdict,
      });
      o.log(`${kind} #${next}: ${verdict} (${r.signal ?? `exit ${r.code}`}); alone: ${aloneVerdict}`);
      if (next + 1 < start + count) queue.unshift({ kind, start: next + 1, count: start + count - next - 1 });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.parallel) }, worker));
  for (const k of o.kinds) stats[k].problems.sort((a, b) => a.index - b.index);
  return { seed: o.seed, seconds: (performance.now() - t0) / 1000, kinds: stats };
}

/** Problems by category across kinds (crash, hang, uncoded, internal, unbounded, generator). */
export function summarize(result) {
  const out = { cases: 0, ok: 0, refused: 0, crash: 0, hang: 0, uncoded: 0, internal: 0, unbounded: 0, generator: 0 };
  for (const st of Object.values(result.kinds)) {
    out.cases += st.cases;
    out.ok += st.ok;
    out.refused += st.refused;
    for (const p of st.problems) out[p.verdict] = (out[p.verdict] ?? 0) + 1;
  }
  return out;
}

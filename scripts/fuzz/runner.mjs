// One fuzz child process: runs cases [start, start + count) of one kind through the public API (dist/) in order and
// prints one JSON verdict line per case on stdout. A crash (a signal, or an exit without the case's verdict) or a
// hang is seen by the parent (harness.mjs) as the case after the last verdict.
//   node scripts/fuzz/runner.mjs '{"kind":"config","seed":1,"start":0,"count":50,"fixtures":"fixtures"}'
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { makeCase, runCase } from './cases.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const job = JSON.parse(process.argv[2]);
const api = await import(job.dist ?? join(root, 'dist', 'index.js'));
const documented = new Set(api.ERROR_CODES);
const work = join(job.tmp ?? tmpdir(), `th-fuzz-${process.pid}`);
mkdirSync(work, { recursive: true });
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** The verdict on one error: refused (documented code), internal (ERR_TH_INTERNAL), uncoded, or unbounded message. */
function classify(e) {
  const message = e instanceof Error ? e.message : String(e);
  const base = { name: e?.constructor?.name ?? typeof e, code: e?.code ?? null, message: message.slice(0, 400), messageLength: message.length };
  if (!(e instanceof api.TransformerHeadsError) || !documented.has(e.code)) return { verdict: 'uncoded', ...base };
  if (e.code === 'ERR_TH_INTERNAL') return { verdict: 'internal', ...base };
  // An untrusted value echoed whole into a message (a 100 kB string, a whole file) is a defect of its own.
  if (message.length > 2000) return { verdict: 'unbounded', ...base };
  return { verdict: 'refused', ...base };
}

const RANK = { ok: 0, refused: 1, unbounded: 2, internal: 3, uncoded: 4 };
say({ ready: true, pid: process.pid });
for (let i = job.start; i < job.start + job.count; i++) {
  const dir = join(work, 'case');
  let c;
  try {
    c = makeCase(job.kind, job.seed, i, dir, job.fixtures);
  } catch (e) {
    say({ i, verdict: 'generator', message: String(e?.stack ?? e).slice(0, 400) });
    continue;
  }
  const t0 = performance.now();
  const errors = await runCase(c, api);
  let worst = { verdict: 'ok' };
  for (const e of errors) {
    const v = classify(e);
    if (RANK[v.verdict] > RANK[worst.verdict]) worst = v;
  }
  say({ i, what: c.what.slice(0, 200), ms: Math.round(performance.now() - t0), ...worst });
}
rmSync(work, { recursive: true, force: true });

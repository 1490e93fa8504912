#!/usr/bin/env node
// The long fuzz run: mutated safetensors headers, config.json, head folders, PEFT adapter folders, tokenizer.json
// and TorchScript archives, each loaded through the public API in child processes (scripts/fuzz/). Prints the
// figures by kind and every case that crashed, hung, or was refused without a documented error code, with the
// command that replays it. Needs the built addon and dist/ (bash scripts/setup.sh) and the fixtures.
//
//   node scripts/fuzz.mjs                        3,400 cases of each of the 6 kinds (20,400), seed 1
//   node scripts/fuzz.mjs --cases 200 --seed 7 --kinds config,heads --parallel 2
//   node scripts/fuzz.mjs --kind torchscript --seed 1 --replay 123 [--keep DIR]   one case, its files kept in DIR
//   node scripts/fuzz.mjs --json                 one JSON object at the end instead of the table
//   --dist PATH: the package entry to load (default dist/index.js), e.g. a copy, so that rebuilding does not change a
//   run in progress (set TRANSFORMER_HEADS_BINDING to the addon then)
// Exit code 1 when any case crashed, hung, or gave an uncoded, internal or unbounded error.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { KINDS, makeCase } from './fuzz/cases.mjs';
import { runFuzz, summarize } from './fuzz/harness.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: v } = parseArgs({
  options: {
    cases: { type: 'string' },
    seed: { type: 'string' },
    kinds: { type: 'string' },
    kind: { type: 'string' },
    parallel: { type: 'string' },
    batch: { type: 'string' },
    replay: { type: 'string' },
    keep: { type: 'string' },
    fixtures: { type: 'string' },
    dist: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const seed = Number(v.seed ?? 1);
const fixtures = resolve(v.fixtures ?? process.env.TH_FIXTURES ?? join(root, 'fixtures'));

if (v.replay !== undefined) {
  const kind = v.kind ?? '';
  if (!KINDS.includes(kind)) throw new Error(`--replay needs --kind (${KINDS.join(', ')})`);
  const index = Number(v.replay);
  if (v.keep) {
    const c = makeCase(kind, seed, index, resolve(v.keep), fixtures);
    console.log(`case ${kind} seed ${seed} #${index}: ${c.what}\nfiles in ${resolve(v.keep)}`);
  }
  const r = await runFuzz({ kinds: [kind], seed, perKind: 1, start: index, parallel: 1, fixtures });
  const st = r.kinds[kind];
  console.log(JSON.stringify(st.problems[0] ?? { index, verdict: st.ok ? 'ok' : 'refused', codes: st.codes }, null, 2));
  process.exit(st.problems.length ? 1 : 0);
}

const kinds = v.kinds ? v.kinds.split(',') : KINDS;
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`unknown kind '${k}' (${KINDS.join(', ')})`);
const perKind = Number(v.cases ?? 3400);
const result = await runFuzz({
  kinds,
  seed,
  perKind,
  parallel: Number(v.parallel ?? 2),
  batch: Number(v.batch ?? 200),
  fixtures,
  log: (m) => process.stderr.write(`fuzz: ${m}\n`),
  dist: resolve(v.dist ?? join(root, 'dist', 'index.js')),
});
const sum = summarize(result);
if (v.json) {
  console.log(JSON.stringify({ ...result, summary: sum }));
} else {
  const cols = ['kind', 'cases', 'ok', 'refused', 'crash', 'hang', 'uncoded', 'internal', 'unbounded', 'ms/case'];
  const rows = kinds.map((k) => {
    const st = result.kinds[k];
    const n = (verdict) => st.problems.filter((p) => p.verdict === verdict).length;
    return [k, st.cases, st.ok, st.refused, n('crash'), n('hang'), n('uncoded'), n('internal'), n('unbounded'), (st.ms / Math.max(1, st.cases)).toFixed(1)];
  });
  rows.push(['total', sum.cases, sum.ok, sum.refused, sum.crash, sum.hang, sum.uncoded, sum.internal, sum.unbounded, '']);
  const w = cols.map((c, i) => Math.max(c.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((x, i) => (i === 0 ? String(x).padEnd(w[i]) : String(x).padStart(w[i]))).join('  ');
  console.log(`fuzz: seed ${seed}, ${sum.cases} cases in ${result.seconds.toFixed(0)} s`);
  console.log(line(cols));
  for (const r of rows) console.log(line(r));
  console.log('\nrefusals by code:');
  for (const k of kinds) console.log(`  ${k.padEnd(12)} ${Object.entries(result.kinds[k].codes).map(([c, n]) => `${c} ${n}`).join(', ')}`);
  const problems = kinds.flatMap((k) => result.kinds[k].problems);
  if (problems.length) {
    console.log(`\n${problems.length} problem case(s):`);
    for (const p of problems) {
      console.log(`  ${p.kind} #${p.index} ${p.verdict}${p.alone ? ` (alone: ${p.alone})` : ''}: ${p.what ?? ''}`);
      console.log(`    ${p.name ?? ''} ${p.code ?? ''} ${(p.message ?? p.stderr ?? '').split('\n').slice(-3).join(' | ').slice(0, 300)}`);
      console.log(`    replay: node scripts/fuzz.mjs --kind ${p.kind} --seed ${seed} --replay ${p.index} --keep /tmp/fuzz-case`);
    }
  }
}
process.exit(sum.crash + sum.hang + sum.uncoded + sum.internal + sum.unbounded > 0 ? 1 : 0);

#!/usr/bin/env node
// Checks the layering of ts/ (docs/ARCHITECTURE.md): every folder is a layer that imports only from the layers below
// it, and only through their face (the folder's index.ts); nothing imports its own layer's face; and no import cycle
// exists between files (type-only imports count: a cycle of types is still a knot in the design).
// Prints every offending import and exits 1; exits 0 when the tree is clean.
//
//   node scripts/check_layers.mjs [TS_DIR]     (default: ts/ of this repository)
//
// A new folder under ts/ must be added to LAYERS below, at its place in the order.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';

/** Bottom to top. A layer may import from the layers before it in this list, never from those after it. */
export const LAYERS = ['native', 'io', 'report', 'model', 'train', 'cli'];
/** Files directly in ts/ below every layer (imported as themselves: they have no face). */
export const BASE = ['errors.ts'];
/** Files directly in ts/ above every layer: the public API and the package's bin. */
export const ENTRIES = ['index.ts', 'cli.ts'];

const ORDER = ['(base)', ...LAYERS, '(entry)'].join(' < ');

function listTs(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listTs(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Where a file sits: its layer name and rank, or why it sits nowhere. */
function place(rel) {
  const parts = rel.split('/');
  if (parts.length === 1) {
    if (BASE.includes(rel)) return { layer: '(base)', rank: 0 };
    if (ENTRIES.includes(rel)) return { layer: '(entry)', rank: LAYERS.length + 1 };
    return { error: `ts/${rel} sits directly in ts/ but is neither a base file (${BASE.join(', ')}) nor an entry (${ENTRIES.join(', ')}); move it into a layer folder` };
  }
  const i = LAYERS.indexOf(parts[0]);
  if (i < 0) return { error: `ts/${parts[0]}/ is not a known layer (${LAYERS.join(', ')}); add it to LAYERS in scripts/check_layers.mjs at its place in the order` };
  return { layer: parts[0], rank: i + 1 };
}

/** Relative imports of one file: { spec, target (relative to tsDir, or null), line }. */
function importsOf(file, tsDir) {
  const text = readFileSync(file, 'utf8');
  const info = ts.preProcessFile(text, true, true);
  const out = [];
  for (const ref of info.importedFiles) {
    const spec = ref.fileName;
    if (!spec.startsWith('.')) continue; // node: built-ins and packages
    const line = text.slice(0, ref.pos).split('\n').length;
    const abs = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
    let target = null;
    try {
      if (statSync(abs).isFile()) target = relative(tsDir, abs).split(sep).join('/');
    } catch {
      /* unresolved */
    }
    out.push({ spec, target, line });
  }
  return out;
}

/** Every cycle's files in order (one per strongly connected component with more than one file or a self-import). */
function cycles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? new Set()).has(v)) out.push(oneCycle(graph, new Set(comp), comp.sort()[0]));
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

/** A concrete path start -> ... -> start inside one strongly connected component (breadth-first, shortest). */
function oneCycle(graph, comp, start) {
  const prev = new Map();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!comp.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = prev.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** All problems of the tree under tsDir, as printable lines. */
export function checkLayers(tsDir) {
  const problems = [];
  const graph = new Map();
  for (const file of listTs(tsDir)) {
    const rel = relative(tsDir, file).split(sep).join('/');
    const from = place(rel);
    graph.set(rel, new Set());
    if (from.error) {
      problems.push(from.error);
      continue;
    }
    for (const imp of importsOf(file, tsDir)) {
      const where = `ts/${rel}:${imp.line}: import '${imp.spec}'`;
      if (imp.target === null) {
        problems.push(`${where} does not resolve to a .ts file under ts/`);
        continue;
      }
      graph.get(rel).add(imp.target);
      const to = place(imp.target);
      if (to.error) continue; // reported for the file itself
      if (to.rank > from.rank) {
        problems.push(`${where} reaches up from layer ${from.layer} to layer ${to.layer} (ts/${imp.target}); a layer imports only from the layers below it: ${ORDER}`);
      } else if (to.layer === from.layer && from.layer !== '(base)' && from.layer !== '(entry)' && imp.target === `${to.layer}/index.ts` && rel !== imp.target) {
        problems.push(`${where} goes through its own layer's face (ts/${imp.target}); inside a layer, import the file itself`);
      } else if (to.layer !== from.layer && to.layer !== '(base)' && imp.target !== `${to.layer}/index.ts`) {
        problems.push(`${where} reaches into layer ${to.layer} (ts/${imp.target}); import from its face, ts/${to.layer}/index.ts, and export the name there`);
      }
    }
  }
  for (const c of cycles(graph)) problems.push(`import cycle: ${c.map((f) => `ts/${f}`).join(' -> ')}`);
  return problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const tsDir = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'ts'));
  const problems = checkLayers(tsDir);
  if (problems.length) {
    process.stderr.write(`check_layers: ${problems.length} problem${problems.length > 1 ? 's' : ''} in ${tsDir} (layers, bottom to top: ${ORDER})\n`);
    for (const p of problems) process.stderr.write(`  ${p}\n`);
    process.exit(1);
  }
  process.stdout.write(`check_layers: ${tsDir} is layered (${ORDER}), no import cycles\n`);
}

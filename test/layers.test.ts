// scripts/check_layers.mjs: the real ts/ tree passes; small trees with a layer reaching up, an import past a face,
// a self-import through the own face, a file outside any layer and an import cycle each fail with the offending import.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { root } from './helpers.js';

const script = join(root, 'scripts', 'check_layers.mjs');
const dirs: string[] = [];

/** The script as scripts/test.sh runs it (a child process: exit code and printed problems). */
function run(tsDir?: string) {
  const r = spawnSync(process.execPath, [script, ...(tsDir ? [tsDir] : [])], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The same check in this process (loading TypeScript once instead of per tree). */
async function check(tsDir: string) {
  const { checkLayers } = (await import(script)) as { checkLayers(dir: string): string[] };
  const problems = checkLayers(tsDir);
  return { code: problems.length ? 1 : 0, err: problems.join('\n') };
}

/** A ts/ tree from { 'layer/file.ts': 'source' }, with every layer given a face. */
function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'th-layers-'));
  dirs.push(dir);
  const all: Record<string, string> = { 'errors.ts': 'export class E extends Error {}\n', 'index.ts': '', ...files };
  for (const [rel, text] of Object.entries(all)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('check_layers', () => {
  it('passes on ts/', () => {
    const r = run();
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/no import cycles/);
  });

  it('passes on a clean tree: downward imports through faces, sibling imports inside a layer, the base from anywhere', async () => {
    const dir = tree({
      'native/index.ts': "export { raw } from './raw.js';\n",
      'native/raw.ts': "import { E } from '../errors.js';\nexport const raw = E;\n",
      'model/index.ts': "export { m } from './m.js';\n",
      'model/m.ts': "import type { raw } from '../native/index.js';\nimport { h } from './sub/h.js';\nexport const m = h;\n",
      'model/sub/h.ts': "export const h = 1;\n",
    });
    const r = await check(dir);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  it('fails on a layer importing from a layer above it, even for a type, and names the import', async () => {
    const dir = tree({
      'report/index.ts': "export { chart } from './plot.js';\n",
      'report/plot.ts': "import type { LogEntry } from '../train/index.js';\nexport function chart(l: LogEntry[]) { return l; }\n",
      'train/index.ts': 'export interface LogEntry { step: number }\n',
    });
    const r = run(dir);
    expect(r.code).toBe(1);
    expect(r.err).toContain("ts/report/plot.ts:1: import '../train/index.js' reaches up from layer report to layer train");
  });

  it.each([
    {
      what: "an import that bypasses a lower layer's face, and one through its own face",
      files: {
        'io/index.ts': "export { w } from './atomic.js';\n",
        'io/atomic.ts': 'export const w = 1;\n',
        'io/tok.ts': "import { w } from './index.js';\nexport const t = w;\n",
        'model/index.ts': '',
        'model/headed.ts': "import { w } from '../io/atomic.js';\nexport const h = w;\n",
      },
      messages: [
        "ts/model/headed.ts:1: import '../io/atomic.js' reaches into layer io (ts/io/atomic.ts); import from its face, ts/io/index.ts",
        "ts/io/tok.ts:1: import './index.js' goes through its own layer's face",
      ],
    },
    {
      what: 'an import cycle inside a layer',
      files: {
        'native/index.ts': '',
        'native/binding.ts': "import type { Step } from './generate.js';\nexport interface B { s: Step }\n",
        'native/generate.ts': "import type { T } from './tensor.js';\nexport interface Step { t: T }\n",
        'native/tensor.ts': "import type { B } from './binding.js';\nexport interface T { b: B }\n",
      },
      messages: ['import cycle: ts/native/binding.ts -> ts/native/generate.ts -> ts/native/tensor.ts -> ts/native/binding.ts'],
    },
    {
      what: 'a folder that is not a layer, and a loose file in ts/',
      files: { 'hub/download.ts': 'export const d = 1;\n', 'util.ts': 'export const u = 1;\n' },
      messages: ['ts/hub/ is not a known layer', 'ts/util.ts sits directly in ts/'],
    },
  ])('fails on $what, naming it', async ({ files, messages }) => {
    const r = await check(tree(files));
    expect(r.code).toBe(1);
    for (const m of messages) expect(r.err).toContain(m);
  });
});

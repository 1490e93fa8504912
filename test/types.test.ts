// Type-level tests: tsc --noEmit over test/types/ (the public type names, test/types/api.ts).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { root } from './helpers.js';

const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function compile(project: string) {
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', project], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('types', () => {
  it('test/types/ compiles: every public type name is still exported', () => {
    const r = compile(join(root, 'test', 'types', 'tsconfig.json'));
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
  });
});

// The spam example end to end on real data (SpamAssassin from npm) with its default model, the embedded one
// (scripts/test.sh builds it first): the probe must beat the majority class on a held-out split.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { expect, it } from 'vitest';

import { root } from './helpers.js';

it('text classification (spam vs ham) beats the majority-class baseline on held-out emails', () => {
  const out = execFileSync(process.execPath, [join(root, 'examples/text-classification.mjs'), '--examples=1000', '--epochs=5'], { cwd: root, encoding: 'utf8' });
  const res = JSON.parse(out.trim().split('\n').at(-1)!);
  console.log(out.trim().split('\n').at(-1));
  expect(res.test_examples).toBe(200);
  expect(res.test_accuracy).toBeGreaterThan(res.majority_baseline + 0.03);
});

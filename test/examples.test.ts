// The spam example end to end on real data (SpamAssassin from npm): the probe must beat the majority class on a
// held-out split. It runs on the GPT-2-shaped random-weight fixture: a frozen last-token probe reads spam from the
// context that random attention mixes in, while the small embedded model (unigram-level after its 5 minutes of
// pretraining) carries almost no context at the last token and stays at the majority class (README, Examples).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { expect, it } from 'vitest';

import { fixture, root } from './helpers.js';

it('text classification (spam vs ham) beats the majority-class baseline on held-out emails', () => {
  const out = execFileSync(process.execPath, [join(root, 'examples/text-classification.mjs'), fixture('random-gpt2-bpe.pt'), '--examples=1000', '--epochs=5'], { cwd: root, encoding: 'utf8' });
  const res = JSON.parse(out.trim().split('\n').at(-1)!);
  console.log(out.trim().split('\n').at(-1));
  expect(res.test_examples).toBe(200);
  expect(res.test_accuracy).toBeGreaterThan(res.majority_baseline + 0.03);
});

// The examples end to end on the embedded model (models/tiny-llama-en), each against its own baseline printed in
// its final JSON line. Sizes are bounded so the file stays within a few minutes on 2 cores.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { expect, it } from 'vitest';

import { root } from './helpers.js';

function run(example: string, args: string[]): Record<string, number> {
  const out = execFileSync(process.execPath, [join(root, 'examples', example), ...args], { cwd: root, encoding: 'utf8' });
  const last = out.trim().split('\n').at(-1)!;
  console.log(last);
  return JSON.parse(last) as Record<string, number>;
}

it('linear probe: part of speech at block 2 beats the most-frequent-tag-per-word baseline on held-out documents', () => {
  const res = run('linear-probe.mjs', ['--train-words=8000', '--test-words=4000', '--epochs=10']);
  expect(res.test_words).toBeGreaterThan(3900);
  expect(res.test_accuracy).toBeGreaterThan(res.majority_baseline + 0.5);
  // Measured at these sizes: 0.894 against 0.848 (+0.046, seed 42). The baseline's standard error on 4000 words is
  // about 0.006; the demo's seeds 1-3 at the larger sizes moved the block-2 accuracy by under 0.01. +0.02 leaves
  // room for that spread and for thread-count differences while still failing a probe that only memorises words.
  expect(res.test_accuracy).toBeGreaterThan(res.most_frequent_tag_baseline + 0.02);
}, 300_000);

it('text classification: a probe on the last token tells Moby-Dick sentences from Brown ones, on held-out documents', () => {
  const res = run('text-classification.mjs', ['--epochs=10']);
  expect(res.test_examples).toBe(108);
  // Measured with split seeds 1, 2, 3: 0.824 / 0.880 / 0.861 against majorities 0.537 / 0.565 / 0.546 (+0.287..+0.315).
  // With 108 test sentences the standard error of an accuracy near 0.85 is about 0.035; +0.15 is over 3 of them
  // below the smallest measured margin.
  expect(res.test_accuracy).toBeGreaterThan(res.majority_baseline + 0.15);
}, 300_000);

it('generation with heads: a "link seen" probe beats its majority baseline and reads a link in the prompt while generating', () => {
  const res = run('generate-with-heads.mjs', []) as unknown as Record<string, number> & { mean_p_link: number[] };
  // Measured: 0.979 against a 0.943 majority (most positions come before any link); about 10,000 test positions,
  // so +0.015 is several standard errors and under half the measured margin.
  expect(res.probe_test_accuracy).toBeGreaterThan(res.majority_baseline + 0.015);
  // While generating after 'For more information visit http://www.' the probe says a link was seen (measured mean
  // 0.68), after 'Dear friend, I am writing to you because' it says not (0.000).
  expect(res.mean_p_link[0]!).toBeGreaterThan(0.5);
  expect(res.mean_p_link[1]!).toBeLessThan(0.1);
}, 400_000);

it('multi-probe: "link seen" is read from the blocks, not the embeddings, above its majority baseline', () => {
  const res = run('multi-probe.mjs', ['--examples=800', '--epochs=4']) as unknown as {
    accuracy_by_layer: Record<string, { link_seen: number; spam: number }>;
    majority_baseline: { link_seen: number; spam: number };
  };
  const link = Object.values(res.accuracy_by_layer).map((l) => l.link_seen);
  // Measured (one run): 0.883 (embeddings), 0.955, 0.971, 0.973, 0.979 against a 0.9425 majority. Whether a link came
  // earlier is context, which the embeddings cannot see: they stay below the majority, the last block is +0.036 over
  // it; +0.015 is under half of that on about 10,000 test positions. Spam (read at the last token) stays below its
  // majority on this model (README, Examples) and is not asserted.
  expect(Math.max(...link)).toBeGreaterThan(res.majority_baseline.link_seen + 0.015);
  expect(link.at(-1)!).toBeGreaterThan(link[0]! + 0.05);
}, 300_000);

it('saving and loading: the reloaded heads predict bit-identically on the embedded model', () => {
  const res = run('saving-and-loading.mjs', []) as unknown as { reloaded_predictions_bit_identical: boolean; saved_files: Record<string, number> };
  expect(res.reloaded_predictions_bit_identical).toBe(true);
  expect(Object.keys(res.saved_files).sort()).toEqual(expect.arrayContaining(['head_configs.json', 'link_seen.safetensors', 'spam.safetensors']));
}, 300_000);

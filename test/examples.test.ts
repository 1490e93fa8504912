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

it('multi-probe: "link seen" is read from the blocks, not the embeddings, and the source of a sentence best from the top, both above their majority baselines', () => {
  const res = run('multi-probe.mjs', ['--examples=800', '--epochs=4']) as unknown as {
    accuracy_by_layer: Record<string, { link_seen: number; source: number }>;
    majority_baseline: { link_seen: number; source: number };
    test_sentences: number;
  };
  const link = Object.values(res.accuracy_by_layer).map((l) => l.link_seen);
  const source = Object.values(res.accuracy_by_layer).map((l) => l.source);
  // Measured (one run): link seen 0.909 (embeddings), 0.956, 0.970, 0.972, 0.978 against a 0.9425 majority. Whether a
  // link came earlier is context, which the embeddings cannot see: they stay below the majority, the last block is
  // +0.036 over it; +0.015 is under half of that on about 10,000 test positions.
  expect(Math.max(...link)).toBeGreaterThan(res.majority_baseline.link_seen + 0.015);
  expect(link.at(-1)!).toBeGreaterThan(link[0]! + 0.05);
  // Source (Moby-Dick or Brown, last token): 0.630 (embeddings), 0.769, 0.769, 0.815, 0.861 against 0.509 on 108 test
  // sentences (standard error about 0.035): the top is +0.35 over the majority and +0.23 over the embeddings.
  expect(res.test_sentences).toBe(108);
  expect(source.at(-1)!).toBeGreaterThan(res.majority_baseline.source + 0.2);
  expect(source.at(-1)!).toBeGreaterThan(source[0]! + 0.1);
}, 400_000);

it('QLoRA text classification: an NF4+DQ backbone with LoRA adapters beats the majority class and the frozen probe on held-out emails', () => {
  const res = run('qlora-text-classification.mjs', ['--examples=600', '--epochs=2']) as unknown as Record<string, number> & {
    'linear probe (frozen fp32)': { test_accuracy: number };
    'QLoRA (NF4+DQ base, LoRA r=8 + head)': { test_accuracy: number; quantized_bits_per_weight: number };
    reloaded_predictions_identical: boolean;
  };
  const qlora = res['QLoRA (NF4+DQ base, LoRA r=8 + head)'];
  // Measured: QLoRA 0.883, frozen probe 0.825, majority 0.775 on 120 test emails (standard error about 0.03): +0.05
  // over the majority and +0.02 over the probe leave about two standard errors of the measured margins.
  expect(qlora.test_accuracy).toBeGreaterThan(res.majority_baseline + 0.05);
  expect(qlora.test_accuracy).toBeGreaterThan(res['linear probe (frozen fp32)'].test_accuracy + 0.02);
  // NF4 codes (4 bits) + double-quantized block scales: 4.128 bits per quantized weight
  expect(qlora.quantized_bits_per_weight).toBeCloseTo(4.128, 2);
  expect(res.reloaded_predictions_identical).toBe(true);
}, 400_000);

it('full finetuning: every weight trained with the head beats the majority class and the frozen probe on held-out emails', () => {
  const res = run('full-finetune.mjs', ['--examples=600', '--epochs=2']) as unknown as Record<string, number> & {
    'linear probe (frozen)': { test_accuracy: number };
    'full finetuning': { test_accuracy: number; trainable_parameters: number };
  };
  const full = res['full finetuning'];
  // Measured: full finetuning 0.950, frozen probe 0.825, majority 0.775 on 120 test emails (standard error about
  // 0.02-0.03): +0.08 and +0.04 are under half the measured margins.
  expect(full.trainable_parameters).toBeGreaterThan(3_800_000);
  expect(full.test_accuracy).toBeGreaterThan(res.majority_baseline + 0.08);
  expect(full.test_accuracy).toBeGreaterThan(res['linear probe (frozen)'].test_accuracy + 0.04);
}, 400_000);

it('joint multi-task: spam, word valence and the LM loss all improve together with QLoRA, each past its baseline', () => {
  const res = run('joint-multitask.mjs', []) as unknown as {
    before: { spam_accuracy: number; valence_r2: number; lm_loss: number };
    after: { spam_accuracy: number; valence_r2: number; lm_loss: number };
    spam_majority_baseline: number;
    valence_sentiment_words: number;
  };
  // Measured (800 emails, 2 epochs): spam 0.875 vs 0.675 majority (160 test emails); word valence R² 0.169 on 2,484
  // test words (138 in the lexicon), where the mean predictor has R² 0 by definition; LM loss 6.41 -> 4.33 nats.
  // The thresholds are about half of each measured gain.
  expect(res.valence_sentiment_words).toBeGreaterThan(100);
  expect(res.after.spam_accuracy).toBeGreaterThan(res.spam_majority_baseline + 0.1);
  expect(res.after.valence_r2).toBeGreaterThan(0.05);
  expect(res.after.lm_loss).toBeLessThan(res.before.lm_loss - 1);
}, 400_000);

it('saving and loading: the reloaded heads predict bit-identically on the embedded model', () => {
  const res = run('saving-and-loading.mjs', []) as unknown as { reloaded_predictions_bit_identical: boolean; saved_files: Record<string, number> };
  expect(res.reloaded_predictions_bit_identical).toBe(true);
  expect(Object.keys(res.saved_files).sort()).toEqual(expect.arrayContaining(['head_configs.json', 'link_seen.safetensors', 'spam.safetensors']));
}, 300_000);

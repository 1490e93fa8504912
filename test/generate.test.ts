// Generation through the public API: the KV cache against full recomputation, the first step against the TorchScript
// archive's own forward, per-step head outputs against a forward of the finished sequences, sampling, streaming
// (text deltas, abort, event loop), stop strings and the error paths.
import { existsSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createHeadedQLoRA, loadHeaded, loadTokenizer, loadTorchScript, runtimeInfo, type HeadedModel, type Tensor } from '../ts/index.js';
import { expectRel, fixture, FORWARD_RTOL as RTOL, relDiff } from './helpers.js';

function lmHeads(hidden: number, vocab: number) {
  return [
    { name: 'sentiment', inSize: hidden, numOutputs: 2, layerHook: 1, outputBias: true },
    { name: 'lm_head', inSize: hidden, numOutputs: vocab, isCausalLm: true },
  ];
}

// Ragged prompts: the library left-pads them.
const prompts = [[5, 9, 17, 3, 22], [40, 2], [7, 7, 8, 61, 12, 30, 4]];

describe('generate', () => {
  let gpt2: HeadedModel;
  let bpe: HeadedModel;
  beforeAll(async () => {
    gpt2 = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: lmHeads(64, 101) });
    bpe = await loadHeaded(fixture('random-gpt2-bpe.pt'), { heads: lmHeads(256, 50257) });
  });
  afterAll(() => {
    gpt2.dispose();
    bpe.dispose();
  });

  it('greedy with the KV cache gives the tokens and logits of full recomputation (GPT-2 and Llama, left-padded batch)', async () => {
    const llama = await loadHeaded(fixture('tiny-llama.pt'), { heads: lmHeads(64, 101) });
    for (const model of [gpt2, llama]) {
      const cached = await model.generate(prompts, { maxNewTokens: 10, eosTokenId: null, outputLogits: true });
      const full = await model.generate(prompts, { maxNewTokens: 10, eosTokenId: null, outputLogits: true, useCache: false });
      expect(cached.sequences.shape).toEqual([3, 17]);
      expect(Array.from(cached.sequences.data)).toEqual(Array.from(full.sequences.data));
      expectRel(relDiff(cached.logits!, full.logits!), RTOL, 'logits');
      expectRel(relDiff(cached.headOutputs.sentiment!, full.headOutputs.sentiment!), RTOL, 'head outputs');
      expect(cached.finishReasons).toEqual(['length', 'length', 'length']);
    }
    llama.dispose();
  });

  it("the first step's logits are the TorchScript archive's own forward at the last prompt token", async () => {
    const out = await gpt2.generate(prompts, { maxNewTokens: 1, eosTokenId: null, outputLogits: true });
    const jit = await loadTorchScript(fixture('tiny-gpt2.pt'));
    const { ids, mask } = leftPad(prompts, 0);
    const { logits } = await jit.forward({ input_ids: ids, attention_mask: mask });
    const [B, T, V] = logits.shape as [number, number, number];
    const last = new Float32Array(B * V);
    for (let b = 0; b < B; ++b) last.set(logits.data.subarray((b * T + T - 1) * V, (b * T + T) * V), b * V);
    expectRel(relDiff(out.logits!, { data: last, shape: [B, 1, V] }), RTOL, 'logits');
    jit.dispose();
  });

  it('head outputs per step equal a forward of the whole sequence at those positions', async () => {
    const out = await gpt2.generate(prompts, { maxNewTokens: 6, eosTokenId: null });
    const { sentiment } = out.headOutputs;
    expect(sentiment!.shape).toEqual([3, 6, 2]);
    expect(out.logprobs.shape).toEqual([3, 6]);
    const [B, W] = out.sequences.shape;
    const fwd = await gpt2.forward(
      { input_ids: { data: out.sequences.data, shape: [B, W] }, attention_mask: { data: out.attentionMask.data, shape: [B, W] } },
      { returnPreds: true },
    );
    const preds = fwd.predsByHead!.get('sentiment')!;
    // Step s reads position promptLength - 1 + s.
    const at = sliceSteps(preds, out.promptLength - 1, 6);
    expectRel(relDiff(sentiment!, at), RTOL, 'head outputs');
    // And the log-probabilities are those of the chosen tokens under the full forward's LM logits.
    const lm = fwd.predsByHead!.get('lm_head')!;
    const V = lm.shape[2]!;
    for (let b = 0; b < B; ++b) {
      for (let s = 0; s < 6; ++s) {
        const row = lm.data.subarray((b * W + out.promptLength - 1 + s) * V, (b * W + out.promptLength + s) * V);
        const tok = out.sequences.data[b * W + out.promptLength + s]!;
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((acc, x) => acc + Math.exp(x - max), 0));
        // logit - logsumexp: the errors scale with the logits' magnitude (as the logits' own), not with the difference.
        const scale = Math.max(Math.abs(lse), ...row.map(Math.abs));
        expectRel(Math.abs(out.logprobs.data[b * 6 + s]! - (row[tok]! - lse)) / scale, RTOL, `logprob [${b}, ${s}]`);
      }
    }
  });

  it('sampling: a seed reproduces, topK 1 and temperature 0 equal greedy', async () => {
    const greedy = await gpt2.generate(prompts, { maxNewTokens: 8, eosTokenId: null });
    const opts = { maxNewTokens: 8, eosTokenId: null, doSample: true, seed: 7, topP: 0.95, temperature: 0.9 };
    const a = await gpt2.generate(prompts, opts);
    const b = await gpt2.generate(prompts, opts);
    expect(Array.from(a.sequences.data)).toEqual(Array.from(b.sequences.data));
    const c = await gpt2.generate(prompts, { ...opts, seed: 8 });
    expect(Array.from(c.sequences.data)).not.toEqual(Array.from(a.sequences.data));
    const k1 = await gpt2.generate(prompts, { ...opts, topK: 1 });
    expect(Array.from(k1.sequences.data)).toEqual(Array.from(greedy.sequences.data));
    const t0 = await gpt2.generate(prompts, { ...opts, temperature: 0 });
    expect(Array.from(t0.sequences.data)).toEqual(Array.from(greedy.sequences.data));
  });

  it('streams text deltas that add up to the decoded tokens, with the tokenizer the model carries', async () => {
    const tok = await loadTokenizer(fixture('random-gpt2-bpe.pt'));
    const prompt = tok.encode('The movie was').ids;
    let text = '';
    let steps = 0;
    for await (const step of bpe.generateStream(prompt, { maxNewTokens: 12, eosTokenId: null })) {
      expect(step.step).toBe(steps++);
      expect(step.headOutputs.sentiment!.shape).toEqual([1, 2]);
      text += step.text;
    }
    expect(steps).toBe(12);
    const out = await bpe.generate('The movie was', { maxNewTokens: 12, eosTokenId: null });
    const gen = Array.from(out.sequences.data.subarray(out.promptLength));
    expect(out.texts![0]).toBe(tok.decode(gen));
    expect(text).toBe(out.texts![0]);
  });

  it('a stop string ends the row (finishReason stop) and eos ends it too', async () => {
    const free = await bpe.generate('Hello there', { maxNewTokens: 10, eosTokenId: null });
    const tok = await loadTokenizer(fixture('random-gpt2-bpe.pt'));
    const gen = Array.from(free.sequences.data.subarray(free.promptLength));
    const upTo4 = tok.decode(gen.slice(0, 4));
    const stop = upTo4.slice(-2);
    const stopped = await bpe.generate('Hello there', { maxNewTokens: 10, eosTokenId: null, stopSequences: [stop] });
    expect(stopped.finishReasons).toEqual(['stop']);
    expect(stopped.steps).toBeLessThanOrEqual(4);
    expect(stopped.texts![0]!.includes(stop)).toBe(true);
    // eos: make the third generated token the eos id; the row stops there and its text excludes it.
    const eos = gen[2]!;
    const ended = await bpe.generate('Hello there', { maxNewTokens: 10, eosTokenId: eos });
    expect(ended.finishReasons).toEqual(['eos']);
    expect(ended.steps).toBeLessThanOrEqual(3);
    expect(ended.sequences.data[ended.sequences.data.length - 1]).toBe(eos);
  });

  it('an AbortSignal stops generation between steps; leaving the loop early is fine', async () => {
    const ac = new AbortController();
    let seen = 0;
    await expect(
      (async () => {
        for await (const _ of gpt2.generateStream(prompts, { maxNewTokens: 20, eosTokenId: null, signal: ac.signal })) {
          if (++seen === 2) ac.abort();
        }
      })(),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toBe(2);
    let n = 0;
    for await (const _ of gpt2.generateStream(prompts, { maxNewTokens: 20, eosTokenId: null })) if (++n === 3) break;
    // The model is still usable afterwards.
    const out = await gpt2.generate([1, 2, 3], { maxNewTokens: 2, eosTokenId: null });
    expect(out.steps).toBe(2);
  });

  it('the event loop keeps turning while a generation runs', async () => {
    let turns = 0;
    let running = true;
    const tick = () => {
      turns++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const out = await bpe.generate([464, 3807, 373], { maxNewTokens: 16, eosTokenId: null });
    running = false;
    expect(out.steps).toBe(16);
    expect(turns).toBeGreaterThan(16);
  });

  it('runs decoding-sized products on BLIS when it is installed (the cache-vs-recompute tests check its numbers)', async () => {
    const before = (await runtimeInfo()).smallGemm;
    const installed = ['/usr/lib/x86_64-linux-gnu/libblis.so.4', '/usr/lib/aarch64-linux-gnu/libblis.so.4'].some((p) => existsSync(p));
    if (!installed || process.env.TRANSFORMER_HEADS_BLIS === '0') {
      expect(before.library).toBeNull();
      expect(before.reason).toMatch(/not found|disabled/);
      return;
    }
    expect(before.library).toMatch(/libblis/);
    expect(before.maxRows).toBe(8);
    await gpt2.generate([[5, 9, 17], [40, 2, 8]], { maxNewTokens: 3, eosTokenId: null });
    // 2 decoding steps x (4 blocks x 4 projections + the LM head); the prompt (6 rows) too
    expect((await runtimeInfo()).smallGemm.calls - before.calls).toBe(3 * 17);
  });

  it('works on a 4-bit QLoRA model (cache equals recompute)', async () => {
    const q = await createHeadedQLoRA(fixture('tiny-llama.pt'), { heads: lmHeads(64, 101), quantization: { bits: 4, doubleQuant: true }, lora: { r: 4 } });
    const a = await q.generate(prompts, { maxNewTokens: 6, eosTokenId: null, outputLogits: true });
    const b = await q.generate(prompts, { maxNewTokens: 6, eosTokenId: null, outputLogits: true, useCache: false });
    expect(Array.from(a.sequences.data)).toEqual(Array.from(b.sequences.data));
    expectRel(relDiff(a.logits!, b.logits!), RTOL, 'logits');
    q.dispose();
  });

  it('refuses bad input with errors that say what to fix', async () => {
    await expect(gpt2.generate([], {})).rejects.toMatchObject({ code: 'ERR_TH_SHAPE', message: expect.stringContaining('empty') });
    await expect(gpt2.generate([1, 2], { maxNewTokens: 0 })).rejects.toMatchObject({ code: 'ERR_TH_CONFIG', message: expect.stringContaining('maxNewTokens') });
    await expect(gpt2.generate([1, 2], { topP: 0 })).rejects.toMatchObject({ code: 'ERR_TH_CONFIG', message: expect.stringContaining('topP') });
    await expect(gpt2.generate([1, 500])).rejects.toMatchObject({ code: 'ERR_TH_SHAPE', message: expect.stringContaining('vocabulary') });
    await expect(gpt2.generate('text')).rejects.toMatchObject({ code: 'ERR_TH_CONFIG', message: expect.stringContaining('tokenizer') });
    await expect(gpt2.generate([1], { maxNewTokens: 1.5 })).rejects.toMatchObject({ code: 'ERR_TH_ARG' });
    await expect(gpt2.generate([1], { maxNewTokens: 200 })).rejects.toMatchObject({ code: 'ERR_TH_SHAPE', message: expect.stringContaining('n_positions') });
    const probe = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'p', inSize: 64, numOutputs: 2 }] });
    await expect(probe.generate([1, 2])).rejects.toMatchObject({ code: 'ERR_TH_CONFIG', message: expect.stringContaining('causal-LM head') });
    probe.dispose();
  });
});

function leftPad(rows: number[][], pad: number): { ids: { data: Int32Array; shape: number[] }; mask: { data: Int32Array; shape: number[] } } {
  const T = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(rows.length * T).fill(pad);
  const mask = new Int32Array(rows.length * T);
  rows.forEach((r, b) => {
    ids.set(r, b * T + T - r.length);
    mask.fill(1, b * T + T - r.length, (b + 1) * T);
  });
  return { ids: { data: ids, shape: [rows.length, T] }, mask: { data: mask, shape: [rows.length, T] } };
}

/** [B, T, C] -> [B, n, C] at positions from..from+n-1. */
function sliceSteps(t: Tensor, from: number, n: number): Tensor {
  const [B, T, C] = t.shape as [number, number, number];
  const out = new Float32Array(B * n * C);
  for (let b = 0; b < B; ++b) out.set(t.data.subarray((b * T + from) * C, (b * T + from + n) * C), b * n * C);
  return { data: out, shape: [B, n, C] };
}

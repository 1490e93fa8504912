// Moving between the Python transformer-heads library and this one (issue 16): positions on padded batches against
// the eager Python forward called with position_ids=None (scripts/export_torchscript.py's sequential.* references),
// a head folder written as Python writes it with its outputs computed in Python (scripts/make_parity_fixtures.py),
// and the Python entry points (outputHiddenStates, getSomePreds, evaluateHeadWise's epochs, findAllLinearNames).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  createHeadedQLoRA,
  DataCollatorWithPadding,
  Dataset,
  evaluateHeadWise,
  findAllLinearNames,
  getSomePreds,
  loadBackbone,
  loadHeaded,
  loadLoraWithHeads,
  loadTokenizer,
  type Backbone,
  type HeadConfig,
} from '../ts/index.js';
import { expectRel, F32_EPS, fixture, FORWARD_RTOL, readReference, rejection, relDiff, tinyFixtures, type RefTensor } from './helpers.js';

// The bound. The native forward and the eager Python module run the same float32 operations in other
// kernels (measured against the TorchScript archive: 2.1e-6, FORWARD_RTOL's note); 1e-5 of the magnitude leaves 5x.
const RTOL = 1e-5;

const asBatch = (ids: RefTensor, mask: RefTensor) => ({
  input_ids: { data: ids.data as BigInt64Array, shape: ids.shape },
  attention_mask: { data: mask.data as BigInt64Array, shape: mask.shape },
});

describe.each(tinyFixtures)("%s with positions: 'sequential'", (name) => {
  let seq: Backbone;
  let def: Backbone;
  beforeAll(async () => {
    seq = await loadBackbone(fixture(`${name}.pt`), { positions: 'sequential' });
    def = await loadBackbone(fixture(`${name}.pt`));
  });
  afterAll(() => {
    seq.dispose();
    def.dispose();
  });

  it('equals the Python forward with position_ids=None at every position (full, right- and left-padded rows)', async () => {
    expect(seq.positions).toBe('sequential');
    expect(def.positions).toBe('from-mask');
    const ref = readReference(fixture(`${name}.ref.safetensors`));
    const batch = asBatch(ref.input_ids!, ref.attention_mask!);
    const L = seq.numLayers;
    const out = await seq.forward(batch, { layers: Array.from({ length: L + 1 }, (_, i) => i), logits: true });
    for (let i = 0; i <= L; i++) expectRel(relDiff(out.hiddenStates.get(i)!, ref[`sequential.hidden_states.${i}`]!), RTOL, `hidden_states[${i}]`);
    expectRel(relDiff(out.logits!, ref['sequential.logits']!), RTOL, 'logits');
  });

  it('the default (from-mask) keeps its own values: equal on real tokens of right padding, different on left padding', async () => {
    const ref = readReference(fixture(`${name}.ref.safetensors`));
    const batch = asBatch(ref.input_ids!, ref.attention_mask!);
    const L = seq.numLayers;
    const a = (await def.hiddenStates(batch, { layers: [L] })).get(L)!;
    const b = (await seq.hiddenStates(batch, { layers: [L] })).get(L)!;
    const [B, T, H] = a.shape as [number, number, number];
    const rowDiff = (r: number, pads = false) => {
      let d = 0;
      for (let t = 0; t < T; t++) {
        if ((ref.attention_mask!.data[r * T + t] === 0n) !== pads) continue;
        for (let h = 0; h < H; h++) d = Math.max(d, Math.abs(a.data[(r * T + t) * H + h]! - b.data[(r * T + t) * H + h]!));
      }
      return d;
    };
    expect(B).toBe(3);
    expect(rowDiff(0)).toBeLessThan(1e-4); // no padding: identical positions
    expect(rowDiff(1)).toBeLessThan(1e-4); // right padding: real tokens at 0..n-1 either way
    if (name.includes('gpt2')) {
      expect(rowDiff(2)).toBeGreaterThan(1e-3); // left padding: real tokens start at 4 in Python (learned absolute positions)
    } else {
      // Rotary attention depends on position differences only: shifting a row's positions leaves its real tokens as
      // they were (up to rounding: measured 4e-6); the left pads themselves differ.
      expect(rowDiff(2)).toBeLessThan(1e-4);
      expect(rowDiff(2, true)).toBeGreaterThan(1e-3);
    }
  });

  it('a position_ids column overrides the mode (0..T-1 given explicitly to the default model)', async () => {
    const ref = readReference(fixture(`${name}.ref.safetensors`));
    const [B, T] = ref.input_ids!.shape as [number, number];
    const positions = Array.from({ length: B }, () => Array.from({ length: T }, (_, t) => t));
    const L = def.numLayers;
    const out = await def.hiddenStates({ ...asBatch(ref.input_ids!, ref.attention_mask!), position_ids: positions }, { layers: [L] });
    // Real tokens only: the rows that see only padding follow the model's own rule (it is 'from-mask' here).
    expectRel(relDiff(out.get(L)!, ref[`sequential.hidden_states.${L}`]!, ref.attention_mask!.data), RTOL, 'final hidden state');
  });
});

describe('position_ids and positions are checked', () => {
  it('refuses bad values with coded errors', async () => {
    const m = await loadBackbone(fixture('tiny-gpt2.pt'));
    expect((await rejection(m.hiddenStates({ input_ids: [[1, 2, 3]], position_ids: [[0, 1]] }))).code).toBe('ERR_TH_SHAPE');
    expect((await rejection(m.hiddenStates({ input_ids: [[1, 2, 3]], position_ids: [[0, -1, 2]] }))).code).toBe('ERR_TH_SHAPE');
    const e = await rejection(m.hiddenStates({ input_ids: [[1, 2, 3]], position_ids: [[0, 1, 64]] }));
    expect(e.message).toMatch(/position 64 .*64 learned positions/);
    m.dispose();
    expect((await rejection(loadBackbone(fixture('tiny-gpt2.pt'), { positions: 'left' as never }))).code).toBe('ERR_TH_ARG');
  });

  it("sequential positions are refused past GPT-2's learned positions even when the mask would fit", async () => {
    const m = await loadBackbone(fixture('tiny-gpt2.pt'), { positions: 'sequential' });
    const T = 65; // n_positions is 64; 60 pads on the left leave 5 real tokens (positions 0..4 from the mask)
    const batch = { input_ids: [Array(T).fill(1)], attention_mask: [[...Array(60).fill(0), ...Array(5).fill(1)]] };
    expect((await rejection(m.hiddenStates(batch, { layers: [1] }))).message).toMatch(/position 64/);
    m.dispose();
  });
});

describe.each(['gpt2', 'llama'])('a head folder written by Python (%s)', (arch) => {
  const modelPath = () => fixture(`tiny-${arch}.pt`);
  const folder = () => fixture(`parity-${arch}`);

  it("loads num_outputs: null (one output) and gives Python's outputs on right- and left-padded batches", async () => {
    const model = await loadHeaded(modelPath(), { headFolder: folder(), positions: 'sequential', onlyInference: true });
    expect(model.positions).toBe('sequential');
    expect(model.heads.find((h) => h.name === 'probe')!.numOutputs).toBeNull();
    const exp = readReference(fixture(`parity-${arch}/expected.safetensors`));
    for (const side of ['right', 'left']) {
      const batch = asBatch(exp[`${side}.input_ids`]!, exp[`${side}.attention_mask`]!);
      const out = await model.forward(batch, { returnPreds: true });
      for (const head of ['probe', 'seq']) {
        const got = out.predsByHead!.get(head)!;
        expect(got.shape).toEqual(exp[`${side}.${head}`]!.shape);
        expectRel(relDiff(got, exp[`${side}.${head}`]!), RTOL, `${side}-padded ${head}`);
      }
      expect(out.predsByHead!.get('probe')!.shape[2]).toBe(1);
    }
    model.dispose();
  });

  it('without the option, left-padded outputs differ (the option is what makes them match)', async () => {
    const model = await loadHeaded(modelPath(), { headFolder: folder(), onlyInference: true });
    const exp = readReference(fixture(`parity-${arch}/expected.safetensors`));
    const out = await model.forward(asBatch(exp['left.input_ids']!, exp['left.attention_mask']!), { returnPreds: true });
    // GPT-2: every real token differs (learned absolute positions). Llama: rotary attention sees position differences
    // only, so real tokens agree and the difference is at the left pads (which an ignorePads: false head reads).
    const mask = arch === 'gpt2' ? exp['left.attention_mask']!.data : undefined;
    expect(relDiff(out.predsByHead!.get('probe')!, exp['left.probe']!, mask)).toBeGreaterThan(1e-3);
    model.dispose();
  });
});

describe('sequential positions on every path of a HeadedModel', () => {
  const heads: HeadConfig[] = [
    { name: 'tok', inSize: 64, numOutputs: 3, layerHook: 2 },
    { name: 'reg', inSize: 64, numOutputs: 1, layerHook: -1, isRegression: true, lossFct: 'mse', predForSequence: true },
  ];
  const batch = {
    input_ids: [[0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]],
    attention_mask: [[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]],
    tok: [[-100, -100, -100, 1, 2, 0, 1], [0, 1, 2, 0, 1, 2, 0]],
    reg: [0.5, -1.5],
  };

  it('forward, outputHiddenStates, hooked hidden states, training steps and evaluation all use 0..T-1', async () => {
    const bb = await loadBackbone(fixture('tiny-gpt2.pt'), { positions: 'sequential' });
    const ref = await bb.hiddenStates(batch);
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads, positions: 'sequential', seed: 3 });
    const plain = await m.forward(batch, { returnPreds: true });
    const withHidden = await m.forward(batch, { returnPreds: true, outputHiddenStates: true });
    expect(withHidden.hiddenStates).toHaveLength(bb.numLayers + 1);
    withHidden.hiddenStates.forEach((h, i) => expect(relDiff(h, ref.get(i)!)).toBe(0));
    expect(withHidden.loss).toBe(plain.loss);
    for (const h of ['tok', 'reg']) expect(relDiff(withHidden.predsByHead!.get(h)!, plain.predsByHead!.get(h)!)).toBe(0);
    // The activation cache is filled from hookedHiddenStates.
    const hooked = await m.hookedHiddenStates(batch);
    for (const [layer, t] of hooked) expect(relDiff(t, ref.get(layer)!)).toBe(0);
    // A training step (frozen trunk, no dropout) computes the loss of the same forward.
    const step = await m.trainStep(batch);
    expectRel(Math.abs(step.loss - plain.loss) / Math.abs(plain.loss), 8 * 2 ** -23, 'training-step loss');
    // Evaluation: the default model gives another loss on this left-padded row.
    const d = await loadHeaded(fixture('tiny-gpt2.pt'), { heads, seed: 3 });
    expect(Math.abs((await d.forward(batch)).loss - plain.loss)).toBeGreaterThan(1e-4);
    for (const x of [bb, m, d]) x.dispose();
  });

  it('gradient checkpointing recomputes the same padded rows (LoRA step, left padding)', async () => {
    const weights = [];
    for (const gradientCheckpointing of [false, true]) {
      const m = await createHeadedQLoRA(fixture('tiny-llama.pt'), {
        heads: [{ name: 'tok', inSize: 64, numOutputs: 3, layerHook: -1 }],
        lora: { r: 4, alpha: 8 },
        positions: 'sequential',
        gradientCheckpointing,
        seed: 5,
      });
      await m.configureOptimizer({ lr: 1e-2 });
      await m.trainStep({ input_ids: batch.input_ids, attention_mask: batch.attention_mask, tok: batch.tok });
      await m.optimizerStep(1e-2);
      weights.push(await m.loraWeights());
      m.dispose();
    }
    // The recompute runs the same kernels on the same inputs (lora.test.ts measured bit-identical); 8 eps allows a
    // reordered gradient accumulation.
    weights[0]!.forEach((t, i) => expectRel(relDiff(weights[1]![i]!, t), 8 * 2 ** -23, t.key));
  });

  it("generation keeps deriving positions from the mask: 'sequential' generates the same tokens", async () => {
    const lm = [{ name: 'lm_head', inSize: 64, numOutputs: 101, isCausalLm: true }] as HeadConfig[];
    const a = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: lm, positions: 'sequential' });
    const b = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: lm });
    const prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13]];
    for (const useCache of [true, false]) {
      const x = await a.generate(prompts, { maxNewTokens: 6, eosTokenId: 100, useCache });
      const y = await b.generate(prompts, { maxNewTokens: 6, eosTokenId: 100, useCache });
      expect(Array.from(x.sequences.data)).toEqual(Array.from(y.sequences.data));
    }
    a.dispose();
    b.dispose();
  });
});

describe('Python entry points', () => {
  it('numOutputs: null is one output for a single-layer head, refused for an MLP head, and still required when absent', async () => {
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'p', inSize: 64, numOutputs: null, lossFct: 'mse', isRegression: true }] });
    const out = await m.forward({ input_ids: [[1, 2, 3]], p: [[0.1, 0.2, 0.3]] }, { returnPreds: true });
    expect(out.predsByHead!.get('p')!.shape).toEqual([1, 3, 1]);
    m.dispose();
    const mlp = await rejection(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'p', inSize: 64, numOutputs: null, numLayers: 2, hiddenSize: 8 }] }));
    expect(mlp.message).toMatch(/numOutputs must be a number for an MLP head/);
    const absent = await rejection(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'p', inSize: 64 } as never] }));
    expect(absent.message).toMatch(/numOutputs is required/);
  });

  it('findAllLinearNames gives what Python picks', () => {
    expect(findAllLinearNames(32, 'gpt2')).toEqual(['lm_head']);
    expect(findAllLinearNames(4, 'gpt2')).toEqual(['c_attn', 'c_proj', 'c_fc']);
    expect(findAllLinearNames(8, { modelType: 'llama' })).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    expect(findAllLinearNames(32, { config: { modelType: 'mistral' } })).toContain('lm_head');
    expect(() => findAllLinearNames(16 as never, 'gpt2')).toThrow(/bits/);
  });

  it("LoRA on 'lm_head' (Python's find_all_linear_names target) adds s * B A h to the pretrained LM head's logits", async () => {
    const H = 64, V = 101, r = 4, alpha = 8;
    const lm = [{ name: 'lm_head', inSize: H, numOutputs: V, isCausalLm: true }] as HeadConfig[];
    // fullyTrainedHeads: false: only the adapter trains (the tied LM head itself would move the embeddings too).
    const m = await createHeadedQLoRA(fixture('tiny-gpt2.pt'), { heads: lm, seed: 5, fullyTrainedHeads: false, lora: { r, alpha, targetModules: findAllLinearNames(32, 'gpt2') } });
    const ids = [[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]];
    await m.configureOptimizer({ lr: 5e-2 });
    await m.trainStep({ input_ids: ids, lm_head: ids });
    await m.optimizerStep(5e-2);
    const w = await m.loraWeights();
    expect(w.map((t) => t.key)).toEqual(['lm_head.lora_A.weight', 'lm_head.lora_B.weight']); // no block projection
    const [A, B] = [w[0]!, w[1]!];
    expect(A.shape).toEqual([r, H]);
    expect(B.shape).toEqual([V, r]);
    const got = (await m.forward({ input_ids: ids }, { returnPreds: true })).predsByHead!.get('lm_head')!;

    // Reference: the plain model's logits and final hidden state (the frozen backbone is unchanged), plus the adapter
    // term computed here in double: logits + (alpha / r) * (h A^T) B^T, as PEFT's lora.Linear over nn.Linear.
    const bb = await loadBackbone(fixture('tiny-gpt2.pt'));
    const L = bb.numLayers;
    const plain = await bb.forward({ input_ids: ids }, { layers: [L], logits: true });
    const h = plain.hiddenStates.get(L)!.data;
    const want = Float64Array.from(plain.logits!.data);
    const rows = want.length / V;
    let delta = 0;
    for (let i = 0; i < rows; i++) {
      const ah = Array.from({ length: r }, (_, k) => {
        let s = 0;
        for (let j = 0; j < H; j++) s += A.data[k * H + j]! * h[i * H + j]!;
        return s;
      });
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += B.data[v * r + k]! * ah[k]!;
        want[i * V + v]! += (alpha / r) * s;
        delta = Math.max(delta, Math.abs((alpha / r) * s));
      }
    }
    const ref = { data: want, shape: [2, 5, V] };
    // The adapter must matter for this check to mean anything: one step at lr 5e-2 moves the logits visibly.
    expect(delta / Math.max(...Array.from(want, Math.abs))).toBeGreaterThan(1e-3);
    expectRel(relDiff(got, ref), FORWARD_RTOL, 'lm_head logits with the adapter');

    // Saved as PEFT saves it (base_model.model.lm_head.lora_*), reloaded with the same outputs.
    const dir = mkdtempSync(join(tmpdir(), 'th-lmhead-'));
    await m.save(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg.target_modules).toEqual(['lm_head']);
    expect(Object.keys(readReference(join(dir, 'adapter_model.safetensors'))).sort()).toEqual(['base_model.model.lm_head.lora_A.weight', 'base_model.model.lm_head.lora_B.weight']);
    const again = await loadLoraWithHeads(dir);
    const back = (await again.forward({ input_ids: ids }, { returnPreds: true })).predsByHead!.get('lm_head')!;
    expect(relDiff(back, got)).toBe(0);
    // GPT-2's lm_head is the token embedding matrix: folding the adapter in would change the embeddings too.
    const merge = await rejection(m.mergeAndUnload());
    expect(merge.code).toBe('ERR_TH_CONFIG');
    expect(merge.message).toMatch(/tied to its input embeddings/);
    expect(m.lora).not.toBeNull();
    expect(relDiff((await m.forward({ input_ids: ids }, { returnPreds: true })).predsByHead!.get('lm_head')!, got)).toBe(0);
    for (const x of [m, again, bb]) x.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an untied lm_head adapter merges into the LM head; 'lm_head' without a head of that name is refused", async () => {
    const lm = [{ name: 'lm_head', inSize: 64, numOutputs: 101, isCausalLm: true }] as HeadConfig[];
    const m = await createHeadedQLoRA(fixture('tiny-llama.pt'), { heads: lm, seed: 2, lora: { r: 2, alpha: 4, targetModules: ['q_proj', 'lm_head'] } });
    const ids = [[3, 4, 5, 6], [7, 8, 9, 10]];
    await m.configureOptimizer({ lr: 5e-2 });
    await m.trainStep({ input_ids: ids, lm_head: ids });
    await m.optimizerStep(5e-2);
    expect((await m.loraWeights()).map((t) => t.key).filter((k) => k.startsWith('lm_head'))).toEqual(['lm_head.lora_A.weight', 'lm_head.lora_B.weight']);
    const before = (await m.forward({ input_ids: ids }, { returnPreds: true })).predsByHead!.get('lm_head')!;
    await m.mergeAndUnload();
    const merged = (await m.forward({ input_ids: ids }, { returnPreds: true })).predsByHead!.get('lm_head')!;
    // W + s B A rounded once per weight instead of two products added at run time (lora.test.ts's merge bound).
    expectRel(relDiff(merged, before), 64 * F32_EPS, 'merged lm_head logits');
    m.dispose();

    const e = await rejection(
      createHeadedQLoRA(fixture('tiny-gpt2.pt'), { heads: [{ name: 'p', inSize: 64, numOutputs: 2 }], lora: { targetModules: ['c_attn', 'lm_head'] } }),
    );
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/no head named 'lm_head'/);
  });

  it("evaluateHeadWise's epochs and getSomePreds follow Python's loops", async () => {
    const heads: HeadConfig[] = [{ name: 'cls', inSize: 256, numOutputs: 3, predForSequence: true }];
    const m = await loadHeaded(fixture('random-gpt2-bpe.pt'), { heads, seed: 1 });
    const tok = await loadTokenizer(fixture('random-gpt2-bpe.pt'));
    const texts = ['one two', 'three four five', 'six', 'seven eight', 'nine ten eleven twelve', 'a b c', 'd e'];
    const ds = new Dataset(texts.map((t, i) => ({ input_ids: tok.encode(t).ids, cls: i % 3 })));
    const collator = new DataCollatorWithPadding({ input_ids: tok.padTokenId ?? 0, attention_mask: 0 });
    // 7 examples in batches of 2: 4 batches. epochs 0.5: Python stops after batch i once i >= 2, so batches 0..2.
    const perBatch: number[] = [];
    for (let b = 0; b < 4; b++) perBatch.push((await evaluateHeadWise(m, new Dataset(ds.rows.slice(2 * b, 2 * b + 2)), collator, 2)).loss);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    const half = await evaluateHeadWise(m, ds, collator, { batchSize: 2, epochs: 0.5 });
    expect(half.loss).toBeCloseTo(mean(perBatch.slice(0, 3)), 6);
    const all = await evaluateHeadWise(m, ds, collator, 2, 3);
    expect(all.loss).toBeCloseTo(mean(perBatch), 6);
    // getSomePreds: n + 1 examples, the arg-max at the last token, the decoded inputs and the column named like the head.
    const some = await getSomePreds(m, ds, tok, { n: 2 });
    expect(some.inputs).toEqual(texts.slice(0, 3));
    expect(some.groundTruths.cls).toEqual([0, 1, 2]);
    for (let i = 0; i < 3; i++) {
      const out = await m.forward({ input_ids: [ds.rows[i]!.input_ids as number[]] }, { returnPreds: true });
      const p = out.predsByHead!.get('cls')!;
      const T = p.shape[1]!;
      const last = Array.from(p.data.subarray((T - 1) * 3, T * 3));
      expect(some.preds.cls[i]).toBe(last.indexOf(Math.max(...last)));
    }
    const full = await getSomePreds(m, ds, tok, { n: 0, classification: false });
    expect(full.preds.cls).toHaveLength(1);
    expect((full.preds.cls[0] as { shape: number[] }).shape).toEqual([(ds.rows[0]!.input_ids as number[]).length, 3]);
    m.dispose();
  });
});

describe('LLM.int8 through the API', () => {
  it('llmInt8Threshold is checked and changes the 8-bit forward', async () => {
    const heads: HeadConfig[] = [{ name: 'p', inSize: 256, numOutputs: 2, layerHook: -1 }];
    const b = { input_ids: [Array.from({ length: 16 }, (_, t) => (t * 37) % 5000)] };
    const run = async (q: object) => {
      const m = await loadHeaded(fixture('small-gpt2.pt'), { heads, quantization: { bits: 8, ...q } });
      const h = (await m.hookedHiddenStates(b)).get(6)!;
      m.dispose();
      return h;
    };
    const f32 = await loadHeaded(fixture('small-gpt2.pt'), { heads });
    const ref = (await f32.hookedHiddenStates(b)).get(6)!;
    f32.dispose();
    // This model's normalised activations stay below 6 (no outlier at the default); a threshold of 1 makes the
    // decomposition take part of the features, which changes the result.
    const mixed = await run({ llmInt8Threshold: 1 });
    const all8 = await run({ llmInt8Threshold: 0 });
    const dflt = await run({});
    // int8 rows and int8 activations: within a few percent of float32.
    for (const h of [mixed, all8, dflt]) expect(relDiff(h, ref)).toBeLessThan(0.05);
    expect(relDiff(mixed, all8)).toBeGreaterThan(0);
    expect((await rejection(loadHeaded(fixture('small-gpt2.pt'), { heads, quantization: { bits: 8, llmInt8Threshold: -1 } }))).code).toBe('ERR_TH_CONFIG');
  });
});

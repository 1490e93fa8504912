// A diverged run is never reported as a finite loss: NaN and inf losses stay what they are, the Trainer stops with
// ERR_TH_DIVERGED naming the step (or, opt-in, skips and counts such steps), non-finite labels are refused, and a
// head whose every target is ignored still gives 0. Also: head sizes are bounded and heads are built off the event
// loop, and readModelConfig validates config.json exactly as the loader does.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataCollatorWithPadding, Dataset, loadBackbone, loadHeaded, readModelConfig, Trainer, type HeadedModel, type NamedTensor } from '../ts/index.js';
import { fixture, rejection } from './helpers.js';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));

async function nanWeights(m: HeadedModel, head: string): Promise<NamedTensor[]> {
  return (await m.headWeights(head)).map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(Number.NaN) }));
}

function bytesOf(ts: NamedTensor[]): Buffer[] {
  return ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

const texts = [[1, 5, 9, 13], [2, 6, 10], [3, 7, 11, 15, 19], [4, 8]];

describe('non-finite losses', () => {
  let m: HeadedModel;
  beforeAll(async () => {
    m = await loadHeaded(fixture('tiny-gpt2.pt'), {
      heads: [
        { name: 'cls', inSize: 64, numOutputs: 3, predForSequence: true },
        { name: 'reg', inSize: 64, numOutputs: 1, isRegression: true, lossFct: 'mse' },
        { name: 'tok', inSize: 64, numOutputs: 5, ignorePads: false },
      ],
    });
  });
  afterAll(() => m.dispose());

  it('forward with NaN head weights returns NaN, not 0', async () => {
    const saved = await m.headWeights('cls');
    await m.loadHeadWeights('cls', await nanWeights(m, 'cls'));
    try {
      const out = await m.forward({ input_ids: [[1, 2, 3], [4, 5, 6]], cls: [0, 2], reg: [[0, 1, 2], [3, 4, 5]] });
      expect(out.lossByHead.cls).toBeNaN();
      expect(Number.isFinite(out.lossByHead.reg)).toBe(true);
      expect(out.loss).toBeNaN();
      // Every target ignored: exactly 0, even though the predictions are NaN.
      const ignored = await m.forward({ input_ids: [[1, 2, 3], [4, 5, 6]], cls: [-100, -100] });
      expect(ignored.lossByHead.cls).toBe(0);
    } finally {
      await m.loadHeadWeights('cls', saved);
    }
  });

  it('a head whose every target is ignored gives 0; one real target gives its cross-entropy', async () => {
    const all = await m.forward({ input_ids: [[1, 2, 3]], tok: [[-100, -100, -100]] });
    expect(all.lossByHead.tok).toBe(0);
    expect(all.loss).toBe(0);
    const one = await m.forward({ input_ids: [[1, 2, 3]], tok: [[-100, 4, -100]] }, { returnPreds: true });
    // Reference: -log softmax(logits at position 1)[4], from the returned predictions in float64.
    const p = one.predsByHead!.get('tok')!.data.slice(5, 10);
    const lse = Math.log(Array.from(p).reduce((s, x) => s + Math.exp(x), 0));
    expect(Math.abs(one.lossByHead.tok - (lse - p[4]!)) / (lse - p[4]!)).toBeLessThan(1e-5);
  });

  it('non-finite labels are refused with ERR_TH_VALUE naming the column and the first bad index', async () => {
    const ids = { input_ids: [[1, 2, 3]] };
    for (const [bad, shown] of [[Number.POSITIVE_INFINITY, 'Infinity'], [Number.NEGATIVE_INFINITY, '-Infinity'], [Number.NaN, 'NaN'], [1e39, '1e+39']] as const) {
      const e = await rejection(m.forward({ ...ids, reg: [[0, 1, bad]] }));
      expect(e.code).toBe('ERR_TH_VALUE');
      expect(e.message).toContain(`labels 'reg' hold ${shown}`);
      expect(e.message).toContain('at index 2');
    }
    // Finite in float32 but its square is not: refused by the core, naming the head. float32(3e38) is
    // 3.0000000054977558e38 (numpy agrees), printed with 9 significant digits.
    const big = await rejection(m.forward({ ...ids, reg: [[3e38, 0, 0]] }));
    expect(big.code).toBe('ERR_TH_VALUE');
    expect(big.message).toMatch(/labels 'reg' for head 'reg' hold 3\.00000001e\+38 at index 0 .*magnitude at most 1e18/);
    const cls = await rejection(m.forward({ ...ids, cls: [Number.POSITIVE_INFINITY] }));
    expect(cls.code).toBe('ERR_TH_VALUE');
    expect(cls.message).toContain("labels 'cls' hold Infinity at index 0");
  });
});

describe('Trainer on a diverging run', () => {
  it('full finetuning with lr 1e6 stops with ERR_TH_DIVERGED naming the step; weights are those before it', async () => {
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { freezeBaseModel: false, heads: [{ name: 'cls', inSize: 64, numOutputs: 3, predForSequence: true }] });
    try {
      const ds = new Dataset(texts.map((input_ids, i) => ({ input_ids, cls: i % 3 })));
      let before: Buffer[] = bytesOf(await m.headWeights('cls'));
      const losses: number[] = [];
      const t = new Trainer(m, { outputDir: tmp('th-div-'), learningRate: 1e6, maxSteps: 30, perDeviceTrainBatchSize: 2, loggingSteps: 1 }, {
        trainDataset: ds,
        dataCollator: new DataCollatorWithPadding({ input_ids: 0 }),
        callbacks: {
          onStepEnd: async (s) => {
            losses.push(s.loss);
            before = bytesOf(await m.headWeights('cls'));
          },
        },
      });
      const e = await rejection(t.train());
      expect(e.code).toBe('ERR_TH_DIVERGED');
      const step = losses.length + 1;
      expect(e.message).toContain(`training diverged at step ${step} (epoch `);
      expect(e.message).toMatch(/the loss of head 'cls' is (NaN|Infinity)|the gradient norm is (NaN|Infinity)/);
      expect(e.message).toMatch(/Lower the learning rate \(now 1000000\)/);
      // Every step before it was finite and applied; the failed one changed nothing.
      for (const l of losses) expect(Number.isFinite(l)).toBe(true);
      expect(bytesOf(await m.headWeights('cls'))).toEqual(before);
      // No logged loss is a finite stand-in for the failure.
      expect(t.logHistory.filter((x) => 'loss' in x).length).toBe(losses.length);
    } finally {
      m.dispose();
    }
  });

  it('skipNonFiniteSteps skips and counts NaN steps, and stops after maxConsecutiveSkippedSteps in a row', async () => {
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), {
      heads: [
        { name: 'good', inSize: 64, numOutputs: 2, predForSequence: true },
        { name: 'bad', inSize: 64, numOutputs: 2, predForSequence: true },
      ],
    });
    try {
      await m.loadHeadWeights('bad', await nanWeights(m, 'bad'));
      // 'bad' has a real target in rows 0 and 2 only: those steps are NaN, rows 1 and 3 (all ignored) give 0.
      const ds = new Dataset(texts.map((input_ids, i) => ({ input_ids, good: i % 2, bad: i % 2 === 0 ? 1 : -100 })));
      const collator = new DataCollatorWithPadding({ input_ids: 0 });
      const dir = tmp('th-skip-');
      const t = new Trainer(m, { outputDir: dir, skipNonFiniteSteps: true, learningRate: 1e-2, numTrainEpochs: 2, perDeviceTrainBatchSize: 1, loggingSteps: 4, activationCache: false }, {
        trainDataset: ds,
        dataCollator: collator,
      });
      const out = await t.train();
      expect(out.globalStep).toBe(8);
      expect(out.skippedSteps).toBe(4);
      expect(Number.isFinite(out.trainingLoss)).toBe(true);
      expect(out.metrics.train_skipped_steps).toBe(4);
      expect(out.logHistory.filter((x) => 'skipped_steps' in x).map((x) => x.skipped_steps)).toEqual([2, 4]);
      const log = readFileSync(join(dir, 'log_history.jsonl'), 'utf8');
      expect(log).toContain('"skipped_steps":4');
      for (const w of await m.headWeights('good')) expect(w.data.every(Number.isFinite)).toBe(true);

      // Every step NaN: the third skip in a row ends the run.
      const all = new Dataset(texts.map((input_ids) => ({ input_ids, good: 0, bad: 1 })));
      const t2 = new Trainer(m, { outputDir: tmp('th-skip-'), skipNonFiniteSteps: true, maxConsecutiveSkippedSteps: 3, maxSteps: 10, perDeviceTrainBatchSize: 1, activationCache: false }, {
        trainDataset: all,
        dataCollator: collator,
      });
      const e = await rejection(t2.train());
      expect(e.code).toBe('ERR_TH_DIVERGED');
      expect(e.message).toMatch(/training diverged at step 3 \(epoch 0\.75\) after 3 non-finite steps in a row \(maxConsecutiveSkippedSteps 3\): the loss of head 'bad' is NaN/);
    } finally {
      m.dispose();
    }
  });

  it('refuses bad settings', () => {
    const m = { trainStep() {} } as unknown as HeadedModel;
    const data = { dataCollator: new DataCollatorWithPadding({ input_ids: 0 }) };
    expect(() => new Trainer(m, { outputDir: '/tmp/x', maxConsecutiveSkippedSteps: 0 }, data)).toThrow(/maxConsecutiveSkippedSteps/);
    expect(() => new Trainer(m, { outputDir: '/tmp/x', skipNonFiniteSteps: 'yes' as never }, data)).toThrow(/skipNonFiniteSteps/);
  });
});

describe('head sizes', () => {
  it('num_layers 1e6 in head_configs.json is refused quickly with ERR_TH_CONFIG', async () => {
    const dir = tmp('th-heads-');
    writeFileSync(join(dir, 'head_configs.json'), JSON.stringify({ h: { name: 'h', in_size: 64, num_outputs: 2, num_layers: 1e6, hidden_size: 8 } }));
    const t0 = performance.now();
    const e = await rejection(loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir }));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/head 'h': numLayers must be at most 64, got 1000000/);
    const wide = await rejection(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'w', inSize: 64, numOutputs: 2 ** 21 }] }));
    expect(wide.message).toMatch(/numOutputs must be at most 1048576/);
    const many = await rejection(loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'm', inSize: 64, numOutputs: 2, numLayers: 4, hiddenSize: 2 ** 20 }] }));
    expect(many.message).toMatch(/give \d+ parameters, more than the 2147483648 a head may have/);
  });

  it('the event loop keeps turning while heads are built', async () => {
    // 64 layers of 768 x 768: ~38M parameters, long enough to build that a main-thread build would stall the timer
    // for most of the load. Compared with the load's own duration, so a slow machine does not fail it.
    let last = performance.now();
    let maxGap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 2);
    const t0 = performance.now();
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'mlp', inSize: 64, numOutputs: 2, numLayers: 64, hiddenSize: 768 }] });
    const total = performance.now() - t0;
    clearInterval(timer);
    try {
      expect((await m.headWeights('mlp')).length).toBe(64 + 63); // 64 weights, 63 hidden biases
      expect(maxGap).toBeLessThan(total / 2);
    } finally {
      m.dispose();
    }
  });
});

describe('readModelConfig validates as the loader does', () => {
  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['gpt2', 'hf-tiny-gpt2', { n_layer: 1.5, n_embd: 'x', n_head: -3 }, /'n_embd' must be an integer from 1 to 1048576, got "x"/],
    ['llama', 'hf-tiny-llama', { rope_theta: 0 }, /'rope_theta' must be a finite number > 0, got 0/],
    ['llama', 'hf-tiny-llama', { rms_norm_eps: -1 }, /'rms_norm_eps'/],
    ['gpt2', 'hf-tiny-gpt2', { layer_norm_epsilon: -1 }, /'layer_norm_epsilon'/],
    ['gpt2', 'hf-tiny-gpt2', { layer_norm_epsilon: 0 }, /'layer_norm_epsilon'/],
    ['gpt2', 'hf-tiny-gpt2', { layer_norm_epsilon: 1.8e19 }, /'layer_norm_epsilon'/],
    ['mistral', 'hf-tiny-mistral', { sliding_window: '4' }, /'sliding_window' must be/],
    ['mistral', 'hf-tiny-mistral', { sliding_window: { w: 4 } }, /'sliding_window' must be/],
    ['mistral', 'hf-tiny-mistral', { sliding_window: [[[4]]] }, /'sliding_window' must be/],
  ];

  function folder(src: string, patch: Record<string, unknown> | string): string {
    const dir = tmp('th-cfg-');
    const from = fixture(src);
    for (const f of ['model.safetensors', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      try {
        copyFileSync(join(from, f), join(dir, f));
      } catch {
        // not every fixture has every file
      }
    }
    const cfg = typeof patch === 'string' ? patch : JSON.stringify({ ...JSON.parse(readFileSync(join(from, 'config.json'), 'utf8')), ...patch });
    writeFileSync(join(dir, 'config.json'), cfg);
    return dir;
  }

  it.each(cases)('%s %s %j', async (_arch, src, patch, message) => {
    const dir = folder(src, patch);
    for (const load of [readModelConfig, loadBackbone]) {
      const e = await rejection(load(dir));
      expect(e.code).toBe('ERR_TH_CONFIG');
      expect(e.message).toMatch(message);
    }
  });

  it('a config that is not an object, or has no model_type', async () => {
    for (const text of ['[[[]]]', JSON.stringify({ n_layer: 1.5, n_embd: 'x', n_head: -3 })]) {
      const dir = folder('hf-tiny-gpt2', text);
      for (const load of [readModelConfig, loadBackbone]) {
        const e = await rejection(load(dir));
        expect(e.code).toBe('ERR_TH_CONFIG');
        expect(e.message).toMatch(/config/);
      }
    }
  });

  it('gives the normalized fields of a valid config', async () => {
    const c = await readModelConfig(fixture('hf-tiny-llama'));
    expect(c).toMatchObject({ modelType: 'llama', hiddenSize: 64, numLayers: 4, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 16, intermediateSize: 160, eosTokenId: 2, padTokenId: null });
    expect(c.raw.rope_theta).toBe(10000);
    const g = await readModelConfig(fixture('tiny-gpt2.pt'));
    expect(g.modelType).toBe('gpt2');
    expect(g.tieWordEmbeddings).toBe(true);
  });
});


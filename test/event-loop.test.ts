// The event loop stays free: every call that touches a tensor runs on the compute thread, so a 10 ms interval timer
// keeps firing on time while the library loads a model, runs forwards, training steps, generation, save and load, and
// merges LoRA adapters. And calls that used to be synchronous are queued in call order, like every other call.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { describe, expect, it } from 'vitest';

import { createHeadedQLoRA, loadHeaded, loadLoraWithHeads, runtimeInfo, setNumThreads, TransformerHeadsError } from '../ts/index.js';
import { fixture } from './helpers.js';

/** A 10 ms interval timer that records how late each tick fires (its lag), until stopped. */
function lagMonitor(): { stop: () => { maxLag: number; ticks: number } } {
  const period = 10;
  let last = performance.now();
  let maxLag = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - period);
    last = now;
    ticks++;
  }, period);
  return {
    stop: () => {
      clearInterval(timer);
      return { maxLag, ticks };
    },
  };
}

async function measured<T>(op: () => Promise<T>): Promise<{ result: T; maxLag: number; ticks: number }> {
  const m = lagMonitor();
  const result = await op();
  return { result, ...m.stop() };
}

/** The timer's worst lag over `ms` while `threads` worker threads spin (the CPU load of an intra-op team). */
async function contendedBaseline(threads: number, ms: number): Promise<number> {
  const code = `const end = Date.now() + ${ms}; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1); require('node:worker_threads').parentPort.postMessage(x);`;
  const workers = Array.from({ length: threads }, () => new Worker(code, { eval: true }));
  const done = Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  const m = lagMonitor();
  await done;
  const { maxLag } = m.stop();
  await Promise.all(workers.map((w) => w.terminate()));
  return maxLag;
}

// small-gpt2: 6 layers, 256 wide. A batch of 8 x 128 tokens: a forward takes 100-400 ms on 2 cores, so a forward on
// the main thread would show as a lag of that size.
const heads = [
  { name: 'cls', inSize: 256, numOutputs: 2, predForSequence: true },
  { name: 'lm_head', inSize: 256, numOutputs: 5000, isCausalLm: true },
];
const ids = Array.from({ length: 8 }, (_, b) => Array.from({ length: 128 }, (_, t) => (b * 131 + t * 17) % 5000));
const batch = { input_ids: ids, cls: [0, 1, 0, 1, 1, 0, 1, 0] };

describe('event loop', () => {
  it('lags under 50 ms (beyond the machine\'s own timer jitter) through load, forward, training, generation, save, load and merge', async () => {
    // ---- First call: loading the addon and libtorch. ----
    // The dlopen of libtorch (1-5 s) happens when the binding is first required, on the main thread today; moving it
    // to a worker is the installation work's loader. When it lands, measure this first call too (lagMonitor around
    // `await runtimeInfo()` here, same bound). Until then it runs before the measurements.
    await runtimeInfo();

    // The bound: 50 ms (the target) plus the timer's own worst lag with no native work but the same CPU
    // contention, measured here, in this process, right before: as many threads as the compute thread's intra-op team
    // spin in worker threads while the timer runs. On a 2-core machine the compute team takes both cores and the OS
    // delays the main thread by itself (tens of ms when other processes are busy too); that is scheduling, not a
    // block of ours. The baseline is capped at 150 ms so that a machine too loaded to measure anything cannot excuse
    // a real block: every call measured here would lag the timer by its whole duration (0.3-3 s on 2 cores) if it ran
    // on the main thread. On a quiet CI machine the baseline is a few ms and the bound about 55-70 ms.
    const { numThreads } = await runtimeInfo();
    const baseline = Math.min(await contendedBaseline(numThreads, 1500), 150);
    const bound = 50 + baseline;
    const lags: Record<string, number> = {};
    const check = (what: string, r: { maxLag: number; ticks: number }) => {
      lags[what] = Math.round(r.maxLag);
    };

    const info = await measured(() => runtimeInfo());
    check('runtimeInfo', info);
    check('setNumThreads', await measured(() => setNumThreads(info.result.numThreads)));

    const load = await measured(() => loadHeaded(fixture('small-gpt2.pt'), { heads, seed: 1 }));
    check('loadHeaded', load);
    const model = load.result;
    check('forward', await measured(() => model.forward(batch, { returnPreds: true })));
    check('configureOptimizer', await measured(() => model.configureOptimizer({ lr: 1e-3 })));
    check('trainStep', await measured(() => model.trainStep(batch)));
    check('headGradients', await measured(() => model.headGradients('cls')));
    check('backboneGradNorm', await measured(() => model.backboneGradNorm()));
    check('optimizerStep', await measured(() => model.optimizerStep(1e-3)));
    check('generate', await measured(() => model.generate(ids.slice(0, 8).map((r) => r.slice(0, 16)), { maxNewTokens: 8, eosTokenId: null })));
    const dir = mkdtempSync(join(tmpdir(), 'th-loop-'));
    check('save', await measured(() => model.save(dir)));
    const w = await measured(() => model.headWeights('cls'));
    check('headWeights', w);
    check('loadHeadWeights', await measured(() => model.loadHeadWeights('cls', w.result)));
    const reload = await measured(() => loadHeaded(fixture('small-gpt2.pt'), { headFolder: dir }));
    check('loadHeaded(headFolder)', reload);
    reload.result.dispose();
    model.dispose();

    const lora = await measured(() => createHeadedQLoRA(fixture('small-gpt2.pt'), { heads: [heads[0]!], seed: 2, lora: { r: 8, alpha: 16 } }));
    check('createHeadedQLoRA', lora);
    const m = lora.result;
    await m.configureOptimizer({ lr: 1e-2 });
    check('trainStep (LoRA)', await measured(() => m.trainStep(batch)));
    check('optimizerStep (LoRA)', await measured(() => m.optimizerStep(1e-2)));
    const adir = mkdtempSync(join(tmpdir(), 'th-loop-lora-'));
    check('save (LoRA)', await measured(() => m.save(adir)));
    check('loraWeights', await measured(() => m.loraWeights()));
    const again = await measured(() => loadLoraWithHeads(adir));
    check('loadLoraWithHeads', again);
    again.result.dispose();
    check('mergeAndUnload', await measured(() => m.mergeAndUnload()));
    check('saveBackbone', await measured(() => m.saveBackbone(join(adir, 'merged'))));
    m.dispose();
    const report = `event-loop lag (ms), baseline ${baseline.toFixed(1)}, bound ${bound.toFixed(1)}: ${JSON.stringify(lags)}`;
    console.log(report);
    for (const [what, lag] of Object.entries(lags)) expect(lag, `${what}: ${report}`).toBeLessThan(bound);
  }, 300_000);
});

describe('calls that were synchronous', () => {
  it('queue in call order with the rest and reject with ERR_TH_DISPOSED after dispose', async () => {
    const m = await createHeadedQLoRA(fixture('tiny-gpt2.pt'), { heads: [{ name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true }], seed: 5, lora: { r: 4, alpha: 8 } });
    const b = { input_ids: [[5, 6, 7, 8], [9, 10, 11, 12]], cls: [1, 0] };
    // None of these is awaited before the next is made: each must see the effect of the ones made before it.
    const head0 = m.headWeights('cls');
    const lora0 = m.loraWeights();
    const configured = m.configureOptimizer({ lr: 5e-2 });
    const step = m.trainStep(b);
    const grads = m.headGradients('cls');
    const norm = m.optimizerStep(5e-2);
    const head1 = m.headWeights('cls');
    const gradsAfter = m.headGradients('cls');
    const restored = m.loadHeadWeights('cls', await head0); // awaited input, queued behind the step
    const head2 = m.headWeights('cls');
    const loraRestored = m.loadLoraWeights(await lora0);
    const lora2 = m.loraWeights();
    await Promise.all([configured, step, restored, loraRestored]);
    const same = (a: Float32Array, c: Float32Array) => a.length === c.length && a.every((v, i) => Object.is(v, c[i]));
    expect((await grads).some((t) => t.data.some((v) => v !== 0))).toBe(true); // the step's gradients
    expect((await gradsAfter).every((t) => t.data.every((v) => v === 0))).toBe(true); // the optimizer step cleared them
    expect(await norm).toBeGreaterThan(0);
    expect(same((await head1)[0]!.data, (await head0)[0]!.data)).toBe(false); // the step changed the head
    const h0 = await head0;
    const l0 = await lora0;
    expect((await head2).every((t, i) => t.key === h0[i]!.key && same(t.data, h0[i]!.data))).toBe(true); // restored after the step
    const l2 = await lora2;
    expect(l2.length).toBe(l0.length);
    expect(l2.every((t, i) => t.key === l0[i]!.key && same(t.data, l0[i]!.data))).toBe(true);

    // A merge made before a read is seen by the read; a call made after dispose rejects; one made before resolves.
    const merged = m.mergeAndUnload();
    expect(m.lora).toBeNull();
    const before = m.forward(b);
    m.dispose();
    await expect(m.headWeights('cls')).rejects.toMatchObject({ code: 'ERR_TH_DISPOSED' });
    await expect(m.configureOptimizer({ lr: 1 })).rejects.toBeInstanceOf(TransformerHeadsError);
    await expect(m.backboneGradNorm()).rejects.toMatchObject({ code: 'ERR_TH_DISPOSED' });
    await merged;
    expect(Number.isFinite((await before).loss)).toBe(true);
  });
});

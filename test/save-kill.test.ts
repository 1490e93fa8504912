// Folder saves are all-or-nothing under kill -9. A child process (save-kill-child.mjs) saves one folder over and over,
// alternating two versions whose files differ (a head that changes shape, heads present in one version only, LoRA
// ranks, GPT-2 vs Llama weights); the parent kills it with SIGKILL at a random moment, then checks that the folder
// holds exactly version A or exactly version B, byte for byte (the reference copies the child saved first), that it
// loads, and that a file of the user's in the folder survived. 32 kills in all. The next save afterwards must leave
// no leftovers of the killed ones.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { afterAll, describe, expect, it } from 'vitest';

import { DataCollatorWithPadding, Dataset, loadBackbone, loadHeaded, loadLoraWithHeads, readHeadConfigs, Trainer, type HeadedModel } from '../ts/index.js';
import { hfFolderOwns } from '../ts/io/index.js';
import { fixture, fixturesDir, root } from './helpers.js';

const CHILD = join(root, 'test', 'save-kill-child.mjs');
const USER_FILE = 'notes-of-the-user.txt';
const seed = Number(process.env.TH_KILL_SEED ?? 7);

/** A small seeded PRNG for the kill delays (so a failure can be replayed with TH_KILL_SEED). */
function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface KillResult {
  /** The last line the child printed before it died: 'begin K' means a save was in flight. */
  last: string;
  saves: number;
}

/** Starts the child, waits for its first completed save, kills it after a random delay, returns what it printed. */
function runAndKill(mode: string, dir: string, refs: string, delayMs: number): Promise<KillResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, mode, dir, refs, fixturesDir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let last = '';
    let saves = 0;
    let armed = false;
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      last = line;
      if (line.startsWith('end')) saves++;
      if (saves >= 1 && !armed) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`the child exited by itself (${code}, ${signal}): ${stderr.slice(-2000)}`));
      else resolve({ last, saves });
    });
  });
}

/** name -> bytes of the files of a folder for which `owned` holds. */
function snapshot(dir: string, owned: (n: string) => boolean): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const n of readdirSync(dir)) if (owned(n)) out.set(n, readFileSync(join(dir, n)));
  return out;
}

function same(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!b.get(k)?.equals(v)) return false;
  return true;
}

/** Entries next to `dir` and inside it that a killed save left (none may survive the next save). */
function leftovers(dir: string): string[] {
  const parent = join(dir, '..');
  const near = readdirSync(parent).filter((n) => /\.(tmp|old|del)-\d+-[0-9a-f]{12}$/.test(n));
  const inside = existsSync(dir) ? readdirSync(dir).filter((n) => /\.tmp-/.test(n)) : [];
  return [...near, ...inside];
}

const work = mkdtempSync(join(tmpdir(), 'th-kill-'));
const next = prng(seed);
const report: Record<string, { kills: number; inFlight: number; a: number; b: number }> = {};
afterAll(() => {
  // The figures the issue asks for: kills, and how many landed while a save was in flight.
  process.stderr.write(`save-kill (seed ${seed}): ${JSON.stringify(report)}\n`);
});

const HEAD_OWNED = (n: string) => n !== USER_FILE;

describe('a folder save killed with SIGKILL leaves exactly the old or the new save', () => {
  for (const [mode, kills] of [
    ['heads', 10],
    ['lora', 8],
    ['backbone', 6],
  ] as const) {
    it(`${mode}: ${kills} kills`, async () => {
      const base = join(work, mode);
      const dir = join(base, 'saved');
      const refs = join(base, 'refs');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, USER_FILE), 'mine');
      const owned = mode === 'backbone' ? hfFolderOwns : HEAD_OWNED;
      const r = (report[mode] = { kills: 0, inFlight: 0, a: 0, b: 0 });
      for (let k = 0; k < kills; k++) {
        const res = await runAndKill(mode, dir, refs, Math.floor(next() * 250));
        r.kills++;
        if (res.last.startsWith('begin')) r.inFlight++;
        const got = snapshot(dir, owned);
        const isA = same(got, snapshot(join(refs, 'A'), owned));
        const isB = same(got, snapshot(join(refs, 'B'), owned));
        expect(isA || isB, `kill ${k}: the folder is neither save (${[...got.keys()].join(', ')})`).toBe(true);
        if (isA) r.a++;
        else r.b++;
        expect(readFileSync(join(dir, USER_FILE), 'utf8')).toBe('mine');
        // ... and it loads, through the public API
        if (mode === 'heads') {
          const heads = await readHeadConfigs(dir);
          const m = await loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir, onlyInference: true });
          expect(m.heads.map((h) => h.name)).toEqual(heads.map((h) => h.name));
          m.dispose();
        } else if (mode === 'lora') {
          (await loadLoraWithHeads(dir, { modelPath: fixture('tiny-gpt2.pt'), onlyInference: true })).dispose();
        } else {
          const b = await loadBackbone(dir);
          expect(b.config.modelType).toBe(isA ? 'gpt2' : 'llama');
          b.dispose();
        }
      }
      // Both versions were seen, and most kills landed in the middle of a save.
      expect(r.a + r.b).toBe(kills);
      expect(r.inFlight).toBeGreaterThan(0);
      // One more save (in this process) removes what the killed ones left.
      const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'after', inSize: 64, numOutputs: 2 }] });
      if (mode === 'backbone') await (await loadBackbone(fixture('tiny-gpt2.pt'))).saveBackbone(dir);
      else await m.save(dir);
      m.dispose();
      expect(leftovers(dir)).toEqual([]);
      expect(readFileSync(join(dir, USER_FILE), 'utf8')).toBe('mine');
    });
  }

  it('Trainer checkpoints: 8 kills, every checkpoint-N complete and resumable', async () => {
    const dir = join(work, 'checkpoint', 'out');
    const refs = join(work, 'checkpoint', 'refs');
    mkdirSync(dir, { recursive: true });
    const r = (report.checkpoint = { kills: 0, inFlight: 0, a: 0, b: 0 });
    const model: HeadedModel = await loadHeaded(fixture('tiny-gpt2.pt'), {
      heads: [
        { name: 'shape', inSize: 64, numOutputs: 2 },
        { name: 'only_a', inSize: 64, numOutputs: 3000, layerHook: 1 },
      ],
    });
    for (let k = 0; k < 8; k++) {
      const res = await runAndKill('checkpoint', dir, refs, Math.floor(next() * 400));
      r.kills++;
      if (res.last.startsWith('begin')) r.inFlight++;
      const steps = readdirSync(dir)
        .map((n) => /^checkpoint-(\d+)$/.exec(n)?.[1])
        .filter((s): s is string => s !== undefined)
        .map(Number);
      expect(steps.length).toBeGreaterThan(0);
      expect(steps.length).toBeLessThanOrEqual(3); // saveTotalLimit 2, plus one saved just before the kill
      for (const s of steps) {
        const c = join(dir, `checkpoint-${s}`);
        expect(readdirSync(c).sort()).toEqual(['head_configs.json', 'only_a.safetensors', 'optimizer.pt', 'shape.safetensors', 'trainable.pt', 'trainer_state.json']);
        expect(JSON.parse(readFileSync(join(c, 'trainer_state.json'), 'utf8')).global_step).toBe(s);
        await model.loadTrainableState(join(c, 'trainable.pt'));
        await model.configureOptimizer({ lr: 1e-3 });
        await model.loadOptimizerState(join(c, 'optimizer.pt'));
        (await loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: c, onlyInference: true })).dispose();
      }
    }
    // Training resumes from the latest checkpoint after the last kill, and its next save cleans the leftovers.
    const rows = Array.from({ length: 4 }, (_, i) => ({ input_ids: [1 + i, 2, 3], attention_mask: [1, 1, 1], shape: [i % 2, 1, 0], only_a: [5, 6, 7 + i] }));
    const latest = Math.max(...readdirSync(dir).map((n) => Number(/^checkpoint-(\d+)$/.exec(n)?.[1] ?? -1)));
    const res = await new Trainer(
      model,
      { outputDir: dir, maxSteps: latest + 1, perDeviceTrainBatchSize: 4, learningRate: 1e-3, saveSteps: 1, saveTotalLimit: 2, resumeFromCheckpoint: true, activationCache: false, disableProgressBar: true },
      { trainDataset: new Dataset(rows), dataCollator: new DataCollatorWithPadding({ input_ids: 100, attention_mask: 0, shape: -100, only_a: -100 }) },
    ).train();
    expect(res.globalStep).toBe(latest + 1);
    expect(leftovers(join(dir, `checkpoint-${latest + 1}`))).toEqual([]);
    model.dispose();
  });
});

// The transformer-heads command line, run as a child process (node dist/cli.js) on tiny models and data written here.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { expectRel, F32_EPS, fixture, relErr, root } from './helpers.js';
import { checkXml } from './plot-xml.js';

const cli = join(root, 'dist', 'cli.js');
const tiny = () => fixture('tiny-gpt2.pt'); // 4 layers, hidden 64, vocab 101, no tokenizer
const bpe = () => fixture('random-gpt2-bpe.pt'); // 2 layers, hidden 256, GPT-2 tokenizer

function run(args: string[], options: { input?: string; env?: Record<string, string>; cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    cwd: options.cwd ?? root,
    encoding: 'utf8',
    input: options.input ?? '',
    env: { ...process.env, OMP_NUM_THREADS: '1', ...options.env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The error contract: exactly "transformer-heads: <message>" and "hint: <hint>" on stderr. */
function expectOneLineError(stderr: string, pattern: RegExp) {
  const lines = stderr.trim().split('\n').filter((l) => l.startsWith('transformer-heads:') || l.startsWith('hint:'));
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/^transformer-heads: /);
  expect(lines[0]).toMatch(pattern);
  expect(lines[1]).toMatch(/^hint: \S/);
}

const tmp = () => mkdtempSync(join(tmpdir(), 'th-cli-'));

beforeAll(() => {
  // The CLI runs from dist/: compile the TypeScript first. tsc checks the whole project each time (37 s of CPU here,
  // 260 s of wall time on a loaded 2-core machine), more than the default 2-minute hook timeout allows.
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}${r.stderr}`);
}, 900_000);

describe('train', () => {
  it('trains from a config file and writes head files, log_history.jsonl, loss.svg, metrics, run.json and report.html', () => {
    const dir = tmp();
    // Pre-tokenized rows for the tokenizer-less tiny model: does the sequence end in token 7 (class names as strings),
    // and a regression target.
    const rows = Array.from({ length: 48 }, (_, i) => {
      const ids = [1 + (i % 50), 2 + ((i * 7) % 90), i % 3 === 0 ? 7 : 3 + (i % 60)];
      return { input_ids: ids, ends: ids[2] === 7 ? 'seven' : 'other', score: (i % 10) / 10 };
    });
    writeFileSync(join(dir, 'train.jsonl'), rows.slice(0, 36).map((r) => JSON.stringify(r)).join('\n') + '\n');
    writeFileSync(join(dir, 'eval.jsonl'), rows.slice(36).map((r) => JSON.stringify(r)).join('\n') + '\n');
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        model: tiny(),
        outputDir: 'run',
        heads: [
          { name: 'ends7', numOutputs: 2, predForSequence: true, layerHook: 2, target: 'ends' },
          { name: 'score', num_outputs: 1, pred_for_sequence: true, is_regression: true, loss_fct: 'mse' },
        ],
        data: { train: 'train.jsonl', eval: 'eval.jsonl', padTokenId: 100 },
        training: { learningRate: 0.01, numTrainEpochs: 2, per_device_train_batch_size: 8, loggingSteps: 2 },
      }),
    );
    const r = run(['train', join(dir, 'config.json'), '--json']);
    expect(r.stderr).not.toMatch(/^transformer-heads:/m);
    expect(r.code).toBe(0);
    const out = join(dir, 'run'); // relative to the config file
    const heads = JSON.parse(readFileSync(join(out, 'heads', 'head_configs.json'), 'utf8'));
    expect(Object.keys(heads)).toEqual(['ends7', 'score']);
    expect(heads.ends7.in_size).toBe(64); // filled from the model
    for (const f of ['heads/ends7.safetensors', 'heads/score.safetensors', 'metrics.json', 'run.json', 'report.html']) expect(existsSync(join(out, f)), f).toBe(true);
    const log = readFileSync(join(out, 'log_history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.some((e) => typeof e.loss === 'number')).toBe(true);
    expect(log.at(-1)).toHaveProperty('train_loss');
    const svg = readFileSync(join(out, 'loss.svg'), 'utf8');
    expect(checkXml(svg).root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    checkXml(readFileSync(join(out, 'report.html'), 'utf8'), { html: true });
    const result = JSON.parse(r.stdout.trim());
    expect(result.command).toBe('train');
    expect(result.steps).toBe(10); // 36 examples / 8 = 5 steps per epoch
    expect(result.byHead.ends7.accuracy).toBeGreaterThanOrEqual(0);
    expect(result.byHead.score).toHaveProperty('mse');
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).labelMaps).toEqual({ ends: ['other', 'seven'] });

    // eval on the run folder reproduces the final metrics (same eval batch size)
    const e = run(['eval', out, '--json', '-q']);
    expect(e.code).toBe(0);
    const ev = JSON.parse(e.stdout.trim());
    expect(ev.examples).toBe(12);
    expect(ev.byHead.ends7.accuracy).toBe(result.byHead.ends7.accuracy); // a ratio of counts of the same predictions
    // The same forwards of the same weights on the same batches: measured bit-identical; 8 eps allow another order of
    // the mean.
    expectRel(relErr(ev.metrics.eval_loss, result.eval.eval_loss), 8 * F32_EPS, 'eval_loss');
    const human = run(['eval', out, '-q']);
    expect(human.stdout).toMatch(/head\s+layer\s+loss\s+accuracy/);
  });

  it('predict prints one JSON line per text, with class names', () => {
    const dir = tmp();
    const texts = ['win money now click here', 'free prize claim today', 'meeting moved to monday', 'see you at lunch tomorrow'];
    const rows = Array.from({ length: 32 }, (_, i) => ({ text: `${texts[i % 4]} ${i}`, label: i % 4 < 2 ? 'spam' : 'ham' }));
    writeFileSync(join(dir, 'train.csv'), 'text,label\n' + rows.map((r) => `"${r.text}",${r.label}`).join('\n') + '\n');
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        model: bpe(),
        outputDir: 'run',
        heads: [{ name: 'spam', numOutputs: 2, predForSequence: true, target: 'label' }],
        data: { train: 'train.csv', maxLength: 16 },
        training: { learningRate: 0.01, numTrainEpochs: 1, perDeviceTrainBatchSize: 16 },
      }),
    );
    expect(run(['train', join(dir, 'config.json'), '-q']).code).toBe(0);
    const p = run(['predict', join(dir, 'run'), 'win a free prize', 'lunch on monday?', '-q']);
    expect(p.code).toBe(0);
    const lines = p.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.text)).toEqual(['win a free prize', 'lunch on monday?']);
    for (const l of lines) {
      expect(['ham', 'spam']).toContain(l.predictions.spam.label);
      // Each probability is rounded to 4 decimals: the sum is 1 within half a unit of the 4th decimal per class.
      const p: number[] = l.predictions.spam.probabilities;
      expect(Math.abs(p.reduce((a, b) => a + b, 0) - 1)).toBeLessThanOrEqual(p.length * 0.5e-4 + 1e-12);
    }
    // stdin, one text per line
    const s = run(['predict', join(dir, 'run'), '-q'], { input: 'first text\n\nsecond text\n' });
    expect(s.code).toBe(0);
    expect(s.stdout.trim().split('\n')).toHaveLength(2);
  });
});

describe('probe', () => {
  it('prints an accuracy table by layer and writes results.json, a valid SVG and report.html', () => {
    const dir = tmp();
    const rows = Array.from({ length: 60 }, (_, i) => ({ sentence: i % 2 ? `the food was great ${i}` : `the food was awful ${i}`, sentiment: i % 2 ? 'pos' : 'neg' }));
    writeFileSync(join(dir, 'data.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = join(dir, 'probe');
    const r = run(['probe', '--model', bpe(), '--data', join(dir, 'data.jsonl'), '--text', 'sentence', '--label', 'sentiment', '--epochs', '1', '--out', out]);
    expect(r.stderr).not.toMatch(/^transformer-heads:/m);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/layer\s+hidden state\s+accuracy/);
    for (const [layer, name] of [[0, 'embeddings'], [1, 'block 1'], [2, 'final norm']] as const) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${layer}\\s+${name}\\s+[01]\\.\\d{3}`, 'm'));
    }
    expect(r.stdout).toMatch(/majority class\s+0\.\d{3}/);
    const svg = readFileSync(join(out, 'accuracy-by-layer.svg'), 'utf8');
    const { root, elements } = checkXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(root.attrs.viewBox).toMatch(/^0 0 \d+ \d+$/);
    expect(elements.filter((e) => e.name === 'rect' && e.attrs.height !== '10').length).toBe(1 + 3); // background + one bar per layer
    checkXml(readFileSync(join(out, 'report.html'), 'utf8'), { html: true });
    const saved = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(saved.layers.map((l: { layer: number }) => l.layer)).toEqual([0, 1, 2]);
  });

  it('--json gives one parseable result with one accuracy per layer (built-in dataset)', () => {
    const out = join(tmp(), 'p');
    const r = run(['probe', '--model', tiny(), '--dataset', 'afinn', '--examples', '120', '--epochs', '1', '--out', out, '--json'], { env: {} });
    // tiny-gpt2 has no tokenizer: a readable error, not a crash
    expect(r.code).toBe(1);
    expectOneLineError(r.stderr, /tokenizer/);
    const ok = run(['probe', '--model', bpe(), '--dataset', 'afinn', '--examples', '120', '--epochs', '1', '--layers', '0,-1', '--out', out, '--json']);
    expect(ok.code).toBe(0);
    const lines = ok.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const res = JSON.parse(lines[0]!);
    expect(res.command).toBe('probe');
    expect(res.dataset).toBe('afinn');
    expect(res.classes).toEqual(['negative', 'positive']);
    expect(res.layers.map((l: { layer: number }) => l.layer)).toEqual([0, 2]);
    for (const l of res.layers) {
      expect(l.accuracy).toBeGreaterThanOrEqual(0);
      expect(l.accuracy).toBeLessThanOrEqual(1);
    }
    expect(res.trainExamples + res.testExamples).toBe(120);
    expect(res.majorityBaseline).toBeGreaterThan(0);
  });
});

describe('errors', () => {
  it('a bad config exits 2 naming the field', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'd.jsonl'), '{"text": "a", "a": 1}\n');
    const cfg = (o: object) => {
      const p = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(p, JSON.stringify({ model: tiny(), outputDir: 'o', data: { train: 'd.jsonl' }, ...o }));
      return p;
    };
    let r = run(['train', cfg({ heads: [{ name: 'a', numOutputs: -1 }] })]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /config\.heads\[0\]\.numOutputs: expected a positive integer, got -1/);
    r = run(['train', cfg({ heads: [{ name: 'a', numOutputs: 2, layerHook: 9 }] })]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /config\.heads\[0\]\.layerHook: .*got 9/);
    r = run(['train', cfg({ heads: [{ name: 'a', numOutputs: 2 }], training: { learningRate: 'fast' } })]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /config\.training\.learningRate: expected a positive number, got "fast"/);
    r = run(['train', cfg({ heads: [{ name: 'a', numOuputs: 2 }] })]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /config\.heads\[0\]\.numOuputs: unknown field \(did you mean 'numOutputs'\?\)/);
    r = run(['train', cfg({ heads: [{ name: 'a', numOutputs: 2 }], data: { train: 'missing.jsonl' } })]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /config\.data\.train: '.*missing\.jsonl' does not exist/);
    r = run(['train', cfg({ heads: [{ name: 'a', numOutputs: 2 }] }), '--json']);
    expect(r.code).toBe(2); // the text column is there but tiny-gpt2 has no tokenizer
    expect(JSON.parse(r.stdout.trim()).error.exitCode).toBe(2);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"model": ');
    r = run(['train', bad]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /is not valid JSON/);
  });

  it('an unknown command or option is a usage error', () => {
    let r = run(['frobnicate']);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /unknown command 'frobnicate'/);
    r = run(['probe', '--frob']);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /probe: Unknown option '--frob'/);
    r = run(['probe', '--epochs', 'many']);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /--epochs: expected a positive number, got 'many'/);
    r = run([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Usage: transformer-heads <command>/);
  });

  it('a missing file is one readable line', () => {
    let r = run(['train', '/nonexistent/config.json']);
    expect(r.code).not.toBe(0);
    expectOneLineError(r.stderr, /config file '\/nonexistent\/config\.json' does not exist/);
    r = run(['eval', '/nonexistent/run']);
    expect(r.code).not.toBe(0);
    expectOneLineError(r.stderr, /'\/nonexistent\/run' does not exist/);
    r = run(['probe', '--data', '/nonexistent/data.jsonl']);
    expect(r.code).not.toBe(0);
    expectOneLineError(r.stderr, /data file '\/nonexistent\/data\.jsonl' does not exist/);
    r = run(['export', '/nonexistent/model.pt']);
    expect(r.code).not.toBe(0);
    expectOneLineError(r.stderr, /model '\/nonexistent\/model\.pt' does not exist/);
  });
});

describe('help and export', () => {
  it('--help for every command', () => {
    for (const c of ['train', 'eval', 'predict', 'probe', 'generate', 'export']) {
      const r = run([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: transformer-heads ${c}`));
      expect(r.stdout).toContain('--json');
    }
    const top = run(['--help']);
    expect(top.code).toBe(0);
    for (const c of ['train', 'eval', 'predict', 'probe', 'generate', 'export']) expect(top.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
  });

  it('generate streams the same tokens as the library and reports saved heads per step', async () => {
    const { loadHeaded } = await import('../ts/index.js');
    const dir = tmp();
    const m = await loadHeaded(bpe(), { heads: [{ name: 'mood', inSize: 256, numOutputs: 2, layerHook: 1 }] });
    await m.save(join(dir, 'heads'));
    m.dispose();
    const r = run(['generate', 'The movie was', '--model', bpe(), '--heads', join(dir, 'heads'), '-n', '5', '--json', '-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    for (const [i, l] of lines.slice(0, 5).entries()) {
      expect(l.step).toBe(i);
      expect(l.heads.mood[0]).toHaveLength(2);
    }
    const lib = await loadHeaded(bpe(), { heads: [{ name: 'lm_head', inSize: 256, numOutputs: 50257, isCausalLm: true }] });
    const out = await lib.generate('The movie was', { maxNewTokens: 5 });
    lib.dispose();
    expect(lines.slice(0, 5).map((l) => l.tokens[0])).toEqual(Array.from(out.sequences.data.subarray(out.promptLength)));
    expect(lines[5].done).toBe(true);
    expect(lines[5].texts[0]).toBe(out.texts![0]);
    const bad = run(['generate', 'x', '--model', bpe(), '--top-p', '2']);
    expect(bad.code).toBe(2);
    expectOneLineError(bad.stderr, /--top-p/);
  });

  it('export prints model info; --hf without Python transformers is a clear error', () => {
    const r = run(['export', tiny(), '--json', '-q']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout.trim());
    expect(info).toMatchObject({ modelType: 'gpt2', numLayers: 4, hiddenStates: 5, hiddenSize: 64, vocabSize: 101, parameters: 210624, tokenizer: { present: false } });
    const t = run(['export', bpe(), '-q']);
    expect(t.stdout).toMatch(/^tokenizer\s+yes \(50257 tokens/m);
    const hf = run(['export', '--hf', 'gpt2', '--out', join(tmp(), 'x.pt')], { env: { TH_PYTHON: '/nonexistent/python3' } });
    expect(hf.code).toBe(1);
    expectOneLineError(hf.stderr, /needs Python with torch and transformers/);
  });
});

describe('data and options that used to mislead (issue 10, item 12)', () => {
  it('a CSV text that reads as a number stays text', () => {
    const dir = tmp();
    const rows = Array.from({ length: 16 }, (_, i) => [i % 2 ? String(1990 + i) : `year ${1990 + i}`, i % 2 ? 'number' : 'words']);
    writeFileSync(join(dir, 'train.csv'), 'text,label\n' + rows.map((r) => r.join(',')).join('\n') + '\n');
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        model: bpe(),
        outputDir: 'run',
        heads: [{ name: 'kind', numOutputs: 2, predForSequence: true, target: 'label' }],
        data: { train: 'train.csv', maxLength: 8 },
        training: { numTrainEpochs: 1, perDeviceTrainBatchSize: 8 },
      }),
    );
    const r = run(['train', join(dir, 'config.json'), '-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const p = run(['predict', join(dir, 'run'), '--input', join(dir, 'train.csv'), '-q']);
    expect(p.code).toBe(0);
    expect(p.stdout.trim().split('\n').map((l) => JSON.parse(l).text)[1]).toBe('1991');
  });

  it('train logs about 50 points by default, and the run\'s mean loss is called that', () => {
    const dir = tmp();
    const rows = Array.from({ length: 150 }, (_, i) => ({ input_ids: [1 + (i % 50), 2 + (i % 7)], y: i % 2 }));
    writeFileSync(join(dir, 'train.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        model: tiny(),
        outputDir: 'run',
        heads: [{ name: 'y', numOutputs: 2, predForSequence: true }],
        data: { train: 'train.jsonl', padTokenId: 100 },
        training: { numTrainEpochs: 1, perDeviceTrainBatchSize: 1, learningRate: 1e-3 },
      }),
    );
    const r = run(['train', join(dir, 'config.json')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/trained 150 steps .*mean training loss/);
    const log = readFileSync(join(dir, 'run', 'log_history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const points = log.filter((e) => typeof e.loss === 'number');
    expect(points.length).toBe(50); // every 3 steps
    expect(points[0].step).toBe(3);
    const report = readFileSync(join(dir, 'run', 'report.html'), 'utf8');
    expect(report).toMatch(/mean training loss over the run/);
    expect(report).not.toMatch(/final training loss/);
  });

  it('generate: -n past the model\'s positions and a negative -n say what to change', () => {
    const big = run(['generate', 'Hello', '--model', bpe(), '-n', '1000000']);
    expect(big.code).toBe(2);
    expectOneLineError(big.stderr, /--max-new-tokens 1000000 does not fit: .* positions and this model has \d+/);
    expect(big.stderr).toMatch(/^hint: use --max-new-tokens \d+ or less/m);
    expect(big.stderr).not.toMatch(/label/);
    for (const args of [['-n', '-5'], ['--max-new-tokens', '-5'], ['-n', '0']]) {
      const neg = run(['generate', 'Hello', '--model', bpe(), ...args]);
      expect(neg.code).toBe(2);
      expectOneLineError(neg.stderr, /--max-new-tokens: expected an integer >= 1, got '-?\d+'/);
      expect(neg.stderr).not.toMatch(/ambiguous/);
    }
  });
});

describe('doctor', () => {
  it('--json reports the libtorch, the binary used and what libtorch itself says', () => {
    const r = run(['doctor', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      ok: boolean;
      node: { version: string; napi: string };
      libtorch: { version: string; libdir: string; libraries: string[] };
      binary: { kind: string; path: string };
      runtime: { torchVersion: string; cudaAvailable: boolean; numThreads: number };
      threads: { numThreads: number; computeThreads: number; osThreads: number };
    };
    expect(d.ok).toBe(true);
    expect(d.node.version).toBe(process.version);
    expect(d.node.napi).toBe(process.versions.napi);
    expect(d.binary.kind).toBe('local build');
    expect(existsSync(d.binary.path)).toBe(true);
    expect(d.libtorch.libraries.some((l) => /^libtorch_cpu\.so/.test(l))).toBe(true);
    // Two sources that could disagree: the files found on disk, and the version the loaded libtorch was compiled with.
    expect(d.libtorch.version.split('.').slice(0, 2)).toEqual(d.runtime.torchVersion.split('.').slice(0, 2));
    expect(d.threads.numThreads).toBe(1); // OMP_NUM_THREADS=1 from run()
    // No model loaded: the one compute thread is the CPU's, started by runtimeInfo() itself (it runs there); the OS
    // threads include at least Node's main thread, libuv's 4 pool threads and that compute thread.
    expect(d.threads.computeThreads).toBe(1);
    expect(d.threads.osThreads).toBeGreaterThanOrEqual(6);
  });

  it('names a wrong TRANSFORMER_HEADS_LIBTORCH, and refuses a binary built for another libtorch', () => {
    let r = run(['doctor'], { env: { TRANSFORMER_HEADS_LIBTORCH: '/nonexistent/libtorch' } });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('TRANSFORMER_HEADS_LIBTORCH=/nonexistent/libtorch is not a libtorch folder');
    // The same binary, recorded as built against libtorch 2.3: it must not be loaded against 1.13.
    const dir = tmp();
    for (const f of ['transformer_heads.node', 'th_loader.node']) writeFileSync(join(dir, f), readFileSync(join(root, 'build', 'Release', f)));
    writeFileSync(join(dir, 'transformer_heads.torch.json'), JSON.stringify({ torchVersion: '2.3.1', cxx11Abi: 1, cuda: false }));
    r = run(['doctor'], { env: { TRANSFORMER_HEADS_BINDING: join(dir, 'transformer_heads.node') } });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/it needs libtorch 2\.3\.1 \(CPU, C\+\+11 ABI\); found libtorch 1\.13/);
    expect(r.stdout).toContain('fix: npm rebuild transformer-heads');
  });
});

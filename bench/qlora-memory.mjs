#!/usr/bin/env node
// QLoRA memory: LoRA r=8 training steps with a float32 base and with an NF4 + double-quant base, on the
// GPT-2-small-shaped model (batch 8 x 128) and on a 1.1B Llama-shaped model (TinyLlama's shape, random weights,
// batch 1 x 256, gradient checkpointing on), next to the PyTorch eager peer's LoRA step (nanoGPT GPT-2 small, the
// same work) run in the same window, alternating with the GPT-2 rows.
//
// Each row is a process of its own. A row reports its load peak (VmHWM once the model is built) and its step peak:
// VmHWM is reset after loading (`echo 5 > /proc/self/clear_refs`), so the step figure is the training step's own even
// when loading peaks higher. Every row also writes out its arithmetic floor (see floor() below) and the ratio of the
// step peak to it.
//
// GPT-2 rows: float32, NF4 + double quant, and the same with quantizeEmbeddings (nf4-dq-emb).
//   npm run bench -- qlora-memory                      all rows: GPT-2 rows x 2 rounds, then the 1B rows once
//   node bench/qlora-memory.mjs --rounds 3 --no-1b     more GPT-2 rounds, skip the 1B model (--no-ckpt: and the
//                                                      GPT-2 rows with gradient checkpointing)
//   node bench/qlora-memory.mjs --only-1b              the 1B rows alone
// The 1B model is written once into bench/.models/llama-1b (git-ignored; 2.2 GB float16, scripts/make_bench_llama_1b.py).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { peersDir, processFields, runPeer } from './proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODELS = {
  'gpt2-small': { path: resolve(root, 'fixtures/gpt2-small-random.pt'), batch: 8, seq: 128, checkpointing: false, vocab: 50000 },
  // The same with gradient checkpointing: at 8 x 128 the activations (~680 MB) outweigh the float32 weights (498 MB),
  // so only with checkpointing does the 4-bit base show in the peak (docs/benchmarks.md).
  'gpt2-small-ckpt': { path: resolve(root, 'fixtures/gpt2-small-random.pt'), batch: 8, seq: 128, checkpointing: true, vocab: 50000 },
  'llama-1b': { path: resolve(root, 'bench/.models/llama-1b'), batch: 1, seq: 256, checkpointing: true, vocab: 32000 },
};
const BASES = {
  fp32: undefined,
  'nf4-dq': { bits: 4, quantType: 'nf4', doubleQuant: true },
  // The token-embedding table (and the LM head tied to it) in 4-bit too: opt-in, as PEFT's QLoRA keeps it in float.
  // On GPT-2 small the table is 147 of the 475 MiB of weights, so it decides how far a 4-bit base can go.
  'nf4-dq-emb': { bits: 4, quantType: 'nf4', doubleQuant: true, quantizeEmbeddings: true },
};
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, def) => (argv.indexOf(name) >= 0 ? argv[argv.indexOf(name) + 1] : def);

function kib(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : null;
}
const mib = (bytes) => Math.round(bytes / 2 ** 20);

/**
 * The least memory the step can run in (bytes), written out term by term:
 *   weights      the model's weights as held (memoryFootprint().total: dense + quantized codes/absmax + LoRA + heads)
 *   train_state  every trainable weight's gradient and AdamW's two moments: 3 x 4 bytes x trainable parameters
 *   activations  what autograd must keep for the backward, float32, per token (N = batch x seq tokens):
 *                GPT-2 block: 16 H + nh T floats (LN1 out, q k v, attention probabilities, attention out, residual, LN2
 *                out, fc out and GELU out at 4 H each); Llama block: 7 H + 3 kv + 3 I + nh T (both norms' inputs and
 *                outputs, q k v before and after RoPE, probabilities, attention out, gate, up, SiLU(gate)).
 *                Without checkpointing: L blocks of that. With checkpointing: the L block inputs (H floats per token)
 *                plus one block's activations (the block being recomputed in the backward).
 * The runtime itself (Node, libtorch, the allocator's arenas) is not in the floor; baseline_rss_mib reports it.
 */
function floor(cfg, model, fp, trainable) {
  const { batch, seq, checkpointing } = MODELS[model];
  const N = batch * seq;
  const H = cfg.hiddenSize, I = cfg.intermediateSize, L = cfg.numLayers, nh = cfg.numAttentionHeads;
  const kv = cfg.numKeyValueHeads * cfg.headDim;
  const perTokenBlock = cfg.modelType === 'gpt2' ? 16 * H + nh * seq : 7 * H + 3 * kv + 3 * I + nh * seq;
  const block = 4 * N * perTokenBlock;
  const activations = checkpointing ? 4 * N * H * L + block : L * block;
  const weights = fp.total;
  const train_state = 12 * trainable;
  const total = weights + train_state + activations;
  return {
    weights_mib: mib(weights),
    train_state_mib: mib(train_state),
    activations_mib: mib(activations),
    total_mib: mib(total),
    formula: checkpointing ? 'weights + 12 B x trainable + 4 B x N x (L x H + one block)' : 'weights + 12 B x trainable + 4 B x N x L x block',
  };
}

async function ourRow(model, base) {
  const { path, batch, seq, checkpointing, vocab } = MODELS[model];
  const th = await import(resolve(root, 'dist/index.js'));
  const info = await th.runtimeInfo();
  const baseline = kib('VmRSS');
  let s = 11;
  const ids = Array.from({ length: batch }, () => Array.from({ length: seq }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % vocab));
  const batchData = { input_ids: ids, cls: ids.map((_, i) => i % 2) };
  const t0 = performance.now();
  const cfg = await th.readModelConfig(path);
  const m = await th.createHeadedQLoRA(path, {
    heads: [{ name: 'cls', inSize: cfg.hiddenSize, numOutputs: 2, predForSequence: true }],
    lora: { r: 8, alpha: 16 },
    gradientCheckpointing: checkpointing,
    ...(BASES[base] ? { quantization: BASES[base] } : {}),
  });
  const loadS = (performance.now() - t0) / 1000;
  const loadPeak = kib('VmHWM');
  const afterLoad = kib('VmRSS');
  // From here VmHWM is the step's own high-water mark (it restarts at the current RSS).
  let reset = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    reset = false;
  }
  await m.configureOptimizer({ lr: 1e-4 });
  const step = async () => {
    await m.trainStep(batchData);
    await m.optimizerStep(1e-4);
  };
  await step();
  const timed = model === 'llama-1b' ? 2 : 3;
  const times = [];
  for (let i = 0; i < timed; i++) {
    const t = performance.now();
    await step();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const ms = times[Math.floor((times.length - 1) / 2)];
  const stepPeak = kib('VmHWM');
  const fp = m.memoryFootprint();
  const trainable = m.trainableParameters();
  const fl = floor(cfg, model, fp, trainable);
  const { peak_rss_mib: _, ...proc } = processFields(info);
  console.log(
    JSON.stringify({
      bench: 'qlora-memory',
      row: `${model} ${base} LoRA r=8`,
      model,
      base,
      batch,
      seq,
      gradient_checkpointing: checkpointing,
      ms_per_step: Number(ms.toFixed(1)),
      tokens_per_s: Number(((batch * seq) / (ms / 1000)).toFixed(1)),
      load_s: Number(loadS.toFixed(1)),
      // peak_rss_mib: the step's peak (after the reset), the figure compared with the peer and the floor
      peak_rss_mib: reset ? Math.round(stepPeak / 1024) : null,
      load_peak_rss_mib: Math.round(loadPeak / 1024),
      process_peak_rss_mib: Math.round(Math.max(loadPeak, stepPeak) / 1024),
      rss_after_load_mib: Math.round(afterLoad / 1024),
      baseline_rss_mib: Math.round(baseline / 1024),
      floor: fl,
      step_peak_vs_floor: reset ? Number((stepPeak / 1024 / fl.total_mib).toFixed(2)) : null,
      weight_bytes: fp,
      trainable_parameters: trainable,
      ...proc,
      threads: info.numThreads,
      torch: info.torchVersion,
    }),
  );
  m.dispose();
}

function spawnRow(model, base) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--row', model, base], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) {
    console.error(`qlora-memory: row ${model} ${base} failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
  process.stdout.write(r.stdout);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

function peerRow(dir) {
  // The tuned peer (passive OpenMP waiting, as this library runs); its peak is the whole process's (ru_maxrss).
  const p = runPeer(dir, 'peer_gpt2.py', ['lora', '--threads', '2']);
  if (!p) return null;
  const out = {
    bench: 'qlora-memory',
    row: 'peer gpt2-small fp32 LoRA r=8 (PyTorch eager, nanoGPT)',
    model: 'gpt2-small',
    base: 'fp32',
    batch: p.batch,
    seq: p.seq,
    ms_per_step: p.step_ms_median,
    tokens_per_s: p.tokens_per_s,
    peak_rss_mib: Math.round(p.peak_rss_mb),
    init_rss_mib: Math.round(p.init_rss_mb),
    threads: p.threads,
    torch: p.torch_version,
  };
  console.log(JSON.stringify(out));
  return out;
}

const spread = (xs) => (xs.length > 1 ? Number(((Math.max(...xs) - Math.min(...xs)) / Math.min(...xs)).toFixed(3)) : null);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ratio = (a, b) => (a != null && b ? Number((a / b).toFixed(3)) : null);

if (flag('--row')) {
  const i = argv.indexOf('--row');
  await ourRow(argv[i + 1], argv[i + 2]);
} else {
  const rounds = Number(opt('--rounds', '2'));
  const summary = { bench: 'qlora-memory-summary' };
  if (!flag('--only-1b')) {
    if (!existsSync(MODELS['gpt2-small'].path)) execFileSync('bash', [resolve(root, 'scripts/make_fixtures.sh'), '--bench'], { stdio: 'inherit' });
    const dir = peersDir();
    if (!dir) console.error('qlora-memory: no peer harness (set TH_PEERS to the folder holding peer_gpt2.py); peer rows skipped');
    const got = { fp32: [], 'nf4-dq': [], 'nf4-dq-emb': [], peer: [], ckptFp32: [], ckptDq: [], ckptEmb: [] };
    for (let r = 0; r < rounds; r++) {
      got.fp32.push(spawnRow('gpt2-small', 'fp32'));
      if (dir) {
        const p = peerRow(dir);
        if (p) got.peer.push(p);
      }
      got['nf4-dq'].push(spawnRow('gpt2-small', 'nf4-dq'));
      got['nf4-dq-emb'].push(spawnRow('gpt2-small', 'nf4-dq-emb'));
    }
    if (!flag('--no-ckpt')) {
      got.ckptFp32.push(spawnRow('gpt2-small-ckpt', 'fp32'));
      got.ckptDq.push(spawnRow('gpt2-small-ckpt', 'nf4-dq'));
      got.ckptEmb.push(spawnRow('gpt2-small-ckpt', 'nf4-dq-emb'));
    }
    const peak = (rows) => rows.map((x) => x.peak_rss_mib);
    const procPeak = (rows) => rows.map((x) => x.process_peak_rss_mib ?? x.peak_rss_mib);
    const tps = (rows) => rows.map((x) => x.tokens_per_s);
    summary.gpt2_small = {
      step_peak_rss_mib: { fp32: peak(got.fp32), nf4_dq: peak(got['nf4-dq']), nf4_dq_emb: peak(got['nf4-dq-emb']), peer: peak(got.peer) },
      process_peak_rss_mib: { fp32: procPeak(got.fp32), nf4_dq: procPeak(got['nf4-dq']), nf4_dq_emb: procPeak(got['nf4-dq-emb']) },
      tokens_per_s: { fp32: tps(got.fp32), nf4_dq: tps(got['nf4-dq']), nf4_dq_emb: tps(got['nf4-dq-emb']), peer: tps(got.peer) },
      // medians over the rounds
      fp32_step_peak_vs_peer: got.peer.length ? ratio(median(peak(got.fp32)), median(peak(got.peer))) : null,
      fp32_process_peak_vs_peer: got.peer.length ? ratio(median(procPeak(got.fp32)), median(peak(got.peer))) : null,
      nf4_dq_step_peak_vs_fp32: ratio(median(peak(got['nf4-dq'])), median(peak(got.fp32))),
      nf4_dq_emb_step_peak_vs_fp32: ratio(median(peak(got['nf4-dq-emb'])), median(peak(got.fp32))),
      fp32_speed_vs_peer: got.peer.length ? ratio(median(tps(got.fp32)), median(tps(got.peer))) : null,
      step_peak_spread: { fp32: spread(peak(got.fp32)), nf4_dq: spread(peak(got['nf4-dq'])), peer: spread(peak(got.peer)) },
    };
    if (got.ckptFp32.length) {
      summary.gpt2_small_checkpointing = {
        step_peak_rss_mib: { fp32: peak(got.ckptFp32), nf4_dq: peak(got.ckptDq), nf4_dq_emb: peak(got.ckptEmb) },
        nf4_dq_step_peak_vs_fp32: ratio(median(peak(got.ckptDq)), median(peak(got.ckptFp32))),
        nf4_dq_emb_step_peak_vs_fp32: ratio(median(peak(got.ckptEmb)), median(peak(got.ckptFp32))),
        tokens_per_s: { fp32: tps(got.ckptFp32), nf4_dq: tps(got.ckptDq), nf4_dq_emb: tps(got.ckptEmb) },
      };
    }
  }
  if (!flag('--no-1b')) {
    const m = MODELS['llama-1b'];
    if (!existsSync(resolve(m.path, 'model.safetensors'))) {
      const t = performance.now();
      execFileSync('/usr/bin/python3', [resolve(root, 'scripts/make_bench_llama_1b.py'), m.path], { stdio: 'inherit' });
      console.error(`qlora-memory: wrote ${m.path} in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    }
    const f32 = spawnRow('llama-1b', 'fp32');
    const dq = spawnRow('llama-1b', 'nf4-dq');
    summary.llama_1b = {
      step_peak_rss_mib: { fp32: f32.peak_rss_mib, nf4_dq: dq.peak_rss_mib },
      load_peak_rss_mib: { fp32: f32.load_peak_rss_mib, nf4_dq: dq.load_peak_rss_mib },
      nf4_dq_step_peak_vs_fp32: ratio(dq.peak_rss_mib, f32.peak_rss_mib),
      nf4_dq_load_peak_vs_fp32: ratio(dq.load_peak_rss_mib, f32.load_peak_rss_mib),
      step_peak_vs_floor: { fp32: f32.step_peak_vs_floor, nf4_dq: dq.step_peak_vs_floor },
      tokens_per_s: { fp32: f32.tokens_per_s, nf4_dq: dq.tokens_per_s },
    };
  }
  console.log(JSON.stringify(summary));
}

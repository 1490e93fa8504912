// PEFT adapter configs: rank_pattern, alpha_pattern, layers_to_transform and layers_pattern against an independent
// Python reference (test/peft_reference.py restates PEFT's matching rules and applies the LoRA formula in PyTorch),
// in both directions (Python writes -> we load; we save -> Python loads); every field that cannot be applied as PEFT
// applies it is refused with ERR_TH_CONFIG naming the field.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { createHeadedQLoRA, loadLoraWithHeads, TransformerHeadsError, type HeadedModel } from '../ts/index.js';
import { expectRel, fixture, FORWARD_RTOL, readReference, rejection, relDiff, root } from './helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'th-peft-'));
const py = () => execFileSync('bash', [join(root, 'scripts/find_torch_python.sh')]).toString().trim();
const script = join(root, 'test/peft_reference.py');
type Plan = Record<string, { r: number; scaling: number }>;

function pyWrite(dir: string, base: string, seed: number, fields: Record<string, unknown>): Plan {
  return JSON.parse(execFileSync(py(), [script, 'write', dir, base, String(seed), JSON.stringify(fields)]).toString()) as Plan;
}

function pyEval(dir: string, base: string, ids: number[][], out: string): Plan {
  return JSON.parse(execFileSync(py(), [script, 'eval', dir, base, JSON.stringify(ids), out]).toString()) as Plan;
}

async function lastHidden(m: HeadedModel, ids: number[][]) {
  const hs = await m.hookedHiddenStates({ input_ids: ids });
  return hs.get(m.config.numLayers)!;
}

/** Per-module ranks as our model holds them: module name (with the base prefix) -> r, from the lora_A shapes. */
async function ranks(m: HeadedModel): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of await m.loraWeights()) if (t.key.endsWith('.lora_A.weight')) out[t.key.replace(/\.lora_A\.weight$/, '')] = t.shape[0]!;
  return out;
}

// Written once: the Python reference takes a few seconds per folder.
const cases = {
  // First-match order matters: "c_proj" comes before "transformer.h.3.attn.c_proj" once sort_keys has sorted them, so
  // h.3.attn.c_proj gets alpha 3, not 5 (PEFT's get_pattern_key); h.1.attn.c_attn gets rank 2 from a regex key.
  gpt2: {
    base: 'tiny-gpt2.pt',
    fields: {
      r: 4,
      lora_alpha: 8,
      target_modules: ['c_attn', 'c_proj', 'c_fc'],
      rank_pattern: { c_fc: 6, 'h\\.1\\.attn\\.c_attn': 2 },
      alpha_pattern: { c_proj: 3, 'transformer.h.3.attn.c_proj': 5 },
      layers_to_transform: [1, 3],
      fan_in_fan_out: true,
    },
  },
  // An int layers_to_transform with layers_pattern, rslora (alpha / sqrt(r) per module), all seven projections.
  llama: {
    base: 'tiny-llama.pt',
    fields: {
      r: 4,
      lora_alpha: 16,
      use_rslora: true,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      rank_pattern: { q_proj: 9, 'model\\.layers\\.\\d\\.mlp\\.(up|down)_proj': 2 },
      alpha_pattern: { v_proj: 3 },
      layers_to_transform: 2,
      layers_pattern: 'layers',
    },
  },
  // target_modules null: PEFT's default for the model type (gpt2: c_attn only), on blocks 0 and 2.
  gpt2Default: { base: 'tiny-gpt2.pt', fields: { r: 3, lora_alpha: 5, target_modules: null, layers_to_transform: [0, 2] } },
} as const;

const dirs: Record<string, string> = {};
const plans: Record<string, Plan> = {};

beforeAll(() => {
  for (const [name, c] of Object.entries(cases)) {
    dirs[name] = join(tmp(), name);
    plans[name] = pyWrite(dirs[name], fixture(c.base), 11, c.fields as Record<string, unknown>);
  }
}, 600_000);

describe('a PEFT-layout adapter with patterns, written by Python', () => {
  it.each(Object.keys(cases))('%s: loads with PEFT\'s per-module ranks and gives the reference hidden state', async (name) => {
    const m = await loadLoraWithHeads(dirs[name]!);
    const exp = readReference(join(dirs[name]!, 'expected.safetensors'));
    const ids = Array.from({ length: exp.input_ids!.shape[0]! }, (_, b) => Array.from(exp.input_ids!.data.slice(b * exp.input_ids!.shape[1]!, (b + 1) * exp.input_ids!.shape[1]!), Number));
    // The modules adapted and their ranks are PEFT's (a module missed or added, or a wrong rank, fails the load anyway).
    const want = Object.fromEntries(Object.entries(plans[name]!).map(([k, v]) => [k, v.r]));
    expect(await ranks(m)).toEqual(want);
    // One fp32 forward of the same math, summed in another order; a scaling off by any pattern moves it by ~1e-2.
    expectRel(relDiff(await lastHidden(m, ids), exp.hidden_last!), FORWARD_RTOL, `${name} hidden state`);
    m.dispose();
  });

  it('the gpt2 case really depends on the patterns: without them the reference differs', () => {
    // Guards the test itself: the plan has different ranks and scalings per module.
    const p = plans.gpt2!;
    expect(p['transformer.h.1.attn.c_attn']).toEqual({ r: 2, scaling: 4 });
    expect(p['transformer.h.3.attn.c_proj']).toEqual({ r: 4, scaling: 0.75 });
    expect(p['transformer.h.1.mlp.c_fc']!.r).toBe(6);
    expect(Object.keys(p).some((k) => k.includes('.h.0.') || k.includes('.h.2.'))).toBe(false);
    expect(Object.keys(plans.gpt2Default!).sort()).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.2.attn.c_attn']);
    expect(Object.keys(plans.llama!).every((k) => k.startsWith('model.layers.2.'))).toBe(true);
  });
});

describe('an adapter created with patterns saves them, and PEFT reads it back identically', () => {
  it('createHeadedQLoRA with rankPattern, alphaPattern, layersToTransform: save -> Python reference -> reload', async () => {
    const cls = { name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true };
    const lora = {
      r: 4,
      alpha: 8,
      rankPattern: { c_fc: 2, 'h\\.2\\.attn\\.c_attn': 8 },
      alphaPattern: { 'attn\\.c_proj': 24, c_attn: 2 },
      layersToTransform: [0, 2],
      layersPattern: 'h',
    };
    const m = await createHeadedQLoRA(fixture('tiny-gpt2.pt'), { heads: [cls], seed: 9, lora });
    expect(m.lora).toMatchObject({ rankPattern: lora.rankPattern, alphaPattern: lora.alphaPattern, layersToTransform: [0, 2], layersPattern: ['h'] });
    // Non-zero adapters (B starts at 0): deterministic values, so the saved adapter changes the forward.
    const w = await m.loraWeights();
    await m.loadLoraWeights(w.map((t, i) => ({ ...t, data: Float32Array.from(t.data, (_, j) => 0.05 * Math.sin(1 + i * 7 + j * 0.37)) })));
    const dir = tmp();
    await m.save(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ r: 4, lora_alpha: 8, rank_pattern: lora.rankPattern, alpha_pattern: lora.alphaPattern, layers_to_transform: [0, 2], layers_pattern: 'h' });

    const ids = [
      [3, 14, 15, 92, 65, 35],
      [8, 9, 79, 32, 38, 46],
    ];
    const out = join(dir, 'python.safetensors');
    const plan = pyEval(dir, fixture('tiny-gpt2.pt'), ids, out);
    // PEFT's reading of the saved config: blocks 0 and 2 only, ranks and scalings by the patterns.
    expect(plan['transformer.h.2.attn.c_attn']).toEqual({ r: 8, scaling: 2 / 8 });
    expect(plan['transformer.h.0.attn.c_proj']).toEqual({ r: 4, scaling: 24 / 4 });
    expect(plan['transformer.h.0.mlp.c_fc']).toEqual({ r: 2, scaling: 8 / 2 });
    expect(Object.keys(plan)).toHaveLength(8);
    expect(await ranks(m)).toEqual(Object.fromEntries(Object.entries(plan).map(([k, v]) => [k, v.r])));
    const ours = await lastHidden(m, ids);
    expectRel(relDiff(ours, readReference(out).hidden_last!), FORWARD_RTOL, 'hidden state against PEFT rules');

    const again = await loadLoraWithHeads(dir);
    expect(again.lora).toMatchObject({ rankPattern: lora.rankPattern, alphaPattern: lora.alphaPattern, layersToTransform: [0, 2], layersPattern: ['h'] });
    const back = await lastHidden(again, ids);
    expect(Array.from(back.data)).toEqual(Array.from(ours.data));
    m.dispose();
    again.dispose();
  });

  it('refuses bad pattern options before loading the model', async () => {
    const cls = { name: 'cls', inSize: 64, numOutputs: 2 };
    const bad = async (lora: Record<string, unknown>, re: RegExp) => {
      const e = await rejection(createHeadedQLoRA(fixture('tiny-gpt2.pt'), { heads: [cls], lora }));
      expect(e.code).toBe('ERR_TH_CONFIG');
      expect(e.message).toMatch(re);
    };
    await bad({ rankPattern: { c_fc: 0 } }, /lora\.rankPattern\["c_fc"\] must be a positive integer rank \(at most 65536\), got a number 0/);
    await bad({ rankPattern: { 'c_(fc': 2 } }, /lora\.rankPattern key "c_\(fc" is not a valid regular expression/);
    await bad({ alphaPattern: ['c_fc'] }, /lora\.alphaPattern must be an object/);
    await bad({ layersToTransform: [] }, /lora\.layersToTransform must be a block index .* non-empty array/);
    await bad({ layersToTransform: [1.5] }, /lora\.layersToTransform/);
    await bad({ layersPattern: 'h' }, /lora\.layersPattern needs lora\.layersToTransform/);
    await bad({ layersToTransform: [4] }, /names block 4 but this gpt2 model has 4 blocks/);
    await bad({ targetModules: [] }, /lora\.targetModules must name at least one module/);
  });
});

describe('adapter_config.json fields that cannot be applied as PEFT applies them are refused', () => {
  // A folder as the Python reference wrote it, with one field changed.
  function variant(edit: (cfg: Record<string, unknown>) => unknown): string {
    const src = dirs.gpt2!;
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    for (const f of ['adapter_model.safetensors', 'head_configs.json', 'cls.safetensors']) copyFileSync(join(src, f), join(dir, f));
    const cfg = JSON.parse(readFileSync(join(src, 'adapter_config.json'), 'utf8'));
    const out = edit(cfg);
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(out === undefined ? cfg : out));
    return dir;
  }
  const refused: [string, (c: Record<string, unknown>) => unknown, RegExp][] = [
    ['use_dora: true', (c) => void (c.use_dora = true), /use_dora is a boolean true, which is not supported.*must be false or null/],
    ['an unknown peft_type', (c) => void (c.peft_type = 'IA3'), /peft_type "IA3" is not supported; only "LORA"/],
    ['no peft_type', (c) => void delete c.peft_type, /peft_type is missing; PEFT requires it/],
    ['modules_to_save naming a base-model module', (c) => void (c.modules_to_save = ['lm_head']), /modules_to_save names "lm_head", which is not a head of head_configs.json/],
    ['r: "4"', (c) => void (c.r = '4'), /r must be a positive integer \(at most 65536\), got a string "4"/],
    ['a config that is []', () => [], /adapter config file '.*adapter_config.json' must hold a JSON object {...}, got an array/],
    ['lora_dropout: "x"', (c) => void (c.lora_dropout = 'x'), /lora_dropout must be a number in \[0, 1\), got a string "x"/],
    ['target_modules: []', (c) => void (c.target_modules = []), /target_modules is an empty list, which adapts no module/],
    ['target_modules as a regular expression', (c) => void (c.target_modules = '.*c_attn'), /target_modules as a regular expression/],
    ['target_modules: [1]', (c) => void (c.target_modules = [1]), /target_modules must be a non-empty list of module names, "all-linear" or null, got an array/],
    ['rank_pattern with a string rank', (c) => void (c.rank_pattern = { c_fc: '6' }), /rank_pattern\["c_fc"\] must be a positive integer rank \(at most 65536\), got a string "6"/],
    ['rank_pattern that is a list', (c) => void (c.rank_pattern = [6]), /rank_pattern must be an object \{ pattern: rank \}, got an array/],
    ['alpha_pattern with a bad regular expression', (c) => void (c.alpha_pattern = { '(': 2 }), /alpha_pattern key "\(" is not a valid regular expression/],
    ['layers_to_transform: "1"', (c) => void (c.layers_to_transform = '1'), /layers_to_transform must be a block index/],
    ['layers_to_transform past the last block', (c) => void (c.layers_to_transform = [1, 9]), /names block 9 but this gpt2 model has 4 blocks/],
    ['layers_pattern without layers_to_transform', (c) => void ((c.layers_to_transform = null), (c.layers_pattern = 'h')), /layers_pattern must be null when layers_to_transform is not given/],
    ['bias: "weird"', (c) => void (c.bias = 'weird'), /bias must be "none", "all" or "lora_only", got a string "weird"/],
    ['fan_in_fan_out: "yes"', (c) => void (c.fan_in_fan_out = 'yes'), /fan_in_fan_out must be true or false, got a string "yes"/],
    ['init_lora_weights: "pissa"', (c) => void (c.init_lora_weights = 'pissa'), /init_lora_weights must be true, false, "gaussian" or "eva"/],
    ['lora_bias: true', (c) => void (c.lora_bias = true), /lora_bias is a boolean true, which is not supported/],
    ['exclude_modules', (c) => void (c.exclude_modules = ['c_fc']), /exclude_modules is an array .* not supported/],
    ['use_rslora: 1', (c) => void (c.use_rslora = 1), /use_rslora must be true or false, got a number 1/],
  ];
  it.each(refused)('%s', async (_, edit, re) => {
    const e = await rejection(loadLoraWithHeads(variant(edit)));
    expect(e).toBeInstanceOf(TransformerHeadsError);
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(re);
  });

  it('accepts what PEFT ignores at inference, and modules_to_save naming our heads', async () => {
    const dir = variant((c) => {
      Object.assign(c, { inference_mode: false, task_type: null, revision: null, fan_in_fan_out: false, init_lora_weights: 'gaussian', modules_to_save: ['cls'] });
      Object.assign(c, { peft_version: '0.17.0', exclude_modules: null, use_dora: false, some_future_field: { x: 1 } });
    });
    const m = await loadLoraWithHeads(dir);
    const ref = await loadLoraWithHeads(dirs.gpt2!);
    const ids = [[1, 2, 3, 4]];
    expect(Array.from((await lastHidden(m, ids)).data)).toEqual(Array.from((await lastHidden(ref, ids)).data));
    m.dispose();
    ref.dispose();
  });
});

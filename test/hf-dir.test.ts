// Hugging Face model folders (made by scripts/make_hf_fixtures.py from the TorchScript fixtures' state dicts) load to
// the same model as the archives; saveBackbone writes folders that load back to the same model; bad folders are
// clear errors.
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  createHeadedQLoRA,
  decodeSafetensors,
  encodeSafetensors,
  loadBackbone,
  loadHeaded,
  loadLoraWithHeads,
  loadTokenizer,
  readModelConfig,
  type Backbone,
  type Batch,
  type HeadedBatch,
  type Tensor,
} from '../ts/index.js';
import { expectRel, fixture, FORWARD_RTOL as RTOL, maxDiff, readReference, relDiff, type RefTensor } from './helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'th-hf-'));

function refBatch(ref: Record<string, RefTensor>): Batch {
  return {
    input_ids: { data: ref.input_ids!.data as BigInt64Array, shape: ref.input_ids!.shape },
    attention_mask: { data: ref.attention_mask!.data as BigInt64Array, shape: ref.attention_mask!.shape },
  };
}

async function everything(model: Backbone, batch: Batch): Promise<{ hidden: Tensor[]; logits: Tensor }> {
  const L = model.numLayers;
  const out = await model.forward(batch, { layers: Array.from({ length: L + 1 }, (_, i) => i), logits: true });
  return { hidden: Array.from({ length: L + 1 }, (_, i) => out.hiddenStates.get(i)!), logits: out.logits! };
}

/** The same weights (bit for bit) run by the same code in the same process: the outputs are bit-identical. */
async function expectSameModel(a: Backbone, b: Backbone, batch: Batch): Promise<void> {
  const x = await everything(a, batch);
  const y = await everything(b, batch);
  x.hidden.forEach((h, i) => expect(maxDiff(h, y.hidden[i]!), `hidden_states[${i}]`).toBe(0));
  expect(maxDiff(x.logits, y.logits)).toBe(0);
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

const folders: Array<[string, string]> = [
  ['hf-tiny-gpt2', 'tiny-gpt2'], // GPT2LMHeadModel names (transformer.), tokenizer files
  ['hf-tiny-gpt2-noprefix', 'tiny-gpt2'], // original openai layout: no prefix, attn.bias / masked_bias buffers
  ['hf-tiny-llama', 'tiny-llama'], // two shards + index, rotary inv_freq buffers
  ['hf-tiny-mistral', 'tiny-mistral'],
  ['hf-tiny-qwen2', 'tiny-qwen2'], // tied: no lm_head.weight
];

describe.each(folders)('%s', (dir, archive) => {
  it(`computes exactly what ${archive}.pt does, and matches the Python reference`, async () => {
    const a = await loadBackbone(fixture(`${archive}.pt`));
    const b = await loadBackbone(fixture(dir));
    const ref = readReference(fixture(`${archive}.ref.safetensors`));
    const batch = refBatch(ref);
    await expectSameModel(a, b, batch);
    const out = await everything(b, batch);
    const mask = ref.attention_mask!.data;
    out.hidden.forEach((h, i) => expectRel(relDiff(h, ref[`hidden_states.${i}`]!, mask), RTOL, `hidden_states[${i}]`));
    expectRel(relDiff(out.logits, ref.logits!, mask), RTOL, 'logits');
    expect(b.config).toEqual(a.config);
    expect(await readModelConfig(fixture(dir))).toEqual(await readModelConfig(fixture(`${archive}.pt`)));
    a.dispose();
    b.dispose();
  });
});

describe('half-precision files', () => {
  it('F16 weights loaded as float32 match the archive run with the same F16 rounding', async () => {
    const m = await loadBackbone(fixture('hf-tiny-gpt2-f16'));
    const rounded = readReference(fixture('hf-tiny-gpt2-f16.ref.safetensors'));
    const full = readReference(fixture('tiny-gpt2.ref.safetensors'));
    const out = await everything(m, refBatch(rounded));
    const mask = rounded.attention_mask!.data;
    out.hidden.forEach((h, i) => expectRel(relDiff(h, rounded[`hidden_states.${i}`]!, mask), RTOL, `hidden_states[${i}]`));
    expectRel(relDiff(out.logits, rounded.logits!, mask), RTOL, 'logits');
    // The rounding is visible (F16 keeps 11 bits: ~2^-11 = 4.9e-4 of each weight), far beyond the tolerance, so the
    // comparison above really tells the two apart.
    expect(relDiff(out.hidden[m.numLayers]!, full[`hidden_states.${m.numLayers}`]!, mask)).toBeGreaterThan(10 * RTOL);
    m.dispose();
  });

  it('BF16 weights loaded as bfloat16 equal the F32 archive loaded as bfloat16 (same rounding), bit for bit', async () => {
    const a = await loadBackbone(fixture('tiny-llama.pt'), { dtype: 'bfloat16' });
    const b = await loadBackbone(fixture('hf-tiny-llama-bf16'), { dtype: 'bfloat16' });
    await expectSameModel(a, b, refBatch(readReference(fixture('tiny-llama.ref.safetensors'))));
    a.dispose();
    b.dispose();
  });
});

describe('tokenizer from a folder', () => {
  it('loadTokenizer reads tokenizer.json and tokenizer_config.json from the folder and from the loaded model', async () => {
    const tok = await loadTokenizer(fixture('hf-tiny-gpt2'));
    expect(tok.eosTokenId).toBe(100);
    expect(tok.padTokenId).toBe(100);
    const { ids } = tok.encode('Hello world, free money now!');
    expect(tok.decode(ids)).toBe('hello world, free money now!');
    const m = await loadBackbone(fixture('hf-tiny-gpt2'));
    expect(m.tokenizerJson).toBe(readFileSync(fixture('hf-tiny-gpt2/tokenizer.json'), 'utf8'));
    expect((await loadTokenizer(m)).encode('Hello world').ids).toEqual(tok.encode('Hello world').ids);
    const hs = await m.hiddenStates({ input_ids: [ids] }, { layers: [-1] });
    expect(hs.get(-1)!.shape).toEqual([1, ids.length, 64]);
    m.dispose();
    const err = await rejection(loadTokenizer(fixture('hf-tiny-mistral')));
    expect(err.code).toBe('ERR_TH_FILE');
    expect(err.message).toMatch(/no tokenizer\.json/);
  });
});

describe('saveBackbone', () => {
  it.each(['tiny-gpt2', 'tiny-llama', 'tiny-qwen2'])('%s.pt -> folder -> loadBackbone gives identical outputs', async (name) => {
    const a = await loadBackbone(fixture(`${name}.pt`));
    const dir = tmp();
    await a.saveBackbone(dir);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))).toEqual(a.config.raw);
    // Hugging Face names, F32, {"format": "pt"}; tied lm_head left out, untied kept (read with the tests' own reader).
    const raw = readFileSync(join(dir, 'model.safetensors'));
    const header = JSON.parse(raw.subarray(8, 8 + Number(raw.readBigUInt64LE(0))).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt' });
    const keys = Object.keys(readReference(join(dir, 'model.safetensors')));
    const prefix = name === 'tiny-gpt2' ? 'transformer.' : 'model.';
    expect(keys.every((k) => k.startsWith(prefix) || k === 'lm_head.weight')).toBe(true);
    expect(keys.includes('lm_head.weight')).toBe(name === 'tiny-llama');
    if (name === 'tiny-gpt2') {
      const ref = readReference(join(dir, 'model.safetensors'));
      expect(ref['transformer.h.0.attn.c_attn.weight']!.shape).toEqual([64, 192]); // Conv1D [in, out], as HF stores it
    }
    const b = await loadBackbone(dir);
    await expectSameModel(a, b, refBatch(readReference(fixture(`${name}.ref.safetensors`))));
    // Saving over the folder the model was loaded from works (nothing stays mapped).
    await b.saveBackbone(dir);
    const c = await loadBackbone(dir);
    await expectSameModel(a, c, { input_ids: [[1, 2, 3, 4, 5]] });
    for (const m of [a, b, c]) m.dispose();
  });

  it('writes the tokenizer files when the model has them (tokenizer round trip)', async () => {
    const a = await loadBackbone(fixture('hf-tiny-gpt2'));
    const dir = tmp();
    await a.saveBackbone(dir);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readFileSync(join(dir, 'tokenizer.json'), 'utf8')).toBe(readFileSync(fixture('hf-tiny-gpt2/tokenizer.json'), 'utf8'));
    const text = 'the spam prize is free';
    expect((await loadTokenizer(dir)).encode(text).ids).toEqual((await loadTokenizer(fixture('hf-tiny-gpt2'))).encode(text).ids);
    a.dispose();
  });

  it('a fully finetuned HeadedModel saves its current backbone weights', async () => {
    const heads = [{ name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true }];
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads, freezeBaseModel: false, seed: 1 });
    const batch: HeadedBatch = { input_ids: [[5, 6, 7, 8], [9, 10, 11, 12]], cls: [1, 0] };
    await m.configureOptimizer({ lr: 1e-2 });
    await m.trainStep(batch);
    await m.optimizerStep(1e-2);
    const dir = tmp();
    await m.saveBackbone(dir);
    const saved = await loadBackbone(dir);
    const original = await loadBackbone(fixture('tiny-gpt2.pt'));
    const trained = (await m.hookedHiddenStates(batch)).get(4)!;
    const reloaded = (await saved.hiddenStates(batch, { layers: [-1] })).get(-1)!;
    expect(maxDiff(reloaded, trained)).toBe(0); // the saved float32 weights, bit for bit, through the same forward
    expect(relDiff(reloaded, (await original.hiddenStates(batch, { layers: [-1] })).get(-1)!)).toBeGreaterThan(1e-3);
    for (const x of [m, saved, original]) x.dispose();
  });

  it('a LoRA model saves its base weights; after mergeAndUnload, the merged ones', async () => {
    const heads = [{ name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true }];
    const m = await createHeadedQLoRA(fixture('tiny-llama.pt'), { heads, seed: 2, lora: { r: 4, alpha: 16 } });
    const batch: HeadedBatch = { input_ids: [[5, 6, 7, 8], [9, 10, 11, 12]], cls: [1, 0] };
    await m.configureOptimizer({ lr: 5e-2 });
    await m.trainStep(batch);
    await m.optimizerStep(5e-2);
    const original = await loadBackbone(fixture('tiny-llama.pt'));
    const base = tmp();
    await m.saveBackbone(base);
    const b = await loadBackbone(base);
    await expectSameModel(original, b, { input_ids: [[5, 6, 7, 8]] });
    await m.mergeAndUnload();
    const merged = tmp();
    await m.saveBackbone(merged);
    const c = await loadBackbone(merged);
    const mine = (await m.hookedHiddenStates(batch)).get(4)!;
    expect(maxDiff((await c.hiddenStates(batch, { layers: [-1] })).get(-1)!, mine)).toBe(0);
    expect(relDiff(mine, (await original.hiddenStates(batch, { layers: [-1] })).get(-1)!)).toBeGreaterThan(1e-4);
    for (const x of [m, original, b, c]) x.dispose();
  });

  it('a quantized model is refused with a clear message', async () => {
    const heads = [{ name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true }];
    const m = await loadHeaded(fixture('tiny-llama.pt'), { heads, quantization: { bits: 4 } });
    const err = await rejection(m.saveBackbone(tmp()));
    expect(err.code).toBe('ERR_TH_CONFIG');
    expect(err.message).toMatch(/quantized/);
    m.dispose();
  });
});

describe('heads, LoRA and QLoRA on a folder', () => {
  const heads = [{ name: 'cls', inSize: 64, numOutputs: 2, predForSequence: true }];
  const batch: HeadedBatch = { input_ids: [[5, 6, 7, 8, 9], [9, 10, 11, 2, 2]], attention_mask: [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], cls: [1, 0] };

  it('loadHeaded and createHeadedQLoRA (4-bit) give the same predictions from the folder as from the archive', async () => {
    const preds = async (p: Promise<{ forward: (b: HeadedBatch, o: { returnPreds: boolean }) => Promise<{ predsByHead: Map<string, Tensor> | null }>; dispose(): void }>) => {
      const m = await p;
      const out = (await m.forward(batch, { returnPreds: true })).predsByHead!.get('cls')!;
      m.dispose();
      return out;
    };
    expect(maxDiff(await preds(loadHeaded(fixture('hf-tiny-llama'), { heads, seed: 5 })), await preds(loadHeaded(fixture('tiny-llama.pt'), { heads, seed: 5 })))).toBe(0);
    const q = { heads, seed: 5, quantization: { bits: 4 as const }, lora: { r: 4 } };
    expect(maxDiff(await preds(createHeadedQLoRA(fixture('hf-tiny-llama'), q)), await preds(createHeadedQLoRA(fixture('tiny-llama.pt'), q)))).toBe(0);
  });

  it('loadLoraWithHeads reloads an adapter whose base model is a folder', async () => {
    const m = await createHeadedQLoRA(fixture('hf-tiny-llama'), { heads, seed: 6, lora: { r: 4, alpha: 8 } });
    await m.configureOptimizer({ lr: 5e-2 });
    await m.trainStep(batch);
    await m.optimizerStep(5e-2);
    const dir = tmp();
    await m.save(dir);
    expect(JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(fixture('hf-tiny-llama'));
    const r = await loadLoraWithHeads(dir);
    const p1 = (await m.forward(batch, { returnPreds: true })).predsByHead!.get('cls')!;
    const p2 = (await r.forward(batch, { returnPreds: true })).predsByHead!.get('cls')!;
    expect(maxDiff(p1, p2)).toBe(0);
    m.dispose();
    r.dispose();
  });
});

describe('errors reach JS as coded errors with readable messages', () => {
  const copyConfig = (from: string) => {
    const dir = tmp();
    copyFileSync(fixture(`${from}/config.json`), join(dir, 'config.json'));
    return dir;
  };

  it('a folder without config.json, or without weights', async () => {
    const empty = tmp();
    let err = await rejection(loadBackbone(empty));
    expect(err.code).toBe('ERR_TH_CONFIG');
    expect(err.message).toContain(`'${empty}' has no config.json`);
    err = await rejection(readModelConfig(empty));
    expect(err.code).toBe('ERR_TH_CONFIG');
    err = await rejection(loadBackbone(copyConfig('hf-tiny-gpt2')));
    expect(err.code).toBe('ERR_TH_FILE');
    expect(err.message).toMatch(/has no weights: expected model\.safetensors or model\.safetensors\.index\.json/);
    err = await rejection(loadHeaded(empty, { heads: [{ name: 'x', inSize: 64, numOutputs: 2 }] }));
    expect(err.code).toBe('ERR_TH_CONFIG');
  });

  it('a malformed model.safetensors names the file and the problem', async () => {
    const dir = copyConfig('hf-tiny-gpt2');
    const good = readFileSync(fixture('hf-tiny-gpt2/model.safetensors'));
    writeFileSync(join(dir, 'model.safetensors'), good.subarray(0, good.length - 100));
    let err = await rejection(loadBackbone(dir));
    expect(err.code).toBe('ERR_TH_FILE');
    expect(err.message).toContain(join(dir, 'model.safetensors'));
    expect(err.message).toMatch(/not a valid safetensors file: .*past the data buffer/);
    writeFileSync(join(dir, 'model.safetensors'), Buffer.from([1, 2, 3]));
    err = await rejection(loadBackbone(dir));
    expect(err.code).toBe('ERR_TH_FILE');
    expect(err.message).toMatch(/shorter than the 8-byte header length/);
  });

  it('a missing tensor, and a tensor of the wrong shape, are named with the shapes', async () => {
    const tensors = decodeSafetensors(readFileSync(fixture('hf-tiny-mistral/model.safetensors')), 'mistral');
    const dir = copyConfig('hf-tiny-mistral');
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors.filter((t) => t.key !== 'model.layers.1.self_attn.k_proj.weight')));
    let err = await rejection(loadBackbone(dir));
    expect(err.code).toBe('ERR_TH_CONFIG');
    expect(err.message).toMatch(/no tensor 'layers\.1\.self_attn\.k_proj\.weight'/);
    const wrong = tensors.map((t) => (t.key === 'model.norm.weight' ? { key: t.key, data: new Float32Array(31), shape: [31] } : t));
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(wrong));
    err = await rejection(loadBackbone(dir));
    expect(err.code).toBe('ERR_TH_CONFIG');
    expect(err.message).toContain("'norm.weight' has shape [31] but config.json implies [32]");
  });
});

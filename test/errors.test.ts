// Bad input gives a TransformerHeadsError with a code and a message that says what to fix; the process survives.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadBackbone, TransformerHeadsError, type Backbone } from '../ts/index.js';
import { fixture } from './helpers.js';

async function failure(p: Promise<unknown> | (() => unknown)): Promise<TransformerHeadsError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(TransformerHeadsError);
    return e as TransformerHeadsError;
  }
  throw new Error('expected an error');
}

describe('loading errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'th-errors-'));

  it('missing file', async () => {
    const e = await failure(loadBackbone(join(dir, 'nope.pt')));
    expect(e.code).toBe('ERR_TH_FILE');
    expect(e.message).toMatch(/does not exist/);
  });

  it('not a TorchScript archive', async () => {
    const p = join(dir, 'junk.pt');
    writeFileSync(p, 'definitely not a zip file');
    const e = await failure(loadBackbone(p));
    expect(e.code).toBe('ERR_TH_FILE');
    expect(e.message).toMatch(/not a TorchScript archive/);
    writeFileSync(p, Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(100, 7)]));
    expect((await failure(loadBackbone(p))).message).toMatch(/could not be read as a TorchScript archive/);
  });

  it('a directory that is not a model folder', async () => {
    // Folders are read as Hugging Face model folders; without config.json that is a config error, as for an archive.
    const e = await failure(loadBackbone(dir));
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/has no config\.json/);
  });

  it('archive without config.json', async () => {
    const e = await failure(loadBackbone(fixture('no-config.pt')));
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/no config\.json/);
  });

  it('unsupported model_type', async () => {
    const e = await failure(loadBackbone(fixture('bert-config.pt')));
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/'bert' is not supported \(supported: gpt2, llama, mistral, qwen2\)/);
  });

  it('unknown device or dtype, CUDA where there is none', async () => {
    expect((await failure(loadBackbone(fixture('tiny-gpt2.pt'), { device: 'tpu' as 'cpu' }))).code).toBe('ERR_TH_DEVICE');
    expect((await failure(loadBackbone(fixture('tiny-gpt2.pt'), { dtype: 'int8' as 'float32' }))).message).toMatch(/unknown dtype 'int8'/);
    expect((await failure(loadBackbone(fixture('tiny-gpt2.pt'), { device: 'cpu', dtype: 'float16' }))).message).toMatch(/float16.*not supported on the CPU/);
    const { runtimeInfo } = await import('../ts/index.js');
    if (!(await runtimeInfo()).cudaAvailable) {
      const e = await failure(loadBackbone(fixture('tiny-gpt2.pt'), { device: 'cuda' }));
      expect(e.code).toBe('ERR_TH_DEVICE');
      expect(e.message).toMatch(/no CUDA support/);
    }
  });

  it('bad path argument', async () => {
    expect((await failure(loadBackbone(42 as unknown as string))).code).toBe('ERR_TH_ARG');
  });
});

describe('forward errors', () => {
  let model: Backbone;
  beforeAll(async () => {
    model = await loadBackbone(fixture('tiny-gpt2.pt'));
  });
  afterAll(() => model.dispose());

  it('token id outside the vocabulary', async () => {
    const e = await failure(model.logits({ input_ids: [[1, 2, 101]] }));
    expect(e.code).toBe('ERR_TH_SHAPE');
    expect(e.message).toMatch(/token id 101 outside the vocabulary \[0, 101\)/);
    expect((await failure(model.logits({ input_ids: [[-1, 2]] }))).message).toMatch(/token id -1/);
  });

  it('input_ids / attention_mask shape mismatch', async () => {
    const e = await failure(model.logits({ input_ids: [[1, 2, 3]], attention_mask: [[1, 1]] }));
    expect(e.code).toBe('ERR_TH_SHAPE');
    expect(e.message).toMatch(/does not match input_ids shape \[1, 3\]/);
    expect((await failure(model.logits({ input_ids: { data: [1, 2, 3], shape: [2, 2] } }))).message).toMatch(/has 3 values but its shape \[2, 2\] needs 4/);
    expect((await failure(model.logits({ input_ids: [[1, 2], [3]] }))).message).toMatch(/same length/);
    expect((await failure(model.logits({ input_ids: [[1, 2, 3]], attention_mask: [[1, 2, 1]] }))).message).toMatch(/only hold 0 and 1/);
  });

  it('empty or non-integer input', async () => {
    expect((await failure(model.logits({ input_ids: [] }))).message).toMatch(/empty/);
    expect((await failure(model.logits({ input_ids: [1.5, 2] }))).code).toBe('ERR_TH_ARG');
    expect((await failure(model.logits({ input_ids: 'hello' as unknown as number[] }))).code).toBe('ERR_TH_ARG');
  });

  it('sequence longer than GPT-2 positions', async () => {
    expect((await failure(model.logits({ input_ids: Array(65).fill(1) }))).message).toMatch(/n_positions/);
  });

  it('layer index out of range', async () => {
    const e = await failure(model.hiddenStates({ input_ids: [1, 2] }, { layers: [5] }));
    expect(e.code).toBe('ERR_TH_VALUE');
    expect(e.message).toMatch(/hidden-state indices go from -5 to 4/);
    expect((await failure(model.hiddenStates({ input_ids: [1, 2] }, { layers: [-6] }))).code).toBe('ERR_TH_VALUE');
    expect((await failure(model.hiddenStates({ input_ids: [1, 2] }, { layers: [1.5] }))).code).toBe('ERR_TH_ARG');
  });

  it('the model still works after errors', async () => {
    const l = await model.logits({ input_ids: [1, 2, 3] });
    expect(l.shape).toEqual([1, 3, 101]);
  });

  it('use after dispose', async () => {
    const m = await loadBackbone(fixture('tiny-gpt2.pt'));
    m.dispose();
    expect(m.disposed).toBe(true);
    const e = await failure(m.logits({ input_ids: [1] }));
    expect(e.code).toBe('ERR_TH_DISPOSED');
    expect(() => m.memoryBytes).toThrow(/disposed/);
    m.dispose(); // twice is fine
  });

  it('dispose while a call is in flight lets that call finish', async () => {
    const m = await loadBackbone(fixture('tiny-gpt2.pt'));
    const p = m.logits({ input_ids: [[1, 2, 3]] });
    m.dispose();
    expect((await p).shape).toEqual([1, 3, 101]);
  });
});

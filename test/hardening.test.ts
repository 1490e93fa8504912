// Files from strangers and saves that can be interrupted: every JSON file goes through one reader (byte-order mark,
// nesting depth, top-level type, coded errors naming the file); the tokenizer package's own errors never surface;
// PEFT shape mismatches are coded; folder saves are all-or-nothing, keep the user's files and clean the leftovers of
// killed saves (the kill -9 test itself is test/save-kill.test.ts, the fuzz suite test/fuzz.test.ts).
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  ERROR_CODES,
  loadBackbone,
  loadHeaded,
  loadLoraWithHeads,
  loadTokenizer,
  readHeadConfigs,
  readModelConfig,
  TransformerHeadsError,
} from '../ts/index.js';
import { atomicWrite, MAX_JSON_DEPTH, parseJson, readJsonFile, saveFolder } from '../ts/io/index.js';
import { fixture, root } from './helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'th-harden-'));

async function failure(p: Promise<unknown> | (() => unknown)): Promise<TransformerHeadsError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(TransformerHeadsError);
    expect(ERROR_CODES).toContain((e as TransformerHeadsError).code);
    return e as TransformerHeadsError;
  }
  throw new Error('expected an error');
}

/** A copy of a fixture folder to damage. */
function copy(name: string): string {
  const d = join(tmp(), name);
  cpSync(fixture(name), d, { recursive: true });
  return d;
}

describe('JSON files', () => {
  it('a UTF-8 byte-order mark is accepted, as Python reads utf-8-sig', async () => {
    expect(parseJson('\ufeff{"a": 1}', 'x')).toEqual({ a: 1 });
    const d = copy('hf-tiny-gpt2');
    writeFileSync(join(d, 'config.json'), '\ufeff' + readFileSync(join(d, 'config.json'), 'utf8'));
    expect((await readModelConfig(d)).modelType).toBe('gpt2');
    const h = copy('heads-gpt2');
    writeFileSync(join(h, 'head_configs.json'), '\ufeff' + readFileSync(join(h, 'head_configs.json'), 'utf8'));
    expect((await readHeadConfigs(h)).length).toBe(Object.keys(JSON.parse(readFileSync(fixture('heads-gpt2/head_configs.json'), 'utf8'))).length);
  });

  it('nesting deeper than the limit is refused before anything walks it', async () => {
    expect(parseJson(`{"a": ${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`, 'x')).toBeTruthy();
    // brackets inside strings do not count
    expect(parseJson(`{"a": "${'['.repeat(1000)}"}`, 'x')).toEqual({ a: '['.repeat(1000) });
    const h = copy('heads-gpt2');
    writeFileSync(join(h, 'head_configs.json'), `{"seq_cls": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const e = await failure(readHeadConfigs(h));
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/head_configs\.json.*nests objects\/arrays deeper than 64 levels/);
    const l = copy('lora-gpt2');
    writeFileSync(join(l, 'adapter_config.json'), `{"r": ${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`);
    expect((await failure(loadLoraWithHeads(l, { modelPath: fixture('lora-gpt2/model.pt') }))).message).toMatch(/adapter_config\.json.*deeper than 64/);
  });

  it('the top-level value must be an object; null, arrays and scalars are config errors naming the file', async () => {
    const l = copy('lora-gpt2');
    for (const text of ['null', '[]', '3', '"x"']) {
      writeFileSync(join(l, 'adapter_config.json'), text);
      const e = await failure(loadLoraWithHeads(l, { modelPath: fixture('lora-gpt2/model.pt') }));
      expect(e.code).toBe('ERR_TH_CONFIG');
      expect(e.message).toMatch(/adapter_config\.json.*must hold a JSON object/);
    }
  });

  it('invalid JSON, invalid UTF-8 and a missing file: coded, with the file named; untrusted values are cut short', async () => {
    const h = copy('heads-gpt2');
    writeFileSync(join(h, 'head_configs.json'), '{"a": ');
    expect((await failure(readHeadConfigs(h))).message).toMatch(/head_configs\.json' is not valid JSON/);
    writeFileSync(join(h, 'head_configs.json'), Buffer.from([0x7b, 0xff, 0x7d]));
    expect((await failure(readHeadConfigs(h))).message).toMatch(/is not valid UTF-8/);
    const e = await failure(readJsonFile(join(h, 'nope.json'), 'thing'));
    expect(e.code).toBe('ERR_TH_FILE');
    expect(e.message).toMatch(/thing '.*nope\.json' does not exist/);
    // a 1 MB head name is named by its first characters only
    writeFileSync(join(h, 'head_configs.json'), JSON.stringify({ [`k${'x'.repeat(1_000_000)}`]: { name: 'y'.repeat(1_000_000), in_size: 64 } }));
    const long = await failure(loadHeaded(fixture('heads-gpt2/model.pt'), { headFolder: h }));
    expect(long.code).toBe('ERR_TH_CONFIG');
    expect(long.message.length).toBeLessThan(500);
  });

  it('wrong types in adapter_config.json name the field', async () => {
    const l = copy('lora-gpt2');
    const cfg = JSON.parse(readFileSync(join(l, 'adapter_config.json'), 'utf8'));
    for (const [k, v, re] of [
      ['r', 'four', /r must be a positive integer.*, got a string "four"/],
      ['r', 0, /r must be a positive integer/],
      ['lora_alpha', null, null],
      ['target_modules', [1, 2], /target_modules must be a non-empty list of module names/],
      ['bias', 'some', /bias must be "none", "all" or "lora_only"/],
      ['peft_type', 'IA3', /peft_type "IA3" is not supported/],
    ] as const) {
      writeFileSync(join(l, 'adapter_config.json'), JSON.stringify({ ...cfg, [k]: v }));
      const p = loadLoraWithHeads(l, { modelPath: fixture('lora-gpt2/model.pt') });
      if (re === null) {
        (await p).dispose(); // null means the default, as in PEFT
        continue;
      }
      const e = await failure(p);
      expect(e.code).toBe('ERR_TH_CONFIG');
      expect(e.message).toMatch(re);
    }
  });
});

describe('archives are not read whole', () => {
  // A model archive is its weights: the config and tokenizer are read from the zip's central directory and their own
  // entries only. The archive below is 2.5 GiB (sparse, a few KB on disk) with its entries at the front and the
  // central directory at the end; fs.readFile refuses files over 2 GiB, so reading it whole cannot pass.
  it('readModelConfig and loadTokenizer on a 2.5 GiB archive', async () => {
    const entries = [
      { name: 'archive/extra/config.json', data: readFileSync(fixture('hf-tiny-gpt2/config.json')) },
      { name: 'archive/extra/tokenizer.json', data: readFileSync(fixture('hf-tiny-gpt2/tokenizer.json')) },
    ];
    const path = join(tmp(), 'spread.pt');
    // The fuzz suite's zip writer, then the central directory and its end record moved to 2.5 GiB (a hole between).
    const { writeZip } = (await import(join(root, 'scripts/fuzz/cases.mjs'))) as { writeZip: (e: [string, Buffer][]) => Buffer };
    const zip = writeZip(entries.map(({ name, data }): [string, Buffer] => [name, data]));
    const cdOffset = zip.readUInt32LE(zip.length - 22 + 16);
    const directory = Buffer.from(zip.subarray(cdOffset));
    const moved = 2.5 * 2 ** 30;
    directory.writeUInt32LE(moved, directory.length - 22 + 16);
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, zip, 0, cdOffset, 0);
      writeSync(fd, directory, 0, directory.length, moved);
    } finally {
      closeSync(fd);
    }
    expect(statSync(path).size).toBeGreaterThan(2 ** 31);
    expect((await readModelConfig(path)).modelType).toBe('gpt2');
    const tok = await loadTokenizer(path);
    expect(tok.decode(tok.encode('reading a zip').ids).trim()).toBe('reading a zip');
    // The directory pointing past the end of the file is a coded refusal.
    const fd2 = openSync(path, 'r+');
    const tail = Buffer.alloc(4);
    tail.writeUInt32LE(2 ** 32 - 100, 0);
    writeSync(fd2, tail, 0, 4, statSync(path).size - 22 + 16);
    closeSync(fd2);
    const e = await failure(readModelConfig(path));
    expect(e.code).toBe('ERR_TH_FILE');
    expect(e.message).toMatch(/central directory runs past the end/);
  });
});

describe('errors are TransformerHeadsErrors', () => {
  it('a PEFT adapter whose tensors do not fit the model', async () => {
    const { decodeSafetensors, encodeSafetensors } = await import('../ts/index.js');
    const l = copy('lora-gpt2');
    const file = join(l, 'adapter_model.safetensors');
    const tensors = decodeSafetensors(readFileSync(file), 'x');
    const t = tensors[0]!;
    tensors[0] = { key: t.key, shape: [t.shape[0]! + 1, t.shape[1]!], data: new Float32Array((t.shape[0]! + 1) * t.shape[1]!) };
    writeFileSync(file, encodeSafetensors(tensors, { format: 'pt' }));
    const e = await failure(loadLoraWithHeads(l, { modelPath: fixture('lora-gpt2/model.pt') }));
    expect(e.code).toBe('ERR_TH_CONFIG');
    expect(e.message).toMatch(/lora_A.*shape|shape.*lora_A/);
    // the native calls that read or load weights are wrapped too
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'h', inSize: 64, numOutputs: 2 }] });
    expect((await failure(() => m.loadHeadWeights('h', [{ key: 'lins.0.weight', shape: [3, 64], data: new Float32Array(192) }]))).code).toBe('ERR_TH_CONFIG');
    expect((await failure(() => m.headWeights('nope'))).code).toMatch(/^ERR_TH_/);
    m.dispose();
  });

  it('tokenizer.json problems are ERR_TH_FILE naming the tokenizer, never the package\'s own errors', async () => {
    const d = copy('hf-tiny-gpt2');
    const good = JSON.parse(readFileSync(join(d, 'tokenizer.json'), 'utf8'));
    const cases: Array<[unknown, RegExp]> = [
      [{ ...good, model: null }, /has no "model" object/],
      [{ ...good, model: { ...good.model, vocab: 'abc' } }, /"model.vocab" must be an object/],
      [{ ...good, model: { ...good.model, vocab: { a: -1 } } }, /token ids must be integers/],
      [{ ...good, model: { ...good.model, merges: [1] } }, /"model.merges"\[0\]/],
      [{ ...good, added_tokens: [{ id: 'x' }] }, /"added_tokens"\[0\]/],
      [{ ...good, pre_tokenizer: [] }, /"pre_tokenizer" must be an object or null/],
      [{ ...good, model: { ...good.model, type: 'NoSuchModel' } }, /"model.type" "NoSuchModel" is not a tokenizer model/],
      [{ ...good, pre_tokenizer: { type: 'Sequence', pretokenizers: 5 } }, /could not/],
      [{ ...good, normalizer: { type: 'Replace', pattern: { Regex: '(' }, content: '' } }, /could not/],
    ];
    for (const [json, re] of cases) {
      writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(json));
      const e = await failure(async () => {
        const t = await loadTokenizer(d);
        t.decode(t.encode('Hello world').ids);
      });
      expect(e.code).toBe('ERR_TH_FILE');
      expect(e.message).toMatch(/tokenizer\.json/);
      expect(e.message).toMatch(re);
    }
  });
});

describe('folder saves', () => {
  const heads = [
    { name: 'a', inSize: 64, numOutputs: 2 },
    { name: 'b', inSize: 64, numOutputs: 3, layerHook: 1 },
  ];

  it('replace the save, drop heads that are gone, keep the user\'s files', async () => {
    const dir = join(tmp(), 'heads');
    const m1 = await loadHeaded(fixture('tiny-gpt2.pt'), { heads });
    await m1.save(dir);
    writeFileSync(join(dir, 'README.md'), 'my notes');
    mkdirSync(join(dir, 'extra'));
    writeFileSync(join(dir, 'extra', 'data.txt'), 'kept');
    chmodSync(dir, 0o750);
    const m2 = await loadHeaded(fixture('tiny-gpt2.pt'), { heads: [{ name: 'a', inSize: 64, numOutputs: 5 }] });
    await m2.save(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o750);
    expect(readdirSync(dir).sort()).toEqual(['README.md', 'a.safetensors', 'extra', 'head_configs.json']);
    expect(readFileSync(join(dir, 'extra', 'data.txt'), 'utf8')).toBe('kept');
    const back = await loadHeaded(fixture('tiny-gpt2.pt'), { headFolder: dir });
    expect((await back.headWeights('a'))[0]!.shape).toEqual([5, 64]);
    for (const m of [m1, m2, back]) m.dispose();
  });

  it('a save through a symbolic link writes into the folder it points to and keeps the link', async () => {
    const base = tmp();
    mkdirSync(join(base, 'real'));
    symlinkSync(join(base, 'real'), join(base, 'link'));
    const m = await loadHeaded(fixture('tiny-gpt2.pt'), { heads });
    await m.save(join(base, 'link'));
    await m.save(join(base, 'link'));
    m.dispose();
    expect(lstatSync(join(base, 'link')).isSymbolicLink()).toBe(true);
    expect(readdirSync(join(base, 'real')).sort()).toEqual(['a.safetensors', 'b.safetensors', 'head_configs.json']);
  });

  it('a failing save leaves the folder as it was and no temporary folder', async () => {
    const base = tmp();
    const dir = join(base, 'x');
    await saveFolder(dir, () => true, async (t) => writeFileSync(join(t, 'f'), 'one'));
    const e = await failure(saveFolder(dir, () => true, async (t) => {
      writeFileSync(join(t, 'f'), 'two');
      throw new Error('disk on fire');
    }));
    expect(e.code).toBe('ERR_TH_FILE');
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('one');
    expect(readdirSync(base)).toEqual(['x']);
    writeFileSync(join(base, 'file'), '');
    expect((await failure(saveFolder(join(base, 'file'), () => true, async () => {}))).message).toMatch(/exists and is not a folder/);
  });

  it('leftovers of dead processes are cleaned (an interrupted swap is restored); those of live ones are kept', async () => {
    const base = tmp();
    const dir = join(base, 'x');
    // A pid that is certainly dead: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout.trim();
    const hex = 'abcdef012345';
    mkdirSync(join(base, `.x.old-${dead}-${hex}`)); // the two-rename fallback died between its renames
    writeFileSync(join(base, `.x.old-${dead}-${hex}`, 'f'), 'previous save');
    mkdirSync(join(base, `.x.tmp-${dead}-${hex}`));
    mkdirSync(join(base, `.checkpoint-3.del-${dead}-${hex}`));
    mkdirSync(join(base, `.x.tmp-1-${hex}`)); // pid 1 is alive
    await saveFolder(dir, (n) => n === 'g', async (t) => writeFileSync(join(t, 'g'), 'new'));
    expect(readdirSync(base).sort()).toEqual([`.x.tmp-1-${hex}`, 'x']);
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('previous save'); // restored, then kept as a file the save does not own
    // in-folder temporary files of atomicWrite: dead writers' and the old pid-less ones go
    writeFileSync(join(dir, `g.tmp-${dead}-${hex}`), '');
    writeFileSync(join(dir, `f.tmp-${hex}`), '');
    await saveFolder(dir, (n) => n === 'g', async (t) => writeFileSync(join(t, 'g'), 'newer'));
    expect(readdirSync(dir).sort()).toEqual(['f', 'g']);
    writeFileSync(join(base, `y.tmp-${dead}-${hex}`), '');
    await atomicWrite(join(base, 'y'), 'y');
    expect(existsSync(join(base, `y.tmp-${dead}-${hex}`))).toBe(false);
  });

  it('saveBackbone replaces the weights and tokenizer of another model and keeps other files', async () => {
    const dir = join(tmp(), 'model');
    const llama = await loadBackbone(fixture('hf-tiny-llama')); // sharded, no tokenizer
    const gpt2 = await loadBackbone(fixture('hf-tiny-gpt2')); // with a tokenizer
    await gpt2.saveBackbone(dir);
    writeFileSync(join(dir, 'generation_config.json'), '{}');
    await llama.saveBackbone(dir);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    const back = await loadBackbone(dir);
    expect(back.config.modelType).toBe('llama');
    for (const b of [llama, gpt2, back]) b.dispose();
  });

  it('with the working directory inside the folder, the save replaces files in place (no swap under our feet)', () => {
    const dir = join(tmp(), 'cwd');
    mkdirSync(dir);
    writeFileSync(join(dir, 'user.txt'), 'u');
    const script = `
      const { saveFolder } = await import(${JSON.stringify(join(root, 'dist', 'io', 'index.js'))});
      const { writeFileSync } = await import('node:fs');
      const { join } = await import('node:path');
      await saveFolder('.', (n) => n.startsWith('f'), async (t) => writeFileSync(join(t, 'f1'), 'one'));
      await saveFolder('.', (n) => n.startsWith('f'), async (t) => writeFileSync(join(t, 'f2'), 'two'));
      process.stdout.write(process.cwd());`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(realpathSync(dir));
    expect(readdirSync(dir).sort()).toEqual(['f2', 'user.txt']);
  });
});

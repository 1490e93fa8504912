// Fuzz cases: each (kind, seed, index) deterministically writes one mutated copy of a fixture into a folder and names
// the loader calls that must either succeed or refuse it with a documented TransformerHeadsError. Kinds and what
// they mutate:
//   safetensors   model.safetensors of a Hugging Face GPT-2 folder: header length, JSON header (dtypes, shapes,
//                 offsets, structure), bit flips, truncation; loaded by loadBackbone (native reader) and
//                 readSafetensors (TypeScript reader)
//   config        config.json of a GPT-2 folder, and config.json / model.safetensors.index.json of a sharded Llama
//                 folder; loaded by readModelConfig and loadBackbone
//   heads         a head folder (head_configs.json, <name>.safetensors); loaded by loadHeaded({ headFolder })
//   peft          a PEFT LoRA folder (adapter_config.json, adapter_model.safetensors, heads); loadLoraWithHeads
//   tokenizer     tokenizer.json / tokenizer_config.json; loadTokenizer, then encode and decode
//   torchscript   a TorchScript archive (a zip of uncompressed records): truncated, record sizes and offsets
//                 changed, record contents flipped or rewritten; loadBackbone, loadTorchScript (+ a forward),
//                 readModelConfig, loadTokenizer
// This file is long because each kind has its own mutation vocabulary; the harness (harness.mjs) and the child
// process (runner.mjs) are separate.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

export const KINDS = ['safetensors', 'config', 'heads', 'peft', 'tokenizer', 'torchscript'];

// ------------------------------------------------------------------------------------------------ randomness

function hash32(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The PRNG of one case (mulberry32 seeded from kind, seed and index): the case is reproducible from those three. */
export function caseRng(kind, seed, index) {
  let a = hash32(`${kind}/${seed}/${index}`);
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
  };
  return r;
}

// ------------------------------------------------------------------------------------------------ JSON mutations

const LONG = 'x'.repeat(100_000);
/** Values that break assumptions: types, sizes, special numbers and strings. Raw JSON text. */
const NASTY_JSON = [
  'null', '[]', '{}', 'true', 'false', '0', '-1', '1', '0.5', '-0', '1e308', '1e400', '-1e400', '9007199254740993',
  '18446744073709551616', '4294967296', '2147483648', '-2147483649', '1e-400', '""', '"0"', '"1999"', '" "', '"\\u0000"',
  '"\\ud800"', '"é𝄞"', `"${LONG}"`, '[1,2,3]', '[[]]', '{"a":null}', '[null]', '"../../etc/passwd"', '"/"', '"lm_head"',
  '"cross_entropy"', '"F32"', '"gpt2"', '"llama"', '[-1]', '[0]', '[1e20]', '[9007199254740993, 2]', '{"__proto__": {"x": 1}}',
];

/** adapter_config.json fields the PEFT reader types and applies or refuses, and values of their vocabulary. */
const PEFT_FIELDS = [
  'r', 'lora_alpha', 'lora_dropout', 'target_modules', 'rank_pattern', 'alpha_pattern', 'layers_to_transform',
  'layers_pattern', 'modules_to_save', 'use_dora', 'bias', 'peft_type', 'use_rslora', 'init_lora_weights',
  'fan_in_fan_out', 'exclude_modules', 'layer_replication', 'lora_bias', 'task_type', 'revision',
];
const PEFT_VALUES = [
  '{"c_attn": 2}', '{"c_fc": 6, "h\\\\.1\\\\.attn\\\\.c_attn": 2}', '{"(": 2}', '{"c_attn": 0}', '{"c_attn": "2"}',
  '{"c_attn": 1e9}', '{".*": 3}', '{"c_proj": 0.5}', '{"c_proj": -3}', '{"(?P<x>c)_attn": 2}', '{"c_attn": null}',
  '[0, 2]', '[3]', '[9]', '[1.5]', '1', '-1', '"h"', '["h"]', '"layers"', '["layers", "h"]', '"all-linear"', '".*c_attn"',
  '["cls"]', '["lm_head"]', '["heads"]', '"LORA"', '"IA3"', '"lora"', 'true', 'false', '"4"', '4', '65537', '[]', 'null',
  '{}', '["c_attn", ""]', '"gaussian"', '"pissa"', '"none"', '"all"', '"lora_only"', '"CAUSAL_LM"',
];

function deep(depth, kind) {
  return kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '0' + '}'.repeat(depth);
}

/** A random node path in a JSON value, descending with probability `go` at each level. */
function randomPath(v, r, go = 0.7) {
  const path = [];
  let cur = v;
  while (cur !== null && typeof cur === 'object' && r.chance(path.length === 0 ? 0.95 : go)) {
    const keys = Array.isArray(cur) ? cur.map((_, i) => i) : Object.keys(cur);
    if (keys.length === 0) break;
    const k = r.pick(keys);
    path.push(k);
    cur = cur[k];
  }
  return path;
}

/** Serializes `v` with the node at `path` replaced by raw JSON text `raw` (so invalid or huge values survive). */
function withRaw(v, path, raw) {
  const marker = `__fuzz_marker_${Math.random().toString(36).slice(2)}__`;
  if (path.length === 0) return raw;
  const copy = structuredClone(v);
  let cur = copy;
  for (const k of path.slice(0, -1)) cur = cur[k];
  cur[path.at(-1)] = marker;
  return JSON.stringify(copy, null, 1).replace(JSON.stringify(marker), () => raw);
}

/** One mutation of JSON text; returns { text (string or Buffer), what }. */
export function mutateJson(text, r) {
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    v = null;
  }
  const op = r.int(16);
  switch (op) {
    case 0:
    case 1:
    case 2:
    case 3: {
      const path = randomPath(v, r);
      const raw = r.pick(NASTY_JSON);
      return { text: withRaw(v, path, raw), what: `${JSON.stringify(path)} = ${raw.slice(0, 40)}` };
    }
    case 4: {
      const path = randomPath(v, r);
      const depth = r.pick([5, 50, 65, 200, 5000, 100_000]);
      return { text: withRaw(v, path, deep(depth, r.pick(['array', 'object']))), what: `${JSON.stringify(path)} nested ${depth} deep` };
    }
    case 5: {
      // delete a key
      const path = randomPath(v, r);
      if (path.length === 0 || typeof v !== 'object' || v === null) return { text: 'null', what: 'whole file null' };
      const copy = structuredClone(v);
      let cur = copy;
      for (const k of path.slice(0, -1)) cur = cur[k];
      if (Array.isArray(cur)) cur.splice(path.at(-1), 1);
      else delete cur[path.at(-1)];
      return { text: JSON.stringify(copy), what: `delete ${JSON.stringify(path)}` };
    }
    case 6: {
      // a duplicated key (JSON.parse keeps the last, nlohmann-based readers may refuse) or an unknown key
      const keys = [...text.matchAll(/"([^"\\]{1,40})"\s*:/g)];
      const value = r.pick(NASTY_JSON).slice(0, 200);
      if (keys.length && r.chance(0.6)) {
        const m = r.pick(keys);
        return { text: `${text.slice(0, m.index)}"${m[1]}": ${value}, ${text.slice(m.index)}`, what: `duplicate key ${m[1]} = ${value.slice(0, 30)}` };
      }
      return { text: text.replace(/^\s*\{/, `{"fuzz_unknown_key": ${value}, `), what: 'unknown key' };
    }
    case 7:
      return { text: '\ufeff' + text, what: 'UTF-8 byte-order mark' };
    case 8: {
      const cut = r.int(text.length);
      return { text: text.slice(0, cut), what: `truncated at ${cut}/${text.length}` };
    }
    case 9: {
      const b = Buffer.from(text);
      const n = 1 + r.int(4);
      for (let i = 0; i < n; i++) b[r.int(b.length)] ^= 1 << r.int(8);
      return { text: b, what: `${n} bit flips` };
    }
    case 10:
      return { text: r.pick(['', ' ', '\n', 'null', '[]', '0', '"text"', 'true', '{', '}', '[{}]', deep(100_000, 'array')]), what: 'whole file replaced' };
    case 11:
      return { text: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), what: 'UTF-16' };
    case 12: {
      const b = Buffer.from(text);
      b[r.int(b.length)] = r.pick([0x80, 0xc0, 0xff, 0xfe, 0xed]);
      return { text: b, what: 'invalid UTF-8 byte' };
    }
    case 13: {
      // numbers changed in place
      const nums = [...text.matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)];
      if (!nums.length) return { text: text + ' x', what: 'trailing garbage' };
      const m = r.pick(nums);
      const repl = r.pick(['-1', '0', '1e400', '99999999999999999999', '4294967297', '-9007199254740993', '0.5', 'NaN', 'Infinity', String(Number(m[0]) * 1000)]);
      return { text: text.slice(0, m.index) + repl + text.slice(m.index + m[0].length), what: `number ${m[0]} -> ${repl}` };
    }
    case 14: {
      // a string value's type or content changed
      const strs = [...text.matchAll(/"((?:[^"\\]|\\.){0,60})"(?!\s*:)/g)];
      if (!strs.length) return { text: '\ufeff' + text, what: 'byte-order mark' };
      const m = r.pick(strs);
      const repl = r.pick(['""', '"\\u0000"', 'null', '0', '[]', '{}', `"${m[1]}${m[1]}"`, '"\\ud83d"', `"${LONG}"`, '"../x"']);
      return { text: text.slice(0, m.index) + repl + text.slice(m.index + m[0].length), what: `string "${m[1].slice(0, 20)}" -> ${repl.slice(0, 20)}` };
    }
    default:
      return { text: text + r.pick(['\n{}', ',', ' ]', '\u0000', '//']), what: 'trailing garbage' };
  }
}

// ------------------------------------------------------------------------------------------------ safetensors

function splitSafetensors(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

function joinSafetensors(headerText, data, lengthOverride) {
  const hb = Buffer.from(headerText);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(hb.length));
  return Buffer.concat([len, hb, data]);
}

const DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'U64', 'C64', 'f32', '', 'F3'];
const BIG = [0, 1, -1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 1e300, 0.5];

/** One mutation of a safetensors file; returns { buf, what }. */
export function mutateSafetensors(buf, r) {
  const { header, data } = splitSafetensors(buf);
  const keys = Object.keys(header).filter((k) => k !== '__metadata__');
  const key = r.pick(keys);
  const t = header[key];
  const op = r.int(12);
  const out = (h, what, d = data) => ({ buf: joinSafetensors(JSON.stringify(h), d), what });
  switch (op) {
    case 0:
      return out({ ...header, [key]: { ...t, dtype: r.pick(DTYPES) } }, `${key}.dtype changed`);
    case 1: {
      const shape = [...t.shape];
      const i = r.int(Math.max(1, shape.length));
      const v = r.pick([...BIG, shape[i] + 1, shape[i] - 1, shape[i] * 2]);
      if (r.chance(0.2)) return out({ ...header, [key]: { ...t, shape: r.pick([[], [0], [2 ** 32, 2 ** 32], [-4, -4], [1, 1, 1, 1, 1, 1, 1, 1, 1], 'x', null]) } }, `${key}.shape replaced`);
      shape[i] = v;
      return out({ ...header, [key]: { ...t, shape } }, `${key}.shape[${i}] = ${v}`);
    }
    case 2: {
      const off = [...t.data_offsets];
      const i = r.int(2);
      off[i] = r.pick([...BIG, off[i] + 1, off[i] - 1, data.length, data.length + 4, off[1 - i]]);
      return out({ ...header, [key]: { ...t, data_offsets: off } }, `${key}.data_offsets[${i}] = ${off[i]}`);
    }
    case 3: {
      // overlap or swap two tensors' spans
      const other = header[r.pick(keys)];
      return out({ ...header, [key]: { ...t, data_offsets: [...other.data_offsets] } }, `${key} shares another tensor's bytes`);
    }
    case 4: {
      const h = { ...header };
      delete h[key];
      return out(h, `${key} removed`);
    }
    case 5: {
      // header length field
      const real = BigInt(buf.readBigUInt64LE(0));
      const v = r.pick([0n, 1n, 7n, real - 1n, real + 1n, real + 8n, BigInt(buf.length), 2n ** 31n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n]);
      const b = Buffer.from(buf);
      b.writeBigUInt64LE(v);
      return { buf: b, what: `header length ${v}` };
    }
    case 6: {
      const cut = r.chance(0.5) ? r.int(Math.min(buf.length, Number(buf.readBigUInt64LE(0)) + 16)) : r.int(buf.length);
      return { buf: buf.subarray(0, cut), what: `truncated at ${cut}/${buf.length}` };
    }
    case 7: {
      const b = Buffer.from(buf);
      const hdr = Number(buf.readBigUInt64LE(0)) + 8;
      const n = 1 + r.int(6);
      for (let i = 0; i < n; i++) b[r.chance(0.8) ? r.int(hdr) : r.int(b.length)] ^= 1 << r.int(8);
      return { buf: b, what: `${n} bit flips` };
    }
    case 8: {
      const m = mutateJson(JSON.stringify(header), r);
      return { buf: joinSafetensors(m.text, data), what: `header JSON: ${m.what}` };
    }
    case 9:
      return out({ ...header, __metadata__: r.pick([null, 5, [], { format: 5 }, { format: 'pt', x: { y: 1 } }, 'pt']) }, '__metadata__ changed');
    case 10: {
      // a tensor entry of the wrong type, or extra fields
      return out({ ...header, [key]: r.pick([null, 0, 'F32', [], { dtype: 'F32' }, { ...t, extra: 1 }, { ...t, shape: t.shape.map(String) }]) }, `${key} entry replaced`);
    }
    default:
      return { buf: Buffer.concat([buf, Buffer.alloc(r.int(64) + 1, r.int(256))]), what: 'trailing bytes' };
  }
}

// ------------------------------------------------------------------------------------------------ zip (TorchScript)

/** The records of a zip archive: name, local header offset, data offset, sizes, method (from the central directory). */
export function zipRecords(buf) {
  let eocd = -1;
  for (let i = buf.length - 22; i >= 0; i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const records = [];
  for (let k = 0; k < count; k++) {
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    const dataStart = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    records.push({ name, central: p, local, dataStart, size: buf.readUInt32LE(p + 20), method: buf.readUInt16LE(p + 10) });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return { eocd, records };
}

/** A stored (uncompressed) zip of `entries` [[name, Buffer]], data aligned to 64 bytes as torch writes it. */
export function writeZip(entries) {
  const parts = [];
  const central = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nb = Buffer.from(name);
    const headerLen = 30 + nb.length;
    const pad = (64 - ((offset + headerLen + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x5346, 0); // torch's padding extra field id ("FS")
    extra.writeUInt16LE(pad, 2);
    const crc = crc32(data) >>> 0;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(nb.length, 26);
    lh.writeUInt16LE(extra.length, 28);
    parts.push(lh, nb, extra, data);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(nb.length, 28);
    ch.writeUInt32LE(offset, 42);
    central.push(ch, nb);
    offset += lh.length + nb.length + extra.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cd, end]);
}

function entriesOf(buf) {
  return zipRecords(buf).records.map((rec) => [rec.name, Buffer.from(buf.subarray(rec.dataStart, rec.dataStart + rec.size))]);
}

/** One mutation of a TorchScript archive; returns { buf, what }. */
export function mutateArchive(buf, r, extraTexts) {
  const { eocd, records } = zipRecords(buf);
  const rec = r.chance(0.5) ? r.pick(records.filter((x) => !x.name.includes('/data/'))) : r.pick(records);
  const short = rec.name.replace(/^[^/]*\//, '');
  const b = Buffer.from(buf);
  const op = r.int(11);
  switch (op) {
    case 0: {
      const cut = r.chance(0.5) ? eocd - r.int(Math.min(eocd, 4096)) : r.int(buf.length);
      return { buf: buf.subarray(0, cut), what: `truncated at ${cut}/${buf.length}` };
    }
    case 1:
    case 2: {
      // a record's size fields (central and/or local header)
      const v = r.pick([0, 1, rec.size - 1, rec.size + 1, rec.size * 2, rec.size + 4096, 0x7fffffff, 0xfffffffe, 0xffffffff, buf.length]) >>> 0;
      const where = r.pick(['central', 'local', 'both']);
      if (where !== 'local') {
        b.writeUInt32LE(v, rec.central + 20);
        if (r.chance(0.7)) b.writeUInt32LE(v, rec.central + 24);
      }
      if (where !== 'central') {
        b.writeUInt32LE(v, rec.local + 18);
        b.writeUInt32LE(v, rec.local + 22);
      }
      return { buf: b, what: `${short}: size ${rec.size} -> ${v} (${where})` };
    }
    case 3: {
      const v = r.pick([0, rec.local + 1, rec.local - 1, buf.length, 0xffffffff, r.int(buf.length)]) >>> 0;
      b.writeUInt32LE(v, rec.central + 42);
      return { buf: b, what: `${short}: local header offset -> ${v}` };
    }
    case 4: {
      const n = 1 + r.int(8);
      for (let i = 0; i < n && rec.size > 0; i++) b[rec.dataStart + r.int(rec.size)] ^= 1 << r.int(8);
      return { buf: b, what: `${short}: ${n} bit flips in its data` };
    }
    case 5: {
      // a record's content rewritten with consistent sizes and CRCs: truncated or grown
      const entries = entriesOf(buf);
      const i = entries.findIndex(([n]) => n === rec.name);
      const d = entries[i][1];
      const cut = r.int(d.length + 1);
      entries[i][1] = r.chance(0.7) ? d.subarray(0, cut) : Buffer.concat([d, Buffer.alloc(1 + r.int(512), r.int(256))]);
      return { buf: writeZip(entries), what: `${short}: content ${d.length} -> ${entries[i][1].length} bytes (sizes consistent)` };
    }
    case 6: {
      // a text record rewritten (extra/config.json by JSON mutation, code by a line change)
      const entries = entriesOf(buf);
      const texts = entries.filter(([n]) => /extra\/|\.py$|version$/.test(n));
      const [name, d] = r.pick(texts);
      const i = entries.findIndex(([n]) => n === name);
      let text;
      let what;
      if (name.endsWith('.json')) ({ text, what } = mutateJson(d.toString('utf8'), r));
      else {
        const lines = d.toString('utf8').split('\n');
        const k = r.int(lines.length);
        lines[k] = r.pick(['', 'raise Exception("x")', lines[k] + lines[k], 'def (:', lines[k].replace(/\d+/g, '99999999999'), '  _0 = torch.zeros([-1])']);
        text = lines.join('\n');
        what = `line ${k} changed`;
      }
      entries[i][1] = Buffer.isBuffer(text) ? text : Buffer.from(text);
      return { buf: writeZip(entries), what: `${name.replace(/^[^/]*\//, '')}: ${what}` };
    }
    case 7: {
      const which = r.pick([8, 10, 12, 16, 20]);
      const v = r.pick([0, 1, 0xffff, 0xffffffff, records.length + 1, buf.length]) >>> 0;
      if (which === 8 || which === 10 || which === 20) b.writeUInt16LE(v & 0xffff, eocd + which);
      else b.writeUInt32LE(v, eocd + which);
      return { buf: b, what: `end record field @${which} -> ${v}` };
    }
    case 8: {
      // drop or duplicate a record
      const entries = entriesOf(buf);
      const i = entries.findIndex(([n]) => n === rec.name);
      if (r.chance(0.5)) entries.splice(i, 1);
      else entries.push([rec.name, entries[i][1]]);
      return { buf: writeZip(entries), what: `${short}: record ${entries.length < records.length ? 'dropped' : 'duplicated'}` };
    }
    case 9: {
      // add a tokenizer.json (mutated) as an extra file
      const entries = entriesOf(buf);
      const prefix = records[0].name.split('/')[0];
      const m = mutateJson(extraTexts.tokenizer, r);
      entries.unshift([`${prefix}/extra/tokenizer.json`, Buffer.isBuffer(m.text) ? m.text : Buffer.from(m.text)]);
      return { buf: writeZip(entries), what: `extra/tokenizer.json added: ${m.what}` };
    }
    default: {
      const n = 1 + r.int(16);
      for (let i = 0; i < n; i++) b[r.int(b.length)] ^= 1 << r.int(8);
      return { buf: b, what: `${n} bit flips anywhere` };
    }
  }
}

// ------------------------------------------------------------------------------------------------ cases

const sources = new Map();
function src(path) {
  if (!sources.has(path)) sources.set(path, readFileSync(path));
  return sources.get(path);
}

function copyDir(from, to, skip = () => false) {
  mkdirSync(to, { recursive: true });
  for (const n of readdirSync(from)) if (!skip(n) && statSync(join(from, n)).isFile()) copyFileSync(join(from, n), join(to, n));
}

/** Folder-level damage: a file removed, replaced by a folder, or by a link to itself. */
function damageFile(dir, name, r) {
  const p = join(dir, name);
  rmSync(p, { force: true });
  const op = r.int(3);
  if (op === 1) mkdirSync(p);
  if (op === 2) symlinkSync(p, p); // a link loop: ELOOP
  return `${name} ${['removed', 'is a folder', 'is a link loop'][op]}`;
}

/**
 * Writes case (kind, seed, index) into `dir` (emptied first) and returns { what, load(api) }: the mutation in words,
 * and the loader calls, which must resolve or reject with a documented TransformerHeadsError.
 */
export function makeCase(kind, seed, index, dir, fixtures) {
  const r = caseRng(kind, seed, index);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const fx = (n) => join(fixtures, n);
  const hfGpt2 = fx('hf-tiny-gpt2');
  switch (kind) {
    case 'safetensors': {
      copyDir(hfGpt2, dir, (n) => n === 'model.safetensors');
      const m = mutateSafetensors(src(join(hfGpt2, 'model.safetensors')), r);
      writeFileSync(join(dir, 'model.safetensors'), m.buf);
      return {
        what: m.what,
        async load(api) {
          await settle(api.readSafetensors(join(dir, 'model.safetensors')));
          const b = await api.loadBackbone(dir);
          try {
            await b.hiddenStates({ input_ids: [[1, 2, 3]] }, { layers: [-1] });
          } finally {
            b.dispose();
          }
        },
      };
    }
    case 'config': {
      const sharded = r.chance(0.35);
      const from = sharded ? fx('hf-tiny-llama') : hfGpt2;
      copyDir(from, dir);
      const file = sharded && r.chance(0.5) ? 'model.safetensors.index.json' : 'config.json';
      const m = r.chance(0.1) ? { text: null, what: damageFile(dir, file, r) } : mutateJson(src(join(from, file)).toString('utf8'), r);
      if (m.text !== null) writeFileSync(join(dir, file), m.text);
      return {
        what: `${sharded ? 'llama ' : ''}${file}: ${m.what}`,
        async load(api) {
          await settle(api.readModelConfig(dir));
          const b = await api.loadBackbone(dir);
          try {
            await b.hiddenStates({ input_ids: [[1, 2, 3]] }, { layers: [-1] });
          } finally {
            b.dispose();
          }
        },
      };
    }
    case 'heads': {
      const from = fx('heads-gpt2');
      copyDir(from, dir, (n) => n === 'model.pt' || n === 'expected.safetensors' || n === 'batch.safetensors');
      const heads = readdirSync(dir).filter((n) => n.endsWith('.safetensors'));
      let what;
      const op = r.int(10);
      if (op < 5) {
        const m = mutateJson(src(join(from, 'head_configs.json')).toString('utf8'), r);
        writeFileSync(join(dir, 'head_configs.json'), m.text);
        what = `head_configs.json: ${m.what}`;
      } else if (op < 9) {
        const name = r.pick(heads);
        const m = mutateSafetensors(src(join(from, name)), r);
        writeFileSync(join(dir, name), m.buf);
        what = `${name}: ${m.what}`;
      } else what = damageFile(dir, r.pick([...heads, 'head_configs.json']), r);
      return {
        what,
        async load(api) {
          await settle(api.readHeadConfigs(dir));
          const m = await api.loadHeaded(join(from, 'model.pt'), { headFolder: dir });
          try {
            await m.forward({ input_ids: [[1, 2, 3]] }, { returnPreds: true });
          } finally {
            m.dispose();
          }
        },
      };
    }
    case 'peft': {
      const from = fx('lora-gpt2');
      copyDir(from, dir, (n) => n === 'model.pt' || n === 'expected.safetensors' || n === 'batch.safetensors');
      let what;
      const op = r.int(10);
      if (op < 3) {
        const m = mutateJson(src(join(from, 'adapter_config.json')).toString('utf8'), r);
        writeFileSync(join(dir, 'adapter_config.json'), m.text);
        what = `adapter_config.json: ${m.what}`;
      } else if (op < 5) {
        // One LoRA field set to a value of PEFT's vocabulary (valid, wrongly typed, or not implemented).
        const cfg = JSON.parse(src(join(from, 'adapter_config.json')).toString('utf8'));
        const field = r.pick(PEFT_FIELDS);
        const raw = r.chance(0.8) ? r.pick(PEFT_VALUES) : r.pick(NASTY_JSON);
        writeFileSync(join(dir, 'adapter_config.json'), withRaw(cfg, [field], raw));
        what = `adapter_config.json: ${field} = ${raw.slice(0, 40)}`;
      } else if (op < 9) {
        const m = mutateSafetensors(src(join(from, 'adapter_model.safetensors')), r);
        writeFileSync(join(dir, 'adapter_model.safetensors'), m.buf);
        what = `adapter_model.safetensors: ${m.what}`;
      } else what = damageFile(dir, r.pick(['adapter_config.json', 'adapter_model.safetensors', 'head_configs.json', 'cls.safetensors']), r);
      return {
        what,
        async load(api) {
          const m = await api.loadLoraWithHeads(dir, { modelPath: join(from, 'model.pt') });
          try {
            await m.forward({ input_ids: [[1, 2, 3]] }, { returnPreds: true });
          } finally {
            m.dispose();
          }
        },
      };
    }
    case 'tokenizer': {
      const big = r.chance(0.05);
      const from = big ? fx('gpt2-tokenizer') : hfGpt2;
      copyDir(from, dir, (n) => n.endsWith('.safetensors'));
      const file = r.chance(0.8) ? 'tokenizer.json' : 'tokenizer_config.json';
      const m = r.chance(0.05) ? { text: null, what: damageFile(dir, file, r) } : mutateJson(src(join(from, file)).toString('utf8'), r);
      if (m.text !== null) writeFileSync(join(dir, file), m.text);
      return {
        what: `${big ? 'gpt2 ' : ''}${file}: ${m.what}`,
        async load(api) {
          const t = await api.loadTokenizer(dir);
          for (const s of ['Hello world', ' the 1999 café 𝄞 ', '']) {
            const ids = t.encode(s).ids;
            t.decode(ids);
          }
          t.decode([0, 1, 2, 99999]);
        },
      };
    }
    case 'torchscript': {
      const base = src(fx('tiny-gpt2.pt'));
      const m = mutateArchive(base, r, { tokenizer: src(join(hfGpt2, 'tokenizer.json')).toString('utf8') });
      const file = join(dir, 'tiny-gpt2.pt');
      writeFileSync(file, m.buf);
      return {
        what: m.what,
        async load(api) {
          await settle(api.readModelConfig(file));
          await settle(api.loadTokenizer(file).then((t) => t.decode(t.encode('Hello').ids)));
          await settle(
            api.loadBackbone(file).then(async (b) => {
              try {
                await b.hiddenStates({ input_ids: [[1, 2, 3]] }, { layers: [-1] });
              } finally {
                b.dispose();
              }
            }),
          );
          const ts = await api.loadTorchScript(file);
          try {
            await ts.forward({ input_ids: [[1, 2, 3]] });
          } finally {
            ts.dispose();
          }
        },
      };
    }
    default:
      throw new Error(`unknown fuzz kind '${kind}'`);
  }
}

/** Errors of an intermediate call are checked like the last one's: collected, rethrown after the rest has run. */
const pending = [];
async function settle(p) {
  try {
    await p;
  } catch (e) {
    pending.push(e);
  }
}

/** Runs a case's loader; returns the errors it raised (intermediate calls' first, then the last call's). */
export async function runCase(c, api) {
  pending.length = 0;
  const errors = [];
  try {
    await c.load(api);
  } catch (e) {
    errors.push(e);
  }
  return [...pending.splice(0), ...errors];
}

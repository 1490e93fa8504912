import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Tensor } from '../ts/index.js';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const fixturesDir = process.env.TH_FIXTURES ?? resolve(root, 'fixtures');

export function fixture(name: string): string {
  const p = resolve(fixturesDir, name);
  if (!existsSync(p)) throw new Error(`missing fixture ${p}: run scripts/make_fixtures.sh`);
  return p;
}

export interface RefTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | BigInt64Array;
}

/** Reads the F32/I64 tensors that scripts/export_torchscript.py --dump-reference writes (independent of ts/). */
export function readReference(path: string): Record<string, RefTensor> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  const out: Record<string, RefTensor> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    const bytes = buf.subarray(base + v.data_offsets[0], base + v.data_offsets[1]);
    const copy = new Uint8Array(bytes).buffer;
    out[k] = { dtype: v.dtype, shape: v.shape, data: v.dtype === 'F32' ? new Float32Array(copy) : new BigInt64Array(copy) };
  }
  return out;
}

/** Max |a-b| over [B, T, ...] positions where mask[b*T+t] is 1 (all positions when no mask). */
export function maxDiff(a: Tensor | RefTensor, b: Tensor | RefTensor, mask?: ArrayLike<number | bigint>): number {
  expectSameShape(a.shape, b.shape);
  const [B, T] = a.shape as [number, number];
  const inner = a.data.length / (B * T);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const pos = Math.floor(i / inner);
    if (mask && Number(mask[pos]) === 0) continue;
    const d = Math.abs(Number(a.data[i]) - Number(b.data[i]));
    if (Number.isNaN(d)) return Infinity;
    if (d > m) m = d;
  }
  return m;
}

function expectSameShape(a: number[], b: number[]): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) throw new Error(`shape mismatch [${a}] vs [${b}]`);
}

export const tinyFixtures = ['tiny-gpt2', 'tiny-llama', 'tiny-llama-linear', 'tiny-llama-dynamic', 'tiny-llama3', 'tiny-mistral', 'tiny-qwen2'];

/**
 * Compiles ts/ into dist/ (what the CLI runs) unless dist/ is newer than every source file: tests that spawn the CLI
 * call this instead of paying a full tsc run each.
 */
export function ensureDist(): void {
  const newest = (dir: string): number => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return t;
  };
  const cli = resolve(root, 'dist', 'cli.js');
  if (existsSync(cli) && statSync(cli).mtimeMs > newest(resolve(root, 'ts'))) return;
  const tsc = resolve(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', resolve(root, 'tsconfig.json')], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}${r.stderr}`);
}

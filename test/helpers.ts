import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect } from 'vitest';

import { TransformerHeadsError } from '../ts/index.js';

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

/** Values to compare: a Tensor, a reference tensor, or any flat array given a shape. */
export interface Values {
  data: ArrayLike<number | bigint>;
  shape: readonly number[];
}

/**
 * Max |a-b| over [B, T, ...] positions where mask[b*T+t] is 1 (all positions when no mask). For bit-exact checks
 * (toBe(0)); tolerances go through relDiff.
 */
export function maxDiff(a: Values, b: Values, mask?: ArrayLike<number | bigint>): number {
  return diffAndScale(a, b, mask).diff;
}

// ------------------------------------------------------------------------------------------- float tolerances
// Every tolerance in these tests is relative to the magnitude of the values compared: the same bound then holds for
// a logit of 0.1 and a loss of 120, and for any summation order (thread count, BLAS kernel of the machine).
// Tolerances are written as multiples of float32's machine epsilon where they come from an error bound.

/** float32 machine epsilon, 2^-23. */
export const F32_EPS = 2 ** -23;

// The shared tolerances, with the largest values measured with 1, 2 and 4 threads and with AVX-512, AVX2 and no-SIMD
// kernels (ATEN_CPU_CAPABILITY=avx2|default, OPENBLAS_CORETYPE=Haswell|Sandybridge) against fixtures made with
// AVX-512: each leaves a factor of at least 10.

/**
 * One float32 forward by two implementations (native vs the TorchScript archive or eager Python, KV cache vs
 * recomputation): the longest dot product of the tiny models has K = 256 terms (their MLP), and a sum in another
 * order differs by at most K eps of its terms' magnitudes. Measured: 2.1e-6.
 */
export const FORWARD_RTOL = 256 * F32_EPS;

/**
 * A loss computed from the native forward against the same loss in PyTorch: a mean over a few dozen tokens of the
 * heads' outputs, which carry the forward's rounding differences. Measured: 5.7e-7.
 */
export const LOSS_RTOL = 64 * F32_EPS;

/** Gradients against PyTorch autograd: one more product summed over the batch's tokens. Measured: 8.4e-7. */
export const GRAD_RTOL = 128 * F32_EPS;

/**
 * Error of a against the reference b relative to b's magnitude: max|a-b| / max|b| over the positions where mask is
 * 1. A reference that is all zero has no scale: it must then be matched exactly (0, else Infinity).
 */
export function relDiff(a: Values, b: Values, mask?: ArrayLike<number | bigint>): number {
  const { diff, scale } = diffAndScale(a, b, mask);
  if (scale === 0) return diff === 0 ? 0 : Infinity;
  return diff / scale;
}

/** Scalars: |got - want| / |want| (want 0 must be matched exactly). */
export function relErr(got: number, want: number): number {
  const d = Math.abs(got - want);
  if (Number.isNaN(d)) return Infinity;
  if (want === 0) return d === 0 ? 0 : Infinity;
  return d / Math.abs(want);
}

/** A sum of terms (a total loss, a sum of weights): its rounding error scales with the terms' magnitudes. */
export function sumRelErr(got: number, want: number, terms: Iterable<number>): number {
  let scale = 0;
  for (const t of terms) scale += Math.abs(t);
  const d = Math.abs(got - want);
  if (Number.isNaN(d)) return Infinity;
  if (scale === 0) return d === 0 ? 0 : Infinity;
  return d / scale;
}

/**
 * expect(rel) <= rtol, naming what is compared. With TH_TEST_MARGINS=1 it prints every measured value and its bound
 * (how the tolerances were chosen, and how to see the margin on a new machine).
 */
export function expectRel(rel: number, rtol: number, what = ''): void {
  if (process.env.TH_TEST_MARGINS) {
    const margin = rel > 0 ? `${(rtol / rel).toFixed(0)}x` : 'exact';
    console.log(`margin ${expect.getState().currentTestName ?? ''} ${what}: rel ${rel.toPrecision(3)} rtol ${rtol.toPrecision(3)} (${margin})`);
  }
  expect(rel, `${what} relative error ${rel} > ${rtol}`).toBeLessThanOrEqual(rtol);
}

function diffAndScale(a: Values, b: Values, mask?: ArrayLike<number | bigint>): { diff: number; scale: number } {
  expectSameShape(a.shape, b.shape);
  const [B = 1, T = 1] = a.shape;
  const inner = a.data.length / (B * T);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.data.length; i++) {
    if (mask && Number(mask[Math.floor(i / inner)]) === 0) continue;
    const ref = Number(b.data[i]);
    const d = Math.abs(Number(a.data[i]) - ref);
    if (Number.isNaN(d)) return { diff: Infinity, scale: 0 };
    if (d > diff) diff = d;
    if (Math.abs(ref) > scale) scale = Math.abs(ref);
  }
  return { diff, scale };
}

function expectSameShape(a: readonly number[], b: readonly number[]): void {
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

/** The TransformerHeadsError `p` rejects with (the test fails if it resolves or rejects with anything else). */
export async function rejection(p: Promise<unknown>): Promise<TransformerHeadsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(TransformerHeadsError);
    return e as TransformerHeadsError;
  }
  throw new Error('expected a rejection');
}

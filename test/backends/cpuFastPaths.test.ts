/**
 * @file The CPU interpreter's faster paths (matmul four rows at a time, float add/sub/mul/div and unary
 * ops without a call per element, sums over trailing axes without an offset map) give the same bits as its generic loops: random shapes (rows not a multiple of 4,
 * batch broadcasting, k = 1, empty), values with signed zeros, infinities and NaN, f32 and f64 storage.
 */
import { describe, expect, it } from 'vitest';
import { binary, type Store, unary } from '../../backends/cpu/kernels/elementwise.ts';
import { reduce } from '../../backends/cpu/kernels/reduce.ts';
import { permute } from '../../backends/cpu/kernels/movement.ts';
import { matmul } from '../../backends/cpu/kernels/matmul.ts';
import { numel } from '../../ir/shape.ts';
import { mulberry32 } from '../../runtime/prng.ts';

const plainStore: Store = (o, i, v) => { o[i] = v; };

function values(n: number, rnd: () => number, f64: boolean): Float32Array | Float64Array {
  const special = [0, -0, Infinity, -Infinity, NaN, 1e-30, -3e38];
  const x = f64 ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rnd() < 0.03 ? special[Math.floor(rnd() * special.length)]! : (rnd() - 0.5) * 2 ** Math.floor(rnd() * 80 - 40); // magnitudes 2^±40: double sums round, so their order shows
  return x;
}

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

describe('cpu interpreter fast paths', () => {
  const rnd = mulberry32(7);
  it('matmul, four rows at a time: the same bits as the row-by-row loop', () => {
    const cases: Array<[number[], number[]]> = [
      [[1, 1], [1, 1]], [[5, 3], [3, 7]], [[8, 16], [16, 48]], [[13, 1], [1, 9]], [[0, 4], [4, 3]],
      [[2, 3, 6, 5], [5, 4]], [[3, 1, 7, 2], [1, 4, 2, 6]], [[4, 49, 8], [4, 8, 49]], [[6, 17, 33], [33, 10]],
    ];
    for (const f64 of [false, true])
      for (const [as, bs] of cases) {
        const r = Math.max(as.length, bs.length);
        const batch = Array.from({ length: r - 2 }, (_, i) => Math.max(as[as.length - r + i] ?? 1, bs[bs.length - r + i] ?? 1));
        const os = [...batch, as.at(-2)!, bs.at(-1)!];
        const a = values(numel(as), rnd, f64), b = values(numel(bs), rnd, f64);
        const slow = f64 ? new Float64Array(numel(os)) : new Float32Array(numel(os)), fast = slow.slice();
        matmul(a, as, b, bs, os, slow, plainStore, false, false);
        matmul(a, as, b, bs, os, fast, plainStore, false, true);
        expect(sameBits(fast, slow), `${f64 ? 'f64' : 'f32'} [${as}] x [${bs}]`).toBe(true);
      }
  });

  it('float add/sub/mul/div with and without broadcasting: the same bits as the per-element calls', () => {
    const shapes: Array<[number[], number[], number[]]> = [[[37], [37], [37]], [[4, 9], [9], [4, 9]], [[4, 1], [1, 6], [4, 6]], [[], [3, 5], [3, 5]], [[2, 3, 5], [2, 1, 5], [2, 3, 5]]];
    for (const f64 of [false, true])
      for (const op of ['add', 'sub', 'mul', 'div'] as const)
        for (const [as, bs, os] of shapes) {
          const a = values(Math.max(1, numel(as)), rnd, f64), b = values(Math.max(1, numel(bs)), rnd, f64);
          const slow = f64 ? new Float64Array(numel(os)) : new Float32Array(numel(os)), fast = slow.slice();
          binary(op, 'f32', a, as, b, bs, slow, os, plainStore, false);
          binary(op, 'f32', a, as, b, bs, fast, os, plainStore, true);
          expect(sameBits(fast, slow), `${op} ${f64 ? 'f64' : 'f32'} [${as}] , [${bs}]`).toBe(true);
        }
  });

  it('unary ops stored plainly: the same bits as through the store call', () => {
    for (const f64 of [false, true])
      for (const op of ['exp', 'neg', 'rsqrt', 'tanh', 'erf', 'sigmoid'] as const) {
        const x = values(101, rnd, f64);
        const slow = f64 ? new Float64Array(101) : new Float32Array(101), fast = slow.slice();
        unary(op, x, slow, plainStore, false);
        unary(op, x, fast, plainStore, true);
        expect(sameBits(fast, slow), `${op} ${f64 ? 'f64' : 'f32'}`).toBe(true);
      }
  });

  it('sum / mean over trailing axes: the same bits as the offset-map loop over the same elements in the same order', () => {
    // x [A, B, C] reduced over its trailing axes (contiguous path) vs the same values moved to the front
    // (permuted so the reduced axes lead: the offset-map path, which visits them in the same order)
    const cases: Array<[number[], number]> = [[[6, 5, 7], 1], [[6, 5, 7], 2], [[1, 1, 9], 1], [[4, 0, 3], 1], [[3, 17, 1], 2]];
    for (const f64 of [false, true])
      for (const op of ['reduce_sum', 'reduce_mean'] as const)
        for (const [shape, k] of cases) {
          const r = shape.length, x = values(numel(shape), rnd, f64);
          const lead = shape.slice(0, r - k), trail = shape.slice(r - k);
          const perm = [...trail.map((_, i) => r - k + i), ...lead.map((_, i) => i)];
          const moved = f64 ? new Float64Array(x.length) : new Float32Array(x.length);
          permute(x, shape, perm, moved);
          const fast = f64 ? new Float64Array(numel(lead)) : new Float32Array(numel(lead)), slow = fast.slice();
          reduce(op, x, shape, trail.map((_, i) => r - k + i), fast, plainStore);
          reduce(op, moved, [...trail, ...lead], trail.map((_, i) => i), slow, plainStore);
          expect(sameBits(fast, slow), `${op} ${f64 ? 'f64' : 'f32'} [${shape}] over the last ${k}`).toBe(true);
        }
  });
});

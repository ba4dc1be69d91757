/**
 * The CUDA row kernels on a real GPU (KILN_BACKEND=cuda vitest run test/gpu/reductions.test.ts):
 * reductions over strided axes (the column kernel: 32 grid points per block, 8 lanes each; the
 * two-pass split column kernel for small grids over long extents) and over contiguous rows (one block
 * per row, warp-shuffle combine), against the CPU interpreter.
 *
 * Tolerances. The interpreter sums in f64 (of f32 terms) and rounds once; the GPU sums in f32 in its
 * own order (per lane, then lanes, warps or split partials in a fixed order) and may contract a product
 * into the add (FMA), so its error is at most (d + 2)·u·Σ|terms| with u = 2^-24 and d the longest chain
 * of f32 additions (≤ 254 for every mapping of these shapes: column kernel ⌈T/8⌉ + 7 = 39 at T = 256,
 * row kernel ⌈n/256⌉ + 5 + 7 = 28 at n = 4096; split column kernel ⌈chunk/8⌉ + 7 + split − 1 = 69
 * at 7·1111 rows in 30 chunks of 260), where Σ|terms|
 * is the same graph run on |x|, |w| (exact for the sums of products, an upper bound for sum + max; for `meanThenScale`, whose terms
 * mean(x)·x_i carry the mean's own error, twice that). A relative 1e-5·(1 + |cpu|) bound is wrong
 * for sums that cancel (a sum of 4096 terms of size ~1 that ends near 0 still carries ~1e-5 of
 * rounding), the likely cause of the [16, 256, 768] failure on the H200 on 2026-12-02 (an f32 emulation
 * of the GPU's order, without FMA, reaches 0.94 of that bound; the printed margins say). Max, min and argmax are exact (ties are impossible for
 * continuous random inputs); the RMS norm's statistics have no cancellation: 1e-5 relative.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { backendByName, cudaOptionsFromEnv } from '../../runtime/backends.ts';
import { createCudaBackend } from '../../backends/cuda/executable.ts';
import { trace } from '../../compiler/dsl/trace.ts';
import type { Graph } from '../../ir/graph.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { boundMismatches } from '../support/compare.ts';
import { randomFeeds } from '../support/randomGraph.ts';
import { REDUCTION_CASES, reductionGraph } from '../support/reductionGraphs.ts';

const cudaBackend = backendByName('cuda');

/** 2^-16 = (254 + 2)·2^-24: the summation bound's factor (longest addition chain ≤ 254, plus the product's and the result's rounding). */
const BOUND_CHAIN = 2 ** -16;

/** bf16 bias-gradient-like sums over [B·T] rows of [B, T, C] (a split column kernel, two sibling reductions). */
function bf16Columns(): Graph {
  return trace('bf16_columns', (t) => {
    const x = t.input('x', [8, 1000, 200], 'bf16'), w = t.input('w', [8, 1000, 200], 'bf16');
    return { xw: x.cast('f32').mul(w.cast('f32')).sum([0, 1]), sx: x.cast('f32').sigmoid().sum([0, 1]) };
  });
}

describe('CUDA row kernels', () => {
  for (const pairs of [false, true])
    it(`bf16 column sums${pairs ? ' at two grid points per thread (columnPairs)' : ''} equal the CPU interpreter within the summation bound`, async () => {
      const g = bf16Columns();
      const f = randomFeeds(g, 9);
      const abs = Object.fromEntries(Object.entries(f).map(([k, v]) => [k, hostTensor(v.dtype, v.shape, Array.from(v.data, Math.abs))]));
      const got = await runOnBackend(createCudaBackend({ ...cudaOptionsFromEnv(), columnPairs: pairs }), g, f);
      const want = runGraph(g, f), absWant = runGraph(g, abs);
      const bad: string[] = [];
      for (const [k, w] of Object.entries(want)) {
        const r = boundMismatches(got[k]!.data, w.data, (i) => BOUND_CHAIN * absWant[k]!.data[i]!);
        if (r.bad) bad.push(`${k}: ${r.bad}/${w.data.length} outside, worst ${r.worst.toPrecision(3)}x bound; ${r.first.join('; ')}`);
        console.log(`bf16 columns${pairs ? ' (pairs)' : ''} ${k}: worst |d|/bound ${r.worst.toPrecision(2)}`);
      }
      expect(bad).toEqual([]);
    });

  for (const c of REDUCTION_CASES)
    it(`reductions over strided and contiguous axes, ${c.name}, equal the CPU interpreter`, async () => {
      const g = reductionGraph(c);
      const f = randomFeeds(g, 7);
      const absFeeds = Object.fromEntries(Object.entries(f).map(([k, v]) => [k, hostTensor(v.dtype, v.shape, Array.from(v.data, Math.abs))]));
      const got = await runOnBackend(cudaBackend, g, f);
      const want = runGraph(g, f);
      const absWant = runGraph(g, absFeeds);
      const bad: string[] = [];
      const margins: string[] = [];
      for (const [k, w] of Object.entries(want)) {
        const a = absWant[k]!.data;
        const bound = (i: number): number =>
          k === 'sumTokens' || k === 'sumRows' || k === 'sumMaxRows' ? BOUND_CHAIN * a[i]! :
          k === 'meanThenScale' ? 2 * BOUND_CHAIN * a[i]! :
          k === 'rms' ? 1e-5 * (1 + Math.abs(w.data[i]!)) : 0;
        const r = boundMismatches(got[k]!.data, w.data, bound);
        margins.push(`${k} ${r.worst.toPrecision(2)}`);
        if (r.bad) bad.push(`${k}: ${r.bad}/${w.data.length} outside, worst ${r.worst.toPrecision(3)}x bound; ${r.first.join('; ')}`);
      }
      console.log(`reductions ${c.name}: worst |d|/bound ${margins.join(', ')}`);
      expect(bad).toEqual([]);
    });
});

/**
 * @file Reduction graphs shaped like a training step's: sums, maxima, minima and argmax over a
 * strided axis (tokens or batch of a [batch, tokens, channels] tensor: bias and modulation gradients)
 * and over the contiguous last axis (norms), with extents that are not multiples of any block size.
 * Used by the mapping tests (test/compiler/rowMapping.test.ts), the nvcc compile test and the GPU
 * test of the CUDA row kernels.
 */
import type { Tensor } from '../../compiler/dsl/tensor.ts';
import { trace } from '../../compiler/dsl/trace.ts';
import type { Graph } from '../../ir/graph.ts';

export interface ReductionCase {
  readonly name: string;
  readonly shape: readonly [number, number, number];
}

/**
 * [B, T, C] cases: enough grid points for the column kernel (B·C ≥ 4096), ragged extents too; sums
 * over [B, T] per channel of 768 or 200 channels (small grids over long extents: the two-pass split
 * column kernel, ragged chunks and a partial last block in the second).
 */
export const REDUCTION_CASES: readonly ReductionCase[] = [
  { name: 'b16 t256 c768', shape: [16, 256, 768] },
  { name: 'b7 t1111 c200 (split, ragged)', shape: [7, 1111, 200] },
  { name: 'b9 t37 c517 (ragged)', shape: [9, 37, 517] },
  { name: 'b130 t5 c33', shape: [130, 5, 33] },
];

export function reductionGraph(c: ReductionCase): Graph {
  const [b, t, ch] = c.shape;
  return trace(`reductions_${b}_${t}_${ch}`, (tr): Record<string, Tensor> => {
    const x = tr.input('x', [b, t, ch], 'f32');
    const w = tr.input('w', [b, t, ch], 'f32');
    const xw = x.mul(w);
    return {
      // strided: over tokens (axis 1), per (batch, channel)
      sumTokens: xw.sum(1),
      maxTokens: x.max(1),
      argmaxTokens: x.argmax(1),
      meanThenScale: x.mean(1, true).mul(x).sum(1),
      // strided over batch and tokens: per channel (a bias gradient)
      sumRows: xw.sum([0, 1]),
      // two reductions and a let after them in one kernel
      sumMaxRows: w.sum([0, 1]).add(w.max([0, 1])),
      // contiguous: over channels (a norm's statistics)
      rms: x.mul(x).mean(2, true).add(1e-6).rsqrt().mul(x),
      minChannels: x.neg().max(2).neg(),
    };
  });
}

/**
 * The CUDA row kernels on a real GPU (KILN_BACKEND=cuda vitest run test/gpu): reductions over strided
 * axes (the column kernel: 32 grid points per block, 8 lanes each) and over contiguous rows (one block
 * per row, warp-shuffle combine), against the CPU interpreter. Tolerance 1e-5·(1 + |cpu|) on f32
 * values: the GPU sums in a different order (lanes, then a fixed-order combine) than the interpreter's
 * sequential loop; for 256·37 ≤ 10⁴ terms of size O(1) the order changes a sum by far less. Argmax is
 * compared exactly (ties are impossible for continuous random inputs).
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { backendByName } from '../../runtime/backends.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { firstMismatch } from '../support/compare.ts';
import { randomFeeds } from '../support/randomGraph.ts';
import { REDUCTION_CASES, reductionGraph } from '../support/reductionGraphs.ts';

const cudaBackend = backendByName('cuda');

describe('CUDA row kernels', () => {
  for (const c of REDUCTION_CASES)
    it(`reductions over strided and contiguous axes, ${c.name}, equal the CPU interpreter`, async () => {
      const g = reductionGraph(c);
      const f = randomFeeds(g, 7);
      const got = await runOnBackend(cudaBackend, g, f);
      const want = runGraph(g, f);
      const bad: string[] = [];
      for (const [k, w] of Object.entries(want)) {
        const m = firstMismatch(got[k]!.data, w.data, k.startsWith('argmax') ? 0 : 1e-5);
        if (m) bad.push(`${k}: cuda vs cpu ${m}`);
      }
      expect(bad).toEqual([]);
    });
});

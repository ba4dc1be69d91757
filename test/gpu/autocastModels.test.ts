/**
 * The real models with bf16 autocast on the CUDA backend (KILN_BACKEND=cuda vitest run
 * test/gpu/autocastModels.test.ts): the golden cases of test/support/compiledModels.ts (forward and
 * gradients) compiled at precision bf16, so matmuls run on the tensor cores and every attention
 * (LightningDiT, DINOv2, TarFlow/STARFlow's causal layers, the FAE encoder/decoders) takes the flash
 * kernels (backends/cuda/flashAttention.ts; asserted), against the f32 PyTorch goldens and the CPU
 * oracle running the same autocast graph.
 *
 * Tolerances: those of test/models/autocast.test.ts (bf16 unit roundoff u = 2^-9): forward 16u, gradients
 * 64u, normwise with each check's floor. Derivation there: 5-13 rounded tensor-core ops along the
 * longest path, three roundings each, measured 2.8u-4.6u forward and ≤ 25u on gradients for the CPU
 * oracle. The GPU adds, per attention, the bf16 rounding of P (forward) and of P and dS (backward), as
 * FlashAttention does: two or three more roundings of size u on a path that already has ~15-40, inside
 * the same bounds; its f32 accumulation (the oracle accumulates matmuls in double) is far below u. Against
 * the CPU oracle on the same autocast graph the same bounds hold (both are within them of the golden, and
 * their difference is only these extra roundings). A wrong fragment layout, mask or statistic gives O(1).
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { cudaBackend } from '../../backends/cuda/executable.ts';
import { type FlashProbe, setFlashProbe } from '../../backends/cuda/flashAttention.ts';
import { compile } from '../../compiler/compile.ts';
import { autocast } from '../../compiler/transforms/autocast.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { MODEL_CASES, roundoffMismatches } from '../support/compiledModels.ts';

// KILN_FLASH_PROBE=nocausal|dqmask: a deliberate bug in the generated kernels (backends/cuda/flashAttention.ts),
// to check that these tests catch it; never set in normal runs.
setFlashProbe(process.env.KILN_FLASH_PROBE as FlashProbe | undefined);

const U = 2 ** -9;

describe('real models with bf16 autocast on the CUDA backend vs the f32 PyTorch goldens and the CPU oracle', () => {
  for (const [label, make] of MODEL_CASES)
    it(label, async () => {
      const c = make();
      const g = autocast(c.graph, { dtype: 'bf16' });
      const kernels = compile(g).program.kernels;
      const attention = kernels.filter((k) => k.kind === 'attention' || k.kind === 'attention_grad');
      expect(attention.filter((k) => !k.tile).map((k) => k.name), 'every attention takes the flash kernels').toEqual([]);
      const got = await runOnBackend(cudaBackend, c.graph, c.feeds, 'bf16');
      const cpu = runGraph(g, c.feeds);
      const r = roundoffMismatches(c, got, U, cpu);
      console.log(`${label}: ${attention.length} flash kernels; worst relative to its bound: ${r.worst.line}`);
      expect(r.bad, label).toEqual([]);
    }, 300_000);
});

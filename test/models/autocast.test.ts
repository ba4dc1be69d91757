/**
 * The real models with mixed precision on (compiler/transforms/autocast.ts) on the CPU oracle, against
 * the f32 PyTorch goldens: the same graphs (forward + gradients), feeds and goldens as
 * test/models/compiled.test.ts (test/support/compiledModels.ts), autocast to bf16 and to f16, run by the
 * CPU interpreter, which rounds every bf16/f16 value it stores (ir/dtype.ts) and accumulates matmuls
 * in double.
 *
 * Tolerances, from the formats' unit roundoff u (bf16: 8-bit significand, u = 2^-9 ≈ 1.95e-3;
 * f16: 11-bit significand, u = 2^-11 ≈ 4.9e-4): each
 * tensor-core op rounds its operands and its result (three roundings of relative size u). These
 * goldens run 5 to 13 such ops along their longest forward path (LightningDiT p1: 2 blocks × qkv,
 * attention, proj, w12, w3, plus the final layer), so ~15-40 roundings: independent roundings give a
 * normwise error of about √n·u (measured: 2.8u-4.6u for bf16), their worst-case sum n·u. The bound is
 * forward 16u (3.1e-2 in bf16) and gradients 64u (0.125: the backward runs twice as many rounded
 * matmuls after the forward's, and a gradient compared with the floor 0.01·G, G the case's largest, can
 * lose two more digits to cancellation; measured worst 4.8e-2 = 25u, lightningdit_p1 blocks.1.mlp.w3).
 * What these catch is a transform that changes the model (wrong operand, lost view, wrong cast target):
 * those give O(1) errors. They also check that autocast ran: the forward error must exceed 1e-4 (f32
 * alone gives ≤ 1e-6 on these cases; bf16 rounding 1e-3 and more). What they cannot see is a statistic
 * rounded to bf16 where it should stay f32 (one more rounding of size u is inside the bound): the
 * structural pins of test/compiler/autocast.test.ts catch that.
 * KILN_AUTOCAST_ERR=1 prints every case's worst errors.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { autocast } from '../../compiler/transforms/autocast.ts';
import { MODEL_CASES, roundoffMismatches } from '../support/compiledModels.ts';

const U = { bf16: 2 ** -9, f16: 2 ** -11 } as const;
const lines: string[] = [];
afterAll(() => {
  if (process.env.KILN_AUTOCAST_ERR) console.log(`autocast on the CPU oracle vs the f32 goldens (normwise relative, in units of u):\n${lines.join('\n')}`);
});

describe('real models with autocast on the CPU oracle vs the f32 PyTorch goldens', () => {
  for (const dtype of ['bf16', 'f16'] as const)
    for (const [label, make] of MODEL_CASES)
      it(`${label} (${dtype})`, () => {
        const c = make();
        const r = runGraph(autocast(c.graph, { dtype }), c.feeds);
        const rep = roundoffMismatches(c, r, U[dtype]);
        lines.push(`  ${label} ${dtype}: forward ${(rep.forward / U[dtype]).toFixed(1)}u; nearest its bound: ${rep.worst.line}`);
        expect(rep.bad, label).toEqual([]);
        // Autocast ran: the low-precision roundings are visible.
        expect(rep.forward, 'forward error of an autocast run').toBeGreaterThan(1e-4);
      });
});

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
import { relErr } from '../support/compare.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { autocast } from '../../compiler/transforms/autocast.ts';
import {
  type ModelCase, dinov2Case, ditCase, faeDiscriminatorCase, faeStageIaCase, faeStageIbCase, flowMatchingCase, tarflowCase,
} from '../support/compiledModels.ts';

const U = { bf16: 2 ** -9, f16: 2 ** -11 } as const;
const lines: string[] = [];
afterAll(() => {
  if (process.env.KILN_AUTOCAST_ERR) console.log(`autocast on the CPU oracle vs the f32 goldens (normwise relative, in units of u):\n${lines.join('\n')}`);
});

const rel = relErr;

const CASES: Array<[string, () => ModelCase]> = [
  ['dinov2 tiny run0', () => dinov2Case('tiny', 'run0')],
  ['dinov2 tiny_reg run1', () => dinov2Case('tiny_reg', 'run1')],
  ['dinov2 tiny_swiglu run0', () => dinov2Case('tiny_swiglu', 'run0')],
  ['lightningdit_p1', () => ditCase('lightningdit_p1')],
  ['lightningdit_p2_mixed', () => ditCase('lightningdit_p2_mixed')],
  ['dit_p2', () => ditCase('dit_p2')],
  ['flow matching (lightningdit_p1)', () => flowMatchingCase()],
  ['tarflow tiny_uncond', () => tarflowCase('tiny_uncond')],
  ['tarflow tiny_cond_p2', () => tarflowCase('tiny_cond_p2')],
  ['starflow tiny_starflow', () => tarflowCase('tiny_starflow')],
  ['fae stage Ia', () => faeStageIaCase()],
  ['fae stage Ib (adaptive GAN weight)', () => faeStageIbCase()],
  ['fae discriminator', () => faeDiscriminatorCase()],
];

describe('real models with autocast on the CPU oracle vs the f32 PyTorch goldens', () => {
  for (const dtype of ['bf16', 'f16'] as const)
    for (const [label, make] of CASES)
      it(`${label} (${dtype})`, () => {
        const c = make();
        const r = runGraph(autocast(c.graph, { dtype }), c.feeds);
        const u = U[dtype];
        const worst = { forward: [0, ''], grad: [0, ''] } as Record<'forward' | 'grad', [number, string]>;
        const bad: string[] = [];
        for (const ch of c.checks) {
          const e = rel(r[ch.output]!.data, ch.want.data, ch.floor);
          const w = worst[ch.kind];
          if (e > w[0]) [w[0], w[1]] = [e, ch.output];
          const tol = (ch.kind === 'forward' ? 16 : 64) * u;
          if (!(e <= tol)) bad.push(`${ch.output}: ${e.toExponential(2)} = ${(e / u).toFixed(1)}u > ${tol.toExponential(2)}`);
        }
        const f = ([e, n]: [number, string]) => `${(e / u).toFixed(1)}u (${e.toExponential(2)}, ${n})`;
        lines.push(`  ${label} ${dtype}: forward ${f(worst.forward)}` + (worst.grad[1] ? `, gradients ${f(worst.grad)}` : ''));
        expect(bad, label).toEqual([]);
        // Autocast ran: the low-precision roundings are visible.
        expect(worst.forward[0], 'forward error of an autocast run').toBeGreaterThan(1e-4);
      });
});

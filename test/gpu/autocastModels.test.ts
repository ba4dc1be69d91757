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
import { relErr } from '../support/compare.ts';
import { runOnBackend } from '../support/backendRun.ts';
import {
  type ModelCase, dinov2Case, ditCase, faeDiscriminatorCase, faeStageIaCase, faeStageIbCase, flowMatchingCase, tarflowCase,
} from '../support/compiledModels.ts';

// KILN_FLASH_PROBE=nocausal|dqmask: a deliberate bug in the generated kernels (backends/cuda/flashAttention.ts),
// to check that these tests catch it; never set in normal runs.
setFlashProbe(process.env.KILN_FLASH_PROBE as FlashProbe | undefined);

const U = 2 ** -9;

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

describe('real models with bf16 autocast on the CUDA backend vs the f32 PyTorch goldens and the CPU oracle', () => {
  for (const [label, make] of CASES)
    it(label, async () => {
      const c = make();
      const g = autocast(c.graph, { dtype: 'bf16' });
      const kernels = compile(g).program.kernels;
      const attention = kernels.filter((k) => k.kind === 'attention' || k.kind === 'attention_grad');
      expect(attention.filter((k) => !k.tile).map((k) => k.name), 'every attention takes the flash kernels').toEqual([]);
      const got = await runOnBackend(cudaBackend, c.graph, c.feeds, 'bf16');
      const cpu = runGraph(g, c.feeds);
      const bad: string[] = [];
      let worst = { ratio: 0, line: '' };
      for (const ch of c.checks) {
        const tol = (ch.kind === 'forward' ? 16 : 64) * U;
        const eg = relErr(got[ch.output]!.data, ch.want.data, ch.floor);
        const ec = relErr(got[ch.output]!.data, cpu[ch.output]!.data, ch.floor);
        if (Math.max(eg, ec) / tol > worst.ratio) worst = { ratio: Math.max(eg, ec) / tol, line: `${ch.output} (${ch.kind}): vs golden ${(eg / U).toFixed(1)}u, vs cpu autocast ${(ec / U).toFixed(1)}u` };
        if (!(eg <= tol)) bad.push(`${ch.output}: vs golden ${eg.toExponential(2)} = ${(eg / U).toFixed(1)}u > ${(tol / U).toFixed(0)}u`);
        if (!(ec <= tol)) bad.push(`${ch.output}: vs cpu autocast ${ec.toExponential(2)} = ${(ec / U).toFixed(1)}u > ${(tol / U).toFixed(0)}u`);
      }
      console.log(`${label}: ${attention.length} flash kernels; worst relative to its bound: ${worst.line}`);
      expect(bad, label).toEqual([]);
    }, 300_000);
});

/**
 * The WGSL backend on the real models and every nn layer, against the PyTorch goldens and the CPU
 * interpreter (the same checks and support modules as the kernel interpreter's and CUDA's model tests):
 *  - every nn layer's parameter and input gradients vs the PyTorch goldens, normwise 1e-4;
 *  - every model golden (DINOv2, LightningDiT/DiT, flow matching, TarFlow/STARFlow, FAE): forward and
 *    gradients vs the golden and the CPU interpreter, normwise 1e-4 (as test/models/compiled.test.ts);
 *  - f16 autocast (the default precision where the adapter has shader-f16; the WGSL kernels store f16
 *    as packed halves and compute in f32, so it runs on SwiftShader too), one model per family, vs the
 *    f32 goldens within test/models/autocast.test.ts's bounds (u = 2^-11: forward 16u, gradients 64u,
 *    derived there from the number of rounded ops on the longest path), and autocast visibly ran
 *    (forward error above 1e-4; f32 gives at most 1e-6 on these cases).
 * On SwiftShader (CI) most of the time is pipeline creation; kernels are position-independent, so equal
 * layers within a model and across the models share pipelines (one device per file): the 12 models
 * create about 450 pipelines for 1300 dispatches.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { wgslBackend } from '../../backends/wgsl/executable.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { MODEL_CASES, modelCaseMismatches, roundoffMismatches } from '../support/compiledModels.ts';
import { layerGradCase, layerGradFiles, layerGradMismatches } from '../support/layerGradients.ts';

const TOL = 1e-4;

describe('WGSL backend: nn layers and models', () => {
  // Three groups, so that each stays well inside the per-test timeout on a loaded CI machine.
  for (let part = 0; part < 3; part++)
    it(`nn layers ${part + 1}/3: parameter and input gradients vs the PyTorch goldens`, async () => {
      const bad: string[] = [];
      for (const file of layerGradFiles.filter((_, i) => i % 3 === part)) {
        const c = layerGradCase(file);
        bad.push(...layerGradMismatches(c, await runOnBackend(wgslBackend, c.gradGraph, c.feeds), TOL));
      }
      expect(bad).toEqual([]);
    });

  for (const [label, make] of MODEL_CASES)
    it(`model ${label}: forward and gradients vs the PyTorch golden and the CPU interpreter`, async () => {
      const c = make();
      const got = await runOnBackend(wgslBackend, c.graph, c.feeds);
      expect(modelCaseMismatches(c, got, runGraph(c.graph, c.feeds), TOL)).toEqual([]);
    });

  const F16_U = 2 ** -11;
  for (const [label, make] of MODEL_CASES.filter(([l]) => ['dinov2 tiny', 'lightningdit_p1', 'tarflow tiny_uncond', 'fae stage Ia'].includes(l)))
    it(`model ${label} with f16 autocast: vs the f32 PyTorch golden within 16u forward, 64u gradients`, async () => {
      const c = make();
      const got = await runOnBackend(wgslBackend, c.graph, c.feeds, 'f16');
      const r = roundoffMismatches(c, got, F16_U);
      expect(r.bad).toEqual([]);
      expect(r.forward, 'forward error of an f16 run').toBeGreaterThan(1e-4);
    });
});

/**
 * Gradients of every nn layer: (1) parameter and input gradients vs PyTorch autograd goldens
 * (golden/nn_layers.py: loss = Σ_outputs sum(out · cotangent)), f32 on the CPU backend, within
 * 1e-4 normwise relative error per parameter, max|kiln − torch| / max|torch|, each judged by its own
 * size (measured worst ~1e-5; the rule is test/support/layerGradients.ts's, which every backend uses). A reference gradient below 1e-6 of the layer's largest is zero in
 * exact arithmetic and holds only f32 rounding noise (one case: the key-norm bias of
 * attention_lnqk_causal, which softmax ignores, at 3e-8 of the largest): there kiln's gradient must
 * be noise as well, max|kiln| ≤ 1e-6·G. (2) analytic vs central finite differences in f64 on up to
 * 24 evenly spaced elements of every parameter and input, relative error below 1e-6 per input
 * (test/support/gradcheck.ts: floored by the resolution of the differences, not by other inputs).
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { gradCheck } from '../support/gradcheck.ts';
import { layerGradCase, layerGradFiles, layerGradMismatches } from '../support/layerGradients.ts';

const withCotangents = layerGradFiles;

describe('nn layer gradients vs PyTorch autograd', () => {
  it('has gradient goldens for most layers', () => expect(withCotangents.length).toBeGreaterThanOrEqual(25));
  for (const file of withCotangents) {
    it(file, () => {
      const c = layerGradCase(file);
      const r = runGraph(c.gradGraph, c.feeds);
      expect(layerGradMismatches(c, r, 1e-4)).toEqual([]);
      const fd = gradCheck(c.lossGraph, c.feeds, 'loss', c.wrt, { maxElements: 24 });
      expect(fd.relErr, `finite differences, worst ${fd.worstInput}`).toBeLessThan(1e-6);
    });
  }
});

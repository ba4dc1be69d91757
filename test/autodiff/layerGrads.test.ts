/**
 * Gradients of every nn layer: (1) parameter and input gradients vs PyTorch autograd goldens
 * (golden/nn_layers.py: loss = Σ_outputs sum(out · cotangent)), f32 on the CPU backend, within
 * 1e-4 normwise relative error per parameter, max|kiln − torch| / max|torch|, each judged by its own
 * size (measured worst ~1e-5). A reference gradient below 1e-6 of the layer's largest is zero in
 * exact arithmetic and holds only f32 rounding noise (one case: the key-norm bias of
 * attention_lnqk_causal, which softmax ignores, at 3e-8 of the largest): there kiln's gradient must
 * be noise as well, max|kiln| ≤ 1e-6·G. (2) analytic vs central finite differences in f64 on up to
 * 24 evenly spaced elements of every parameter and input, relative error below 1e-6 per input
 * (test/support/gradcheck.ts: floored by the resolution of the differences, not by other inputs).
 */
import { maxAbs, relErr } from '../support/compare.ts';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { gradCheck } from '../support/gradcheck.ts';
import { withCotangentLoss } from '../support/compilerPrograms.ts';
import { goldenFiles, loadGolden, traceGolden } from '../support/nnGoldens.ts';


const withCotangents = goldenFiles.filter((f) => loadGolden(f).byPrefix('cotangent.').size > 0);

describe('nn layer gradients vs PyTorch autograd', () => {
  it('has gradient goldens for most layers', () => expect(withCotangents.length).toBeGreaterThanOrEqual(25));
  for (const file of withCotangents) {
    it(file, () => {
      const gold = loadGolden(file);
      const { graph } = traceGolden(gold);
      const cots = gold.byPrefix('cotangent.');
      const lossGraph = withCotangentLoss(graph, [...cots.keys()]);
      const feeds: Record<string, HostTensor> = {};
      for (const [k, v] of gold.byPrefix('param.')) feeds[k] = v;
      for (const [k, v] of gold.byPrefix('input.')) feeds[k] = v;
      for (const [k, v] of cots) feeds[`cotangent.${k}`] = v;
      const params = [...gold.byPrefix('grad.').keys()];
      const inputs = [...gold.byPrefix('gradin.').keys()];
      const r = runGraph(grad(lossGraph, { loss: 'loss', wrt: [...params, ...inputs] }), feeds);
      const refs = [...params.map((p) => gold.tensors.get(`grad.${p}`)!), ...inputs.map((i) => gold.tensors.get(`gradin.${i}`)!)];
      const G = Math.max(...refs.map((t) => maxAbs(t.data)));
      const check = (what: string, got: ArrayLike<number>, want: ArrayLike<number>) => {
        if (maxAbs(want) <= 1e-6 * G) expect(maxAbs(got), `${what}: zero in exact arithmetic`).toBeLessThanOrEqual(1e-6 * G);
        else expect(relErr(got, want), what).toBeLessThan(1e-4);
      };
      for (const p of params) check(`grad ${p}`, r[`grad.${p}`]!.data, gold.tensors.get(`grad.${p}`)!.data);
      for (const i of inputs) check(`grad input ${i}`, r[`grad.${i}`]!.data, gold.tensors.get(`gradin.${i}`)!.data);
      const fd = gradCheck(lossGraph, feeds, 'loss', [...params, ...inputs], { maxElements: 24 });
      expect(fd.relErr, `finite differences, worst ${fd.worstInput}`).toBeLessThan(1e-6);
    });
  }
});

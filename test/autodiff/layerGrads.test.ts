/**
 * Gradients of every nn layer: (1) parameter and input gradients vs PyTorch autograd goldens
 * (golden/nn_layers.py: loss = Σ_outputs sum(out · cotangent)), f32 on the CPU backend, within
 * 1e-4 normwise relative error: max|kiln − torch| / max(max|torch|, 0.01·G), where G is the largest
 * gradient magnitude of the layer (the floor matters only for gradients that are zero in exact
 * arithmetic, e.g. the key-norm bias, which softmax ignores; both sides then hold rounding noise
 * of ~1e-7); (2) analytic vs central finite
 * differences in f64 on up to 24 evenly spaced elements of every parameter and input, relative
 * error (same norm) below 1e-6.
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
      const floor = 0.01 * Math.max(...refs.map((t) => maxAbs(t.data)));
      for (const p of params) expect(relErr(r[`grad.${p}`]!.data, gold.tensors.get(`grad.${p}`)!.data, floor), `grad ${p}`).toBeLessThan(1e-4);
      for (const i of inputs) expect(relErr(r[`grad.${i}`]!.data, gold.tensors.get(`gradin.${i}`)!.data, floor), `grad input ${i}`).toBeLessThan(1e-4);
      const fd = gradCheck(lossGraph, feeds, 'loss', [...params, ...inputs], { maxElements: 24 });
      expect(fd.relErr, `finite differences, worst ${fd.worstInput}`).toBeLessThan(1e-6);
    });
  }
});

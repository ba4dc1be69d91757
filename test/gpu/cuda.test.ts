/**
 * The CUDA backend on a real GPU (run on the GPU machine: KILN_BACKEND=cuda vitest run test/gpu).
 * Everything is compared with the CPU reference interpreter and, for models, with the PyTorch goldens:
 *  - 300 random graphs: |cuda − cpu| ≤ 1e-3·(1 + |cpu|) per element (as the kernel interpreter's
 *    differential test: fused kernels round differently than op-by-op evaluation);
 *  - every nn layer's parameter and input gradients, and the real models (DINOv2, LightningDiT, flow
 *    matching, TarFlow, FAE) forward and gradients: normwise max|a − b| / max(max|b|, floor) ≤ 1e-4;
 *  - training: sessions keep state on the GPU; the Fashion-MNIST MLP reaches ≥ 85% test accuracy.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { CudaDriver } from '../../backends/cuda/driver.ts';
import { runFashionMlp } from '../../cli/jobs/fashionMlp.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { backendByName, cudaOptionsFromEnv } from '../../runtime/backends.ts';
import { Session } from '../../runtime/session.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { layerGradCase, layerGradFiles, layerGradMismatches } from '../support/layerGradients.ts';
import { type ModelCase, dinov2Case, modelCaseMismatches, ditCase, faeDiscriminatorCase, faeStageIaCase, faeStageIbCase, flowMatchingCase, tarflowCase } from '../support/compiledModels.ts';
import { mlpData, mlpTrainStep } from '../support/compilerPrograms.ts';
import { firstMismatch, relErr as rel } from '../support/compare.ts';
import { randomFeeds, randomGraph } from '../support/randomGraph.ts';

/** The CUDA backend as a user gets it: configured from the environment by the runtime. */
const cudaBackend = backendByName('cuda');

const TOL = 1e-4;


describe('CUDA backend', () => {
  it('sees a GPU', () => {
    const d = CudaDriver.get(cudaOptionsFromEnv().libDir);
    console.log(`device: ${d.name} (${d.arch})`);
    expect(d.name.length).toBeGreaterThan(0);
  });

  for (let block = 0; block < 3; block++)
    it(`random graphs ${block * 100}..${block * 100 + 99} equal the CPU interpreter`, async () => {
      const bad: string[] = [];
      for (let s = block * 100; s < block * 100 + 100; s++) {
        const g = randomGraph(s, { finiteF32: true });
        const f = randomFeeds(g, s);
        const got = await runOnBackend(cudaBackend, g, f);
        const want = runGraph(g, f);
        for (const [k, w] of Object.entries(want)) {
          const m = firstMismatch(got[k]!.data, w.data, 1e-3);
          if (m) bad.push(`seed ${s} output ${k}: cuda vs cpu ${m}`);
        }
      }
      expect(bad).toEqual([]);
    });

  it('every nn layer: parameter and input gradients vs the PyTorch goldens', async () => {
    const bad: string[] = [];
    for (const file of layerGradFiles) {
      const c = layerGradCase(file);
      bad.push(...layerGradMismatches(c, await runOnBackend(cudaBackend, c.gradGraph, c.feeds), TOL));
    }
    expect(bad).toEqual([]);
  });

  const models: Array<[string, () => ModelCase]> = [
    ['dinov2 tiny', () => dinov2Case('tiny', 'run0')],
    ['dinov2 tiny_reg', () => dinov2Case('tiny_reg', 'run1')],
    ['dinov2 tiny_swiglu', () => dinov2Case('tiny_swiglu', 'run0')],
    ['lightningdit_p1', () => ditCase('lightningdit_p1')],
    ['lightningdit_p2_mixed', () => ditCase('lightningdit_p2_mixed')],
    ['dit_p2', () => ditCase('dit_p2')],
    ['flow matching', () => flowMatchingCase()],
    ['tarflow tiny_uncond', () => tarflowCase('tiny_uncond')],
    ['starflow tiny_starflow', () => tarflowCase('tiny_starflow')],
    ['fae stage Ia', () => faeStageIaCase()],
    ['fae stage Ib', () => faeStageIbCase()],
    ['fae discriminator', () => faeDiscriminatorCase()],
  ];
  for (const [label, make] of models)
    it(`model ${label}: forward and gradients vs the PyTorch golden and the CPU interpreter`, async () => {
      const c = make();
      const got = await runOnBackend(cudaBackend, c.graph, c.feeds);
      expect(modelCaseMismatches(c, got, runGraph(c.graph, c.feeds), TOL)).toEqual([]);
    });

  it('a training session keeps its state on the GPU and matches the CPU backend step by step', async () => {
    const cfg = { inputs: 64, hidden: [32], classes: 10 };
    const { model, graph } = mlpTrainStep(cfg, 32);
    const init = model.initState(3);
    const a = await Session.open(cudaBackend, graph, init, { precision: 'f32' });
    const b = await Session.open(cpuBackend, graph, init, { precision: 'f32' });
    for (let s = 0; s < 5; s++) {
      const { x, y } = mlpData(cfg, 32, s);
      const lr = hostTensor('f32', [], [1e-2]);
      const ra = await a.run({ x, y, lr }, ['loss']);
      const rb = await b.run({ x, y, lr }, ['loss']);
      expect(rel(ra.loss!.data, rb.loss!.data)).toBeLessThan(1e-4);
    }
    // Every resident tensor, the AdamW moments included: parameters alone are a weak check (a step
    // moves them by about lr, so even a wrong gradient changes them little), the moments hold the
    // gradients themselves. Per tensor, max|cuda − cpu| / max|cpu| < 1e-3 (f32 on both sides, no TF32;
    // 5 steps of accumulation-order differences, as for the parameters).
    const sa = await a.read(), sb = await b.read();
    expect([...sa.keys()].sort()).toEqual([...sb.keys()].sort());
    expect([...sb.keys()].filter((k) => k.startsWith('optim.exp_avg.')).length).toBeGreaterThan(0);
    expect([...sb.keys()].filter((k) => k.startsWith('optim.exp_avg_sq.')).length).toBeGreaterThan(0);
    for (const [k, v] of sb) expect(rel(sa.get(k)!.data, v.data), k).toBeLessThan(1e-3);
    a.dispose();
    b.dispose();
  });

  it('trains the Fashion-MNIST MLP to >= 85% test accuracy', async () => {
    const r = await runFashionMlp({ backend: cudaBackend, precision: 'f32', epochs: 3, batch: 128, hidden: [256, 128], lr: 2e-3, weightDecay: 1e-4, seed: 0, logEvery: 200 });
    console.log(`cuda MLP: ${r.steps} steps in ${r.seconds.toFixed(1)} s, test accuracy ${(r.testAccuracy * 100).toFixed(2)}%`);
    expect(r.testAccuracy).toBeGreaterThanOrEqual(0.85);
  });
});

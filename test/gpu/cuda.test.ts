/**
 * The CUDA backend on a real GPU (run on the GPU machine: KILN_BACKEND=cuda vitest run test/gpu).
 * Everything is compared with the CPU reference interpreter and, for models, with the PyTorch goldens:
 *  - 300 random graphs: |cuda − cpu| ≤ 1e-3·(1 + |cpu|) per element (as the kernel interpreter's
 *    differential test: fused kernels round differently than op-by-op evaluation);
 *  - every nn layer's parameter and input gradients, and the real models (DINOv2, LightningDiT, flow
 *    matching, TarFlow, FAE) forward and gradients: normwise max|a − b| / max(max|b|, floor) ≤ 1e-4;
 *  - training: sessions keep state on the GPU; the Fashion-MNIST MLP reaches ≥ 85% test accuracy.
 *
 * KILN_PRECISION=bf16 runs the whole file with autocast on (compiler/transforms/autocast.ts: bf16
 * matmul/attention operands, f32 accumulation; tensor-core GEMMs and flash attention on the GPU).
 * The CPU oracle then runs the same autocast graph, rounding at the same points (runtime/compile.ts
 * atPrecision), and the goldens stay the f32 PyTorch ones. Tolerances in bf16 (u = 2^-9, the unit
 * roundoff of an 8-bit significand):
 *  - vs the CPU oracle: the two sides round the same values, but accumulation-order differences
 *    (MMA order vs the CPU's double sums) flip a rounding now and then, 2u of that value, and a flip
 *    propagates through the ops after it: per element |cuda − cpu| ≤ 16u·(1 + |cpu|) on random graphs
 *    (random graphs chain few matmuls; exp/div can amplify a flip a few times), normwise 16u forward
 *    and 64u on gradients for layers and models (the bounds of test/models/autocast.test.ts);
 *  - vs the f32 goldens: the bf16 error itself, 16u forward and 64u on gradients (as on the CPU oracle
 *    in test/models/autocast.test.ts, where it measured ≤ 4.8u forward, ≤ 25u on gradients);
 *  - a gradient that is zero in exact arithmetic (a norm's bias before a softmax, which is invariant
 *    to it): the terms that cancel carry bf16 roundings, so |grad| ≤ 4u·G (G the case's largest
 *    gradient; measured 0.23u on an H200, attention_lnqk_causal k_norm.bias) instead of 1e-6·G;
 *  - training (session and MLP): the same program on both sides, 16u on the loss and 64u on the state
 *    after 5 steps; the MLP still reaches ≥ 85% test accuracy.
 * A wrong operand, a lost view or a broken kernel gives O(1) errors, far outside these bounds.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { CudaDriver } from '../../backends/cuda/driver.ts';
import { runFashionMlp } from '../../cli/jobs/fashionMlp.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { backendByName, cudaOptionsFromEnv } from '../../runtime/backends.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { checkPrecision } from '../../compiler/transforms/autocast.ts';
import { Session } from '../../runtime/session.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { layerGradCase, layerGradFiles, layerGradMismatches } from '../support/layerGradients.ts';
import { MODEL_CASES, modelCaseMismatches } from '../support/compiledModels.ts';
import { mlpData, mlpTrainStep } from '../support/compilerPrograms.ts';
import { firstMismatch, relErr as rel } from '../support/compare.ts';
import { randomFeeds, randomGraph } from '../support/randomGraph.ts';

/** The CUDA backend as a user gets it: configured from the environment by the runtime. */
const cudaBackend = backendByName('cuda');

/** The precision the file runs at (KILN_PRECISION: f32 by default, bf16 for autocast). */
const PRECISION = process.env.KILN_PRECISION ? checkPrecision(process.env.KILN_PRECISION, 'KILN_PRECISION') : 'f32';
const U = 2 ** -9;
const LOW = PRECISION !== 'f32';
/** Normwise tolerance: f32 1e-4 everywhere; bf16 16u forward, 64u on gradients (see above). */
const TOL = LOW ? 16 * U : 1e-4;
const GRAD_TOL = LOW ? 64 * U : 1e-4;
/** The CPU oracle of a graph at PRECISION (the same autocast graph the GPU runs). */
const oracle = (g: Parameters<typeof runGraph>[0], f: Parameters<typeof runGraph>[1]) => runGraph(atPrecision(g, PRECISION), f);


describe('CUDA backend', () => {
  it('sees a GPU', () => {
    const d = CudaDriver.get(cudaOptionsFromEnv().libDir);
    console.log(`device: ${d.name} (${d.arch}), precision ${PRECISION}`);
    expect(d.name.length).toBeGreaterThan(0);
  });

  for (let block = 0; block < 3; block++)
    it(`random graphs ${block * 100}..${block * 100 + 99} equal the CPU interpreter`, async () => {
      const bad: string[] = [];
      for (let s = block * 100; s < block * 100 + 100; s++) {
        const g = randomGraph(s, { finiteF32: true });
        const f = randomFeeds(g, s);
        const got = await runOnBackend(cudaBackend, g, f, PRECISION);
        const want = oracle(g, f);
        for (const [k, w] of Object.entries(want)) {
          const m = firstMismatch(got[k]!.data, w.data, LOW ? 16 * U : 1e-3);
          if (m) bad.push(`seed ${s} output ${k}: cuda vs cpu ${m}`);
        }
      }
      expect(bad).toEqual([]);
    });

  it('every nn layer: parameter and input gradients vs the PyTorch goldens', async () => {
    const bad: string[] = [];
    for (const file of layerGradFiles) {
      const c = layerGradCase(file);
      bad.push(...layerGradMismatches(c, await runOnBackend(cudaBackend, c.gradGraph, c.feeds, PRECISION), GRAD_TOL, LOW ? 4 * U : undefined));
    }
    expect(bad).toEqual([]);
  });

  for (const [label, make] of MODEL_CASES)
    it(`model ${label}: forward and gradients vs the PyTorch golden and the CPU interpreter`, async () => {
      const c = make();
      const got = await runOnBackend(cudaBackend, c.graph, c.feeds, PRECISION);
      const cpu = oracle(c.graph, c.feeds);
      if (!LOW) expect(modelCaseMismatches(c, got, cpu, TOL)).toEqual([]);
      else {
        // Per check kind: forward outputs at TOL, gradients at GRAD_TOL.
        const fwd = { ...c, checks: c.checks.filter((ch) => ch.kind === 'forward') };
        const grad = { ...c, checks: c.checks.filter((ch) => ch.kind !== 'forward') };
        expect([...modelCaseMismatches(fwd, got, cpu, TOL), ...modelCaseMismatches(grad, got, cpu, GRAD_TOL)]).toEqual([]);
      }
    });

  it('a training session keeps its state on the GPU and matches the CPU backend step by step', async () => {
    const cfg = { inputs: 64, hidden: [32], classes: 10 };
    const { model, graph } = mlpTrainStep(cfg, 32);
    const init = model.initState(3);
    const a = await Session.open(cudaBackend, graph, init, { precision: PRECISION });
    const b = await Session.open(cpuBackend, graph, init, { precision: PRECISION });
    for (let s = 0; s < 5; s++) {
      const { x, y } = mlpData(cfg, 32, s);
      const lr = hostTensor('f32', [], [1e-2]);
      const ra = await a.run({ x, y, lr }, ['loss']);
      const rb = await b.run({ x, y, lr }, ['loss']);
      expect(rel(ra.loss!.data, rb.loss!.data)).toBeLessThan(LOW ? TOL : 1e-4);
    }
    // Every resident tensor, the AdamW moments included: parameters alone are a weak check (a step
    // moves them by about lr, so even a wrong gradient changes them little), the moments hold the
    // gradients themselves. Per tensor, max|cuda − cpu| / max|cpu| < 1e-3 (f32 on both sides, no TF32;
    // 5 steps of accumulation-order differences, as for the parameters).
    const sa = await a.read(), sb = await b.read();
    expect([...sa.keys()].sort()).toEqual([...sb.keys()].sort());
    expect([...sb.keys()].filter((k) => k.startsWith('optim.exp_avg.')).length).toBeGreaterThan(0);
    expect([...sb.keys()].filter((k) => k.startsWith('optim.exp_avg_sq.')).length).toBeGreaterThan(0);
    for (const [k, v] of sb) expect(rel(sa.get(k)!.data, v.data), k).toBeLessThan(LOW ? GRAD_TOL : 1e-3);
    a.dispose();
    b.dispose();
  });

  it('trains the Fashion-MNIST MLP to >= 85% test accuracy', async () => {
    const r = await runFashionMlp({ backend: cudaBackend, precision: PRECISION, epochs: 3, batch: 128, hidden: [256, 128], lr: 2e-3, weightDecay: 1e-4, seed: 0, logEvery: 200 });
    console.log(`cuda MLP: ${r.steps} steps in ${r.seconds.toFixed(1)} s, test accuracy ${(r.testAccuracy * 100).toFixed(2)}%`);
    expect(r.testAccuracy).toBeGreaterThanOrEqual(0.85);
  });
});

/**
 * Differential tests of the whole compiler (passes → fusion → merging → schedule → memory plan) run
 * by the kernel-IR interpreter, against the CPU reference interpreter (runGraph, op by op).
 *
 * Tolerances:
 *  - random graphs: |fused − ref| ≤ 1e-3·(1 + |ref|) per element; equal values (±inf included) and
 *    two NaNs count as equal. Fused kernels round differently from the op-by-op oracle: the oracle
 *    computes each op in double and rounds to f32 once per op, while kernels accumulate reductions
 *    in f32 step by step and inline chains in another order; values are bounded by ±1e4
 *    (randomGraph's finiteF32 mode), so a few f32 ulps of an intermediate can grow to ~1e-4 after
 *    exp/pow/division. Discontinuous ops (floor, sign, comparisons) can still flip on such rounding
 *    when an operand is zero in exact arithmetic (e.g. a mean compared with itself, the gradient of
 *    attention over constant values); seeds 0..399 have no such case, a 20 000-seed sweep found 8,
 *    all of that kind (3482, 7579, 7814, 10201, 10568, 12032, 13359, 16325), and one real bug (15998,
 *    pinned below).
 *  - training steps of the nn layers: per output tensor, max|fused − ref| ≤ 1e-4·max|ref| (the
 *    measured worst is ~3e-6: the backward pass adds cancellation, f32 accumulation order differs).
 *    Optimizer moments use the floor 0.01·(largest moment of the layer), as the layer-gradient tests
 *    do, because some gradients are zero in exact arithmetic (softmax ignores the key bias: the key
 *    part of qkv.bias, k_norm.bias) and hold only rounding noise (~1e-9 of the largest gradient) on
 *    both sides. AdamW's first step moves every element by lr·g/(|g| + eps) ≈ ±lr, so for those
 *    noise elements (|exp_avg| ≤ 1e-6 of the layer's largest) the new parameter may differ by up to
 *    2·lr (its EMA by 0.2·lr), the sign of the noise deciding the direction.
 *    The tiny LightningDiT step uses the same rules (its EMA decay 0.9999 bounds the EMA slack).
 *  - sessions: losses and every resident tensor after 5 AdamW steps within 1e-4 of the tensor's
 *    largest magnitude.
 *  - every random graph's compile within COMPILE_BUDGET_MS of CPU time (test/support/compileBudget.ts).
 * Runtime (2-core machine): ~1.5 s for the 500 random-graph compiles and runs, ~4 s for the 200
 * graphs with empty dimensions and the 150 with high-rank view chains, ~1 s for the layer steps,
 * ~1.5 s for the LightningDiT step (twice), ~10 s for the file.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { kernelCpuBackend } from '../../backends/kernel/executable.ts';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { type CompileOptions, compile } from '../../compiler/compile.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { LIGHTNINGDIT_TRAINING } from '../../models/flowMatching.ts';
import { Session, defaultResident } from '../../runtime/session.ts';
import {
  LR, ditModel, ditTrainStep, layerTrainFiles, layerTrainStep, mlpData, mlpTrainStep, paramlessCotangentFiles, withCotangentLoss,
} from '../support/compilerPrograms.ts';
import { firstMismatch, maxAbs, maxAbsDiff } from '../support/compare.ts';
import { loadGolden, traceGolden } from '../support/nnGoldens.ts';
import { compileTimed } from '../support/compileBudget.ts';
import { type RandomGraphOptions, randomFeeds, randomGraph } from '../support/randomGraph.ts';

const RANDOM_TOL = 1e-3;

/**
 * Compile random graph `seed` (generator options `gen` on top of finiteF32), run it on the kernel
 * interpreter and on the CPU oracle; a message per bad output, and one when the compile exceeds the
 * time budget (test/support/compileBudget.ts).
 */
function checkSeed(seed: number, opts: CompileOptions = {}, gen: RandomGraphOptions = {}): string[] {
  const g = randomGraph(seed, { finiteF32: true, ...gen });
  const feeds = randomFeeds(g, seed);
  let got;
  try {
    const { compiled, overBudget } = compileTimed(g, opts);
    if (overBudget) return [`seed ${seed}: ${overBudget}`];
    got = runProgram(compiled.program, feeds);
  } catch (e) {
    return [`seed ${seed}: ${(e as Error).message}`];
  }
  const want = runGraph(g, feeds);
  const bad: string[] = [];
  for (const o of g.outputs) {
    const m = firstMismatch(got[o.name]!.data, want[o.name]!.data, RANDOM_TOL);
    if (m) bad.push(`seed ${seed} output ${o.name}: ${m}`);
  }
  return bad;
}

function checkSeeds(from: number, to: number, opts: CompileOptions = {}, gen: RandomGraphOptions = {}): string[] {
  const bad: string[] = [];
  for (let s = from; s < to; s++) bad.push(...checkSeed(s, opts, gen));
  return bad;
}

describe('random graphs: compile() + kernel interpreter = CPU oracle', () => {
  for (let k = 0; k < 8; k++) {
    it(`seeds ${k * 50}..${k * 50 + 49}`, () => {
      expect(checkSeeds(k * 50, k * 50 + 50)).toEqual([]);
    });
  }
  for (let k = 0; k < 2; k++) {
    it(`seeds ${k * 50}..${k * 50 + 49} without kernel merging`, () => {
      expect(checkSeeds(k * 50, k * 50 + 50, { noMerge: true })).toEqual([]);
    });
  }
  // Regression (a bug, now fixed, found by a 20 000-seed sweep; see memoryPlan.test.ts for a 4-node reproduction): horizontal
  // merging puts an iota kernel's store to a temporary before the merged kernel's load of another
  // temporary that dies there; the memory plan gives both the same bytes (in place), so the load
  // reads the value just stored. Correct with { noMerge: true }.
  it('seed 15998: merged kernel with in-place reuse', () => {
    expect(checkSeed(15998, { noMerge: true })).toEqual([]);
    expect(checkSeed(15998)).toEqual([]);
  });
  // Zero-size dimensions (randomGraph emptyDims): about half of these graphs have an empty value.
  // Before the fixes, 8 of seeds 0..199 failed: concats of empty operands crashed lowering, pads
  // of empty tensors loaded element 0 of a zero-size buffer (fuzzRepros.test.ts has both).
  for (let k = 0; k < 4; k++) {
    it(`seeds ${k * 50}..${k * 50 + 49} with empty dimensions`, () => {
      expect(checkSeeds(k * 50, k * 50 + 50, {}, { emptyDims: true })).toEqual([]);
    });
  }
  // High-rank view chains ending in gathers (randomGraph viewChains): most graphs have rank-7/8
  // values; every compile must stay within the time and kernel-size budgets (the fuzzer's 1.9 s and 9.4 s graphs are
  // pinned in fuzzRepros.test.ts; these seeds compile in at most ~100 ms). Seed 24 is the fuzzer's
  // open-index-blowup graph (1.47 MB kernel before large shared index sub-expressions became lets).
  for (let k = 0; k < 3; k++) {
    it(`seeds ${k * 50}..${k * 50 + 49} with high-rank view chains`, () => {
      expect(checkSeeds(k * 50, k * 50 + 50, {}, { viewChains: true })).toEqual([]);
    });
  }
});

/**
 * Messages for outputs of a training step where the compiled run differs from the oracle (see the
 * tolerances at the top). `emaDecay` bounds how far an EMA may move with a noise-signed step.
 */
function compareTrainStep(graph: Graph, params: readonly string[], got: Record<string, HostTensor>, want: Record<string, HostTensor>, emaDecay: number): string[] {
  const M1 = Math.max(...params.map((p) => maxAbs(want[`next.optim.exp_avg.${p}`]!.data)));
  const M2 = Math.max(...params.map((p) => maxAbs(want[`next.optim.exp_avg_sq.${p}`]!.data)));
  const bad: string[] = [];
  for (const o of graph.outputs) {
    const a = got[o.name]!.data, b = want[o.name]!.data;
    const name = o.name;
    let floor = 0;
    let noise: ((i: number) => number) | undefined; // allowed difference of noise-gradient elements
    if (name.startsWith('next.optim.exp_avg.')) floor = 0.01 * M1;
    else if (name.startsWith('next.optim.exp_avg_sq.')) floor = 0.01 * M2;
    else if (name.startsWith('next.') && name !== 'next.optim.step') {
      const isEma = name.startsWith('next.ema.');
      const p = isEma ? name.slice('next.ema.'.length) : name.slice('next.'.length);
      const m = want[`next.optim.exp_avg.${p}`]?.data;
      const slack = (isEma ? 2 * (1 - emaDecay) : 2) * LR * (1 + 1e-6);
      if (m) noise = (i) => (Math.abs(m[i]!) <= 1e-6 * M1 ? slack : 0);
    }
    const scale = Math.max(maxAbs(b), floor);
    for (let i = 0; i < b.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      if (!(d <= 1e-4 * scale || (noise && d <= noise(i)))) {
        bad.push(`${name}[${i}]: got ${a[i]}, want ${b[i]} (scale ${scale})`);
        break;
      }
    }
  }
  return bad;
}

describe('training steps of every nn layer: compiled = CPU oracle', () => {
  it('has training goldens for most layers', () => expect(layerTrainFiles.length).toBeGreaterThanOrEqual(20));
  for (const file of layerTrainFiles) {
    it(file, () => {
      const { graph, feeds, params } = layerTrainStep(file);
      const got = runProgram(compile(graph).program, feeds);
      const want = runGraph(graph, feeds);
      expect(Object.keys(got).sort()).toEqual(graph.outputs.map((o) => o.name).sort());
      expect(compareTrainStep(graph, params, got, want, 0.9)).toEqual([]);
      expect(got['next.optim.step']!.data[0]).toBe(1);
    });
  }
  // Regression (a bug, now fixed): trainStep with clipGradNorm summed the squared gradients with [].reduce(...) and threw a
  // bare TypeError ("Reduce of empty array with no initial value") when the graph has no parameters
  // (rope, unpatchify goldens). It must throw a KilnError naming the graph.
  it('trainStep with clipping on a layer without parameters fails with a KilnError naming the graph, not a TypeError', () => {
    expect(paramlessCotangentFiles.length).toBeGreaterThan(0);
    const gold = loadGolden(paramlessCotangentFiles[0]!);
    const loss = withCotangentLoss(traceGolden(gold).graph, [...gold.byPrefix('cotangent.').keys()]);
    let err: unknown;
    try {
      trainStep(loss, { loss: 'loss', optimizer: { kind: 'adamw' }, clipGradNorm: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KilnError);
    expect((err as Error).message).toContain(`graph ${loss.name} has no trainable parameters`);
  });
});

describe('LightningDiT training step: compiled = CPU oracle', () => {
  let cached: { graph: Graph; feeds: Record<string, HostTensor>; params: string[]; want: Record<string, HostTensor> } | undefined;
  const setup = () => {
    if (cached) return cached;
    const graph = ditTrainStep(2);
    const feeds: Record<string, HostTensor> = {};
    for (const [k, v] of defaultResident(graph, ditModel().initState(1))) feeds[k] = v;
    feeds.x1 = hostTensor('f32', [2, 4, 4, 4], Array.from({ length: 128 }, (_, i) => Math.sin(i)));
    feeds.y = hostTensor('i32', [2], [1, 3]);
    feeds.lr = hostTensor('f32', [], [LR]);
    feeds.rng_seed = hostTensor('u32', [2], [5, 0]);
    const params = graph.inputs.filter((i) => i.kind === 'param').map((i) => i.name);
    return (cached = { graph, feeds, params, want: runGraph(graph, feeds) });
  };
  it('without kernel merging', () => {
    const { graph, feeds, params, want } = setup();
    const got = runProgram(compile(graph, { noMerge: true }).program, feeds);
    expect(compareTrainStep(graph, params, got, want, LIGHTNINGDIT_TRAINING.ema.decay)).toEqual([]);
  });
  // Regression (a bug, now fixed): with merging, the elementwise kernel that computes the prediction v (final linear + bias,
  // unpatchified) is merged with the one computing v − u; the merged kernel stores v over u (the
  // memory plan put them at one offset, in place) before it loads u, so v − u = 0: mse = 0 and
  // loss = 1 (oracle 2.4335), every gradient of the mse term is lost. Same cause as random seed
  // 15998 (memoryPlan.test.ts has a 4-node reproduction).
  it('with kernel merging', () => {
    const { graph, feeds, params, want } = setup();
    const got = runProgram(compile(graph).program, feeds);
    expect(compareTrainStep(graph, params, got, want, LIGHTNINGDIT_TRAINING.ema.decay)).toEqual([]);
  });
});

describe('Session on kernel-cpu trains like the CPU backend', () => {
  it('tiny MLP, 5 AdamW steps: same losses and final state within 1e-4', async () => {
    const config = { inputs: 12, hidden: [16, 8], classes: 5 };
    const B = 8;
    const { model, graph } = mlpTrainStep(config, B);
    const { x, y } = mlpData(config, B, 7);
    const init = model.initState(3);
    const train = async (backend: typeof cpuBackend) => {
      const s = await Session.open(backend, graph, init);
      const losses: number[] = [];
      for (let k = 0; k < 5; k++) {
        const r = await s.run({ x, y, lr: hostTensor('f32', [], [LR]) });
        losses.push(r.loss!.data[0]!);
      }
      const state = await s.read();
      s.dispose();
      return { losses, state };
    };
    const ref = await train(cpuBackend);
    const ker = await train(kernelCpuBackend);
    expect(ref.losses[4]!).toBeLessThan(ref.losses[0]!);
    ref.losses.forEach((l, k) => expect(Math.abs(ker.losses[k]! - l), `loss ${k}: ${ker.losses[k]} vs ${l}`).toBeLessThanOrEqual(1e-4 * Math.abs(l)));
    expect([...ker.state.keys()].sort()).toEqual([...ref.state.keys()].sort());
    expect(ker.state.get('optim.step')!.data[0]).toBe(5);
    for (const [name, t] of ref.state) {
      expect(maxAbsDiff(ker.state.get(name)!.data, t.data), name).toBeLessThanOrEqual(1e-4 * maxAbs(t.data));
    }
  });
});

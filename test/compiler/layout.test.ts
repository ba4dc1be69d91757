/**
 * @file The layout stage (compiler/schedule/layout.ts, compile option `relayout`) and row-loop merging
 * (compiler/fuse/merge.ts, compile option `rowLoops`):
 * - neither changes any result: a re-laid-out program computes bit for bit what the program without it
 *   computes (the same arithmetic on the same values, stored elsewhere), on the kernel interpreter, for
 *   the LightningDiT training step (2 blocks, f32 and bf16 autocast: every output, parameters and
 *   optimizer state after the step) and the lightningdit_p1 and dinov2 tiny goldens (within the model
 *   tests' 1e-4 of the PyTorch golden too);
 * - it does what it is for: every matmul operand of those programs that reads a temporary through a
 *   permuting view (attention's head layout, the stacked attention gradients) becomes a plain strided
 *   load, and no access that was affine stops being affine;
 * - views that are not digit permutations of the whole buffer (a slice, an offset, a broadcast) are
 *   left alone; the digit merge collapses φ's split digits exactly.
 */
import { describe, expect, it } from 'vitest';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { compile } from '../../compiler/compile.ts';
import { mergeDigits, viewDigits } from '../../compiler/schedule/layout.ts';
import { I, affine, bin, simplifyIndex } from '../../ir/kernel/expr.ts';
import { evalIndex } from '../../ir/kernel/stride.ts';
import type { Expr, KernelProgram } from '../../ir/kernel/types.ts';
import type { Graph } from '../../ir/graph.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { ditCase, dinov2Case, modelCaseMismatches } from '../support/compiledModels.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { randomFeeds } from '../support/randomGraph.ts';
import { sameBits } from '../support/compare.ts';

const v = I.v, c = I.c;
const add = (...xs: Expr[]) => xs.reduce((a, b) => bin('add', a, b));
const mul = (a: Expr, k: number) => bin('mul', a, c(k));
const div = (a: Expr, k: number) => bin('div', a, c(k));
const mod = (a: Expr, k: number) => bin('mod', a, c(k));


/** Matmul operands that are a load of a temporary (under casts) with a non-affine index. */
function permutedOperands(p: KernelProgram): number {
  let n = 0;
  for (const k of p.kernels) {
    if (k.kind !== 'matmul') continue;
    for (let e of [k.a, k.b]) {
      while (e.k === 'cast') e = e.a;
      if (e.k === 'load' && p.buffers[e.buf]!.kind === 'temp' && !affine(e.index)) n++;
    }
  }
  return n;
}

/** Neither the layout stage nor row loops (both on by default). */
const OFF = { relayout: false, rowLoops: false } as const;

/** A small LightningDiT training step: 2 blocks, hidden 32, 2 heads, 16 tokens, batch 2. */
function ditStep(): Graph {
  const model = new LightningDiT(lightningDiTConfig('B/1', { depth: 2, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 4 }));
  return trainStep(flowMatchingLossGraph(model, 2), { loss: 'loss', params: model.trainableParameterNames(), optimizer: LIGHTNINGDIT_TRAINING.optimizer });
}

/** Row kernels whose body has a row loop (a merged elementwise consumer, compiler/fuse/merge.ts rowLoops). */
const rowLoopKernels = (p: KernelProgram) => p.kernels.filter((k) => k.kind === 'loop' && k.body.some((s) => s.k === 'reduce') && k.body.some((s) => s.k === 'loop')).length;

describe('layout: re-laid-out programs compute the same bits', () => {
  for (const precision of ['f32', 'bf16'] as const) {
    it(`LightningDiT training step (${precision}): every output bit for bit with layout, and with row loops too; no permuted matmul operand left`, () => {
      const g = precision === 'f32' ? ditStep() : atPrecision(ditStep(), 'bf16');
      const feeds = randomFeeds(g, 7);
      const plain = compile(g, { remat: 'off', ...OFF }).program, laid = compile(g, { remat: 'off', ...OFF, relayout: true }).program;
      const rows = compile(g, { remat: 'off', relayout: true, rowLoops: true }).program;
      expect(permutedOperands(plain)).toBeGreaterThanOrEqual(4 * 2); // per block: o-proj, its weight grad, dqkv twice
      expect(permutedOperands(laid)).toBe(0);
      expect(rowLoopKernels(rows)).toBeGreaterThanOrEqual(rowLoopKernels(plain) + 4 * 2); // per block: 2 norms forward, 2 backward
      expect(rows.kernels.length).toBeLessThan(laid.kernels.length);
      const want = runProgram(plain, feeds);
      expect(sameBits(runProgram(laid, feeds), want)).toEqual([]);
      expect(sameBits(runProgram(rows, feeds), want)).toEqual([]);
    }, 300_000);
  }
  for (const [label, make] of [['lightningdit_p1', () => ditCase('lightningdit_p1')], ['dinov2 tiny', () => dinov2Case('tiny', 'run0')]] as const) {
    it(`${label} golden: bit for bit against the program without layout (and row loops), within 1e-4 of the golden`, () => {
      const model = make();
      const plain = compile(model.graph, OFF).program, laid = compile(model.graph, { relayout: true, rowLoops: true }).program;
      expect(permutedOperands(plain)).toBeGreaterThan(0);
      expect(permutedOperands(laid)).toBe(0);
      expect(rowLoopKernels(laid)).toBeGreaterThanOrEqual(rowLoopKernels(plain));
      const got = runProgram(laid, model.feeds);
      expect(sameBits(got, runProgram(plain, model.feeds))).toEqual([]);
      expect(modelCaseMismatches(model, got, runGraph(model.graph, model.feeds), 1e-4)).toEqual([]);
    }, 300_000);
  }
});

describe('layout: which views are digit permutations', () => {
  // [B=4, H=3, N=8, D=16] read as [B, N, H·D]: i = token, p = h·16 + d.
  const ext = new Map([['b0', 4], ['i', 8], ['p', 48]]);
  const headView = add(mul(v('b0'), 384), mul(div(v('p'), 16), 128), mul(v('i'), 16), mod(v('p'), 16));
  it('the head view is a mixed radix over the whole buffer', () => {
    expect(viewDigits(simplifyIndex(headView, ext), ext, 4 * 3 * 8 * 16)?.map((d) => [d.coef, d.v, d.w, d.r])).toEqual([
      [1, 'p', 1, 16], [16, 'i', 1, 8], [128, 'p', 16, 3], [384, 'b0', 1, 4],
    ]);
  });
  it('not a slice, an offset or part of a variable', () => {
    expect(viewDigits(headView, ext, 2 * 4 * 3 * 8 * 16)).toBeUndefined(); // half of a larger buffer
    expect(viewDigits(add(headView, c(1)), ext, 4 * 3 * 8 * 16)).toBeUndefined();
    const partI = add(mul(v('b0'), 384), mul(div(v('p'), 16), 128), mul(mod(v('i'), 4), 16), mod(v('p'), 16)); // i read as i % 4
    expect(viewDigits(partI, ext, 4 * 3 * 4 * 16)).toBeUndefined();
    // A broadcast (b0 unused: the buffer read once per batch) is still a digit permutation of the buffer.
    const bcast = add(mul(div(v('p'), 16), 128), mul(v('i'), 16), mod(v('p'), 16));
    expect(viewDigits(bcast, ext, 3 * 8 * 16)?.length).toBe(3);
    expect(viewDigits(bcast, ext, 4 * 3 * 8 * 16)).toBeUndefined();
  });
  it('mergeDigits: K·((x/c)%r) + K·r·(x/(c·r)) → K·(x/c), chained back to x, exact on every point', () => {
    const split = add(mod(v('p'), 64), mul(mod(div(v('p'), 64), 12), 64), mul(div(v('p'), 768), 768));
    expect(mergeDigits(split)).toEqual(v('p'));
    const partial = add(mul(mod(div(v('p'), 4), 3), 10), mul(div(v('p'), 12), 30), v('i'));
    const m = mergeDigits(partial);
    for (let p = 0; p < 48; p++)
      for (let i = 0; i < 3; i++) expect(evalIndex(m, (n) => (n === 'p' ? p : i))).toBe(evalIndex(partial, (n) => (n === 'p' ? p : i)));
    expect(JSON.stringify(m)).not.toContain('"mod"');
  });
});

/**
 * The row-kernel thread mapping of the tiling stage (compiler/schedule/rowMapping.ts): which row
 * kernels run one block per grid point, which as column kernels, and which are split in two passes
 * (and in how many chunks); recorded in the kernel IR and printed. Without a GPU: the CUDA rendering
 * of each mapping is pinned in test/backends/cudaCodegen.test.ts and run in test/gpu/reductions.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/compile.ts';
import { chooseRowMapping, splittable } from '../../compiler/schedule/rowMapping.ts';
import { SM90 } from '../../compiler/schedule/tiling.ts';
import { concat } from '../../compiler/dsl/functional.ts';
import { trace } from '../../compiler/dsl/trace.ts';
import { I, konst, load } from '../../ir/kernel/expr.ts';
import { printKernel } from '../../ir/kernel/print.ts';
import type { Expr, LoopKernel, RowMapping } from '../../ir/kernel/types.ts';
import { REDUCTION_CASES, reductionGraph } from '../support/reductionGraphs.ts';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { sameBits } from '../support/compare.ts';
import { randomFeeds } from '../support/randomGraph.ts';

/** The mapping of the kernel computing each output of a reduction case. */
function mappings(c: number): Record<string, RowMapping | undefined> {
  const g = reductionGraph(REDUCTION_CASES[c]!);
  const p = compile(g).program;
  return Object.fromEntries(g.outputs.map((o) => {
    const k = p.kernels.find((x) => x.nodes.includes(o.id));
    return [o.name, k?.kind === 'loop' ? k.rows : undefined];
  }));
}

const column = (split: number): RowMapping => ({ kind: 'column', points: 32, lanes: 8, split });

describe('row kernel mapping', () => {
  it('reductions strided along the reduced axis with enough grid points are one column pass', () => {
    const m = mappings(0);
    for (const name of ['sumTokens', 'maxTokens', 'argmaxTokens', 'meanThenScale']) expect(m[name]).toEqual(column(1));
  });

  it('reductions along the contiguous last axis are one block per row, threads the row rounded up to a power of two (32..256)', () => {
    const p = compile(reductionGraph(REDUCTION_CASES[0]!)).program;
    const rowKernels = p.kernels.filter((k): k is LoopKernel => k.kind === 'loop' && k.grid.join('x') === '16x256' && k.rows !== undefined);
    expect(rowKernels.length).toBeGreaterThanOrEqual(2);
    for (const k of rowKernels) expect(k.rows).toEqual({ kind: 'block', threads: 256 });
    // 5 tokens per row: one warp.
    const small = compile(trace('r', (t) => ({ y: t.input('x', [64, 5], 'f32').sum(1) }))).program.kernels[0] as LoopKernel;
    expect(small.rows).toEqual({ kind: 'block', threads: 32 });
  });

  it('small grids over long strided extents are split into chunks that fill SPLIT_TARGET_WAVES waves', () => {
    expect(mappings(0).sumRows).toEqual(column(16)); // 768 channels, 4096 rows: ⌈528/24⌉ = 22, at most 4096/256 = 16
    const m1 = mappings(1);
    expect(m1.sumRows).toEqual(column(30)); // 200 channels, 7777 rows: min(⌈528/7⌉ = 76, 64, ⌊7777/256⌋ = 30)
    expect(m1.sumTokens).toEqual(column(4)); // 7·200 points, 1111 tokens: ⌊1111/256⌋ = 4
    // A bias gradient of the LightningDiT-B/1 step at batch 128: 768 channels over 32768 rows.
    const bias = compile(trace('bias', (t) => ({ db: t.input('dy', [32768, 768], 'f32').sum(0) }))).program.kernels[0] as LoopKernel;
    expect(bias.rows).toEqual(column(22));
    expect(printKernel(bias)).toContain('rows column points=32 lanes=8 split=22');
  });

  it('a bias gradient over a concatenation (the two halves of a gated MLP: clamped indices) is a split column kernel too', () => {
    // The sum over 32768 rows of concat([a·b, c], 1): the parts' loads are max(j − 2048, 0) and min(j, 2047),
    // contiguous along j where they are live and constant where clamped.
    const g = trace('catbias', (t) => {
      const a = t.input('a', [32768, 2048], 'f32'), c = t.input('c', [32768, 2048], 'f32');
      return { db: concat([a.mul(a.sigmoid()), c], 1).sum(0) };
    });
    const k = compile(g).program.kernels.find((x): x is LoopKernel => x.kind === 'loop' && x.grid.join('x') === '4096')!;
    expect(printKernel(k)).toContain('max(');
    expect(k.rows).toEqual(column(5)); // 128 column blocks: ⌈528/128⌉ = 5 chunks
  });

  it('kernels that cannot be split (argmax; a reduction using another one) stay one pass, or one block per point on small grids', () => {
    const m1 = mappings(1);
    expect(m1.argmaxTokens).toEqual({ kind: 'block', threads: 256 });
    expect(m1.meanThenScale).toEqual({ kind: 'block', threads: 256 });
    const g = reductionGraph(REDUCTION_CASES[1]!);
    const p = compile(g).program;
    for (const k of p.kernels)
      if (k.kind === 'loop' && k.rows?.kind === 'column' && k.rows.split > 1) expect(splittable(k)).toBe(true);
    const mts = g.outputs.find((o) => o.name === 'meanThenScale')!.id;
    const dependent = p.kernels.find((k): k is LoopKernel => k.kind === 'loop' && k.nodes.includes(mts));
    expect(dependent!.body.filter((s) => s.k === 'reduce')).toHaveLength(2);
    expect(splittable(dependent!)).toBe(false);
  });

  it('sibling column reductions (one grid and extent, a buffer read along the reduced axis by both) share a kernel with the mapping each had', () => {
    // Two bias-gradient-like sums over the 32768 rows of one [32768, 2048] input (the SwiGLU halves'
    // bias gradients read the same dY and pre-activation): one split kernel, two reductions.
    const g = trace('siblings', (t) => {
      const x = t.input('x', [32768, 2048], 'f32'), w = t.input('w', [32768, 2048], 'f32');
      return { a: x.mul(w).sum(0), b: x.sigmoid().sum(0), c: w.max(0) };
    });
    const rowKernels = (sib: boolean) => compile(g, { siblingReductions: sib }).program.kernels.filter((k): k is LoopKernel => k.kind === 'loop' && k.rows !== undefined);
    const apart = rowKernels(false), merged = rowKernels(true);
    expect(apart.map((k) => k.body.filter((s) => s.k === 'reduce').length)).toEqual([1, 1, 1]);
    expect(merged.map((k) => k.body.filter((s) => s.k === 'reduce').length)).toEqual([3]);
    expect(merged[0]!.rows).toEqual(apart[0]!.rows);
    expect(apart.every((k) => JSON.stringify(k.rows) === JSON.stringify(apart[0]!.rows))).toBe(true);
    // Reductions that do not read one buffer along the reduced axis stay apart; so do dependent ones.
    const other = trace('strangers', (t) => {
      const x = t.input('x', [32768, 2048], 'f32'), w = t.input('w', [32768, 2048], 'f32');
      return { a: x.sum(0), b: w.sum(0) };
    });
    expect(compile(other).program.kernels.filter((k) => k.kind === 'loop' && k.rows !== undefined)).toHaveLength(2);
    const m1 = mappings(1);
    expect(m1.meanThenScale).not.toEqual(m1.sumTokens);
  });

  it('sibling reductions compute every output of a LightningDiT training step bit for bit (kernel interpreter)', () => {
    // The kernel-IR interpreter sums each reduction in one order whatever the kernel it sits in: merged and
    // unmerged programs must agree to the bit (the GPU's own check is test/gpu/reductions.test.ts).
    const model = new LightningDiT(lightningDiTConfig('B/1', { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 4 }));
    const g = atPrecision(trainStep(flowMatchingLossGraph(model, 2), { loss: 'loss', params: model.trainableParameterNames(), optimizer: LIGHTNINGDIT_TRAINING.optimizer }), 'bf16');
    const apart = compile(g, { siblingReductions: false }).program, merged = compile(g).program;
    const multi = (p: typeof merged) => p.kernels.filter((k) => k.kind === 'loop' && k.body.filter((s) => s.k === 'reduce').length > 1).length;
    expect(merged.kernels.length).toBeLessThan(apart.kernels.length);
    expect(multi(merged)).toBeGreaterThan(multi(apart));
    const feeds = randomFeeds(g, 5);
    expect(sameBits(runProgram(merged, feeds), runProgram(apart, feeds))).toEqual([]);
  }, 300_000);

  it('strides are measured on index expressions with div/mod too (the [3, B, H, S, D] layout of q/k/v gradients)', () => {
    // Σ over r < 4096 of buf[(g/768)·3145728 + (r/256)·196608 + ((g/64)%12)·16384 + g%64 + (r%256)·64], g < 2304.
    const v = (n: string) => I.v(n);
    const c = (x: number) => konst(x, 'i32');
    const add = (...xs: Expr[]) => xs.reduce((a, b) => ({ k: 'bin', op: 'add', a, b, dtype: 'i32' }));
    const mul = (a: Expr, b: Expr): Expr => ({ k: 'bin', op: 'mul', a, b, dtype: 'i32' });
    const div = (a: Expr, b: Expr): Expr => ({ k: 'bin', op: 'div', a, b, dtype: 'i32' });
    const mod = (a: Expr, b: Expr): Expr => ({ k: 'bin', op: 'mod', a, b, dtype: 'i32' });
    const index = add(mul(div(v('g0'), c(768)), c(3145728)), mul(div(v('r0'), c(256)), c(196608)), mul(mod(div(v('g0'), c(64)), c(12)), c(16384)), mod(v('g0'), c(64)), mul(mod(v('r0'), c(256)), c(64)));
    const k: LoopKernel = {
      kind: 'loop', name: 'qkv_bias', nodes: [], grid: [2304],
      body: [
        { k: 'reduce', acc: 'a', op: 'sum', dtype: 'f32', var: 'r0', extent: 4096, body: [], value: load(0, index, 'f32') },
        { k: 'store', buf: 1, index: v('g0'), value: { k: 'ref', name: 'a', dtype: 'f32' }, mode: 'set' },
      ],
    };
    expect(chooseRowMapping(k, SM90.processors)).toEqual(column(8)); // 72 column blocks: ⌈528/72⌉ = 8 chunks (⌊4096/256⌋ = 16 allowed)
  });
});

/**
 * @file The simplifier's sum of pads (compiler/passes/simplify.ts sumOfPads): a sum over axes a zero pad
 * does not pad is the pad of the sum, and the sum of two disjoint pads (the gradient of a gated MLP's two
 * halves, sliced from one GEMM output) is the sum of the two padded sums. Checked on the CPU oracle: the
 * LightningDiT training step (SwiGLU MLP) computes bit for bit what it computes without the graph passes,
 * and no reduce_sum of an add of two pads is left; overlapping pads and pads on a reduced axis stay as
 * they are.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { optimize } from '../../compiler/passes/pipeline.ts';
import { simplify } from '../../compiler/passes/simplify.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import type { Graph } from '../../ir/graph.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { randomFeeds } from '../support/randomGraph.ts';
import { sameBits } from '../support/compare.ts';


/** reduce_sum nodes whose operand is an add of two pads. */
function sumsOfAddedPads(g: Graph): number {
  return g.nodes.filter((n) => n.op === 'reduce_sum' && g.node(n.inputs[0]!)?.op === 'add' && g.node(n.inputs[0]!)!.inputs.every((i) => g.node(i)?.op === 'pad')).length;
}

/** sum over `axes` of pad(a, [0, 2] on the last axis) + pad(b, [split, ...]) for x: [4, 6]. */
function padded(aBefore: number, aAfter: number, bBefore: number, bAfter: number, axes: number[]): Graph {
  const b = new GraphBuilder('pads');
  const x = b.input('x', { dtype: 'f32', shape: [4, 6] }, 'data');
  const y = b.input('y', { dtype: 'f32', shape: [4, 6] }, 'data');
  const sx = b.op('slice', [x], { starts: [0, 0], ends: [4, 6 - aBefore - aAfter], steps: [1, 1] });
  const sy = b.op('slice', [y], { starts: [0, 0], ends: [4, 6 - bBefore - bAfter], steps: [1, 1] });
  const px = b.op('pad', [b.op('exp', [sx], {})], { before: [0, aBefore], after: [0, aAfter], value: 0 });
  const py = b.op('pad', [b.op('sin', [sy], {})], { before: [0, bBefore], after: [0, bAfter], value: 0 });
  b.output('s', b.op('reduce_sum', [b.op('add', [px, py], {})], { axes, keepdims: false }));
  return b.build();
}

describe('sum of pads', () => {
  it('LightningDiT training step (SwiGLU): the passes keep every output bit; no sum of added pads left', () => {
    const model = new LightningDiT(lightningDiTConfig('B/1', { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 4 }));
    const g = trainStep(flowMatchingLossGraph(model, 2), { loss: 'loss', params: model.trainableParameterNames(), optimizer: LIGHTNINGDIT_TRAINING.optimizer });
    expect(sumsOfAddedPads(g)).toBeGreaterThan(0);
    const o = optimize(g);
    expect(sumsOfAddedPads(o)).toBe(0);
    const feeds = randomFeeds(g, 7);
    expect(sameBits(runGraph(o, feeds), runGraph(g, feeds))).toEqual([]);
  }, 120_000);
  it('disjoint halves are rewritten, exactly; overlapping pads and pads on a reduced axis are not', () => {
    const feeds = randomFeeds(padded(0, 3, 3, 0, [0]), 5);
    for (const [args, rewritten] of [[[0, 3, 3, 0, [0]], true], [[3, 0, 0, 3, [0]], true], [[0, 2, 2, 0, [0]], false], [[0, 3, 3, 0, [1]], false]] as const) {
      const g = padded(args[0], args[1], args[2], args[3], [...args[4]]);
      const s = simplify(g);
      expect(sumsOfAddedPads(s), JSON.stringify(args)).toBe(rewritten ? 0 : 1);
      expect(sameBits(runGraph(s, feeds), runGraph(g, feeds)), JSON.stringify(args)).toEqual([]);
    }
  });
});

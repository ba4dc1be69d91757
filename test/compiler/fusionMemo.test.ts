/**
 * @file Fusion's structural memo of kernel inspections (compiler/fuse/inspectMemo.ts) changes nothing:
 * the fusion plan (materialized values, reasons, buffers) equals the plan of direct inspection on
 * random graphs, training steps and a multi-layer LightningDiT (where most inspections are answered
 * from isomorphic parts of other layers).
 */
import { describe, expect, it } from 'vitest';
import { planFusion } from '../../compiler/fuse/fuse.ts';
import { printFusionPlan } from '../../compiler/fuse/plan.ts';
import { optimize } from '../../compiler/passes/pipeline.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { type Graph, GraphBuilder } from '../../ir/graph.ts';
import { inspectKernel } from '../../compiler/lower/lowerNode.ts';
import { InspectionMemo } from '../../compiler/fuse/inspectMemo.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { buildProgram } from '../../cli/programs.ts';
import { randomGraph } from '../support/randomGraph.ts';

function samePlans(g0: Graph): void {
  const g = optimize(g0);
  const direct = planFusion(g, { memoize: false });
  const memo = planFusion(g);
  expect(printFusionPlan(g, memo)).toBe(printFusionPlan(g, direct));
  expect(memo.buffers).toEqual(direct.buffers);
  expect([...memo.reasons]).toEqual([...direct.reasons]);
}

describe('fusion inspection memo', () => {
  it('plans what direct inspection plans: random graphs', () => {
    for (let seed = 0; seed < 60; seed++) samePlans(randomGraph(seed, { finiteF32: true }));
  }, 120_000);

  it('plans what direct inspection plans: training steps (MLP, transformer block bf16, 4-layer LightningDiT bf16)', () => {
    samePlans(buildProgram('mlp', { train: true, batch: 4 }));
    samePlans(atPrecision(buildProgram('block', { train: true, batch: 2, size: '64x4x16' }), 'bf16'));
    const model = new LightningDiT(lightningDiTConfig('S/2', { depth: 4, hiddenSize: 64, numHeads: 2, inputSize: 8, inChannels: 4 }));
    samePlans(atPrecision(trainStep(flowMatchingLossGraph(model, 2), { loss: 'loss', metrics: ['mse', 'cos'], optimizer: LIGHTNINGDIT_TRAINING.optimizer, ema: LIGHTNINGDIT_TRAINING.ema }), 'bf16'));
  }, 120_000);

  it('tells apart parts that differ only in attributes (and answers other parts as direct inspection does)', () => {
    // Two kernels over x + (row sum of y, read back through a permute): the same ops, but only the
    // identity permute reads the sum at the grid point it was reduced for (else it must be in memory).
    const b = new GraphBuilder('attrs');
    const f32 = (shape: number[]) => ({ dtype: 'f32' as const, shape });
    const parts = [[0, 1], [1, 0]].map((perm, k) => {
      const x = b.input(`x${k}`, f32([4, 4])), y = b.input(`y${k}`, f32([4, 4]));
      const r = b.op('reduce_sum', [y], { axes: [1], keepdims: true });
      const rb = b.op('broadcast', [r], { shape: [4, 4] });
      const z = b.op('add', [x, b.op('permute', [rb], { perm })]);
      b.output(`z${k}`, z);
      return z;
    });
    // And two that differ only in the dtype of an input (loads of another type).
    const w = [b.input('w0', f32([4])), b.input('w1', { dtype: 'bf16', shape: [4] })].map((id, k) => {
      const e = b.op('exp', [id]);
      b.output(`e${k}`, e);
      return e;
    });
    const g = b.build();
    const buffers = new Map<number, number>(g.inputs.map((i, k) => [i.id, k]));
    for (const id of [...parts, ...w]) buffers.set(id, buffers.size);
    const memo = new InspectionMemo(g);
    for (const id of [...parts, ...w]) {
      const direct = inspectKernel(g, g.node(id)!, buffers);
      const viaMemo = memo.inspect(g.node(id)!, buffers);
      expect({ ...viaMemo, visited: [...viaMemo.visited], evaluations: [...viaMemo.evaluations] })
        .toEqual({ ...direct, visited: [...direct.visited], evaluations: [...direct.evaluations] });
    }
    // The two permutes differ in what they need, so a memo blind to attributes would be wrong here.
    expect(inspectKernel(g, g.node(parts[0]!)!, buffers).needs).toBeUndefined();
    expect(inspectKernel(g, g.node(parts[1]!)!, buffers).needs).toBeDefined();
  });
});

/**
 * @file Index-set splitting (compiler/schedule/splitParts.ts, compile option `splitParts`): the pieces of a
 * kernel whose parts are selected along one grid axis compute bit for bit what the kernel computes (kernel
 * interpreter, a LightningDiT training step with its SwiGLU gradient and stacked q/k/v gradients, f32 and
 * bf16 autocast, every output); each piece has fewer selects; small kernels stay whole.
 */
import { describe, expect, it } from 'vitest';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { compile } from '../../compiler/compile.ts';
import { splitKernel } from '../../compiler/schedule/splitParts.ts';
import { walkStmts } from '../../ir/kernel/expr.ts';
import type { Graph } from '../../ir/graph.ts';
import type { Kernel, LoopKernel } from '../../ir/kernel/types.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { randomFeeds } from '../support/randomGraph.ts';
import { sameBits } from '../support/compare.ts';


const selects = (k: LoopKernel) => { let n = 0; walkStmts(k.body, (x) => { if (x.k === 'select') n++; }); return n; };

/** A small LightningDiT training step (1 block, hidden 32, 16 tokens, batch 2): its kernels are under
 * SPLIT_MIN_POINTS, so the pieces are made with the threshold at 0 (splitKernel's second argument). */
function ditStep(): Graph {
  const model = new LightningDiT(lightningDiTConfig('B/1', { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 4 }));
  return trainStep(flowMatchingLossGraph(model, 2), { loss: 'loss', params: model.trainableParameterNames(), optimizer: LIGHTNINGDIT_TRAINING.optimizer });
}

describe('splitParts', () => {
  for (const precision of ['f32', 'bf16'] as const)
    it(`LightningDiT training step (${precision}): the split program computes every output bit for bit`, () => {
      const g = precision === 'f32' ? ditStep() : atPrecision(ditStep(), 'bf16');
      const plain = compile(g, { remat: 'off' }).program;
      const split = { ...plain, kernels: plain.kernels.flatMap((k): Kernel[] => (k.kind === 'loop' ? splitKernel(k, 0) : [k])) };
      const big = plain.kernels.filter((k): k is LoopKernel => k.kind === 'loop' && splitKernel(k, 0).length > 1);
      expect(big.length).toBeGreaterThanOrEqual(2); // the SwiGLU gradient, the q/k/v stack
      for (const k of big) for (const p of splitKernel(k, 0)) expect(selects(p)).toBeLessThan(selects(k));
      const feeds = randomFeeds(g, 7);
      expect(sameBits(runProgram(split, feeds), runProgram(plain, feeds))).toEqual([]);
    }, 300_000);
  it('kernels under SPLIT_MIN_POINTS stay whole (the compile option uses the threshold)', () => {
    const g = atPrecision(ditStep(), 'bf16');
    const plain = compile(g, { remat: 'off' }).program;
    for (const k of plain.kernels) if (k.kind === 'loop') expect(splitKernel(k)).toEqual([k]);
    expect(compile(g, { remat: 'off', splitParts: true }).program.kernels.length).toBe(plain.kernels.length);
  });
});

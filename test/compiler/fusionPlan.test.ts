/**
 * Fusion decides, lowering builds: planFusion's result is data (materialized values with reasons and
 * the buffer table), inspectKernel answers what a kernel can inline with the same builder lowering
 * uses, lowering rejects a plan that leaves a non-inlinable value inline, and compile() records each
 * stage of the pipeline in order.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/compile.ts';
import { planFusion } from '../../compiler/fuse/fuse.ts';
import type { FusionPlan } from '../../compiler/fuse/plan.ts';
import { lowerPlan } from '../../compiler/lower/lower.ts';
import { inspectKernel } from '../../compiler/lower/lowerNode.ts';
import { optimize } from '../../compiler/passes/pipeline.ts';
import { type Graph, GraphBuilder } from '../../ir/graph.ts';

const f32 = (...shape: number[]) => ({ dtype: 'f32' as const, shape });

/** y = (x − max over rows) / (sum over columns): one row kernel cannot inline reductions over two different axes. */
function columnNormalize(): Graph {
  const b = new GraphBuilder('colnorm');
  const x = b.input('x', f32(4, 8));
  const m = b.op('reduce_max', [x], { axes: [1], keepdims: true });
  const s = b.op('reduce_sum', [x], { axes: [0], keepdims: true });
  b.output('y', b.op('div', [b.op('sub', [x, m]), s]));
  return optimize(b.build());
}

/** y = exp(x) @ w: exp is not a matmul prologue op, so the operand goes to memory. */
function expMatmul(): Graph {
  const b = new GraphBuilder('expmm');
  const x = b.input('x', f32(4, 8));
  const w = b.input('w', f32(8, 3));
  b.output('y', b.op('matmul', [b.op('exp', [x]), w]));
  return optimize(b.build());
}

const opOf = (g: Graph, id: number) => g.node(id)!.op;
const planOps = (g: Graph, p: FusionPlan) => [...p.reasons].map(([id, why]) => `${opOf(g, id)}: ${why}`);

describe('fusion plan', () => {
  it('a reduction over other axes than the consumer row is materialized, with the reason', () => {
    const g = columnNormalize();
    const plan = planFusion(g);
    // The row kernel of y reduces over axis 0 (the sum inlines as a phase); the max over axis 1 cannot.
    expect(planOps(g, plan)).toEqual(['div: graph output', 'reduce_max: its axes or shape differ from the kernel row space']);
    // The buffer table follows the decisions: input, output, then the materialized max.
    expect(plan.buffers.map((b) => b.kind)).toEqual(['input', 'output', 'temp']);
    expect(lowerPlan(g, plan).length).toBe(2);
  });

  it('a matmul operand that is not a view or prologue op is materialized', () => {
    const g = expMatmul();
    const plan = planFusion(g);
    expect(planOps(g, plan)).toEqual(['matmul: matmul has its own kernel', 'exp: exp is not allowed in this kernel\'s operand']);
    expect(lowerPlan(g, plan).map((k) => k.kind)).toEqual(['loop', 'matmul']);
  });

  it('inspectKernel names the value a kernel needs in memory; lowering refuses a plan that leaves it inline', () => {
    const g = columnNormalize();
    const plan = planFusion(g);
    const [outId, maxId] = [...plan.reasons.keys()] as [number, number];
    const without = new Map(plan.bufferOf);
    without.delete(maxId);
    expect(inspectKernel(g, g.node(outId)!, without).needs).toEqual({ node: maxId, why: 'its axes or shape differ from the kernel row space' });
    expect(inspectKernel(g, g.node(outId)!, plan.bufferOf).needs).toBeUndefined();
    const illegal: FusionPlan = { ...plan, reasons: new Map([[outId, 'graph output']]), bufferOf: without };
    expect(() => lowerPlan(g, illegal)).toThrow(/leaves %\d+ inline, but its axes or shape differ.*fusion bug/);
  });

  it('compile records every stage in pipeline order; the fuse stage prints the plan', () => {
    const c = compile(columnNormalize());
    expect(c.stages.map((s) => s.name)).toEqual(['input', 'passes', 'remat', 'fuse', 'lower', 'merge', 'layout', 'split', 'tile', 'order', 'memory']);
    const fuse = c.stages.find((s) => s.name === 'fuse')!.text;
    expect(fuse).toMatch(/^fusion plan: 2 of \d+ nodes materialized\n/);
    expect(fuse).toMatch(/reduce_max f32\[4,1\] → b2 temp: its axes or shape differ/);
    expect(c.stages.find((s) => s.name === 'lower')!.text).toMatch(/kernel n\d+ loop/);
    expect(c.stages.find((s) => s.name === 'memory')!.text).toMatch(/^program colnorm /);
  });
});

/**
 * @file Lowering, the stage after fusion: every materialized node of a fusion plan becomes the kernels
 * that compute it (lowerNode.ts), inlining what the plan leaves in registers, in graph order. A plan
 * from planFusion is always lowerable (fusion asked the same builder, through inspectKernel).
 */
import type { Graph } from '../../ir/graph.ts';
import type { Kernel } from '../../ir/kernel/types.ts';
import { type FusionPlan, planRoots } from '../fuse/plan.ts';
import { lowerKernel } from './lowerNode.ts';

export function lowerPlan(g: Graph, plan: FusionPlan): Kernel[] {
  return planRoots(g, plan).flatMap((r) => lowerKernel(g, g.node(r)!, plan.bufferOf, `n${r}`));
}

/**
 * @file The fusion plan: the decisions of fusion, as data. A value is either materialized (computed
 * by a kernel of its own and written to a buffer) or inlined into the kernels that read it; the plan
 * lists the materialized values in the order they were decided, each with the reason, and the buffer
 * table that follows from them (inputs, list constants, then the materialized values in that order).
 * Lowering (compiler/lower/lower.ts) turns a plan into kernels; printFusionPlan is its text form
 * (`kiln compile --stages`, stage `fuse`).
 */
import type { Graph } from '../../ir/graph.ts';
import type { BufferDecl } from '../../ir/kernel/types.ts';
import { formatType } from '../../ir/printer.ts';

export interface FusionPlan {
  /** Materialized node ids in decision order, each with the reason it is materialized. */
  readonly reasons: ReadonlyMap<number, string>;
  /** Every buffer of the program: inputs, list constants, then materialized values in decision order. */
  readonly buffers: readonly BufferDecl[];
  /** Value id → buffer id, for every value in memory (inputs, list constants, materialized nodes). */
  readonly bufferOf: ReadonlyMap<number, number>;
  readonly inputs: ReadonlyMap<string, number>;
  readonly outputs: ReadonlyMap<string, number>;
}

/** The kernel roots of a plan (its materialized nodes) in graph order: the order lowering emits kernels in. */
export function planRoots(g: Graph, plan: FusionPlan): number[] {
  const order = new Map(g.nodes.map((n, k) => [n.id, k]));
  return [...plan.reasons.keys()].sort((a, b) => order.get(a)! - order.get(b)!);
}

/**
 *   fusion plan: 3 of 9 nodes materialized
 *     %5 reduce_max f32[4,1] → b2 temp: graph output
 */
export function printFusionPlan(g: Graph, plan: FusionPlan): string {
  const lines = [`fusion plan: ${plan.reasons.size} of ${g.nodes.length} nodes materialized`];
  for (const id of planRoots(g, plan)) {
    const n = g.node(id)!;
    const b = plan.bufferOf.get(id)!;
    lines.push(`  %${id} ${n.op} ${formatType(n.type)} → b${b} ${plan.buffers[b]!.kind}: ${plan.reasons.get(id)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * @file The skeleton of a node-by-node graph pass: copy inputs, let the pass map each node to a
 * value of the new graph (a new node, or an existing value that replaces it), keep outputs.
 */
import { type Graph, GraphBuilder, type Node } from '../../ir/graph.ts';

export type NodeRewrite = (n: Node, inputs: readonly number[], b: GraphBuilder) => number;

export function rebuild(g: Graph, rewrite: NodeRewrite): Graph {
  const b = new GraphBuilder(g.name);
  const map = new Map<number, number>();
  for (const i of g.inputs) map.set(i.id, b.input(i.name, i.type, i.kind));
  for (const n of g.nodes) map.set(n.id, rewrite(n, n.inputs.map((i) => map.get(i)!), b));
  for (const o of g.outputs) b.output(o.name, map.get(o.id)!);
  return b.build();
}

/** Re-emit node `n` on the new inputs (the identity rewrite). */
export function copyNode(n: Node, inputs: readonly number[], b: GraphBuilder): number {
  return b.op(n.op, inputs, n.attrs, n.loc);
}

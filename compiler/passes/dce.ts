/**
 * @file Dead-code elimination: drop nodes whose values no output needs. Inputs are kept (a graph's
 * signature does not change when a pass runs).
 */
import { Graph } from '../../ir/graph.ts';

export function dce(g: Graph): Graph {
  const live = new Set(g.outputs.map((o) => o.id));
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k]!;
    if (live.has(n.id)) for (const i of n.inputs) live.add(i);
  }
  const nodes = g.nodes.filter((n) => live.has(n.id));
  return nodes.length === g.nodes.length ? g : new Graph(g.name, g.inputs, nodes, g.outputs);
}

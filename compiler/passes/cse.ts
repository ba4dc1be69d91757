/**
 * @file Common-subexpression elimination: nodes with the same op, operands and attributes compute the
 * same value (attributes compared exactly: −0, inf and nan included; every op is pure; random ops are counter-based, so equal seed and stream give equal
 * numbers) and are merged into the first.
 */
import type { Graph } from '../../ir/graph.ts';
import { attrsKey } from '../../ir/printer.ts';
import { copyNode, rewriteGraph } from '../../ir/rewrite.ts';

export function cse(g: Graph): Graph {
  const seen = new Map<string, number>();
  return rewriteGraph(g, (n, ins, b) => {
    const key = `${n.op}(${ins.join(',')}){${attrsKey(n.attrs)}}`;
    const prev = seen.get(key);
    if (prev !== undefined) return prev;
    const id = copyNode(n, ins, b);
    seen.set(key, id);
    return id;
  });
}

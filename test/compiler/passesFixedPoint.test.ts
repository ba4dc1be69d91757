/**
 * @file The pass pipeline's fixed-point test (compiler/passes/pipeline.ts samePrint) decides exactly
 * what comparing printGraph texts decides: on the graphs before and after every pass and every round
 * of the pipeline on random graphs (many pairs differ, the last round's do not), and on copies changed
 * in one printed field only (an attribute, an operand, an output, an input's type) or in fields that do
 * not print (source locations, value ids), which must still count as the same text.
 */
import { describe, expect, it } from 'vitest';
import { PASSES, decomposeForFusion, samePrint } from '../../compiler/passes/pipeline.ts';
import { Graph, type Node } from '../../ir/graph.ts';
import type { AttrValue } from '../../ir/ops.ts';
import { printGraph } from '../../ir/printer.ts';
import { randomGraph } from '../support/randomGraph.ts';

function agrees(a: Graph, b: Graph): boolean {
  const same = samePrint(a, b);
  expect(same, `samePrint disagrees with the printed texts of ${a.name}`).toBe(printGraph(a) === printGraph(b));
  return same;
}

/** g with its nodes replaced by `f` of each (inputs, outputs and name kept). */
function edited(g: Graph, f: (n: Node, i: number) => Node): Graph {
  return new Graph(g.name, g.inputs, g.nodes.map(f), g.outputs);
}

describe('pass pipeline fixed point', () => {
  it('agrees with printGraph equality along the pipeline on random graphs', () => {
    let equal = 0, differ = 0;
    for (let seed = 0; seed < 40; seed++) {
      let cur = decomposeForFusion.run(randomGraph(seed));
      for (let round = 0; round < 3; round++) {
        const before = cur;
        for (const p of PASSES) {
          const next = p.run(cur);
          if (agrees(cur, next)) equal++;
          else differ++;
          cur = next;
        }
        if (agrees(before, cur)) equal++;
        else differ++;
      }
    }
    expect(equal).toBeGreaterThan(100);
    expect(differ).toBeGreaterThan(20);
  }, 120_000);

  it('tells one changed printed field apart, and ignores fields that do not print', () => {
    let cases = 0;
    for (let seed = 0; seed < 30; seed++) {
      const g = randomGraph(seed);
      // not printed: source locations
      expect(agrees(g, edited(g, (n) => ({ ...n, loc: 'elsewhere.ts:1:1' })))).toBe(true);
      const k = g.nodes.findIndex((n) => Object.keys(n.attrs).length > 0);
      if (k >= 0) {
        const n = g.nodes[k]!;
        const key = Object.keys(n.attrs)[0]!;
        const v = n.attrs[key];
        const changed: AttrValue = typeof v === 'number' ? (v === 0 ? -0 : v + 1) : Array.isArray(v) ? [...(v as number[]), 1] : typeof v === 'boolean' ? !v : v === 'f32' ? 'i32' : 'f32';
        agrees(g, edited(g, (m, i) => (i === k ? { ...m, attrs: { ...m.attrs, [key]: changed } } : m)));
        cases++;
      }
      const j = g.nodes.findIndex((n) => n.inputs.length >= 2 && n.inputs[0] !== n.inputs[1]);
      if (j >= 0) {
        expect(agrees(g, edited(g, (m, i) => (i === j ? { ...m, inputs: [m.inputs[1]!, m.inputs[0]!, ...m.inputs.slice(2)] } : m)))).toBe(false);
        cases++;
      }
      if (g.outputs.length >= 2 && g.outputs[0]!.id !== g.outputs[1]!.id)
        expect(agrees(g, new Graph(g.name, g.inputs, g.nodes, [{ ...g.outputs[0]!, id: g.outputs[1]!.id }, ...g.outputs.slice(1)]))).toBe(false);
      if (g.inputs.length)
        expect(agrees(g, new Graph(g.name, [{ ...g.inputs[0]!, kind: g.inputs[0]!.kind === 'data' ? 'param' : 'data' }, ...g.inputs.slice(1)], g.nodes, g.outputs))).toBe(false);
    }
    expect(cases).toBeGreaterThan(30);
  });
});

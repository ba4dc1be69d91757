/**
 * The graph rewriter (ir/rewrite.ts) that every graph-to-graph transform and pass is built on: the
 * identity rewrite reproduces a graph exactly (ids, types, attributes, locations); a rule's
 * replacement is what later nodes and outputs read; inputs can be dropped and bound, outputs filtered.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/graph.ts';
import { printGraph } from '../../ir/printer.ts';
import { GraphRewriter, rewriteGraph } from '../../ir/rewrite.ts';
import { randomGraph } from '../support/randomGraph.ts';

function small() {
  const b = new GraphBuilder('small');
  const x = b.input('x', { dtype: 'f32', shape: [2, 3] });
  const w = b.input('w', { dtype: 'f32', shape: [3] }, 'param');
  const one = b.op('constant', [], { shape: [], dtype: 'f32', value: 1 }, 'models/m.ts:1:1');
  const y = b.op('mul', [x, one], {}, 'models/m.ts:2:1');
  const z = b.op('exp', [b.op('add', [y, w], {}, 'models/m.ts:3:1')], {}, 'models/m.ts:4:1');
  b.output('z', z);
  b.output('y', y);
  return b.build();
}

describe('rewriteGraph', () => {
  it('with a rule that keeps every node, reproduces 60 random graphs exactly (locations included)', () => {
    for (let s = 0; s < 60; s++) {
      const g = randomGraph(s);
      const text = printGraph(g, { locs: true });
      expect(printGraph(rewriteGraph(g, () => undefined), { locs: true }), `seed ${s}`).toBe(text);
    }
    const g = small();
    const copy = rewriteGraph(g, () => undefined, 'renamed');
    expect(copy.name).toBe('renamed');
    expect(copy.nodes).toEqual(g.nodes);
    expect(copy.inputs).toEqual(g.inputs);
    expect(copy.outputs).toEqual(g.outputs);
  });

  it('makes later nodes and outputs read the value a rule returns', () => {
    const g = small();
    // x·1 → x
    const r = rewriteGraph(g, (n, ins, b) => (n.op === 'mul' && b.typeOf(ins[0]!).shape.length === 2 ? ins[0] : undefined));
    expect(r.nodes.map((n) => n.op)).toEqual(['constant', 'add', 'exp']);
    const add = r.nodes.find((n) => n.op === 'add')!;
    expect(add.inputs[0]).toBe(r.inputByName('x')!.id);
    expect(r.output('y')!.id).toBe(r.inputByName('x')!.id);
    expect(r.output('z')!.id).toBe(r.nodes.find((n) => n.op === 'exp')!.id);
    expect(add.loc).toBe('models/m.ts:3:1');
    // A rule may emit several nodes for one: exp(u) → exp(u)·1 keeps the value, adds a node.
    const r2 = rewriteGraph(g, (n, ins, b) => (n.op === 'exp' ? b.op('mul', [b.op('exp', ins), b.op('constant', [], { shape: [], dtype: 'f32', value: 1 })]) : undefined));
    expect(r2.nodes.map((n) => n.op)).toEqual(['constant', 'mul', 'add', 'exp', 'constant', 'mul']);
    expect(r2.output('z')!.id).toBe(r2.nodes[5]!.id);
  });
});

describe('GraphRewriter', () => {
  it('drops and binds inputs, filters outputs, and names a value that has no counterpart', () => {
    const g = small();
    const rw = new GraphRewriter(g);
    rw.copyInputs((i) => i.name !== 'w');
    const wId = g.inputByName('w')!.id;
    expect(() => rw.copyNodes()).toThrow(`rewrite of graph small: value %${wId} has no counterpart yet`);
    const rw2 = new GraphRewriter(g).copyInputs((i) => i.name !== 'w');
    rw2.set(wId, rw2.builder.op('constant', [], { shape: [3], dtype: 'f32', value: 0.5 }));
    rw2.copyNodes().copyOutputs((o) => o.name !== 'y');
    const r = rw2.build();
    expect(r.inputs.map((i) => i.name)).toEqual(['x']);
    expect(r.outputs.map((o) => o.name)).toEqual(['z']);
    const add = r.nodes.find((n) => n.op === 'add')!;
    expect(r.node(add.inputs[1]!)).toMatchObject({ op: 'constant', attrs: { value: 0.5 } });
    expect(rw2.output('y')).toBe(r.nodes.find((n) => n.op === 'mul')!.id);
    expect(() => rw2.output('nope')).toThrow("graph small has no output 'nope'");
  });
});

/**
 * @file Helpers for transforms that extend a graph: copy a graph into a fresh builder wrapped in a
 * DSL trace context, so new nodes can be written with Tensor methods. New nodes get the location
 * set in `ctx.loc` (fixed mode), never a stack walk.
 */
import type { Graph } from '../../ir/graph.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { TraceContext } from '../dsl/trace.ts';

export interface Copied {
  readonly ctx: TraceContext;
  readonly builder: GraphBuilder;
  /** The copy of each original value id. */
  readonly val: Map<number, Tensor>;
  /** The copy of output `name` of the original graph. */
  out(name: string): Tensor;
}

/** Copy inputs and nodes of `g` (not its outputs) into a new builder named `name`. */
export function copyGraph(g: Graph, name: string): Copied {
  const builder = new GraphBuilder(name);
  const ctx = new TraceContext(name, builder);
  ctx.locMode = 'fixed';
  const val = new Map<number, Tensor>();
  for (const i of g.inputs) val.set(i.id, ctx.wrap(builder.input(i.name, i.type, i.kind)));
  for (const n of g.nodes) {
    ctx.loc = n.loc;
    val.set(n.id, ctx.op(n.op, n.inputs.map((i) => val.get(i)!), n.attrs));
  }
  ctx.loc = undefined;
  return {
    ctx, builder, val,
    out: (o: string) => {
      const id = g.output(o)?.id;
      if (id === undefined) throw new Error(`graph ${g.name} has no output '${o}'`);
      return val.get(id)!;
    },
  };
}

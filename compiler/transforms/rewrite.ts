/**
 * @file The graph rewriter (ir/rewrite.ts) for transforms that write new nodes as DSL Tensors
 * (autodiff, the training step, bindInput, test programs): a GraphRewriter whose builder a trace
 * context records into, so source values can be read as Tensors and Tensor results set as the new
 * values of source nodes. New nodes take the location in `ctx.loc` (fixed mode), never a stack walk;
 * copied nodes keep their own.
 */
import type { Graph, GraphBuilder } from '../../ir/graph.ts';
import { GraphRewriter } from '../../ir/rewrite.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { TraceContext, withTrace } from '../dsl/trace.ts';

export class TracedRewriter {
  readonly rewriter: GraphRewriter;
  readonly ctx: TraceContext;

  constructor(readonly source: Graph, name: string = source.name) {
    this.rewriter = new GraphRewriter(source, name);
    this.ctx = new TraceContext(name, this.rewriter.builder);
    this.ctx.locMode = 'fixed';
  }

  get builder(): GraphBuilder {
    return this.rewriter.builder;
  }

  /** The new value of source value `id`, as a Tensor of this trace. */
  tensor(id: number): Tensor {
    return this.ctx.wrap(this.rewriter.get(id));
  }

  /** The new value of the source's output `name`. */
  out(name: string): Tensor {
    return this.ctx.wrap(this.rewriter.output(name));
  }

  /** The new value of the source's input `name`. */
  input(name: string): Tensor {
    const i = this.source.inputByName(name);
    if (!i) throw new Error(`graph ${this.source.name} has no input '${name}'`);
    return this.tensor(i.id);
  }

  /** Make `t` the new value of source value `id`. */
  set(id: number, t: Tensor): void {
    this.rewriter.set(id, t.id);
  }

  build(): Graph {
    return this.rewriter.build();
  }

  /** Run `fn` with this rewriter's trace active (DSL ops record into the new graph). */
  run<T>(fn: () => T): T {
    return withTrace(this.ctx, fn);
  }
}

/** Copy inputs and nodes of `g` (not its outputs) into a new graph named `name`, to be extended. */
export function copyGraph(g: Graph, name: string): TracedRewriter {
  const r = new TracedRewriter(g, name);
  r.rewriter.copyInputs().copyNodes();
  return r;
}

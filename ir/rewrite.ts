/**
 * @file The one graph-rewrite mechanism. Every graph-to-graph transform and pass (composite
 * decomposition, the graph passes, autodiff, the training step, bindInput) copies its source graph
 * into a fresh GraphBuilder through a GraphRewriter, which keeps the node map: for each value of the
 * source, the value of the new graph that stands for it.
 *
 * A node-by-node pass is one call, `rewriteGraph(g, rule)`: inputs are copied, each node goes
 * through `rule` (which returns the value that replaces it, or undefined to keep a copy of it), and
 * the outputs are copied. Transforms that add inputs, reorder nodes or add outputs drive the same
 * rewriter step by step (copyInputs, copyNodes, set, copyOutputs, build). Values are created in the
 * order the rewriter is driven, so ids of the new graph are dense, as with any GraphBuilder.
 * (Dead-code elimination alone filters nodes without rebuilding, keeping ids; compiler/passes/dce.ts.)
 */
import { type Graph, GraphBuilder, type GraphInput, type GraphOutput, type Node } from './graph.ts';

/**
 * How a pass maps node `n` (of the source graph) given the new values of its inputs: return the value
 * of the new graph that replaces it (new nodes emitted into `b`, or an existing value), or undefined
 * to keep a copy of the node.
 */
export type NodeRule = (n: Node, inputs: readonly number[], b: GraphBuilder) => number | undefined;

/** Re-emit node `n` on new inputs, keeping its op, attributes and source location. */
export function copyNode(n: Node, inputs: readonly number[], b: GraphBuilder): number {
  return b.op(n.op, inputs, n.attrs, n.loc);
}

/** Copies a source graph into a new builder, keeping the map from source values to new values. */
export class GraphRewriter {
  readonly builder: GraphBuilder;
  private readonly map = new Map<number, number>();

  constructor(readonly source: Graph, name: string = source.name) {
    this.builder = new GraphBuilder(name);
  }

  /** The new value standing for source value `id` (which must have been copied or set). */
  get(id: number): number {
    const v = this.map.get(id);
    if (v === undefined) throw new Error(`rewrite of graph ${this.source.name}: value %${id} has no counterpart yet`);
    return v;
  }

  has(id: number): boolean {
    return this.map.has(id);
  }

  /** Make new value `to` stand for source value `id` (a node replaced, an input bound). */
  set(id: number, to: number): void {
    this.map.set(id, to);
  }

  /** Copy the source's inputs (those `keep` accepts), in order, with their names, types and kinds. */
  copyInputs(keep: (i: GraphInput) => boolean = () => true): this {
    for (const i of this.source.inputs) if (keep(i)) this.map.set(i.id, this.builder.input(i.name, i.type, i.kind));
    return this;
  }

  /** Map one source node through `rule` (default: copy it); returns its new value. */
  node(n: Node, rule?: NodeRule): number {
    const ins = n.inputs.map((i) => this.get(i));
    const v = rule?.(n, ins, this.builder) ?? copyNode(n, ins, this.builder);
    this.map.set(n.id, v);
    return v;
  }

  /** Map source nodes in order (default: all of them) through `rule` (default: copy). */
  copyNodes(nodes: Iterable<Node> = this.source.nodes, rule?: NodeRule): this {
    for (const n of nodes) this.node(n, rule);
    return this;
  }

  /** The new value of the source's output `name`. */
  output(name: string): number {
    const o = this.source.output(name);
    if (!o) throw new Error(`graph ${this.source.name} has no output '${name}'`);
    return this.get(o.id);
  }

  /** Copy the source's outputs (those `keep` accepts), in order, onto their new values. */
  copyOutputs(keep: (o: GraphOutput) => boolean = () => true): this {
    for (const o of this.source.outputs) if (keep(o)) this.builder.output(o.name, this.get(o.id));
    return this;
  }

  build(): Graph {
    return this.builder.build();
  }
}

/** The node-by-node rewrite of `g`: same inputs, each node mapped through `rule`, same outputs. */
export function rewriteGraph(g: Graph, rule: NodeRule, name: string = g.name): Graph {
  return new GraphRewriter(g, name).copyInputs().copyNodes(g.nodes, rule).copyOutputs().build();
}

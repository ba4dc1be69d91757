/**
 * @file The graph pass pipeline run before fusion: decomposeForFusion expands the composites that do
 * not keep kernels of their own (all but attention) into primitives, so fusion can regroup their
 * reductions; then simplify → viewFold → constantFold → cse → dce repeat until nothing changes.
 * Every pass is a node-by-node rewrite (ir/rewrite.ts) but dce, which only drops nodes.
 * KILN_DEBUG=passes prints the IR after every pass.
 */
import { emitDecomposition, isComposite } from '../../ir/decompose.ts';
import type { Graph } from '../../ir/graph.ts';
import { type ValueType, opSpec } from '../../ir/ops.ts';
import { printGraph } from '../../ir/printer.ts';
import { rewriteGraph } from '../../ir/rewrite.ts';
import { dumpGraph } from '../debug.ts';
import { constantFold } from './constantFold.ts';
import { cse } from './cse.ts';
import { dce } from './dce.ts';
import { simplify } from './simplify.ts';
import { viewFold } from './viewFold.ts';

export interface Pass {
  readonly name: string;
  readonly run: (g: Graph) => Graph;
}

/** Composites that keep their own kernels (everything else is decomposed before fusion). */
export const KERNEL_COMPOSITES: ReadonlySet<string> = new Set(['attention', 'attention_grad']);

/** Decompose every composite but those in KERNEL_COMPOSITES (one level: decompositions are primitive). */
export const decomposeForFusion: Pass = {
  name: 'decompose_for_fusion',
  run: (g) =>
    rewriteGraph(g, (n, ins, b) => (isComposite(n.op) && !KERNEL_COMPOSITES.has(n.op) ? emitDecomposition(b, n.op, ins, n.attrs) : undefined)),
};

export const PASSES: readonly Pass[] = [
  { name: 'simplify', run: simplify },
  { name: 'view_fold', run: viewFold },
  { name: 'constant_fold', run: constantFold },
  { name: 'cse', run: cse },
  { name: 'dce', run: dce },
];

/** Run the pipeline to a fixed point (at most `maxRounds` rounds): until a round leaves the printed graph unchanged. */
export function optimize(g: Graph, maxRounds = 8): Graph {
  let cur = decomposeForFusion.run(g);
  dumpGraph('passes', decomposeForFusion.name, cur);
  for (let round = 0; round < maxRounds; round++) {
    const before = cur;
    for (const p of PASSES) {
      cur = p.run(cur);
      dumpGraph('passes', p.name, cur);
    }
    if (samePrint(before, cur)) break;
  }
  return cur;
}

/**
 * printGraph(a) === printGraph(b), mostly without printing: graphs of different sizes print
 * different line counts, and graphs equal in every printed field (inputs, and per node its op, type,
 * operands by position and attributes in the op's order; numbers compared as their exact printed
 * form is) print the same text. Anything else is printed and compared.
 */
export function samePrint(a: Graph, b: Graph): boolean {
  if (a.inputs.length !== b.inputs.length || a.nodes.length !== b.nodes.length || a.outputs.length !== b.outputs.length) return false;
  return samePrintedFields(a, b) || printGraph(a) === printGraph(b);
}

function samePrintedFields(a: Graph, b: Graph): boolean {
  if (a.name !== b.name) return false;
  const sameType = (x: ValueType, y: ValueType) => x.dtype === y.dtype && x.shape.length === y.shape.length && x.shape.every((d, i) => d === y.shape[i]);
  const sameValue = (x: unknown, y: unknown): boolean =>
    Array.isArray(x) ? Array.isArray(y) && x.length === y.length && x.every((v, i) => sameValue(v, y[i])) : Object.is(x, y);
  // Values by printed name: inputs by their name, nodes by position.
  const na = new Map<number, string>(), nb = new Map<number, string>();
  for (let i = 0; i < a.inputs.length; i++) {
    const x = a.inputs[i]!, y = b.inputs[i]!;
    if (x.name !== y.name || x.kind !== y.kind || !sameType(x.type, y.type)) return false;
    na.set(x.id, x.name);
    nb.set(y.id, y.name);
  }
  for (let i = 0; i < a.nodes.length; i++) {
    const x = a.nodes[i]!, y = b.nodes[i]!;
    if (x.op !== y.op || !sameType(x.type, y.type) || x.inputs.length !== y.inputs.length) return false;
    for (let k = 0; k < x.inputs.length; k++) {
      const p = na.get(x.inputs[k]!), q = nb.get(y.inputs[k]!);
      if (p === undefined || p !== q) return false;
    }
    for (const [key] of opSpec(x.op).attrs) if (!sameValue(x.attrs[key], y.attrs[key])) return false;
    na.set(x.id, `#${i}`);
    nb.set(y.id, `#${i}`);
  }
  for (let i = 0; i < a.outputs.length; i++) {
    const x = a.outputs[i]!, y = b.outputs[i]!;
    const p = na.get(x.id), q = nb.get(y.id);
    if (x.name !== y.name || p === undefined || p !== q) return false;
  }
  return true;
}

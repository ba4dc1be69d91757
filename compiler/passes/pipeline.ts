/**
 * @file The graph pass pipeline run before fusion: decomposeForFusion expands the composites that do
 * not keep kernels of their own (all but attention) into primitives, so fusion can regroup their
 * reductions; then simplify → viewFold → constantFold → cse → dce repeat until nothing changes.
 * Every pass is a node-by-node rewrite (ir/rewrite.ts) but dce, which only drops nodes.
 * KILN_DEBUG=passes prints the IR after every pass.
 */
import { emitDecomposition, isComposite } from '../../ir/decompose.ts';
import type { Graph } from '../../ir/graph.ts';
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

/** Run the pipeline to a fixed point (at most `maxRounds` rounds). */
export function optimize(g: Graph, maxRounds = 8): Graph {
  let cur = decomposeForFusion.run(g);
  dumpGraph('passes', decomposeForFusion.name, cur);
  let text = printGraph(cur);
  for (let round = 0; round < maxRounds; round++) {
    for (const p of PASSES) {
      cur = p.run(cur);
      dumpGraph('passes', p.name, cur);
    }
    const next = printGraph(cur);
    if (next === text) break;
    text = next;
  }
  return cur;
}

/**
 * @file The graph pass pipeline run before fusion: composites other than attention are expanded into
 * primitives (so fusion can regroup their reductions), then simplify → viewFold → constantFold → cse
 * → dce repeat until nothing changes. KILN_DEBUG=passes prints the IR after every pass.
 */
import { emitDecomposition } from '../../ir/decompose.ts';
import type { Graph } from '../../ir/graph.ts';
import type { CompositeOp } from '../../ir/ops.ts';
import { printGraph } from '../../ir/printer.ts';
import { dumpGraph } from '../debug.ts';
import { constantFold } from './constantFold.ts';
import { cse } from './cse.ts';
import { dce } from './dce.ts';
import { rebuild, copyNode } from './rebuild.ts';
import { simplify } from './simplify.ts';
import { viewFold } from './viewFold.ts';

export interface Pass {
  readonly name: string;
  readonly run: (g: Graph) => Graph;
}

/** Composites that keep their own kernels (everything else is decomposed before fusion). */
export const KERNEL_COMPOSITES: ReadonlySet<string> = new Set(['attention', 'attention_grad']);

export const expandComposites: Pass = {
  name: 'expand_composites',
  run: (g) =>
    rebuild(g, (n, ins, b) =>
      opIsExpandable(n.op) ? emitDecomposition(b, n.op as CompositeOp, ins, n.attrs) : copyNode(n, ins, b)),
};
function opIsExpandable(op: string): boolean {
  return (op === 'softmax' || op === 'log_softmax' || op === 'layer_norm' || op === 'rms_norm') && !KERNEL_COMPOSITES.has(op);
}

export const PASSES: readonly Pass[] = [
  { name: 'simplify', run: simplify },
  { name: 'view_fold', run: viewFold },
  { name: 'constant_fold', run: constantFold },
  { name: 'cse', run: cse },
  { name: 'dce', run: dce },
];

/** Run the pipeline to a fixed point (at most `maxRounds` rounds). */
export function optimize(g: Graph, maxRounds = 8): Graph {
  let cur = expandComposites.run(g);
  dumpGraph('passes', expandComposites.name, cur);
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

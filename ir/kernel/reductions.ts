/**
 * @file Independent reductions of a row kernel: can a loop kernel's top-level reductions run apart
 * from the rest of its body? The compiler splits such kernels in two passes (partials over chunks,
 * then a combine: compiler/schedule/rowMapping.ts), and the CUDA backend runs reductions of one
 * extent in one loop over the reduced axis (backends/cuda/codegen.ts: loads they share are read once).
 */
import { walkExpr, walkStmts } from './expr.ts';
import type { Expr, LoopKernel, Stmt } from './types.ts';

/**
 * Can the reductions run as partials over chunks, combined in a second pass? Every top-level
 * reduction is a float sum, max or min (argmax partials would need the index too) whose body and
 * value use no other reduction's result (directly or through lets), there are no row loops, and
 * only lets and stores follow (pass 2 runs them per grid point).
 */
export function splittable(k: LoopKernel): boolean {
  const dependsOnAcc = new Set<string>();
  const uses = (stmts: readonly Stmt[], extra?: Expr) => {
    let hit = false;
    const visit = (e: Expr) => {
      if (e.k === 'ref' && dependsOnAcc.has(e.name)) hit = true;
    };
    walkStmts(stmts, visit);
    if (extra) walkExpr(extra, visit);
    return hit;
  };
  let reduces = 0;
  for (const s of k.body) {
    switch (s.k) {
      case 'loop': return false;
      case 'let':
        if (uses([s])) dependsOnAcc.add(s.name);
        break;
      case 'reduce':
        if (s.op === 'argmax' || (s.dtype !== 'f32' && s.dtype !== 'f16' && s.dtype !== 'bf16')) return false;
        if (uses(s.body, s.value)) return false;
        dependsOnAcc.add(s.acc);
        reduces++;
        break;
      case 'store': break;
    }
  }
  return reduces > 0;
}

type Reduce = Extract<Stmt, { k: 'reduce' }>;

/** The reductions in runs of one extent (in body order within each run), for one loop per run. */
export function sameExtentRuns(reduces: readonly Reduce[]): Reduce[][] {
  const runs = new Map<number, Reduce[]>();
  for (const r of reduces) {
    const run = runs.get(r.extent);
    if (run) run.push(r);
    else runs.set(r.extent, [r]);
  }
  return [...runs.values()];
}

/**
 * @file Index-set splitting of elementwise kernels (compile option `splitParts`): a kernel whose values
 * are selected by conditions on one grid variable alone — the parts of a concatenation, the halves of a
 * gated MLP's gradient (pad(dh1) + pad(dh2)), the stacked q/k/v gradients — evaluates every part at
 * every element (the parts are `let`s, computed before the select). Cut at the points where those
 * conditions change, each piece is a kernel of its own over its range of that variable, in which the
 * conditions are constants: the selects fold to one part and the other parts' lets (their loads, their
 * sigmoids) drop out. The same statements run on the same values: exact.
 */
import { I, affine, iadd, mapExpr, mapStmts, simplifyIndex, walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import type { Extents } from '../../ir/kernel/expr.ts';
import type { Expr, Kernel, LoopKernel, Stmt } from '../../ir/kernel/types.ts';

/** Grid points below which a kernel is not split (B/1 at batch 128: the SwiGLU gradient has 134M, the q/k/v stack 75M, the adaLN gradient 0.6M). */
export const SPLIT_MIN_POINTS = 2 ** 22;

/** Where a condition on var `v` alone can change value: c for (v + k) cmp c forms (v < c, v ≥ c, ...). */
function cutsOf(e: Expr, v: string, ext: number, out: Set<number>): void {
  walkExpr(e, (x) => {
    if (x.k !== 'bin' || x.dtype !== 'bool' || !['lt', 'le', 'gt', 'ge'].includes(x.op)) return;
    const a = affine(x.a), b = affine(x.b);
    if (!a || !b) return;
    // a − b = k·v + c with v the only var.
    const coef = new Map(a.coef);
    for (const [n, c] of b.coef) coef.set(n, (coef.get(n) ?? 0) - c);
    const vars = [...coef].filter(([, c]) => c !== 0);
    if (vars.length !== 1 || vars[0]![0] !== v || Math.abs(vars[0]![1]) !== 1) return;
    const k = vars[0]![1], c = a.c - b.c;
    // k·v + c cmp 0 changes between v = −c/k − 1 and −c/k (lt/ge), or −c/k and −c/k + 1 (le/gt).
    const at = -c * k + (x.op === 'le' || x.op === 'gt' ? (k > 0 ? 1 : 0) : k > 0 ? 0 : 1);
    if (at > 0 && at < ext) out.add(at);
  });
}

/** Drop top-level lets nothing refers to (after folding), last to first. */
function dropDeadLets(body: readonly Stmt[]): Stmt[] {
  const out: Stmt[] = [];
  const used = new Set<string>();
  for (let i = body.length - 1; i >= 0; i--) {
    const s = body[i]!;
    if (s.k === 'let' && !used.has(s.name)) continue;
    walkStmts([s], (x) => { if (x.k === 'ref') used.add(x.name); });
    out.push(s);
  }
  return out.reverse();
}

/** The pieces of an elementwise kernel cut along the grid axis whose conditions select its parts, or [k]. */
export function splitKernel(k: LoopKernel, minPoints = SPLIT_MIN_POINTS): LoopKernel[] {
  if (!k.body.every((s) => s.k === 'let' || s.k === 'store') || k.grid.length === 0) return [k];
  // Small kernels are launch-bound: a piece more costs more than the parts it stops evaluating.
  if (k.grid.reduce((a, b) => a * b, 1) < minPoints) return [k];
  let selects = 0;
  walkStmts(k.body, (x) => { if (x.k === 'select') selects++; });
  if (selects === 0) return [k];
  for (let d = 0; d < k.grid.length; d++) {
    const v = `g${d}`, n = k.grid[d]!;
    const cuts = new Set<number>();
    walkStmts(k.body, (x) => { if (x.k === 'select') cutsOf(x.c, v, n, cuts); });
    if (cuts.size === 0 || cuts.size > 7) continue;
    const bounds = [0, ...[...cuts].sort((a, b) => a - b), n];
    const pieces: LoopKernel[] = [];
    for (let p = 0; p + 1 < bounds.length; p++) {
      const [lo, hi] = [bounds[p]!, bounds[p + 1]!];
      const grid = k.grid.map((g, i) => (i === d ? hi - lo : g));
      const ext: Extents = new Map(grid.map((g, i) => [`g${i}`, g]));
      const shift = (x: Expr): Expr | undefined => (x.k === 'var' && x.name === v ? iadd(I.v(v), I.c(lo)) : undefined);
      const simp = (x: Expr): Expr | undefined => {
        if (x.k === 'select') {
          const c = simplifyIndex(mapExpr(x.c, simp), ext);
          if (c.k === 'const') return mapExpr(c.v ? x.a : x.b, simp);
          return { ...x, c, a: mapExpr(x.a, simp), b: mapExpr(x.b, simp) };
        }
        if ((x.dtype === 'i32' || x.dtype === 'bool') && x.k !== 'const' && x.k !== 'var' && x.k !== 'ref' && x.k !== 'load') return simplifyIndex(x, ext);
        if (x.k === 'load') return { ...x, index: simplifyIndex(mapExpr(x.index, simp), ext) };
        return undefined;
      };
      const body = dropDeadLets(mapStmts(mapStmts(k.body, shift), simp).map((s) => (s.k === 'store' ? { ...s, index: simplifyIndex(s.index, ext) } : s)));
      pieces.push({ ...k, name: `${k.name}.${p}`, grid, body });
    }
    // Worth it only when the pieces lost selects (each piece evaluates fewer parts).
    let left = 0;
    for (const q of pieces) walkStmts(q.body, (x) => { if (x.k === 'select') left++; });
    if (left < selects * pieces.length) return pieces;
  }
  return [k];
}

/** The stage: every elementwise kernel split where its parts are selected along one grid axis. */
export function splitParts(kernels: readonly Kernel[]): Kernel[] {
  return kernels.flatMap((k): Kernel[] => (k.kind === 'loop' ? splitKernel(k) : [k]));
}

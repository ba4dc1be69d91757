/**
 * @file Structural identity of kernel-IR expressions in time linear in their DAG size. Expressions are
 * immutable DAGs whose shared sub-trees (a view chain's index maps reuse each operand index in every
 * axis) can be exponentially large when written out, so exprKey (a string of the whole tree) is not
 * usable on them. An ExprInterner numbers expressions so that two get the same id exactly when they
 * are structurally equal (exprKey equal), visiting each DAG node once.
 */
import type { Expr } from './types.ts';

export class ExprInterner {
  private readonly ids = new WeakMap<Expr, number>();
  private readonly table = new Map<string, number>();

  /** An id equal for structurally equal expressions (same exprKey), different otherwise. */
  id(e: Expr): number {
    const had = this.ids.get(e);
    if (had !== undefined) return had;
    let key: string;
    switch (e.k) {
      case 'const': key = `c${e.v}:${e.dtype}`; break;
      case 'var': key = `v${e.name}`; break;
      case 'ref': key = `r${e.name}`; break;
      case 'load': key = `L${e.buf}:${this.id(e.index)}:${e.dtype}`; break;
      case 'un': key = `u${e.op}:${this.id(e.a)}:${e.dtype}`; break;
      case 'bin': key = `b${e.op}:${this.id(e.a)}:${this.id(e.b)}:${e.dtype}`; break;
      case 'select': key = `s${this.id(e.c)}:${this.id(e.a)}:${this.id(e.b)}:${e.dtype}`; break;
      case 'cast': key = `t${this.id(e.a)}:${e.dtype}`; break;
      case 'random': key = `R${e.dist}:${this.id(e.s0)}:${this.id(e.s1)}:${e.stream}:${this.id(e.index)}:${e.dtype}`; break;
    }
    let id = this.table.get(key);
    if (id === undefined) this.table.set(key, (id = this.table.size));
    this.ids.set(e, id);
    return id;
  }
}

/** The direct sub-expressions of `e`. */
export function children(e: Expr): readonly Expr[] {
  switch (e.k) {
    case 'load': return [e.index];
    case 'un': case 'cast': return [e.a];
    case 'bin': return [e.a, e.b];
    case 'select': return [e.c, e.a, e.b];
    case 'random': return [e.s0, e.s1, e.index];
    default: return [];
  }
}

/** Whether `e` written out as a tree has at least `n` nodes (visits at most n of them). */
export function treeSizeAtLeast(e: Expr, n: number): boolean {
  // (No closure: this runs for every value a kernel builder binds, and a named closure costs a
  // function-name definition per call under tsx.)
  const left = { n };
  return sizeAtLeast(e, left);
}
function sizeAtLeast(x: Expr, left: { n: number }): boolean {
  if (--left.n <= 0) return true;
  for (const c of children(x)) if (sizeAtLeast(c, left)) return true;
  return false;
}

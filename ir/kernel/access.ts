/**
 * @file Which buffers a kernel reads and writes, and the index expressions it uses for them.
 */
import { walkExpr, walkStmts } from './expr.ts';
import type { Expr, Kernel, Stmt } from './types.ts';

export interface Access {
  reads: Set<number>;
  writes: Set<number>;
  /** Every load index per buffer. */
  loadIndex: Map<number, Expr[]>;
  /** Every store (index, mode) per buffer. */
  storeIndex: Map<number, Array<{ index: Expr; mode: 'set' | 'add' }>>;
}

const cache = new WeakMap<Kernel, Access>();

/** The buffers `k` touches (memoized: kernels are immutable values). */
export function kernelAccess(k: Kernel): Access {
  let a = cache.get(k);
  if (!a) {
    a = computeAccess(k);
    cache.set(k, a);
  }
  return a;
}

function computeAccess(k: Kernel): Access {
  const a: Access = { reads: new Set(), writes: new Set(), loadIndex: new Map(), storeIndex: new Map() };
  const out = (buf: number) => void a.writes.add(buf);
  switch (k.kind) {
    case 'loop': addStmts(a, k.body); break;
    case 'matmul': addExprs(a, [k.a, k.b]); addStmts(a, k.epilogue); break;
    case 'attention':
      addExprs(a, [k.q, k.key, k.v, k.out.index]);
      out(k.out.buf);
      break;
    case 'attention_grad': {
      const exprs = [k.q, k.key, k.v, k.o, k.dout];
      for (const t of [k.dQ, k.dK, k.dV]) if (t) { exprs.push(t.index); out(t.buf); }
      addExprs(a, exprs);
      break;
    }
  }
  return a;
}

/** The access of a statement list: each statement's own access (memoized), joined in order. */
function addStmts(a: Access, stmts: readonly Stmt[]): void {
  for (const s of stmts) join(a, stmtAccess(s));
}

const stmtCache = new WeakMap<Stmt, Access>();
/**
 * One statement's access (memoized per statement object: kernels merged again and again keep most
 * statements as they are, so a merged kernel's access costs its statement count, not its expression
 * trees). Joined in statement order, these give the sets and lists in the order one walk would.
 */
function stmtAccess(s: Stmt): Access {
  let a = stmtCache.get(s);
  if (!a) {
    a = { reads: new Set(), writes: new Set(), loadIndex: new Map(), storeIndex: new Map() };
    const acc = a;
    walkStmts([s], (e) => onLoad(acc, e), (t) => {
      if (t.k !== 'store') return;
      acc.writes.add(t.buf);
      if (t.mode === 'add') acc.reads.add(t.buf);
      const l = acc.storeIndex.get(t.buf);
      if (l) l.push({ index: t.index, mode: t.mode });
      else acc.storeIndex.set(t.buf, [{ index: t.index, mode: t.mode }]);
    });
    stmtCache.set(s, a);
  }
  return a;
}

function addExprs(a: Access, exprs: readonly Expr[]): void {
  for (const e of exprs) walkExpr(e, (x) => onLoad(a, x));
}

function onLoad(a: Access, e: Expr): void {
  if (e.k !== 'load') return;
  a.reads.add(e.buf);
  const l = a.loadIndex.get(e.buf);
  if (l) l.push(e.index);
  else a.loadIndex.set(e.buf, [e.index]);
}

/** Add `b` after what `a` holds (fresh lists in `a`: `b` may be a statement's cached access). */
function join(a: Access, b: Access): void {
  for (const x of b.reads) a.reads.add(x);
  for (const x of b.writes) a.writes.add(x);
  for (const [buf, l] of b.loadIndex) {
    const have = a.loadIndex.get(buf);
    if (have) have.push(...l);
    else a.loadIndex.set(buf, [...l]);
  }
  for (const [buf, l] of b.storeIndex) {
    const have = a.storeIndex.get(buf);
    if (have) have.push(...l);
    else a.storeIndex.set(buf, [...l]);
  }
}

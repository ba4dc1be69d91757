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
  const onExpr = (e: Expr) => {
    if (e.k !== 'load') return;
    a.reads.add(e.buf);
    const l = a.loadIndex.get(e.buf);
    if (l) l.push(e.index);
    else a.loadIndex.set(e.buf, [e.index]);
  };
  const onStmt = (s: Stmt) => {
    if (s.k !== 'store') return;
    a.writes.add(s.buf);
    if (s.mode === 'add') a.reads.add(s.buf);
    const l = a.storeIndex.get(s.buf);
    if (l) l.push({ index: s.index, mode: s.mode });
    else a.storeIndex.set(s.buf, [{ index: s.index, mode: s.mode }]);
  };
  const exprs: Expr[] = [];
  const stmts: Stmt[] = [];
  const out = (buf: number) => void a.writes.add(buf);
  switch (k.kind) {
    case 'loop': stmts.push(...k.body); break;
    case 'matmul': exprs.push(k.a, k.b); stmts.push(...k.epilogue); break;
    case 'attention':
      exprs.push(k.q, k.key, k.v, k.out.index);
      out(k.out.buf);
      break;
    case 'attention_grad':
      exprs.push(k.q, k.key, k.v, k.o, k.dout);
      for (const t of [k.dQ, k.dK, k.dV]) if (t) { exprs.push(t.index); out(t.buf); }
      break;
  }
  for (const e of exprs) walkExpr(e, onExpr);
  walkStmts(stmts, onExpr, onStmt);
  return a;
}

/**
 * @file kernelAccess (ir/kernel/access.ts) joins memoized per-statement accesses; it must give what one
 * walk over the whole kernel gives: the same read and write sets in the same order, and every load and
 * store index per buffer in walk order (merging and the memory plan read these lists). Checked on every
 * kernel of merged training steps (the AdamW updates of a block's parameters are merged kernel after
 * kernel, so their statements are shared between kernels).
 */
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import { type Access, kernelAccess } from '../../ir/kernel/access.ts';
import { walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import type { Expr, Kernel, Stmt } from '../../ir/kernel/types.ts';
import { atPrecision } from '../../runtime/compile.ts';

/** The access of `k` by one walk (what computeAccess did before statements were memoized). */
function oneWalk(k: Kernel): Access {
  const a: Access = { reads: new Set(), writes: new Set(), loadIndex: new Map(), storeIndex: new Map() };
  const onExpr = (e: Expr) => {
    if (e.k !== 'load') return;
    a.reads.add(e.buf);
    a.loadIndex.set(e.buf, [...(a.loadIndex.get(e.buf) ?? []), e.index]);
  };
  const onStmt = (s: Stmt) => {
    if (s.k !== 'store') return;
    a.writes.add(s.buf);
    if (s.mode === 'add') a.reads.add(s.buf);
    a.storeIndex.set(s.buf, [...(a.storeIndex.get(s.buf) ?? []), { index: s.index, mode: s.mode }]);
  };
  const exprs: Expr[] = [];
  const stmts: Stmt[] = [];
  switch (k.kind) {
    case 'loop': stmts.push(...k.body); break;
    case 'matmul': exprs.push(k.a, k.b); stmts.push(...k.epilogue); break;
    case 'attention': exprs.push(k.q, k.key, k.v, k.out.index); a.writes.add(k.out.buf); break;
    case 'attention_grad':
      exprs.push(k.q, k.key, k.v, k.o, k.dout);
      for (const t of [k.dQ, k.dK, k.dV]) if (t) { exprs.push(t.index); a.writes.add(t.buf); }
      break;
  }
  for (const e of exprs) walkExpr(e, onExpr);
  walkStmts(stmts, onExpr, onStmt);
  return a;
}

function same(got: Access, want: Access): void {
  expect([...got.reads]).toEqual([...want.reads]);
  expect([...got.writes]).toEqual([...want.writes]);
  expect([...got.loadIndex.keys()]).toEqual([...want.loadIndex.keys()]);
  for (const [b, l] of want.loadIndex) expect(got.loadIndex.get(b)).toEqual(l);
  expect([...got.storeIndex.keys()]).toEqual([...want.storeIndex.keys()]);
  for (const [b, l] of want.storeIndex) expect(got.storeIndex.get(b)).toEqual(l);
}

describe('kernelAccess', () => {
  it('equals one walk over each kernel of merged training steps (block bf16, TarFlow, MLP)', () => {
    const steps = [
      atPrecision(buildProgram('block', { train: true, batch: 2, size: '64x4x16' }), 'bf16'),
      buildProgram('tarflow', { train: true, batch: 2, size: 'tiny' }),
      buildProgram('mlp', { train: true, batch: 4 }),
    ];
    let multi = 0;
    for (const g of steps)
      for (const k of compile(g).program.kernels) {
        same(kernelAccess(k), oneWalk(k));
        // kernels that load a buffer in more than one statement (the join must keep every index)
        if ([...oneWalk(k).loadIndex.values()].some((l) => l.length > 1)) multi++;
      }
    expect(multi).toBeGreaterThan(10);
  }, 120_000);
});

/**
 * @file Kernel merging after lowering, on the kernel IR:
 *  - epilogue fusion: an elementwise kernel over a matmul's output shape that reads the matmul's
 *    result only at the element it writes moves into the matmul's epilogue (bias, activation,
 *    residual, scale ...), and the matmul's own store disappears when nothing else reads it;
 *  - horizontal fusion: elementwise kernels over the same grid that share operands (the AdamW update
 *    of a parameter, its moments) or consume each other element by element become one kernel,
 *    loading each operand once;
 *  - attention gradients: the dQ, dK, dV kernels of one attention become one kernel.
 * A kernel only moves earlier when every buffer it reads is ready at the new position and no kernel
 * in between touches what it writes.
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import { I, exprKey, linearIndex, mapExpr, mapStmts } from '../../ir/kernel/expr.ts';
import type { AttentionGradKernel, BufferDecl, Expr, Kernel, LoopKernel, MatmulKernel, Stmt } from '../../ir/kernel/types.ts';
import { stridesOf } from '../../ir/shape.ts';

export function mergeKernels(input: readonly Kernel[], buffers: readonly BufferDecl[]): Kernel[] {
  let ks: Array<Kernel | undefined> = [...input];
  let counter = 0;
  const prefix = () => `m${counter++}_`;

  /** Can kernel `e` (index ei) run at index `at` (< ei), given kernels in between? `via` are buffers produced at `at` that e may read. */
  const canHoist = (at: number, ei: number, via: ReadonlySet<number>): boolean => {
    const ea = kernelAccess(ks[ei]!);
    for (let k = at; k < ei; k++) {
      const kk = ks[k];
      if (!kk) continue;
      const a = kernelAccess(kk);
      for (const b of ea.reads) if (a.writes.has(b) && !(k === at && via.has(b))) return false;
      for (const b of ea.writes) if (a.reads.has(b) || a.writes.has(b)) return false;
    }
    return true;
  };
  const readersOf = (buf: number, except: Set<number>) =>
    ks.some((k, i) => k && !except.has(i) && kernelAccess(k).reads.has(buf));

  // ---- epilogue fusion ----
  for (let mi = 0; mi < ks.length; mi++) {
    const m = ks[mi];
    if (!m || m.kind !== 'matmul') continue;
    let cur: MatmulKernel = m;
    const vars = [...cur.batch.map((_, i) => I.v(`b${i}`)), I.v('i'), I.v('j')];
    const shape = [...cur.batch, cur.m, cur.n];
    const ident = exprKey(linearIndex(vars, stridesOf(shape)));
    for (let ei = mi + 1; ei < ks.length; ei++) {
      const e = ks[ei];
      if (!e || !isElementwise(e) || !sameShape(e.grid, shape)) continue;
      const avail = identityStores(cur.epilogue, ident);
      const acc = kernelAccess(e);
      const eIdent = exprKey(linearIndex(e.grid.map((_, i) => I.v(`g${i}`)), stridesOf(e.grid)));
      if (![...avail.keys()].some((b) => acc.reads.has(b))) continue;
      if (![...avail.keys()].every((b) => (acc.loadIndex.get(b) ?? []).every((x) => exprKey(x) === eIdent))) continue;
      if (!canHoist(mi, ei, new Set(avail.keys()))) continue;
      const p = prefix();
      const body = substitute(e.body, p, (g) => vars[g]!, avail);
      cur = { ...cur, name: `${cur.name}+${e.name}`, nodes: [...cur.nodes, ...e.nodes], epilogue: [...cur.epilogue, ...body] };
      ks[mi] = cur;
      ks[ei] = undefined;
      cur = dropDeadStores(cur, buffers, (b) => readersOf(b, new Set([mi]))) as MatmulKernel;
      ks[mi] = cur;
    }
  }

  // ---- horizontal fusion of elementwise kernels ----
  for (let ai = 0; ai < ks.length; ai++) {
    const a = ks[ai];
    if (!a || !isElementwise(a)) continue;
    let cur: LoopKernel = a;
    const vars = cur.grid.map((_, i) => I.v(`g${i}`));
    const ident = exprKey(linearIndex(vars, stridesOf(cur.grid)));
    for (let bi = ai + 1; bi < ks.length; bi++) {
      const b = ks[bi];
      if (!b || !isElementwise(b) || !sameShape(b.grid, cur.grid)) continue;
      const ca = kernelAccess(cur), cb = kernelAccess(b);
      const avail = identityStores(cur.body, ident);
      const consumes = [...avail.keys()].filter((x) => cb.reads.has(x));
      const shares = [...cb.reads].some((x) => ca.reads.has(x) && buffers[x]!.kind !== 'const');
      if (!consumes.length && !shares) continue;
      if (!consumes.every((x) => (cb.loadIndex.get(x) ?? []).every((i) => exprKey(i) === ident))) continue;
      if ([...cb.writes].some((x) => ca.reads.has(x) || ca.writes.has(x))) continue;
      if (!canHoist(ai, bi, new Set(consumes))) continue;
      const p = prefix();
      const body = substitute(b.body, p, (g) => vars[g]!, new Map(consumes.map((x) => [x, avail.get(x)!])));
      cur = cseLets({ ...cur, name: `${cur.name}+${b.name}`, nodes: [...cur.nodes, ...b.nodes], body: [...cur.body, ...body] });
      ks[ai] = cur;
      ks[bi] = undefined;
      cur = dropDeadStores(cur, buffers, (x) => readersOf(x, new Set([ai]))) as LoopKernel;
      ks[ai] = cur;
    }
  }

  // ---- attention gradients of one attention ----
  for (let ai = 0; ai < ks.length; ai++) {
    const a = ks[ai];
    if (!a || a.kind !== 'attention_grad') continue;
    let cur: AttentionGradKernel = a;
    const key = attnKey(cur);
    for (let bi = ai + 1; bi < ks.length; bi++) {
      const b = ks[bi];
      if (!b || b.kind !== 'attention_grad' || attnKey(b) !== key || !canHoist(ai, bi, new Set())) continue;
      cur = { ...cur, name: `${cur.name}+${b.name}`, nodes: [...cur.nodes, ...b.nodes], dQ: cur.dQ ?? b.dQ, dK: cur.dK ?? b.dK, dV: cur.dV ?? b.dV };
      if ((b.dQ && cur.dQ !== b.dQ) || (b.dK && cur.dK !== b.dK) || (b.dV && cur.dV !== b.dV)) continue;
      ks[ai] = cur;
      ks[bi] = undefined;
    }
  }
  ks = ks.filter((k) => k !== undefined);
  return ks as Kernel[];
}

function isElementwise(k: Kernel): k is LoopKernel {
  return k.kind === 'loop' && k.body.every((s) => s.k === 'let' || (s.k === 'store' && s.mode === 'set'));
}
function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
function attnKey(k: AttentionGradKernel): string {
  return [k.batch.join(','), k.sq, k.sk, k.dk, k.dv, k.causal, k.scale, exprKey(k.q), exprKey(k.key), exprKey(k.v), exprKey(k.o), exprKey(k.dout)].join('|');
}

/** Buffers stored at the identity index by top-level stores, with the stored value. */
function identityStores(stmts: readonly Stmt[], ident: string): Map<number, Expr> {
  const m = new Map<number, Expr>();
  for (const s of stmts) if (s.k === 'store' && s.mode === 'set' && exprKey(s.index) === ident) m.set(s.buf, s.value);
  return m;
}

/** Rename a kernel body's names with prefix `p`, grid vars g_k → `gridVar(k)`, identity loads of `avail` → their values. */
function substitute(body: readonly Stmt[], p: string, gridVar: (k: number) => Expr, avail: ReadonlyMap<number, Expr>): Stmt[] {
  const f = (x: Expr): Expr | undefined => {
    if (x.k === 'var') {
      const m = /^g(\d+)$/.exec(x.name);
      return m ? gridVar(Number(m[1])) : { ...x, name: p + x.name };
    }
    if (x.k === 'ref') return { ...x, name: p + x.name };
    if (x.k === 'load' && avail.has(x.buf)) return avail.get(x.buf)!;
    return undefined;
  };
  // Substituted values keep their original names (they belong to the kernel merged into).
  return mapStmts(body, (x) => {
    if (x.k === 'load' && avail.has(x.buf)) return avail.get(x.buf)!;
    if (x.k === 'load') return { ...x, index: mapExpr(x.index, f) };
    return f(x);
  }, (n) => p + n);
}

/** Remove stores to temporaries that no other kernel reads. */
function dropDeadStores(k: Kernel, buffers: readonly BufferDecl[], readElsewhere: (b: number) => boolean): Kernel {
  const keep = (s: Stmt) => !(s.k === 'store' && s.mode === 'set' && buffers[s.buf]!.kind === 'temp' && !readElsewhere(s.buf));
  if (k.kind === 'matmul') return { ...k, epilogue: k.epilogue.filter(keep) };
  if (k.kind === 'loop') return { ...k, body: k.body.filter(keep) };
  return k;
}

/** Merge top-level lets with identical values (e.g. the same load appearing in two merged kernels). */
function cseLets(k: LoopKernel): LoopKernel {
  const seen = new Map<string, string>();
  const alias = new Map<string, string>();
  const out: Stmt[] = [];
  const f = (x: Expr): Expr | undefined => (x.k === 'ref' && alias.has(x.name) ? { ...x, name: alias.get(x.name)! } : undefined);
  for (const s of k.body) {
    const t = mapStmts([s], f)[0]!;
    if (t.k === 'let') {
      const key = exprKey(t.value);
      const prev = seen.get(key);
      if (prev) {
        alias.set(t.name, prev);
        continue;
      }
      seen.set(key, t.name);
    }
    out.push(t);
  }
  return { ...k, body: out };
}

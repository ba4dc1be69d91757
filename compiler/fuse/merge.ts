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
  let ks: Kernel[] = [...input];
  let counter = 0;
  const prefix = () => `m${counter++}_`;

  /** Would merging kernels i and j close a cycle (a dependence path between them through other kernels)? */
  const wouldCycle = (i: number, j: number): boolean => {
    const deps = dependencies(ks);
    const reach = (from: number, to: number) => {
      // Is `to` reachable backwards from `from` through deps, not using the direct edge from→to?
      const seen = new Set<number>();
      const stack = [...deps[from]!].filter((d) => d !== to);
      while (stack.length) {
        const x = stack.pop()!;
        if (x === to) return true;
        if (seen.has(x)) continue;
        seen.add(x);
        stack.push(...deps[x]!);
      }
      return false;
    };
    return reach(i, j) || reach(j, i);
  };
  const readersOf = (buf: number, except: ReadonlySet<Kernel>) => ks.some((k) => !except.has(k) && kernelAccess(k).reads.has(buf));
  /** Replace kernels i and j by `merged` (at i) and restore a dependence order. */
  const commit = (i: number, j: number, merged: Kernel): Kernel => {
    const cleaned = dropDeadStores(merged, buffers, (b) => readersOf(b, new Set([ks[i]!, ks[j]!])));
    ks = topoSort(ks.map((k, x) => (x === i ? cleaned : k)).filter((_, x) => x !== j));
    return cleaned;
  };

  // Each pass repeats until nothing merges: a merge re-sorts the list, which may move kernels
  // before the scan position.
  let merges = -1;
  while (merges !== counter) {
    merges = counter;
    epilogues();
    horizontal();
    attentionGrads();
  }
  return ks;

  function epilogues(): void {
  // ---- epilogue fusion ----
  for (let mi = 0; mi < ks.length; mi++) {
    if (ks[mi]!.kind !== 'matmul') continue;
    for (let again = true; again; ) {
      again = false;
      const cur = ks[mi] as MatmulKernel;
      const vars = [...cur.batch.map((_, i) => I.v(`b${i}`)), I.v('i'), I.v('j')];
      const shape = [...cur.batch, cur.m, cur.n];
      const ident = exprKey(linearIndex(vars, stridesOf(shape)));
      const avail = identityStores(cur.epilogue, ident);
      for (let ei = 0; ei < ks.length; ei++) {
        const e = ks[ei]!;
        if (ei === mi || !isElementwise(e) || !sameShape(e.grid, shape)) continue;
        const acc = kernelAccess(e);
        const eIdent = exprKey(linearIndex(e.grid.map((_, i) => I.v(`g${i}`)), stridesOf(e.grid)));
        const consumes = [...avail.keys()].filter((b) => acc.reads.has(b));
        if (!consumes.length || !consumes.every((b) => (acc.loadIndex.get(b) ?? []).every((x) => exprKey(x) === eIdent))) continue;
        if (wouldCycle(mi, ei)) continue;
        const body = substitute(e.body, prefix(), (g) => vars[g]!, avail);
        const merged: MatmulKernel = { ...cur, name: `${cur.name}+${e.name}`, nodes: [...cur.nodes, ...e.nodes], epilogue: [...cur.epilogue, ...body] };
        const kept = commit(mi, ei, merged);
        mi = ks.indexOf(kept);
        again = true;
        break;
      }
    }
  }

  }

  function horizontal(): void {
  // ---- horizontal fusion of elementwise kernels ----
  for (let ai = 0; ai < ks.length; ai++) {
    if (!isElementwise(ks[ai]!)) continue;
    for (let again = true; again; ) {
      again = false;
      const cur = ks[ai] as LoopKernel;
      const vars = cur.grid.map((_, i) => I.v(`g${i}`));
      const ident = exprKey(linearIndex(vars, stridesOf(cur.grid)));
      const ca = kernelAccess(cur);
      const avail = identityStores(cur.body, ident);
      for (let bi = ai + 1; bi < ks.length; bi++) {
        const b = ks[bi]!;
        if (!isElementwise(b) || !sameShape(b.grid, cur.grid)) continue;
        const cb = kernelAccess(b);
        const consumes = [...avail.keys()].filter((x) => cb.reads.has(x));
        const shares = [...cb.reads].some((x) => ca.reads.has(x) && buffers[x]!.kind !== 'const');
        if (!consumes.length && !shares) continue;
        if (!consumes.every((x) => (cb.loadIndex.get(x) ?? []).every((i) => exprKey(i) === ident))) continue;
        if ([...cb.writes].some((x) => ca.reads.has(x) || ca.writes.has(x))) continue;
        if ([...ca.writes].some((x) => cb.writes.has(x))) continue;
        if (wouldCycle(ai, bi)) continue;
        const body = substitute(b.body, prefix(), (g) => vars[g]!, new Map(consumes.map((x) => [x, avail.get(x)!])));
        const merged = cseLets({ ...cur, name: `${cur.name}+${b.name}`, nodes: [...cur.nodes, ...b.nodes], body: [...cur.body, ...body] });
        const kept = commit(ai, bi, merged);
        ai = ks.indexOf(kept);
        again = true;
        break;
      }
    }
  }

  }

  function attentionGrads(): void {
  // ---- attention gradients of one attention ----
  for (let ai = 0; ai < ks.length; ai++) {
    const a = ks[ai]!;
    if (a.kind !== 'attention_grad') continue;
    const key = attnKey(a);
    for (let bi = ai + 1; bi < ks.length; bi++) {
      const b = ks[bi]!;
      const cur = ks[ai] as AttentionGradKernel;
      if (b.kind !== 'attention_grad' || attnKey(b) !== key || wouldCycle(ai, bi)) continue;
      if ((b.dQ && cur.dQ) || (b.dK && cur.dK) || (b.dV && cur.dV)) continue;
      const merged: AttentionGradKernel = { ...cur, name: `${cur.name}+${b.name}`, nodes: [...cur.nodes, ...b.nodes], dQ: cur.dQ ?? b.dQ, dK: cur.dK ?? b.dK, dV: cur.dV ?? b.dV };
      prefix();
      const kept = commit(ai, bi, merged);
      ai = ks.indexOf(kept);
      bi = ai;
    }
  }
  }
}

/** For each kernel, the kernels it depends on: every other writer of a buffer it reads. */
function dependencies(ks: readonly Kernel[]): Array<Set<number>> {
  const acc = ks.map(kernelAccess);
  const writers = new Map<number, number[]>();
  acc.forEach((a, k) => a.writes.forEach((b) => writers.set(b, [...(writers.get(b) ?? []), k])));
  return acc.map((a, k) => {
    const d = new Set<number>();
    for (const b of a.reads) for (const w of writers.get(b) ?? []) if (w !== k) d.add(w);
    // Several writers of one buffer (a scatter's init and accumulate) keep their order.
    for (const b of a.writes) for (const w of writers.get(b) ?? []) if (w < k) d.add(w);
    return d;
  });
}

/** A dependence order of the kernels, as close to the given order as possible (stable). */
function topoSort(ks: readonly Kernel[]): Kernel[] {
  const deps = dependencies(ks);
  const done = new Set<number>();
  const out: Kernel[] = [];
  while (out.length < ks.length) {
    const k = ks.findIndex((_, i) => !done.has(i) && [...deps[i]!].every((d) => done.has(d)));
    if (k < 0) throw new Error('mergeKernels: kernel dependences form a cycle');
    done.add(k);
    out.push(ks[k]!);
  }
  return out;
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

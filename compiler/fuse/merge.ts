/**
 * @file Kernel merging after lowering, on the kernel IR:
 *  - epilogue fusion: an elementwise kernel over a matmul's output shape that reads the matmul's
 *    result only at the element it writes moves into the matmul's epilogue (bias, activation,
 *    residual, scale ...), and the matmul's own store disappears when nothing else reads it;
 *  - horizontal fusion: elementwise kernels over the same grid that share operands (the AdamW update
 *    of a parameter, its moments) or consume each other element by element become one kernel,
 *    loading each operand once;
 *  - attention gradients: the dQ, dK, dV kernels of one attention become one kernel;
 *  - sibling reductions (`siblingReductions`): column reductions of the same grid and extent that read
 *    one activation along the reduced axis (bias gradients of a matmul's halves) become one kernel;
 *  - row loops (`rowLoops`): an elementwise kernel over [...grid, C] that reads a reduction kernel's
 *    results (over `grid`) only at its row moves into that kernel as a row loop over C after the
 *    reductions (a norm's statistics and the normalization that uses them: the row is read from
 *    memory once; the row mapping makes it one block per row, compiler/schedule/rowMapping.ts).
 * The kernel dependence graph starts from the dependence analysis of the lowered list
 * (compiler/schedule/dependence.ts) and is kept up to date as kernels merge (a merged kernel has the
 * union of the pair's edges). Two kernels merge only when no dependence path runs between them through
 * other kernels (that would be a cycle); the result is listed in a dependence order of that graph.
 * `apart(x, y)`, when given, keeps two kernels from merging (compile.ts: a kernel of rematerialized
 * copies never joins a forward kernel, which would run the recomputation in the forward).
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import { I, exprKey, linearIndex, mapExpr, mapStmts, walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import { splittable } from '../../ir/kernel/reductions.ts';
import type { AttentionGradKernel, BufferDecl, Expr, Kernel, LoopKernel, MatmulKernel, Stmt } from '../../ir/kernel/types.ts';
import { stridesOf } from '../../ir/shape.ts';
import { kernelPredecessors } from '../schedule/dependence.ts';
import { isColumnCandidate } from '../schedule/rowMapping.ts';

export function mergeKernels(input: readonly Kernel[], buffers: readonly BufferDecl[], apart?: (x: Kernel, y: Kernel, how?: 'sibling') => boolean, opts: { rowLoops?: boolean; siblingReductions?: boolean } = {}): Kernel[] {
  let counter = 0;
  const prefix = () => `m${counter++}_`;

  // The kernel dependence graph (producers and users, by object), the readers of each buffer, and
  // each kernel's place in the original order; kept up to date as kernels merge.
  const live = new Set<Kernel>(input);
  const producers = new Map<Kernel, Set<Kernel>>();
  const users = new Map<Kernel, Set<Kernel>>();
  const place = new Map<Kernel, number>();
  const readers = new Map<number, Set<Kernel>>();
  kernelPredecessors(input).forEach((d, i) => {
    const k = input[i]!;
    place.set(k, i);
    producers.set(k, new Set([...d].map((j) => input[j]!)));
    users.set(k, users.get(k) ?? new Set());
    for (const j of d) {
      const p = input[j]!;
      if (!users.has(p)) users.set(p, new Set());
      users.get(p)!.add(k);
    }
  });
  const addReads = (k: Kernel) => {
    for (const b of kernelAccess(k).reads) {
      let r = readers.get(b);
      if (!r) readers.set(b, (r = new Set()));
      r.add(k);
    }
  };
  input.forEach(addReads);
  const ks = () => [...live];

  /** Would merging kernels x and y close a cycle (a dependence path between them through other kernels)? */
  const wouldCycle = (x: Kernel, y: Kernel): boolean => (apart?.(x, y) ?? false) || throughOthers(x, y) || throughOthers(y, x);
  /**
   * Is there a dependence path from `to` into `from` through at least one other kernel? Searched
   * both ways at once, one kernel per step each: back from `from` through producers and forward
   * from `to` through users; the first search that finds the other end, or runs out of kernels,
   * answers (each alone is exact). Merging the AdamW updates of same-shaped parameters asks this
   * about kernels near the end of the step: forward from them there is almost nothing to visit,
   * while back from them lies the whole step.
   */
  const throughOthers = (from: Kernel, to: Kernel): boolean => {
    const back = new DependenceSearch(producers, [...producers.get(from)!].filter((p) => p !== to), to);
    const fwd = new DependenceSearch(users, [...users.get(to)!].filter((u) => u !== from), from);
    for (;;) {
      const b = back.step();
      if (b !== undefined) return b;
      const f = fwd.step();
      if (f !== undefined) return f;
    }
  };
  const readElsewhere = (buf: number, except: ReadonlySet<Kernel>) => [...(readers.get(buf) ?? [])].some((k) => !except.has(k));
  /** Replace kernels x and y by `merged`. */
  const commit = (x: Kernel, y: Kernel, merged: Kernel): Kernel => {
    const pair = new Set([x, y]);
    const m = dropDeadStores(merged, buffers, (b) => readElsewhere(b, pair));
    const prod = new Set([...producers.get(x)!, ...producers.get(y)!].filter((k) => !pair.has(k)));
    const use = new Set([...users.get(x)!, ...users.get(y)!].filter((k) => !pair.has(k)));
    for (const p of prod) {
      const u = users.get(p)!;
      u.delete(x);
      u.delete(y);
      u.add(m);
    }
    for (const u of use) {
      const p = producers.get(u)!;
      p.delete(x);
      p.delete(y);
      p.add(m);
    }
    for (const k of pair) {
      producers.delete(k);
      users.delete(k);
      live.delete(k);
      for (const b of kernelAccess(k).reads) readers.get(b)?.delete(k);
    }
    producers.set(m, prod);
    users.set(m, use);
    place.set(m, Math.min(place.get(x)!, place.get(y)!));
    live.add(m);
    addReads(m);
    return m;
  };

  const work = [...input];
  while (work.length) {
    const k = work.shift()!;
    if (!live.has(k)) continue; // merged away
    const merged = k.kind === 'matmul' ? epilogue(k) : isElementwise(k) ? horizontal(k) : k.kind === 'attention_grad' ? attentionGrads(k)
      : opts.siblingReductions && isReduction(k) ? siblingReductions(k) : undefined;
    if (merged) work.unshift(merged);
  }
  // Row loops last, once the elementwise consumers of a row's statistics have merged into one kernel.
  if (opts.rowLoops) for (const k of ks()) if (live.has(k) && isReduction(k)) rowLoop(k);
  return dependenceOrder(ks().sort((a, b) => place.get(a)! - place.get(b)!), producers);

  /** Move one elementwise consumer of the matmul's result into its epilogue. */
  function epilogue(cur: MatmulKernel): Kernel | undefined {
    const vars = [...cur.batch.map((_, i) => I.v(`b${i}`)), I.v('i'), I.v('j')];
    const shape = [...cur.batch, cur.m, cur.n];
    const ident = exprKey(linearIndex(vars, stridesOf(shape)));
    const avail = identityStores(cur.epilogue, ident);
    for (const b of avail.keys())
      for (const e of readers.get(b) ?? []) {
        if (e === cur || !isElementwise(e) || !sameShape(e.grid, shape)) continue;
        const acc = kernelAccess(e);
        const eIdent = identityKey(e);
        const consumes = [...avail.keys()].filter((x) => acc.reads.has(x));
        if (!consumes.every((x) => (acc.loadIndex.get(x) ?? []).every((i) => exprKey(i) === eIdent))) continue;
        if (wouldCycle(cur, e)) continue;
        const body = substitute(e.body, prefix(), (g) => vars[g]!, avail);
        return commit(cur, e, { ...cur, name: `${cur.name}+${e.name}`, nodes: [...cur.nodes, ...e.nodes], epilogue: [...cur.epilogue, ...body] });
      }
    return undefined;
  }

  /** Merge one elementwise kernel of the same grid that reads this kernel's results or shares its operands. */
  function horizontal(cur: LoopKernel): Kernel | undefined {
    const vars = cur.grid.map((_, i) => I.v(`g${i}`));
    const ident = identityKey(cur);
    const ca = kernelAccess(cur);
    const avail = identityStores(cur.body, ident);
    const cands = new Set<Kernel>();
    for (const b of [...avail.keys(), ...[...ca.reads].filter((x) => buffers[x]!.kind !== 'const')])
      for (const k of readers.get(b) ?? []) if (k !== cur) cands.add(k);
    // (The shape test first: it is cheap, and most kernels that share an operand such as the
    // learning rate have other shapes; filtering before sorting keeps the same order.)
    const sameGrid = [...cands].filter((b): b is LoopKernel => b.kind === 'loop' && sameShape(b.grid, cur.grid) && isElementwise(b));
    for (const b of sameGrid.sort((x, y) => place.get(x)! - place.get(y)!)) {
      const cb = kernelAccess(b);
      const consumes = [...avail.keys()].filter((x) => cb.reads.has(x));
      if (!consumes.every((x) => (cb.loadIndex.get(x) ?? []).every((i) => exprKey(i) === ident))) continue;
      if ([...cb.writes].some((x) => ca.reads.has(x) || ca.writes.has(x))) continue;
      if ([...ca.writes].some((x) => cb.writes.has(x))) continue;
      if (wouldCycle(cur, b)) continue;
      const p = prefix();
      const name = `${cur.name}+${b.name}`, nodes = [...cur.nodes, ...b.nodes];
      if (b.body.length <= Math.max(64, 4 * cur.body.length)) {
        const body = substitute(b.body, p, (g) => vars[g]!, new Map(consumes.map((x) => [x, avail.get(x)!])));
        return commit(cur, b, cseLets({ ...cur, name, nodes, body: [...cur.body, ...body] }, cur.body));
      }
      // The kernel merged in is much larger (kernels merged again and again, e.g. the AdamW
      // updates of all same-shaped parameters): the smaller one takes the fresh names instead, and
      // the larger body is only searched for the loads it now takes from registers, so that each
      // merge costs about the smaller kernel, not the whole accumulated body.
      const head = substitute(cur.body, p, (g) => vars[g]!, new Map());
      const headAvail = identityStores(head, ident);
      const body = replaceLoads(b.body, new Map(consumes.map((x) => [x, headAvail.get(x)!])));
      return commit(cur, b, cseLets({ ...cur, name, nodes, body: [...head, ...body] }, head));
    }
    return undefined;
  }

  /**
   * Move one elementwise kernel over [...cur.grid, C] that reads cur's results only at its row into
   * cur, as a row loop over C after cur's statements (its last grid var becomes the loop's).
   */
  function rowLoop(cur: LoopKernel): Kernel | undefined {
    const n = cur.grid.length;
    const ident = identityKey(cur);
    const avail = identityStores(cur.body, ident);
    const ca = kernelAccess(cur);
    for (const b of avail.keys())
      for (const e of [...(readers.get(b) ?? [])].sort((x, y) => place.get(x)! - place.get(y)!)) {
        if (e === cur || !isElementwise(e) || e.grid.length !== n + 1 || !cur.grid.every((d, i) => d === e.grid[i])) continue;
        const acc = kernelAccess(e);
        const consumes = [...avail.keys()].filter((x) => acc.reads.has(x));
        if (!consumes.every((x) => (acc.loadIndex.get(x) ?? []).every((i) => exprKey(i) === ident))) continue;
        if ([...acc.writes].some((x) => ca.reads.has(x) || ca.writes.has(x))) continue;
        // Other rows' stores of cur are not visible to this row's loop: e reads cur's writes only at its row.
        if ([...acc.reads].some((x) => ca.writes.has(x) && !avail.has(x))) continue;
        if (wouldCycle(cur, e)) continue;
        const p = prefix();
        const cv = `${p}c`;
        const body = substitute(e.body, p, (g) => I.v(g < n ? `g${g}` : cv), new Map(consumes.map((x) => [x, avail.get(x)!])));
        return commit(cur, e, { ...cur, name: `${cur.name}+${e.name}`, nodes: [...cur.nodes, ...e.nodes], body: [...cur.body, { k: 'loop', var: cv, extent: e.grid[n]!, body }] });
      }
    return undefined;
  }

  /**
   * Merge one reduction kernel of the same grid whose reductions (independent ones, all of one extent,
   * as cur's) read a buffer that cur's reductions read too, along the reduced axis (an activation: the bias
   * gradients of the two halves of a SwiGLU's first matmul read the same dY and pre-activation, 268-403 MB
   * each at LightningDiT-B/1 batch 128). One kernel reads them once (backends run reductions of one
   * extent in one loop over the reduced axis). Both must be column candidates (sums over rows of
   * [rows, channels] data: compiler/schedule/rowMapping.ts), and so is the result, with the same mapping
   * (the mapping depends only on the grid, the extents and that), so every sum is computed as before.
   * `apart(x, y, 'sibling')`: siblings share an activation, so they belong to one layer's backward.
   */
  function siblingReductions(cur: LoopKernel): Kernel | undefined {
    const ext = reduceExtents(cur);
    if (ext === undefined || !splittable(cur) || !isColumnCandidate(cur)) return undefined;
    const ca = kernelAccess(cur);
    const rowData = reducedReads(cur);
    const cands = new Set<Kernel>();
    for (const b of rowData) if (buffers[b]!.kind !== 'const') for (const k of readers.get(b) ?? []) if (k !== cur) cands.add(k);
    for (const b of [...cands].sort((x, y) => place.get(x)! - place.get(y)!)) {
      if (!isReduction(b) || !sameShape(b.grid, cur.grid) || reduceExtents(b) !== ext || !splittable(b)) continue;
      if (![...reducedReads(b)].some((x) => rowData.has(x) && buffers[x]!.kind !== 'const') || !isColumnCandidate(b)) continue;
      const cb = kernelAccess(b);
      if ([...cb.writes].some((x) => ca.reads.has(x) || ca.writes.has(x)) || [...ca.writes].some((x) => cb.reads.has(x))) continue;
      if (apart?.(cur, b, 'sibling') || throughOthers(cur, b) || throughOthers(b, cur)) continue;
      const vars = cur.grid.map((_, i) => I.v(`g${i}`));
      const body = substitute(b.body, prefix(), (g) => vars[g]!, new Map());
      return commit(cur, b, cseLets({ ...cur, name: `${cur.name}+${b.name}`, nodes: [...cur.nodes, ...b.nodes], body: [...cur.body, ...body] }, cur.body));
    }
    return undefined;
  }

  /** Join the dQ, dK and dV kernels of one attention. */
  function attentionGrads(cur: AttentionGradKernel): Kernel | undefined {
    const key = attnKey(cur);
    for (const b of live) {
      if (b === cur || b.kind !== 'attention_grad' || attnKey(b) !== key) continue;
      // The same attention's gradients, however remat placed them: only a real dependence keeps them apart.
      if ((b.dQ && cur.dQ) || (b.dK && cur.dK) || (b.dV && cur.dV) || throughOthers(cur, b) || throughOthers(b, cur)) continue;
      prefix();
      return commit(cur, b, { ...cur, name: `${cur.name}+${b.name}`, nodes: [...cur.nodes, ...b.nodes], dQ: cur.dQ ?? b.dQ, dK: cur.dK ?? b.dK, dV: cur.dV ?? b.dV });
    }
    return undefined;
  }
}

/** A depth-first search over kernel dependence edges (one direction) for `target`, one kernel per step. */
class DependenceSearch {
  private readonly seen = new Set<Kernel>();
  constructor(private readonly next: ReadonlyMap<Kernel, ReadonlySet<Kernel>>, private readonly stack: Kernel[], private readonly target: Kernel) {}
  /** true: found; false: nothing left to visit; undefined: not decided yet. */
  step(): boolean | undefined {
    for (;;) {
      const v = this.stack.pop();
      if (v === undefined) return false;
      if (v === this.target) return true;
      if (this.seen.has(v)) continue;
      this.seen.add(v);
      for (const p of this.next.get(v)!) this.stack.push(p);
      return undefined;
    }
  }
}

const identityKeys = new WeakMap<LoopKernel, string>();
/** exprKey of the row-major index of a loop kernel's grid point. */
function identityKey(k: LoopKernel): string {
  let s = identityKeys.get(k);
  if (s === undefined) {
    s = exprKey(linearIndex(k.grid.map((_, i) => I.v(`g${i}`)), stridesOf(k.grid)));
    identityKeys.set(k, s);
  }
  return s;
}

/** A dependence order of the kernels (by the `producers` graph), as close to the given order as possible (Kahn's algorithm, lowest index first). */
function dependenceOrder(ks: readonly Kernel[], producers: ReadonlyMap<Kernel, ReadonlySet<Kernel>>): Kernel[] {
  const index = new Map(ks.map((k, i) => [k, i]));
  const users: number[][] = ks.map(() => []);
  const pending = ks.map((k, i) => {
    const ps = producers.get(k)!;
    for (const p of ps) users[index.get(p)!]!.push(i);
    return ps.size;
  });
  const ready = new MinHeap();
  pending.forEach((n, k) => n === 0 && ready.push(k));
  const out: Kernel[] = [];
  while (ready.size) {
    const k = ready.pop();
    out.push(ks[k]!);
    for (const u of users[k]!) if (--pending[u]! === 0) ready.push(u);
  }
  if (out.length !== ks.length) throw new Error('mergeKernels: kernel dependences form a cycle');
  return out;
}

class MinHeap {
  private a: number[] = [];
  get size(): number {
    return this.a.length;
  }
  push(x: number): void {
    const a = this.a;
    a.push(x);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (a[p]! <= a[i]!) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && a[l]! < a[m]!) m = l;
        if (r < a.length && a[r]! < a[m]!) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

function isElementwise(k: Kernel): k is LoopKernel {
  return k.kind === 'loop' && k.body.every((s) => s.k === 'let' || (s.k === 'store' && s.mode === 'set'));
}
/** A loop kernel of top-level reductions, lets and stores (no row loop yet). */
function isReduction(k: Kernel): k is LoopKernel {
  return k.kind === 'loop' && k.body.some((s) => s.k === 'reduce') && k.body.every((s) => s.k === 'let' || s.k === 'reduce' || (s.k === 'store' && s.mode === 'set'));
}
/** The one extent of all of a kernel's top-level reductions, or undefined when they differ. */
function reduceExtents(k: LoopKernel): number | undefined {
  const ext = new Set(k.body.flatMap((s) => (s.k === 'reduce' ? [s.extent] : [])));
  return ext.size === 1 ? [...ext][0] : undefined;
}
/** The buffers a kernel's reductions load along the reduced axis (at an index that uses the reduction's variable). */
function reducedReads(k: LoopKernel): Set<number> {
  const bufs = new Set<number>();
  for (const s of k.body) {
    if (s.k !== 'reduce') continue;
    // The reduction's lets that depend on its variable, so that loads at their values count too.
    const along = new Set<string>();
    const uses = (e: Expr) => {
      let hit = false;
      walkExpr(e, (x) => { if ((x.k === 'var' && x.name === s.var) || (x.k === 'ref' && along.has(x.name))) hit = true; });
      return hit;
    };
    const visit = (e: Expr) => { if (e.k === 'load' && uses(e.index)) bufs.add(e.buf); };
    for (const st of s.body) {
      if (st.k === 'let' && uses(st.value)) along.add(st.name);
      walkStmts([st], visit);
    }
    walkExpr(s.value, visit);
  }
  return bufs;
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

/** Loads of the buffers of `avail` (at the grid point; merge checked that) → their values, as a DAG walk keeping unchanged parts. */
function replaceLoads(body: readonly Stmt[], avail: ReadonlyMap<number, Expr>): readonly Stmt[] {
  if (avail.size === 0) return body;
  const done = new Map<Expr, Expr>();
  const f = (x: Expr): Expr => {
    let r = done.get(x);
    if (!r) done.set(x, (r = x.k === 'load' && avail.has(x.buf) ? avail.get(x.buf)! : mapChildren(x, f)));
    return r;
  };
  // Statements that load none of them stay as they are (the same objects: their summaries stay cached).
  return body.map((st) => (touches(st).loads.some((b) => avail.has(b)) ? mapStmts([st], f)[0]! : st));
}

/** The buffers a statement loads and the names it refers to (memoized per statement object). */
const touched = new WeakMap<Stmt, { loads: number[]; refs: string[] }>();
function touches(st: Stmt): { loads: number[]; refs: string[] } {
  let t = touched.get(st);
  if (!t) {
    const loads = new Set<number>(), refs = new Set<string>();
    const seen = new Set<Expr>();
    const visit = (x: Expr): void => {
      if (seen.has(x)) return;
      seen.add(x);
      if (x.k === 'load') loads.add(x.buf);
      else if (x.k === 'ref') refs.add(x.name);
      for (const c of exprChildren(x)) visit(c);
    };
    const stmt = (y: Stmt): void => {
      switch (y.k) {
        case 'let': visit(y.value); break;
        case 'store': visit(y.index); visit(y.value); break;
        case 'loop': y.body.forEach(stmt); break;
        case 'reduce': y.body.forEach(stmt); visit(y.value); break;
      }
    };
    stmt(st);
    touched.set(st, (t = { loads: [...loads], refs: [...refs] }));
  }
  return t;
}

function exprChildren(e: Expr): readonly Expr[] {
  switch (e.k) {
    case 'load': return [e.index];
    case 'un': case 'cast': return [e.a];
    case 'bin': return [e.a, e.b];
    case 'select': return [e.c, e.a, e.b];
    case 'random': return [e.s0, e.s1, e.index];
    default: return [];
  }
}

/** Remove stores to temporaries that no other kernel reads. */
function dropDeadStores(k: Kernel, buffers: readonly BufferDecl[], readElsewhere: (b: number) => boolean): Kernel {
  const keep = (s: Stmt) => !(s.k === 'store' && s.mode === 'set' && buffers[s.buf]!.kind === 'temp' && !readElsewhere(s.buf));
  if (k.kind === 'matmul') return { ...k, epilogue: k.epilogue.filter(keep) };
  if (k.kind === 'loop') {
    const body = k.body.filter(keep);
    const lets = cleanLets.get(k.body);
    if (lets) cleanLets.set(body, lets); // stores only were dropped: the lets are as clean as before
    return { ...k, body };
  }
  return k;
}

/**
 * The top-level lets of a cseLets result (no two with the same value), exprKey → name, by body array.
 * Merging kernel after kernel into one (the AdamW updates of all same-shaped parameters become one
 * kernel) then costs the appended part only, not the whole body again (quadratic on large models).
 */
const cleanLets = new WeakMap<readonly Stmt[], Map<string, string>>();

/**
 * Merge top-level lets with identical values (e.g. the same load appearing in two merged kernels).
 * `head`: the body `k.body` starts with (the kernel merged into); when it is a cseLets result, only
 * the rest is processed (its names never occur in the head, so the result is the same). The head's
 * entry is taken over: its kernel is merged away.
 */
function cseLets(k: LoopKernel, head?: readonly Stmt[]): LoopKernel {
  const known = head && cleanLets.get(head);
  const seen = known ?? new Map<string, string>();
  const alias = new Map<string, string>();
  const out: Stmt[] = known ? head.slice() : [];
  // Renaming refs once there is an alias: a DAG walk (index expressions share sub-trees) that keeps
  // unchanged sub-expressions as they are. A let's name is only referred to after it, so the walk's
  // memo stays valid as aliases are added.
  const renamed = new Map<Expr, Expr>();
  const f = (x: Expr): Expr | undefined => {
    const had = renamed.get(x);
    if (had) return had;
    const r = x.k === 'ref' ? (alias.has(x.name) ? { ...x, name: alias.get(x.name)! } : x) : x.k === 'const' || x.k === 'var' ? x : mapChildren(x, f);
    renamed.set(x, r);
    return r;
  };
  for (const s of known ? k.body.slice(head.length) : k.body) {
    const t = alias.size === 0 || !touches(s).refs.some((n) => alias.has(n)) ? s : mapStmts([s], f)[0]!;
    if (t.k === 'let') {
      const key = letKey(t.value);
      const prev = seen.get(key);
      if (prev) {
        alias.set(t.name, prev);
        continue;
      }
      seen.set(key, t.name);
    }
    out.push(t);
  }
  cleanLets.set(out, seen);
  return { ...k, body: out };
}

/** `e` with its direct sub-expressions mapped by `f` (which always answers); `e` itself when none changes. */
function mapChildren(e: Expr, f: (x: Expr) => Expr | undefined): Expr {
  switch (e.k) {
    case 'load': { const index = f(e.index) ?? e.index; return index === e.index ? e : { ...e, index }; }
    case 'un': case 'cast': { const a = f(e.a) ?? e.a; return a === e.a ? e : { ...e, a }; }
    case 'bin': { const a = f(e.a) ?? e.a, b = f(e.b) ?? e.b; return a === e.a && b === e.b ? e : { ...e, a, b }; }
    case 'select': { const c = f(e.c) ?? e.c, a = f(e.a) ?? e.a, b = f(e.b) ?? e.b; return c === e.c && a === e.a && b === e.b ? e : { ...e, c, a, b }; }
    case 'random': { const s0 = f(e.s0) ?? e.s0, s1 = f(e.s1) ?? e.s1, index = f(e.index) ?? e.index; return s0 === e.s0 && s1 === e.s1 && index === e.index ? e : { ...e, s0, s1, index }; }
    default: return e;
  }
}

const letKeys = new WeakMap<Expr, string>();
/** exprKey of a let's value, memoized (bodies merged again and again keep their let values as they are). */
function letKey(e: Expr): string {
  let k = letKeys.get(e);
  if (k === undefined) letKeys.set(e, (k = exprKey(e)));
  return k;
}

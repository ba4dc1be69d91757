/**
 * @file The static memory plan: every temporary buffer gets a byte offset in one arena. A buffer is
 * live from the first kernel that writes it to the last kernel that touches it; two buffers whose
 * live ranges overlap never overlap in memory, except that an elementwise kernel may write its result
 * over an operand that dies in that kernel when it reads that operand only at the element it
 * writes (in-place reuse). Offsets are assigned greedily, largest buffers first, each at the lowest
 * aligned offset that does not collide. Graph inputs, outputs and constants live outside the arena.
 *
 * State updates in place: an output `next.x` shares the memory of its resident input `x` when the plan
 * proves that no kernel reads the old value of x after it is overwritten (stateUpdatesInPlace); the
 * rest are copied onto their inputs after the step. Backends add their own scratch (library
 * workspaces, attention statistics) to the same arena (backends/arena.ts), so one plan covers all
 * device memory.
 */
import { NEXT_PREFIX } from '../../ir/graph.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { I, affine, exprKey, linearIndex, walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import type { BufferDecl, Kernel, Stmt } from '../../ir/kernel/types.ts';
import { stridesOf } from '../../ir/shape.ts';
import { deviceBytes } from '../fuse/cost.ts';

/** Offsets are multiples of this (WebGPU's minStorageBufferOffsetAlignment). */
export const ALIGN = 256;

export interface MemoryPlan {
  offsets: Map<number, number>;
  arenaBytes: number;
  /** The most temporary bytes live at once (a lower bound on arenaBytes). */
  peakBytes: number;
  /** Sum of all temporaries' aligned bytes (the arena that no reuse would need). */
  totalBytes: number;
  /** Live range [first, last] kernel index of each temporary. */
  live: Map<number, [number, number]>;
  /** Pairs (operand, result) that share memory in place. */
  inPlace: Array<[number, number]>;
  /** Pairs (output `next.x`, input `x`) whose update is written in place into the input's memory. */
  stateInPlace: Array<[number, number]>;
}

/** The graph's named input and output buffers (KernelProgram.inputs / outputs). */
export interface ProgramIo {
  readonly inputs: ReadonlyMap<string, number>;
  readonly outputs: ReadonlyMap<string, number>;
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

export function planMemory(kernels: readonly Kernel[], buffers: readonly BufferDecl[], io?: ProgramIo): MemoryPlan {
  const acc = kernels.map(kernelAccess);
  const temps = buffers.filter((b) => b.kind === 'temp');
  const size = (b: BufferDecl) => b.numel * deviceBytes(b.dtype);
  const live = new Map<number, [number, number]>();
  acc.forEach((a, k) => {
    for (const b of new Set([...a.reads, ...a.writes])) {
      if (buffers[b]!.kind !== 'temp') continue;
      const r = live.get(b);
      if (r) r[1] = k;
      else live.set(b, [k, k]);
    }
  });
  // In place: kernel k writes `out` (born at k) while reading `src` (dies at k) only at the store index.
  const inPlace: Array<[number, number]> = [];
  const sharesWith = new Map<number, number>();
  acc.forEach((a, k) => {
    const kern = kernels[k]!;
    if (kern.kind !== 'loop') return;
    for (const [out, stores] of a.storeIndex) {
      const ob = buffers[out]!;
      if (ob.kind !== 'temp' || live.get(out)?.[0] !== k || stores.length !== 1 || stores[0]!.mode !== 'set') continue;
      const key = exprKey(stores[0]!.index);
      for (const [src, loads] of a.loadIndex) {
        const sb = buffers[src]!;
        if (src === out || sb.kind !== 'temp' || live.get(src)?.[1] !== k || sharesWith.has(src)) continue;
        if (size(sb) !== size(ob) || sb.dtype !== ob.dtype) continue;
        if (!loads.every((i) => exprKey(i) === key)) continue;
        if (!isTopLevelStore(kern, out) || !readsBeforeStore(kern, src, out)) continue;
        inPlace.push([src, out]);
        sharesWith.set(src, out);
        sharesWith.set(out, src);
        break;
      }
    }
  });
  const conflicts = (x: number, y: number) => {
    if (sharesWith.get(x) === y) return false;
    const [a0, a1] = live.get(x)!, [b0, b1] = live.get(y)!;
    return a0 <= b1 && b0 <= a1;
  };
  const offsets = new Map<number, number>();
  const placed: number[] = [];
  const order = temps.filter((b) => live.has(b.id)).sort((a, b) => size(b) - size(a) || a.id - b.id);
  for (const b of order) {
    const partner = sharesWith.get(b.id);
    if (partner !== undefined && offsets.has(partner)) {
      const o = offsets.get(partner)!;
      const clash = placed.some((p) => p !== partner && conflicts(b.id, p) && overlaps(o, size(b), offsets.get(p)!, size(buffers[p]!)));
      if (!clash) {
        offsets.set(b.id, o);
        placed.push(b.id);
        continue;
      }
      sharesWith.delete(b.id);
      sharesWith.delete(partner);
      inPlace.splice(inPlace.findIndex(([s, t]) => (s === b.id && t === partner) || (s === partner && t === b.id)), 1);
    }
    const busy = placed.filter((p) => conflicts(b.id, p)).map((p) => [offsets.get(p)!, size(buffers[p]!)] as const).sort((x, y) => x[0] - y[0]);
    let o = 0;
    for (const [s, len] of busy) {
      if (overlaps(o, size(b), s, len)) o = Math.max(o, align(s + len));
    }
    offsets.set(b.id, o);
    placed.push(b.id);
  }
  // Unused temporaries (never touched) get no memory.
  let arenaBytes = 0;
  for (const [id, o] of offsets) arenaBytes = Math.max(arenaBytes, align(o + size(buffers[id]!)));
  let peakBytes = 0;
  for (let k = 0; k < kernels.length; k++) {
    let sum = 0;
    const counted = new Set<number>();
    for (const [id, [s, e]] of live) {
      if (s > k || e < k) continue;
      const p = sharesWith.get(id);
      if (p !== undefined && counted.has(p)) continue;
      counted.add(id);
      sum += size(buffers[id]!);
    }
    peakBytes = Math.max(peakBytes, sum);
  }
  const totalBytes = temps.filter((b) => live.has(b.id)).reduce((s, b) => s + align(size(b)), 0);
  const stateInPlace = io ? stateUpdatesInPlace(kernels, buffers, io) : [];
  return { offsets, arenaBytes, peakBytes, totalBytes, live, inPlace, stateInPlace };
}

/**
 * The state updates (`next.x` output, resident input `x`) that can be written straight into x's memory:
 * same dtype and size, written by `set` stores only, and no kernel reads x after the first write of
 * next.x — except the one kernel that writes it, when that is an elementwise kernel whose store of
 * next.x is the identity over its grid and which reads x only at that element before storing (the
 * fused AdamW update: each thread reads p[i], m[i], v[i] and then writes them). Kernels run in order.
 */
export function stateUpdatesInPlace(kernels: readonly Kernel[], buffers: readonly BufferDecl[], io: ProgramIo): Array<[number, number]> {
  const acc = kernels.map(kernelAccess);
  const pairs: Array<[number, number]> = [];
  const usedOut = new Set<number>(), usedIn = new Set<number>();
  for (const [name, out] of io.outputs) {
    if (!name.startsWith(NEXT_PREFIX)) continue;
    const inp = io.inputs.get(name.slice(NEXT_PREFIX.length));
    if (inp === undefined || inp === out || usedOut.has(out) || usedIn.has(inp)) continue;
    const ob = buffers[out]!, ib = buffers[inp]!;
    if (ob.kind !== 'output' || ib.kind !== 'input' || ob.dtype !== ib.dtype || ob.numel !== ib.numel) continue;
    // An output that is an input itself, or an input that is also an output (its old value is a
    // result of the run), stays copied.
    if ([...io.inputs.values()].includes(out) || [...io.outputs.values()].includes(inp)) continue;
    const writers = acc.flatMap((a, k) => (a.writes.has(out) ? [k] : []));
    if (writers.length === 0 || acc.some((a) => a.writes.has(inp))) continue;
    if (writers.some((k) => (acc[k]!.storeIndex.get(out) ?? []).some((s) => s.mode !== 'set'))) continue;
    const first = writers[0]!;
    const lastRead = acc.reduce((m, a, k) => (a.reads.has(inp) ? k : m), -1);
    const safe = lastRead < first || (writers.length === 1 && lastRead === first && readsOnlyItsOwnElement(kernels[first]!, inp, out, ob.numel));
    if (!safe) continue;
    pairs.push([out, inp]);
    usedOut.add(out);
    usedIn.add(inp);
  }
  return pairs;
}

/**
 * Does elementwise kernel `k` store `out` once, at the identity index of its grid (one thread per
 * element, no two threads on one element), and read `src` only at that same index, before the store?
 */
function readsOnlyItsOwnElement(k: Kernel, src: number, out: number, outNumel: number): boolean {
  let grid: readonly number[], vars: string[], body: readonly Stmt[];
  if (k.kind === 'loop') {
    if (!isTopLevelStore(k, out)) return false;
    [grid, vars, body] = [k.grid, k.grid.map((_, i) => `g${i}`), k.body];
  } else if (k.kind === 'matmul') {
    // The epilogue runs once per output element (b.., i, j); the operands must not read src at all.
    let operandReads = false;
    for (const e of [k.a, k.b]) walkExpr(e, (x) => { if (x.k === 'load' && x.buf === src) operandReads = true; });
    if (operandReads || k.epilogue.some((s) => s.k === 'loop' || s.k === 'reduce') || !k.epilogue.some((s) => s.k === 'store' && s.buf === out)) return false;
    [grid, vars, body] = [[...k.batch, k.m, k.n], [...k.batch.map((_, i) => `b${i}`), 'i', 'j'], k.epilogue];
  } else return false;
  const a = kernelAccess(k);
  const stores = a.storeIndex.get(out)!;
  if (stores.length !== 1) return false;
  const identity = affine(linearIndex(vars.map((v) => I.v(v)), stridesOf([...grid])));
  const st = affine(stores[0]!.index);
  if (!identity || !st || st.c !== identity.c || grid.reduce((x, y) => x * y, 1) !== outNumel) return false;
  for (const v of new Set([...st.coef.keys(), ...identity.coef.keys()])) if ((st.coef.get(v) ?? 0) !== (identity.coef.get(v) ?? 0)) return false;
  const key = exprKey(stores[0]!.index);
  return (a.loadIndex.get(src) ?? []).every((i) => exprKey(i) === key) && loadsBeforeStore(body, src, out);
}

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen && alen > 0 && blen > 0;
}

/** Does every load of `src` come before the (single) store to `out` in the kernel body? */
function readsBeforeStore(k: Kernel, src: number, out: number): boolean {
  return k.kind === 'loop' && loadsBeforeStore(k.body, src, out);
}

/** Does every load of `src` in `body` come before the (single) store to `out`? */
function loadsBeforeStore(body: readonly Stmt[], src: number, out: number): boolean {
  const at = body.findIndex((s) => s.k === 'store' && s.buf === out);
  let late = false;
  walkStmts(body.slice(at), (e) => {
    if (e.k === 'load' && e.buf === src) late = true;
  });
  return !late;
}

/** Is the kernel's store to `buf` at grid level (not inside a row loop), so reads and writes pair up per thread? */
function isTopLevelStore(k: Kernel, buf: number): boolean {
  return k.kind === 'loop' && k.body.some((s) => s.k === 'store' && s.buf === buf) && !k.body.some((s) => s.k === 'loop' || s.k === 'reduce');
}

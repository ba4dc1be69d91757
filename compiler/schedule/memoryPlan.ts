/**
 * @file The static memory plan: every temporary buffer gets a byte offset in one arena. A buffer is
 * live from the first kernel that writes it to the last kernel that touches it; two buffers whose
 * live ranges overlap never overlap in memory, except that an elementwise kernel may write its result
 * over an operand that dies in that kernel when it reads that operand only at the element it
 * writes (in-place reuse). Offsets are assigned greedily, largest buffers first, each at the lowest
 * aligned offset that does not collide. Graph inputs, outputs and constants live outside the arena.
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import { exprKey, walkStmts } from '../../ir/kernel/expr.ts';
import type { BufferDecl, Kernel } from '../../ir/kernel/types.ts';
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
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

export function planMemory(kernels: readonly Kernel[], buffers: readonly BufferDecl[]): MemoryPlan {
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
  // Live bytes at each kernel, by a sweep over range ends: each buffer counts from its first kernel
  // to its last; a pair sharing memory in place (equal sizes, both live only at the kernel where one
  // dies and the other is born) counts once there.
  const delta = new Array<number>(kernels.length + 1).fill(0);
  for (const [id, [s, e]] of live) {
    delta[s]! += size(buffers[id]!);
    delta[e + 1]! -= size(buffers[id]!);
  }
  for (const [x, y] of sharesWith) {
    if (x > y) continue; // each pair once
    const [a0, a1] = live.get(x)!, [b0, b1] = live.get(y)!;
    const from = Math.max(a0, b0), to = Math.min(a1, b1);
    if (from <= to) {
      delta[from]! -= size(buffers[x]!);
      delta[to + 1]! += size(buffers[x]!);
    }
  }
  let peakBytes = 0;
  for (let k = 0, sum = 0; k < kernels.length; k++) peakBytes = Math.max(peakBytes, (sum += delta[k]!));
  const totalBytes = temps.filter((b) => live.has(b.id)).reduce((s, b) => s + align(size(b)), 0);
  return { offsets, arenaBytes, peakBytes, totalBytes, live, inPlace };
}

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen && alen > 0 && blen > 0;
}

/** Does every load of `src` come before the (single) store to `out` in the kernel body? */
function readsBeforeStore(k: Kernel, src: number, out: number): boolean {
  if (k.kind !== 'loop') return false;
  const at = k.body.findIndex((s) => s.k === 'store' && s.buf === out);
  let late = false;
  walkStmts(k.body.slice(at), (e) => {
    if (e.k === 'load' && e.buf === src) late = true;
  });
  return !late;
}

/** Is the kernel's store to `buf` at grid level (not inside a row loop), so reads and writes pair up per thread? */
function isTopLevelStore(k: Kernel, buf: number): boolean {
  return k.kind === 'loop' && k.body.some((s) => s.k === 'store' && s.buf === buf) && !k.body.some((s) => s.k === 'loop' || s.k === 'reduce');
}

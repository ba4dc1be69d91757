/**
 * @file A backend's own buffers in a laid-out program's arena: library workspaces and kernel scratch
 * (attention statistics, GEMM epilogue accumulators) placed beside the compiler's temporaries by live
 * range (kernel indices), so that one plan covers all device memory. The compiler's plan is read back
 * from the program itself (temporaries' offsets from its buffers, live ranges from its kernels), so a
 * backend needs nothing but the KernelProgram.
 */
import { kernelAccess } from '../ir/kernel/access.ts';
import type { BufferDecl, Kernel } from '../ir/kernel/types.ts';

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
/** Bytes of one element in device memory (bool is a 32-bit word). */
const deviceBytes = (d: string) => (d === 'f16' || d === 'bf16' ? 2 : 4);

/** The compiler's arena as a backend sees it: temporaries' offsets and live ranges, in-place pairs. */
export interface ArenaLayout {
  readonly offsets: ReadonlyMap<number, number>;
  readonly live: ReadonlyMap<number, readonly [number, number]>;
  readonly inPlace: ReadonlyArray<readonly [number, number]>;
  readonly arenaBytes: number;
  readonly peakBytes: number;
}

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen && alen > 0 && blen > 0;
}

/**
 * The memory plan of a laid-out program, read back from it (offsets from its buffers, live ranges from
 * its kernels; temporaries sharing an offset while both live are the in-place pairs): what a backend
 * needs to place its own buffers with placeExtras.
 */
export function planOfProgram(p: { readonly kernels: readonly Kernel[]; readonly buffers: readonly BufferDecl[]; readonly arenaBytes: number }): ArenaLayout {
  const live = new Map<number, [number, number]>();
  p.kernels.forEach((k, i) => {
    const a = kernelAccess(k);
    for (const b of new Set([...a.reads, ...a.writes])) {
      if (p.buffers[b]!.kind !== 'temp' || p.buffers[b]!.offset === undefined) continue;
      const r = live.get(b);
      if (r) r[1] = i;
      else live.set(b, [i, i]);
    }
  });
  const offsets = new Map<number, number>();
  for (const id of live.keys()) offsets.set(id, p.buffers[id]!.offset!);
  const inPlace: Array<[number, number]> = [];
  const ids = [...live.keys()];
  for (const x of ids)
    for (const y of ids)
      if (x < y && offsets.get(x) === offsets.get(y) && (live.get(x)![1] === live.get(y)![0] || live.get(y)![1] === live.get(x)![0])) inPlace.push([x, y]);
  const plan: ArenaLayout = { offsets, arenaBytes: p.arenaBytes, peakBytes: 0, live, inPlace };
  return { ...plan, peakBytes: placeExtras(plan, p.buffers, []).peakBytes };
}

/** A buffer outside the kernel IR that a backend adds to the arena: live from kernel `first` to `last`. */
export interface ArenaExtra {
  readonly id: number;
  readonly bytes: number;
  readonly first: number;
  readonly last: number;
}

/**
 * Place `extras` in the arena beside the planned temporaries (which keep their offsets): each at the
 * lowest aligned offset that collides with no temporary or extra whose live range overlaps its own.
 * Returns their offsets, the arena size that holds everything, and the new peak of live bytes.
 */
export function placeExtras(plan: ArenaLayout, buffers: readonly BufferDecl[], extras: readonly ArenaExtra[]): { offsets: Map<number, number>; arenaBytes: number; peakBytes: number } {
  const size = (b: BufferDecl) => b.numel * deviceBytes(b.dtype);
  const placed: Array<{ o: number; len: number; first: number; last: number }> = [];
  for (const [id, o] of plan.offsets) {
    const [first, last] = plan.live.get(id)!;
    placed.push({ o, len: size(buffers[id]!), first, last });
  }
  const offsets = new Map<number, number>();
  let arenaBytes = plan.arenaBytes;
  for (const x of [...extras].sort((a, b) => b.bytes - a.bytes || a.id - b.id)) {
    const busy = placed.filter((p) => p.first <= x.last && x.first <= p.last && p.len > 0).sort((a, b) => a.o - b.o);
    let o = 0;
    for (const p of busy) if (overlaps(o, x.bytes, p.o, p.len)) o = Math.max(o, align(p.o + p.len));
    offsets.set(x.id, o);
    placed.push({ o, len: x.bytes, first: x.first, last: x.last });
    arenaBytes = Math.max(arenaBytes, align(o + x.bytes));
  }
  let peakBytes = plan.peakBytes;
  if (extras.length || peakBytes === 0) {
    const last = Math.max(-1, ...extras.map((x) => x.last), ...[...plan.live.values()].map((r) => r[1]));
    for (let k = 0; k <= last; k++) {
      let sum = extras.reduce((s, x) => (x.first <= k && k <= x.last ? s + x.bytes : s), 0);
      const counted = new Set<number>();
      for (const [id, [s0, e0]] of plan.live) {
        if (s0 > k || e0 < k) continue;
        const partner = plan.inPlace.find(([a, b]) => a === id || b === id);
        const other = partner ? (partner[0] === id ? partner[1] : partner[0]) : undefined;
        if (other !== undefined && counted.has(other)) continue;
        counted.add(id);
        sum += size(buffers[id]!);
      }
      peakBytes = Math.max(peakBytes, sum);
    }
  }
  return { offsets, arenaBytes, peakBytes };
}

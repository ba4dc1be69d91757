/**
 * @file The dependence analysis of a kernel sequence, shared by kernel merging (compiler/fuse/merge.ts)
 * and kernel ordering (order.ts). A kernel reads and writes whole buffers (ir/kernel/access.ts; an
 * accumulating store `+=` both reads and writes). Taking the list as a program run in order, kernel k
 * must run after an earlier kernel j when
 *   RAW  k reads a buffer whose last writer before k is j,
 *   WAW  k writes a buffer whose last writer before k is j,
 *   WAR  k writes a buffer that j read after its last write.
 * Only those nearest conflicts are edges; older ones follow through the chain (a reader of a buffer
 * written twice depends on the second writer, which depends on the first), so reachability is the
 * complete dependence relation.
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { Kernel } from '../../ir/kernel/types.ts';

export type DependenceKind = 'raw' | 'war' | 'waw';

/** Kernel `to` must run after kernel `from` (positions in the list) because of buffer `buf`. */
export interface Dependence {
  readonly from: number;
  readonly to: number;
  readonly kind: DependenceKind;
  readonly buf: number;
}

/** Every dependence edge of the sequence, grouped by the later kernel, in list order. */
export function dependenceEdges(kernels: readonly Kernel[]): Dependence[] {
  const edges: Dependence[] = [];
  const lastWriter = new Map<number, number>();
  const readersSince = new Map<number, number[]>();
  kernels.forEach((k, to) => {
    const a = kernelAccess(k);
    for (const buf of a.reads) {
      const w = lastWriter.get(buf);
      if (w !== undefined) edges.push({ from: w, to, kind: 'raw', buf });
    }
    for (const buf of a.writes) {
      const w = lastWriter.get(buf);
      if (w !== undefined) edges.push({ from: w, to, kind: 'waw', buf });
      for (const r of readersSince.get(buf) ?? []) if (r !== to) edges.push({ from: r, to, kind: 'war', buf });
    }
    for (const buf of a.reads) {
      const rs = readersSince.get(buf);
      if (rs) rs.push(to);
      else readersSince.set(buf, [to]);
    }
    for (const buf of a.writes) {
      lastWriter.set(buf, to);
      readersSince.set(buf, []);
    }
  });
  return edges;
}

/** For each kernel, the earlier kernels it depends on directly (the `from` ends of its edges). */
export function kernelPredecessors(kernels: readonly Kernel[]): Array<Set<number>> {
  const preds = kernels.map(() => new Set<number>());
  for (const e of dependenceEdges(kernels)) preds[e.to]!.add(e.from);
  return preds;
}

/**
 * @file Kernel order: a topological order of the kernels (by their buffer dependences: read after
 * write, write after read, write after write) that keeps peak memory low, chosen greedily: among
 * the kernels that are ready, run the one that frees the most temporary bytes net of what it
 * allocates (ties keep the original order, which follows the graph).
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { BufferDecl, Kernel } from '../../ir/kernel/types.ts';
import { deviceBytes } from '../fuse/cost.ts';

export function kernelDependencies(kernels: readonly Kernel[]): Array<Set<number>> {
  const acc = kernels.map(kernelAccess);
  const lastWriter = new Map<number, number>();
  const readersSince = new Map<number, number[]>();
  return acc.map((a, k) => {
    const deps = new Set<number>();
    for (const b of a.reads) {
      const w = lastWriter.get(b);
      if (w !== undefined) deps.add(w);
    }
    for (const b of a.writes) {
      const w = lastWriter.get(b);
      if (w !== undefined) deps.add(w);
      for (const r of readersSince.get(b) ?? []) if (r !== k) deps.add(r);
    }
    for (const b of a.reads) readersSince.set(b, [...(readersSince.get(b) ?? []), k]);
    for (const b of a.writes) {
      lastWriter.set(b, k);
      readersSince.set(b, []);
    }
    return deps;
  });
}

export function scheduleKernels(kernels: readonly Kernel[], buffers: readonly BufferDecl[]): Kernel[] {
  const deps = kernelDependencies(kernels);
  const acc = kernels.map(kernelAccess);
  const bytes = (b: number) => (buffers[b]!.kind === 'temp' ? buffers[b]!.numel * deviceBytes(buffers[b]!.dtype) : 0);
  // Remaining uses of each buffer (kernels that touch it and have not run).
  const remaining = new Map<number, number>();
  for (const a of acc) for (const b of new Set([...a.reads, ...a.writes])) remaining.set(b, (remaining.get(b) ?? 0) + 1);
  const allocated = new Set<number>();
  const done = new Set<number>();
  const order: Kernel[] = [];
  while (order.length < kernels.length) {
    let best = -1, bestScore = -Infinity;
    for (let k = 0; k < kernels.length; k++) {
      if (done.has(k) || [...deps[k]!].some((d) => !done.has(d))) continue;
      let score = 0;
      const a = acc[k]!;
      for (const b of new Set([...a.reads, ...a.writes])) {
        if (!allocated.has(b)) score -= bytes(b);
        if (remaining.get(b) === 1) score += bytes(b);
      }
      if (score > bestScore) {
        best = k;
        bestScore = score;
      }
    }
    done.add(best);
    order.push(kernels[best]!);
    const a = acc[best]!;
    for (const b of new Set([...a.reads, ...a.writes])) {
      allocated.add(b);
      remaining.set(b, remaining.get(b)! - 1);
    }
  }
  return order;
}

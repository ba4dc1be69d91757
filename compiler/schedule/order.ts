/**
 * @file Kernel order: a topological order of the kernels (by their buffer dependences, dependence.ts:
 * read after write, write after read, write after write) that keeps peak memory low, chosen greedily: among
 * the kernels that are ready, run the one that frees the most temporary bytes net of what it
 * allocates (ties keep the original order, which follows the graph).
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { BufferDecl, Kernel } from '../../ir/kernel/types.ts';
import { deviceBytes } from '../fuse/cost.ts';
import { kernelPredecessors } from './dependence.ts';

export function scheduleKernels(kernels: readonly Kernel[], buffers: readonly BufferDecl[]): Kernel[] {
  const deps = kernelPredecessors(kernels);
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

/**
 * @file Kernel order: a topological order of the kernels (by their buffer dependences, dependence.ts:
 * read after write, write after read, write after write) that keeps peak memory low, chosen greedily: among
 * the kernels that are ready, run the one that frees the most temporary bytes net of what it
 * allocates (ties keep the original order, which follows the graph). A kernel that writes a state
 * update `next.x` also waits for every other kernel that reads x, where that adds no cycle, so the
 * memory plan can write the update in place (memoryPlan.ts stateUpdatesInPlace).
 * Deferred kernels (those computing only graph nodes in `deferred`: the recomputed copies of
 * rematerialization, compiler/transforms/remat.ts) run only when needed: once some non-deferred kernel they feed
 * (directly or through other deferred kernels) has all its other non-deferred predecessors done, or
 * when nothing else is ready; otherwise the greedy choice would run a recomputation in the forward,
 * where it only adds memory.
 */
import { NEXT_PREFIX } from '../../ir/graph.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { BufferDecl, Kernel } from '../../ir/kernel/types.ts';
import { deviceBytes } from '../fuse/cost.ts';
import { kernelPredecessors } from './dependence.ts';

export function scheduleKernels(kernels: readonly Kernel[], buffers: readonly BufferDecl[], deferred?: ReadonlySet<number>): Kernel[] {
  const deps = kernelPredecessors(kernels);
  const acc = kernels.map(kernelAccess);
  updatesAfterReads(deps, acc, buffers);
  const wanted = deferred?.size ? demand(deps, kernels.map((k) => k.nodes.length > 0 && k.nodes.every((n) => deferred.has(n)))) : undefined;
  const bytes = (b: number) => (buffers[b]!.kind === 'temp' ? buffers[b]!.numel * deviceBytes(buffers[b]!.dtype) : 0);
  // Remaining uses of each buffer (kernels that touch it and have not run).
  const remaining = new Map<number, number>();
  for (const a of acc) for (const b of new Set([...a.reads, ...a.writes])) remaining.set(b, (remaining.get(b) ?? 0) + 1);
  const allocated = new Set<number>();
  const done = new Set<number>();
  const order: Kernel[] = [];
  while (order.length < kernels.length) {
    let best = -1, bestScore = -Infinity;
    const eligible = wanted?.eligible(done);
    for (let k = 0; k < kernels.length; k++) {
      if (done.has(k) || [...deps[k]!].some((d) => !done.has(d))) continue;
      if (eligible && !eligible[k]) continue;
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
    if (best < 0 && eligible) { // only deferred kernels are ready and none is needed yet: take the best of them
      for (let k = 0; k < kernels.length; k++) {
        if (done.has(k) || [...deps[k]!].some((d) => !done.has(d))) continue;
        let score = 0;
        for (const b of new Set([...acc[k]!.reads, ...acc[k]!.writes])) {
          if (!allocated.has(b)) score -= bytes(b);
          if (remaining.get(b) === 1) score += bytes(b);
        }
        if (score > bestScore) (best = k), (bestScore = score);
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

/**
 * For deferred kernels: the non-deferred kernels each one feeds (through deferred kernels only), and
 * `eligible(done)`: per kernel, whether it may run now (a non-deferred kernel always; a deferred one
 * when one of those consumers has every non-deferred predecessor done).
 */
function demand(deps: ReadonlyArray<ReadonlySet<number>>, isDeferred: readonly boolean[]): { eligible: (done: ReadonlySet<number>) => boolean[] } {
  const n = deps.length;
  const succ: number[][] = Array.from({ length: n }, () => []);
  deps.forEach((ds, k) => { for (const d of ds) succ[d]!.push(k); });
  const consumers: Array<number[] | undefined> = Array.from({ length: n }, () => undefined);
  const consumersOf = (k: number): number[] => {
    let c = consumers[k];
    if (c) return c;
    const out = new Set<number>();
    for (const s of succ[k]!) {
      if (isDeferred[s]) for (const x of consumersOf(s)) out.add(x);
      else out.add(s);
    }
    consumers[k] = c = [...out];
    return c;
  };
  for (let k = n - 1; k >= 0; k--) if (isDeferred[k]) consumersOf(k); // successors come later: no deep recursion
  return {
    eligible(done) {
      const ready = (c: number) => [...deps[c]!].every((d) => isDeferred[d] || done.has(d));
      return isDeferred.map((def, k) => !def || consumers[k]!.some(ready));
    },
  };
}

/**
 * Add "writer of next.x after the readers of x" edges to `deps` (each kernel's predecessors), skipping
 * any that would close a cycle (a reader that needs the update's result stays after it).
 */
function updatesAfterReads(deps: Array<Set<number>>, acc: ReadonlyArray<ReturnType<typeof kernelAccess>>, buffers: readonly BufferDecl[]): void {
  const inputs = new Map<string, number>();
  for (const b of buffers) if (b.kind === 'input' && b.name !== undefined) inputs.set(b.name, b.id);
  const succ = deps.map(() => new Set<number>());
  deps.forEach((ps, k) => ps.forEach((p) => succ[p]!.add(k)));
  const reaches = (from: number, to: number): boolean => {
    const seen = new Set<number>([from]);
    const stack = [from];
    while (stack.length) {
      const k = stack.pop()!;
      if (k === to) return true;
      for (const n of succ[k]!) if (!seen.has(n)) (seen.add(n), stack.push(n));
    }
    return false;
  };
  for (const b of buffers) {
    if (b.kind !== 'output' || !b.name?.startsWith(NEXT_PREFIX)) continue;
    const x = inputs.get(b.name.slice(NEXT_PREFIX.length));
    if (x === undefined) continue;
    const writers = acc.flatMap((a, k) => (a.writes.has(b.id) ? [k] : []));
    if (writers.length !== 1) continue;
    const w = writers[0]!;
    acc.forEach((a, r) => {
      if (r === w || !a.reads.has(x) || deps[w]!.has(r) || reaches(w, r)) return;
      deps[w]!.add(r);
      succ[r]!.add(w);
    });
  }
}

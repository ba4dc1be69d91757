/**
 * @file Fusion: decide which values are materialized (written to memory); everything else is inlined
 * into the kernels that read it — elementwise chains and views into loads, reductions into the row
 * kernel that consumes them. The result is a FusionPlan (plan.ts), data only; lowering builds the
 * kernels from it afterwards.
 *
 * Graph outputs, matmuls, attention and scatters are always materialized. The rest is a fixpoint
 * over the decisions, in graph order:
 *  1. every materialized node is the root of a kernel; inspectKernel (compiler/lower, the predicate
 *     lowering itself uses) says what that kernel computes inline and the first value it cannot
 *     inline, which is then materialized too (e.g. a reduction over other axes than the row's);
 *  2. once every kernel can be built, values computed by several kernels are materialized when
 *     they are expensive (never computed twice), else the outermost one the cost model (cost.ts)
 *     says is cheaper written once than recomputed; each decision re-inspects the kernels that
 *     computed the value, and the fixpoint ends when no rule asks for another value.
 */
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { BufferDecl } from '../../ir/kernel/types.ts';
import { numel } from '../../ir/shape.ts';
import { type KernelInlining, inspectKernel } from '../lower/lowerNode.ts';
import { InspectionMemo } from './inspectMemo.ts';
import { type FusionCostModel, type SubtreeCost, deviceBytes, elementFlops, isExpensive, shouldMaterialize } from './cost.ts';
import type { FusionPlan } from './plan.ts';

const ANCHORS = new Set(['matmul', 'attention', 'attention_grad', 'scatter_add']);

/**
 * `memoize: false` inspects every kernel root directly (the memo's tests compare the two); `cost`: how
 * the cost rule counts memory traffic (FusionCostModel, default 'per-kernel').
 */
export function planFusion(g: Graph, opts: { memoize?: boolean; cost?: FusionCostModel } = {}): FusionPlan {
  const buffers: BufferDecl[] = [];
  const bufOf = new Map<number, number>();
  const inputs = new Map<string, number>();
  for (const i of g.inputs) {
    const id = buffers.length;
    buffers.push({ id, dtype: i.type.dtype, numel: numel(i.type.shape), kind: 'input', name: i.name });
    bufOf.set(i.id, id);
    inputs.set(i.name, id);
  }
  for (const n of g.nodes)
    if (n.op === 'constant' && Array.isArray(n.attrs.value)) {
      const id = buffers.length;
      buffers.push({ id, dtype: n.type.dtype, numel: numel(n.type.shape), kind: 'const', data: n.attrs.value as number[] });
      bufOf.set(n.id, id);
    }

  const order = new Map(g.nodes.map((n, k) => [n.id, k]));
  /** inspectKernel, answered once per isomorphic part of the graph (the layers of a model). */
  const memo = new InspectionMemo(g);
  const reasons = new Map<number, string>();
  const outputNames = new Map<number, string>();
  for (const o of g.outputs) if (!bufOf.has(o.id) && !outputNames.has(o.id)) outputNames.set(o.id, o.name);
  for (const id of outputNames.keys()) reasons.set(id, 'graph output');
  for (const n of g.nodes) if (ANCHORS.has(n.op)) reasons.set(n.id, `${n.op} has its own kernel`);

  /** Kernel roots not inspected since the values in memory last changed for them, lowest graph position first. */
  const pending = new RootQueue(order);
  /** The inspection of every other root. */
  const inspected = new Map<number, KernelInlining>();
  // Per-value bookkeeping in arrays indexed by value id (small integers): this is fusion's innermost
  // loop, over every value of every inspected kernel.
  let maxId = 0;
  for (const i of g.inputs) maxId = Math.max(maxId, i.id);
  for (const n of g.nodes) maxId = Math.max(maxId, n.id);
  /** Value → the inspected roots whose kernels compute it inline. */
  const computedBy: Array<Set<number> | undefined> = new Array(maxId + 1);
  /** Values computed inline by two kernels or more, outermost (highest graph position) first. */
  const shared = new PositionList(order);
  /** Value → how often the inspected kernels that compute it inline evaluate it (kept with computedBy). */
  const evaluations = new Float64Array(maxId + 1);
  /** subtreeCost of values, dropped when a value in their inlined subtree is materialized. */
  const costs = new Map<number, SubtreeCost>();
  /** Value → the values whose cached cost walked through it while it was not in memory. */
  const coveredBy = new Map<number, number[]>();
  const costOf = (v: number): SubtreeCost => {
    let c = costs.get(v);
    if (!c) costs.set(v, (c = subtreeCost(g, v, bufOf, opts.cost === 'amortized', (u) => {
      const l = coveredBy.get(u);
      if (l) l.push(v);
      else coveredBy.set(u, [v]);
    })));
    return c;
  };
  /**
   * A value became a buffer: the cached subtree costs that walked through it change (exactly the
   * values above it up to buffers; a cost that walked through a value materialized since was
   * dropped then, so every cached cost's walk is still the current one).
   */
  const dropCostsAbove = (id: number) => {
    costs.delete(id);
    for (const v of coveredBy.get(id) ?? []) costs.delete(v);
    coveredBy.delete(id);
  };

  const allocate = (id: number) => {
    const t = g.typeOf(id);
    const b = buffers.length;
    const name = outputNames.get(id);
    buffers.push(name ? { id: b, dtype: t.dtype, numel: numel(t.shape), kind: 'output', name } : { id: b, dtype: t.dtype, numel: numel(t.shape), kind: 'temp' });
    bufOf.set(id, b);
    dropCostsAbove(id);
    pending.push(id);
  };
  const record = (r: number, ins: KernelInlining) => {
    inspected.set(r, ins);
    // (ins.evaluations has exactly the visited values as keys: every visit counts one evaluation.)
    for (const [v, n] of ins.evaluations) {
      let s = computedBy[v];
      if (!s) computedBy[v] = s = new Set();
      s.add(r);
      if (s.size === 2) shared.insert(v);
      evaluations[v]! += n;
    }
  };
  const forget = (r: number) => {
    const ins = inspected.get(r)!;
    inspected.delete(r);
    for (const [v, n] of ins.evaluations) {
      const s = computedBy[v]!;
      s.delete(r);
      if (s.size === 1) shared.remove(v);
      evaluations[v]! -= n;
    }
    pending.push(r);
  };
  const materialize = (id: number, why: string) => {
    if (reasons.has(id) || bufOf.has(id)) throw new KilnError(`fusion: %${id} was asked to be materialized twice (${why})`);
    reasons.set(id, why);
    allocate(id);
    for (const r of [...(computedBy[id] ?? [])]) forget(r);
  };
  for (const id of reasons.keys()) allocate(id);

  for (let round = 0; ; round++) {
    if (round > 2 * g.nodes.length + 10) throw new KilnError(`fusion of ${g.name} did not converge`);
    // 1. Inspect every kernel root in graph order; materialize what one of them cannot inline.
    for (let r = pending.pop(); r !== undefined; r = pending.pop()) {
      if (inspected.has(r)) continue;
      const ins = opts.memoize === false ? inspectKernel(g, g.node(r)!, bufOf) : memo.inspect(g.node(r)!, bufOf);
      if (ins.needs) {
        materialize(ins.needs.node, ins.needs.why);
        pending.push(r);
      } else record(r, ins);
    }
    // 2. Work shared by several kernels, outermost first (materializing one changes what its subtree
    // costs): expensive values all at once, then the first cheap one the cost model picks.
    // (Evaluation counts and subtree costs are kept up to date incrementally: the same numbers as
    // recounting them every round, without the quadratic work on large graphs.)
    let expensive = 0;
    for (const v of shared.snapshot()) {
      const n = g.node(v)!;
      if (isExpensive(n.op)) {
        materialize(v, `${n.op} is read by ${computedBy[v]!.size} kernels (never recomputed)`);
        expensive++;
      }
    }
    if (expensive) continue;
    const cheap = shared.find((v) => shouldMaterialize(costOf(v), g.typeOf(v).dtype, evaluations[v]!, computedBy[v]!.size, opts.cost));
    if (cheap === undefined) break;
    materialize(cheap, `recomputing it ${evaluations[cheap]!} times in ${computedBy[cheap]!.size} kernels moves more bytes than storing it`);
  }
  const outputs = new Map<string, number>();
  for (const o of g.outputs) outputs.set(o.name, bufOf.get(o.id)!);
  return { reasons, buffers, bufferOf: bufOf, inputs, outputs };
}

/** FLOPs and loaded bytes per element of a value's inlined subtree (stopping at buffers); `through` sees each value computed in it. */
function subtreeCost(g: Graph, id: number, bufOf: ReadonlyMap<number, number>, amortized: boolean, through: (v: number) => void): SubtreeCost {
  let flops = 0, loadBytes = 0;
  const out = numel(g.typeOf(id).shape);
  const seen = new Set<number>();
  const stack = [id];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    if (v !== id && bufOf.has(v)) {
      const t = g.typeOf(v);
      // 'amortized': an input smaller than the value (a broadcast table, one part of a concatenation)
      // moves its bytes once, shared by the value's elements.
      loadBytes += deviceBytes(t.dtype) * (amortized ? Math.min(1, numel(t.shape) / Math.max(1, out)) : 1);
      continue;
    }
    const n = g.node(v);
    if (!n) continue;
    through(v);
    flops += elementFlops(n.op);
    stack.push(...n.inputs);
  }
  return { flops, loadBytes };
}

/** A set of node ids kept sorted by descending graph position (the order fusion's rules scan shared values in). */
class PositionList {
  private readonly ids: number[] = [];
  constructor(private readonly order: ReadonlyMap<number, number>) {}
  /** Index of the first id whose position is at most `key`'s. */
  private at(key: number): number {
    const a = this.ids;
    let lo = 0, hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order.get(a[mid]!)! > key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  insert(id: number): void {
    const i = this.at(this.order.get(id)!);
    if (this.ids[i] !== id) this.ids.splice(i, 0, id);
  }
  remove(id: number): void {
    const i = this.at(this.order.get(id)!);
    if (this.ids[i] === id) this.ids.splice(i, 1);
  }
  snapshot(): number[] {
    return [...this.ids];
  }
  find(pred: (id: number) => boolean): number | undefined {
    for (const id of this.ids) if (pred(id)) return id;
    return undefined;
  }
}

/** A min-priority queue of node ids by graph position (duplicates allowed; the caller skips stale ones). */
class RootQueue {
  private readonly a: number[] = [];
  constructor(private readonly order: ReadonlyMap<number, number>) {}
  push(id: number): void {
    const a = this.a, key = this.order.get(id)!;
    a.push(id);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (this.order.get(a[p]!)! <= key) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): number | undefined {
    const a = this.a;
    if (!a.length) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length) {
      a[0] = last;
      const key = (i: number) => this.order.get(a[i]!)!;
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && key(l) < key(m)) m = l;
        if (r < a.length && key(r) < key(m)) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * @file Fusion: partition a graph into kernels by deciding which values are materialized (written to
 * memory). Graph outputs, matmuls, attention and scatters are always materialized; everything else
 * is inlined into the kernels that read it — elementwise chains and views into loads, reductions
 * into the row kernel that consumes them — unless lowering finds it cannot be (NeedsMaterialization)
 * or the cost model (cost.ts) says a value shared by several kernels is cheaper to write once.
 * Reductions and other expensive work are never computed twice.
 */
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { BufferDecl, Kernel } from '../../ir/kernel/types.ts';
import { numel } from '../../ir/shape.ts';
import { NeedsMaterialization } from '../lower/kernelBuilder.ts';
import { type Lowered, lowerNode } from '../lower/lowerNode.ts';
import { type SubtreeCost, deviceBytes, elementFlops, isExpensive, shouldMaterialize } from './cost.ts';

export interface Fused {
  buffers: BufferDecl[];
  kernels: Kernel[];
  inputs: Map<string, number>;
  outputs: Map<string, number>;
  /** Materialized node ids, with the reason each one was chosen. */
  reasons: Map<number, string>;
}

const ANCHORS = new Set(['matmul', 'attention', 'attention_grad', 'scatter_add']);

export function fuse(g: Graph): Fused {
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

  const reasons = new Map<number, string>();
  const outputNames = new Map<number, string>();
  for (const o of g.outputs) if (!bufOf.has(o.id) && !outputNames.has(o.id)) outputNames.set(o.id, o.name);
  for (const id of outputNames.keys()) reasons.set(id, 'graph output');
  for (const n of g.nodes) if (ANCHORS.has(n.op)) reasons.set(n.id, `${n.op} has its own kernel`);

  const order = new Map(g.nodes.map((n, k) => [n.id, k]));
  const cache = new Map<number, Lowered>();
  for (let round = 0; ; round++) {
    if (round > g.nodes.length + 10) throw new KilnError(`fusion of ${g.name} did not converge`);
    // Buffers for every materialized node.
    for (const id of reasons.keys()) {
      if (bufOf.has(id)) continue;
      const t = g.typeOf(id);
      const b = buffers.length;
      const name = outputNames.get(id);
      buffers.push(name ? { id: b, dtype: t.dtype, numel: numel(t.shape), kind: 'output', name } : { id: b, dtype: t.dtype, numel: numel(t.shape), kind: 'temp' });
      bufOf.set(id, b);
    }
    const roots = [...reasons.keys()].sort((a, b) => order.get(a)! - order.get(b)!);
    let retry = false;
    for (const r of roots) {
      if (cache.has(r)) continue;
      try {
        cache.set(r, lowerNode(g, g.node(r)!, bufOf, `n${r}`));
      } catch (e) {
        if (!(e instanceof NeedsMaterialization)) throw e;
        materialize(e.node, e.why);
        retry = true;
        break;
      }
    }
    if (retry) continue;
    // Work shared by several kernels: never for expensive ops, and only when cheaper than memory.
    const count = new Map<number, number>();
    const evals = new Map<number, number>();
    for (const r of roots) {
      const l = cache.get(r)!;
      for (const v of l.visited) count.set(v, (count.get(v) ?? 0) + 1);
      for (const [v, e] of l.evaluations) evals.set(v, (evals.get(v) ?? 0) + e);
    }
    // Decide outermost shared values first (materializing one changes what its subtree costs).
    const shared = [...count].filter(([, c]) => c >= 2).map(([v]) => v).sort((a, b) => order.get(b)! - order.get(a)!);
    let expensive = 0;
    for (const v of shared) {
      const n = g.node(v)!;
      if (isExpensive(n.op)) {
        materialize(v, `${n.op} is read by ${count.get(v)} kernels (never recomputed)`);
        expensive++;
      }
    }
    if (expensive) continue;
    for (const v of shared) {
      const c = count.get(v)!;
      const n = g.node(v)!;
      if (shouldMaterialize(subtreeCost(g, v, bufOf), n.type.dtype, evals.get(v) ?? c, c)) {
        materialize(v, `recomputing it ${evals.get(v)} times in ${c} kernels moves more bytes than storing it`);
        break;
      }
    }
    if ([...count.keys()].some((v) => reasons.has(v) && !bufOf.has(v))) continue;
    const kernels = roots.flatMap((r) => cache.get(r)!.kernels);
    const outputs = new Map<string, number>();
    for (const o of g.outputs) outputs.set(o.name, bufOf.get(o.id)!);
    return { buffers, kernels, inputs, outputs, reasons };
  }

  function materialize(id: number, why: string): void {
    if (reasons.has(id) || bufOf.has(id)) throw new KilnError(`fusion: %${id} was asked to be materialized twice (${why})`);
    reasons.set(id, why);
    for (const [r, l] of cache) if (l.visited.has(id)) cache.delete(r);
  }
}

/** FLOPs and loaded bytes per element of a value's inlined subtree (stopping at buffers). */
function subtreeCost(g: Graph, id: number, bufOf: ReadonlyMap<number, number>): SubtreeCost {
  let flops = 0, loadBytes = 0;
  const seen = new Set<number>();
  const stack = [id];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    if (v !== id && bufOf.has(v)) {
      loadBytes += deviceBytes(g.typeOf(v).dtype);
      continue;
    }
    const n = g.node(v);
    if (!n) continue;
    flops += elementFlops(n.op);
    stack.push(...n.inputs);
  }
  return { flops, loadBytes };
}

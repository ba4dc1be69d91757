/**
 * @file Lowering one materialized graph node (a kernel root) to kernel IR:
 *  - matmul → a MatmulKernel whose operands fold views and a cheap prologue (casts, scaling);
 *  - attention / attention_grad → attention kernels over operand views;
 *  - scatter_add → a copy of the base, then an accumulate kernel over the updates;
 *  - a reduction → a row kernel: grid over the kept axes, phases over the reduced ones;
 *  - anything else → an elementwise kernel over its shape, or a row kernel when it contains
 *    reductions over some axes of its own shape (softmax, norms, cross-entropy, ...).
 * The same construction answers the fusion analysis (`inspectKernel`: which values the kernel would
 * compute inline, how often, and the first one it needs in memory) and builds the kernels of a
 * legal fusion plan (`lowerKernel`), so the two cannot disagree.
 */
import type { Graph, Node } from '../../ir/graph.ts';
import { I, cast, ref } from '../../ir/kernel/expr.ts';
import type { Expr, Kernel, Stmt } from '../../ir/kernel/types.ts';
import { isFloat } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import { type Blocker, KernelBuilder, type RowSpace, linearAt } from './kernelBuilder.ts';
import { broadcastIndex, clampIndex } from './views.ts';

/** What the kernel rooted at a materialized node computes inline, given the values in memory. */
export interface KernelInlining {
  /** Non-materialized nodes computed inline (for the sharing analysis). */
  readonly visited: ReadonlySet<number>;
  /** How many times each of them is computed. */
  readonly evaluations: ReadonlyMap<number, number>;
  /** The first value it cannot compute inline (it must be materialized); undefined when it can be built. */
  readonly needs: Blocker | undefined;
}

interface Lowered extends KernelInlining {
  kernels: Kernel[];
}

/** The fusion analysis' question: can the kernel of `root` be built with `buffers` in memory, and what does it compute? */
export function inspectKernel(g: Graph, root: Node, buffers: ReadonlyMap<number, number>): KernelInlining {
  const { visited, evaluations, needs } = buildKernels(g, root, buffers, `n${root.id}`);
  return { visited, evaluations, needs };
}

/** The kernels of materialized node `root`; `buffers` must come from a fusion plan that inspectKernel accepted. */
export function lowerKernel(g: Graph, root: Node, buffers: ReadonlyMap<number, number>, name: string): Kernel[] {
  const l = buildKernels(g, root, buffers, name);
  if (l.needs) throw new KilnError(`lowering ${name}: the fusion plan leaves %${l.needs.node} inline, but ${l.needs.why} (a fusion bug)`);
  return l.kernels;
}

/** The first blocker of several builders (in the order they were built). */
function firstNeed(...bs: Array<{ needs: Blocker | undefined }>): Blocker | undefined {
  for (const b of bs) if (b.needs) return b.needs;
  return undefined;
}

function mergeCounts(...bs: KernelBuilder[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const b of bs) for (const [k, v] of b.evaluations) m.set(k, (m.get(k) ?? 0) + v);
  return m;
}

const VIEW_OPS = new Set(['reshape', 'permute', 'broadcast', 'slice']);
/** Ops a matmul operand may apply on the fly (cheap, per element, no reductions). */
const PROLOGUE_OPS = new Set([...VIEW_OPS, 'cast', 'neg', 'mul', 'div', 'add', 'sub', 'constant']);

function buildKernels(g: Graph, n: Node, buffers: ReadonlyMap<number, number>, name: string): Lowered {
  switch (n.op) {
    case 'matmul': return lowerMatmul(g, n, buffers, name);
    case 'attention': case 'attention_grad': return lowerAttention(g, n, buffers, name);
    case 'scatter_add': return lowerScatter(g, n, buffers, name);
    default: return lowerRow(g, n, buffers, name);
  }
}

/** The row space of an elementwise root: its shape, reducing the axes of the first inlinable reduction found. */
function chooseRow(g: Graph, root: Node, buffers: ReadonlyMap<number, number>): RowSpace {
  if (root.op.startsWith('reduce_') || root.op === 'argmax') {
    const axes = root.op === 'argmax' ? [root.attrs.axis as number] : (root.attrs.axes as number[]);
    return { shape: g.typeOf(root.inputs[0]!).shape, axes };
  }
  const shape = root.type.shape;
  const seen = new Set<number>();
  const stack = [root.id];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id) || (id !== root.id && buffers.has(id))) continue;
    seen.add(id);
    const n = g.node(id);
    if (!n) continue;
    if (n.op.startsWith('reduce_') || n.op === 'argmax') {
      const inShape = g.typeOf(n.inputs[0]!).shape;
      if (inShape.length === shape.length && inShape.every((d, i) => d === shape[i])) {
        const axes = n.op === 'argmax' ? [n.attrs.axis as number] : (n.attrs.axes as number[]);
        if (axes.length > 0) return { shape, axes };
      }
    }
    stack.push(...n.inputs);
  }
  return { shape, axes: [] };
}

function lowerRow(g: Graph, n: Node, buffers: ReadonlyMap<number, number>, name: string): Lowered {
  const out = buffers.get(n.id)!;
  const b = new KernelBuilder(g, buffers, new Set([n.id]));
  const row = chooseRow(g, n, buffers);
  b.setRow(row);
  const isReduce = n.op.startsWith('reduce_') || n.op === 'argmax';
  if (isReduce) {
    const keep = n.attrs.keepdims as boolean;
    const axes = row.axes;
    let gi = 0;
    const outIdx = keep ? row.shape.map((_, i) => (axes.includes(i) ? I.c(0) : b.gridVars[gi++]!)) : b.gridVars;
    const v = b.valueAt(n.id, outIdx);
    b.emit({ k: 'store', buf: out, index: linearAt(b, outIdx, n.type.shape), value: v, mode: 'set' });
  } else if (row.axes.length === 0) {
    const v = b.valueAt(n.id, b.gridVars);
    b.emit({ k: 'store', buf: out, index: linearAt(b, b.gridVars, n.type.shape), value: v, mode: 'set' });
  } else {
    const rv = b.fresh('r');
    b.defineVar(rv, b.rowExtent());
    const { block, close } = b.openBlock(rv);
    const idx = b.fullIndex(I.v(rv));
    const v = b.valueAt(n.id, idx);
    b.emit({ k: 'store', buf: out, index: linearAt(b, idx, n.type.shape), value: v, mode: 'set' });
    close();
    b.emit({ k: 'loop', var: rv, extent: b.rowExtent(), body: block.stmts });
  }
  const grid = row.shape.filter((_, i) => !row.axes.includes(i));
  return { kernels: [{ kind: 'loop', name, nodes: [n.id], grid, body: b.root.stmts }], visited: b.visited, evaluations: b.evaluations, needs: b.needs };
}

function operandBuilder(g: Graph, buffers: ReadonlyMap<number, number>, allow: Set<string>): KernelBuilder {
  return new KernelBuilder(g, buffers, new Set(), { inlineOnly: true, allow: (op) => allow.has(op) });
}

/** Build an operand expression; a disallowed op inside it materializes the operand as a whole. */
function operand(g: Graph, buffers: ReadonlyMap<number, number>, allow: Set<string>, id: number, vars: Array<[string, number]>, idx: (v: Expr[]) => Expr[]): { e: Expr; b: KernelBuilder; needs: Blocker | undefined } {
  const b = operandBuilder(g, buffers, allow);
  const vs = vars.map(([nm, ext]) => b.defineVar(nm, ext));
  const e = b.valueAt(id, idx(vs));
  if (!b.needs || b.needs.node === id) return { e, b, needs: b.needs };
  // Materialize the operand below its views (so the views still fold into the load and the
  // materialized value can join its producer's kernel, e.g. a bias add into a matmul epilogue).
  let v = id;
  for (let n = g.node(v); n && VIEW_OPS.has(n.op) && !buffers.has(n.inputs[0]!); n = g.node(v)) v = n.inputs[0]!;
  return { e, b, needs: { node: v, why: `an operand expression needs it in memory (${b.needs.why})` } };
}

function lowerMatmul(g: Graph, n: Node, buffers: ReadonlyMap<number, number>, name: string): Lowered {
  const [aId, bId] = n.inputs as [number, number];
  const [aT, bT] = [g.typeOf(aId), g.typeOf(bId)];
  const outShape = n.type.shape;
  const batch = outShape.slice(0, -2);
  const [m, nn] = outShape.slice(-2) as [number, number];
  const k = aT.shape[aT.shape.length - 1]!;
  const bvars: Array<[string, number]> = batch.map((d, i) => [`b${i}`, d]);
  const visited = new Set<number>();
  const A = operand(g, buffers, PROLOGUE_OPS, aId, [...bvars, ['i', m], ['p', k]], (v) => {
    const bv = v.slice(0, batch.length);
    return [...broadcastIndex(bv, aT.shape.slice(0, -2), batch), v[batch.length]!, v[batch.length + 1]!];
  });
  const B = operand(g, buffers, PROLOGUE_OPS, bId, [...bvars, ['p', k], ['j', nn]], (v) => {
    const bv = v.slice(0, batch.length);
    return [...broadcastIndex(bv, bT.shape.slice(0, -2), batch), v[batch.length]!, v[batch.length + 1]!];
  });
  for (const x of [...A.b.visited, ...B.b.visited]) visited.add(x);
  const accDType = isFloat(n.type.dtype) ? 'f32' : n.type.dtype;
  const eb = new KernelBuilder(g, buffers, new Set());
  const idx = [...bvars.map(([nm, d]) => eb.defineVar(nm, d)), eb.defineVar('i', m), eb.defineVar('j', nn)];
  const epilogue: Stmt[] = [{ k: 'store', buf: buffers.get(n.id)!, index: linearAt(eb, idx, outShape), value: cast(ref('acc', accDType), n.type.dtype), mode: 'set' }];
  return {
    kernels: [{ kind: 'matmul', name, nodes: [n.id], batch, m, n: nn, k, a: A.e, b: B.e, accDType, epilogue }],
    visited,
    evaluations: mergeCounts(A.b, B.b),
    needs: firstNeed(A, B),
  };
}

function lowerAttention(g: Graph, n: Node, buffers: ReadonlyMap<number, number>, name: string): Lowered {
  const [qT, kT, vT] = n.inputs.slice(0, 3).map((i) => g.typeOf(i));
  const batch = qT!.shape.slice(0, -2);
  const [sq, dk] = qT!.shape.slice(-2) as [number, number];
  const sk = kT!.shape[kT!.shape.length - 2]!;
  const dv = vT!.shape[vT!.shape.length - 1]!;
  const bvars: Array<[string, number]> = batch.map((d, i) => [`b${i}`, d]);
  const visited = new Set<number>();
  const builders: KernelBuilder[] = [];
  const blockers: Array<{ needs: Blocker | undefined }> = [];
  const view = (id: number, a: [string, number], c: [string, number]) => {
    const r = operand(g, buffers, VIEW_OPS, id, [...bvars, a, c], (v) => v);
    for (const x of r.b.visited) visited.add(x);
    builders.push(r.b);
    blockers.push(r);
    return r.e;
  };
  const q = view(n.inputs[0]!, ['s', sq], ['d', dk]);
  const key = view(n.inputs[1]!, ['t', sk], ['d', dk]);
  const v = view(n.inputs[2]!, ['t', sk], ['e', dv]);
  const ib = new KernelBuilder(g, buffers, new Set());
  const bi = bvars.map(([nm, d]) => ib.defineVar(nm, d));
  const at = (a: [string, number], c: [string, number], shape: readonly number[]) =>
    linearAt(ib, [...bi, ib.defineVar(a[0], a[1]), ib.defineVar(c[0], c[1])], shape);
  const common = { name, nodes: [n.id], batch, sq, sk, dk, dv, causal: n.attrs.causal as boolean, scale: n.attrs.scale as number, q, key, v };
  const buf = buffers.get(n.id)!;
  if (n.op === 'attention') {
    return { kernels: [{ kind: 'attention', ...common, out: { buf, index: at(['s', sq], ['e', dv], n.type.shape), dtype: n.type.dtype } }], visited, evaluations: mergeCounts(...builders), needs: firstNeed(...blockers) };
  }
  const o = view(n.inputs[3]!, ['s', sq], ['e', dv]);
  const dout = view(n.inputs[4]!, ['s', sq], ['e', dv]);
  const wrt = n.attrs.wrt as number;
  const target = wrt === 0
    ? { dQ: { buf, index: at(['s', sq], ['d', dk], n.type.shape), dtype: n.type.dtype } }
    : wrt === 1
      ? { dK: { buf, index: at(['t', sk], ['d', dk], n.type.shape), dtype: n.type.dtype } }
      : { dV: { buf, index: at(['t', sk], ['e', dv], n.type.shape), dtype: n.type.dtype } };
  return { kernels: [{ kind: 'attention_grad', ...common, o, dout, ...target }], visited, evaluations: mergeCounts(...builders), needs: firstNeed(...blockers) };
}

function lowerScatter(g: Graph, n: Node, buffers: ReadonlyMap<number, number>, name: string): Lowered {
  const [baseId, idxId, updId] = n.inputs as [number, number, number];
  const out = buffers.get(n.id)!;
  const axis = n.attrs.axis as number;
  const shape = n.type.shape;
  // 1. out = base
  const b1 = new KernelBuilder(g, buffers, new Set());
  b1.setRow({ shape, axes: [] });
  b1.emit({ k: 'store', buf: out, index: linearAt(b1, b1.gridVars, shape), value: b1.valueAt(baseId, b1.gridVars), mode: 'set' });
  // 2. out[.., idx[j], ..] += upd[.., j, ..]
  const updShape = g.typeOf(updId).shape;
  const ir = g.typeOf(idxId).shape.length;
  const b2 = new KernelBuilder(g, buffers, new Set());
  b2.setRow({ shape: updShape, axes: [] });
  const gv = b2.gridVars;
  const t = clampIndex(b2.valueAt(idxId, gv.slice(axis, axis + ir)), shape[axis]!);
  const target = [...gv.slice(0, axis), t, ...gv.slice(axis + ir)];
  b2.emit({ k: 'store', buf: out, index: linearAt(b2, target, shape), value: b2.valueAt(updId, gv), mode: 'add' });
  const visited = new Set([...b1.visited, ...b2.visited]);
  return {
    evaluations: mergeCounts(b1, b2),
    needs: firstNeed(b1, b2),
    kernels: [
      { kind: 'loop', name: `${name}_init`, nodes: [n.id], grid: shape, body: b1.root.stmts },
      { kind: 'loop', name: `${name}_add`, nodes: [n.id], grid: updShape, body: b2.root.stmts },
    ],
    visited,
  };
}


/**
 * @file Vector-Jacobian product rules, one per op: given the cotangent `g` of a node's result,
 * the cotangents of its operands (undefined where an operand gets none: integer values, indices,
 * non-differentiable ops). Rules are written with DSL tensors; the grad transform sums broadcast
 * operands back to their shapes (`sumTo`) after elementwise rules.
 *
 * Conventions (PyTorch's where they matter): max/min split the gradient evenly between tied
 * operands; reduce_max/min split it evenly among tied maxima; sign/floor/ceil have zero gradient.
 */
import { isFloat } from '../../ir/dtype.ts';
import type { Attrs, OpName } from '../../ir/ops.ts';
import type { Shape } from '../../ir/shape.ts';
import { activeTrace } from '../dsl/trace.ts';
import { full, where } from '../dsl/functional.ts';
import type { Tensor } from '../dsl/tensor.ts';

export interface VjpArgs {
  /** Cotangent of the node's result. */
  readonly g: Tensor;
  /** The node's operands (in the differentiated graph). */
  readonly ins: readonly Tensor[];
  /** The node's result. */
  readonly out: Tensor;
  readonly attrs: Attrs;
}
export type VjpRule = (a: VjpArgs) => ReadonlyArray<Tensor | undefined>;

/** Sum `g` over the axes along which a value of `shape` was broadcast to g's shape. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  const lead = g.rank - shape.length;
  let r = g;
  if (lead > 0) r = r.sum([...Array(lead).keys()]);
  const axes = shape.flatMap((d, i) => (d === 1 && r.shape[i] !== 1 ? [i] : []));
  if (axes.length) r = r.sum(axes, true);
  return r;
}

/** Put a reduced cotangent back into the input's rank (size-1 reduced axes), then broadcast. */
function unreduce(g: Tensor, inShape: Shape, axes: readonly number[], keepdims: boolean): Tensor {
  const kept = inShape.map((d, i) => (axes.includes(i) ? 1 : d));
  const r = keepdims ? g : g.reshape(kept);
  return r.expand(...inShape);
}

const zeroGrad: VjpRule = () => [];

function swapLast(t: Tensor): Tensor {
  return t.transpose(-2, -1);
}

const RULES: Partial<Record<OpName, VjpRule>> = {
  // ---- unary ----
  neg: ({ g }) => [g.neg()],
  abs: ({ g, ins: [x] }) => [g.mul(x!.sign())],
  sign: zeroGrad,
  floor: zeroGrad,
  ceil: zeroGrad,
  not: zeroGrad,
  exp: ({ g, out }) => [g.mul(out)],
  log: ({ g, ins: [x] }) => [g.div(x!)],
  sqrt: ({ g, out }) => [g.mul(0.5).div(out)],
  rsqrt: ({ g, out }) => [g.mul(out.mul(out).mul(out)).mul(-0.5)],
  recip: ({ g, out }) => [g.mul(out.mul(out)).neg()],
  sin: ({ g, ins: [x] }) => [g.mul(x!.cos())],
  cos: ({ g, ins: [x] }) => [g.mul(x!.sin()).neg()],
  tanh: ({ g, out }) => [g.mul(out.mul(out).rsub(1))],
  erf: ({ g, ins: [x] }) => [g.mul(x!.mul(x!).neg().exp().mul(2 / Math.sqrt(Math.PI)))],
  sigmoid: ({ g, out }) => [g.mul(out.mul(out.rsub(1)))],

  // ---- binary (results are summed back to operand shapes by the caller) ----
  add: ({ g }) => [g, g],
  sub: ({ g }) => [g, g.neg()],
  mul: ({ g, ins: [a, b] }) => [g.mul(b!), g.mul(a!)],
  div: ({ g, ins: [, b], out }) => [g.div(b!), g.mul(out).div(b!).neg()],
  max: ({ g, ins: [a, b] }) => tieSplit(g, a!, b!, 'gt'),
  min: ({ g, ins: [a, b] }) => tieSplit(g, a!, b!, 'lt'),
  pow: ({ g, ins: [a, b], out }) => [
    g.mul(b!).mul(a!.pow(b!.sub(1))),
    where(a!.eq(0), 0, g.mul(out).mul(a!.log())),
  ],
  mod: ({ g, ins: [a, b] }) => {
    const q = a!.div(b!);
    return [g, g.mul(q.abs().floor().mul(q.sign())).neg()];
  },
  eq: zeroGrad, ne: zeroGrad, lt: zeroGrad, le: zeroGrad, gt: zeroGrad, ge: zeroGrad,
  and: zeroGrad, or: zeroGrad, xor: zeroGrad,
  where: ({ g, ins: [c] }) => [undefined, where(c!, g, 0), where(c!, 0, g)],

  // ---- reductions ----
  reduce_sum: ({ g, ins: [x], attrs }) => [unreduce(g, x!.shape, attrs.axes as number[], attrs.keepdims as boolean)],
  reduce_mean: ({ g, ins: [x], attrs }) => {
    const axes = attrs.axes as number[];
    const n = axes.reduce((c, a) => c * x!.shape[a]!, 1);
    return [unreduce(g.div(n), x!.shape, axes, attrs.keepdims as boolean)];
  },
  reduce_max: (a) => extremumGrad(a),
  reduce_min: (a) => extremumGrad(a),
  argmax: zeroGrad,

  // ---- movement ----
  reshape: ({ g, ins: [x] }) => [g.reshape([...x!.shape])],
  permute: ({ g, attrs }) => {
    const perm = attrs.perm as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [g.permute(...inv)];
  },
  broadcast: ({ g, ins: [x] }) => [sumTo(g, x!.shape)],
  slice: ({ g, ins: [x], attrs }) => [unslice(g, x!.shape, attrs.starts as number[], attrs.steps as number[])],
  pad: ({ g, ins: [x], attrs }) => {
    const before = attrs.before as number[];
    let r = g;
    x!.shape.forEach((d, i) => (r = r.slice(i, before[i]!, before[i]! + d)));
    return [r];
  },
  concat: ({ g, ins, attrs }) => {
    const axis = attrs.axis as number;
    let off = 0;
    return ins.map((t) => g.narrow(axis, (off += t.shape[axis]!) - t.shape[axis]!, t.shape[axis]!));
  },

  // ---- linear algebra and indexing ----
  matmul: ({ g, ins: [a, b] }) => [matmulGradA(g, a!, b!), matmulGradB(g, a!, b!)],
  gather: ({ g, ins: [x, idx], attrs }) => [full(x!.shape, 0, x!.dtype).scatterAdd(idx!, g, attrs.axis as number)],
  scatter_add: ({ g, ins: [, idx], attrs }) => [g, undefined, g.take(idx!, attrs.axis as number)],

  // ---- sources and casts ----
  iota: zeroGrad,
  constant: zeroGrad,
  random_uniform: zeroGrad,
  random_normal: zeroGrad,
  cast: ({ g, ins: [x] }) => [isFloat(x!.dtype) ? g.cast(x!.dtype) : undefined],

  // ---- composites ----
  softmax: ({ g, out, attrs }) => {
    const ax = attrs.axis as number;
    const g32 = g.cast(f32Of(g)), o32 = out.cast(f32Of(out));
    return [o32.mul(g32.sub(g32.mul(o32).sum(ax, true))).cast(g.dtype)];
  },
  log_softmax: ({ g, out, attrs }) => {
    const ax = attrs.axis as number;
    const g32 = g.cast(f32Of(g)), o32 = out.cast(f32Of(out));
    return [g32.sub(o32.exp().mul(g32.sum(ax, true))).cast(g.dtype)];
  },
  layer_norm: ({ g, ins: [x], out, attrs }) => {
    // y = (x - μ)·r; dx = r·(g - mean(g) - y·mean(g·y))
    const x32 = x!.cast(f32Of(x!)), g32 = g.cast(f32Of(g)), y = out.cast(f32Of(out));
    const r = x32.sub(x32.mean(-1, true)).square().mean(-1, true).add(attrs.eps as number).rsqrt();
    return [r.mul(g32.sub(g32.mean(-1, true)).sub(y.mul(g32.mul(y).mean(-1, true)))).cast(g.dtype)];
  },
  rms_norm: ({ g, ins: [x], out, attrs }) => {
    // y = x·r; dx = r·(g - y·mean(g·y))
    const x32 = x!.cast(f32Of(x!)), g32 = g.cast(f32Of(g)), y = out.cast(f32Of(out));
    const r = x32.square().mean(-1, true).add(attrs.eps as number).rsqrt();
    return [r.mul(g32.sub(y.mul(g32.mul(y).mean(-1, true)))).cast(g.dtype)];
  },
  attention: ({ g, ins: [q, k, v], out, attrs }) => {
    const t = activeTrace();
    const a = { causal: attrs.causal!, scale: attrs.scale! };
    return [0, 1, 2].map((wrt) => t.op('attention_grad', [q!, k!, v!, out, g], { ...a, wrt }));
  },
};

function f32Of(t: Tensor) {
  return t.dtype === 'f16' || t.dtype === 'bf16' ? 'f32' : t.dtype;
}

function tieSplit(g: Tensor, a: Tensor, b: Tensor, cmp: 'gt' | 'lt'): Tensor[] {
  const wa = where(a[cmp](b), g.scalar(1), where(a.eq(b), g.scalar(0.5), g.scalar(0)));
  return [g.mul(wa), g.mul(wa.rsub(1))];
}

function extremumGrad({ g, ins: [x], out, attrs }: VjpArgs): Tensor[] {
  const axes = attrs.axes as number[];
  const keep = attrs.keepdims as boolean;
  const o = unreduce(out, x!.shape, axes, keep);
  const mask = x!.eq(o).cast(x!.dtype);
  const count = mask.sum(axes, true);
  return [mask.div(count).mul(unreduce(g, x!.shape, axes, keep))];
}

const batchOf = (t: Tensor) => t.shape.slice(0, -2);
const numelOf = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

/**
 * d/da of a·b. When `a` is shared by every batch element (a weight) the batch sum is folded into
 * one matmul over (batch·n): g [B.., M, N] → [M, B·N], b [B.., K, N] → [B·N, K].
 */
function matmulGradA(g: Tensor, a: Tensor, b: Tensor): Tensor {
  const bb = batchOf(g);
  if (numelOf(batchOf(a)) === 1 && bb.length > 0 && batchOf(b).length === bb.length && batchOf(b).every((d, i) => d === bb[i])) {
    const m = g.shape[g.rank - 2]!;
    const k = a.shape[a.rank - 1]!;
    const r = g.rank;
    const gP = g.permute(r - 2, ...[...Array(r - 2).keys()], r - 1).reshape(m, -1);
    const bP = swapLast(b).reshape(-1, k);
    return gP.matmul(bP).reshape([...a.shape]);
  }
  return sumTo(g.matmul(swapLast(b)), a.shape);
}

/** d/db of a·b; a shared `b` (a weight) gets one matmul over (batch·m): aᵀ [K, B·M] · g [B·M, N]. */
function matmulGradB(g: Tensor, a: Tensor, b: Tensor): Tensor {
  const bb = batchOf(g);
  if (numelOf(batchOf(b)) === 1 && bb.length > 0 && batchOf(a).length === bb.length && batchOf(a).every((d, i) => d === bb[i])) {
    const k = a.shape[a.rank - 1]!, n = g.shape[g.rank - 1]!;
    return swapLast(a.reshape(-1, k)).matmul(g.reshape(-1, n)).reshape([...b.shape]);
  }
  return sumTo(swapLast(a).matmul(g), b.shape);
}

/** The cotangent of x[starts::steps] scattered back into x's shape (zeros elsewhere). */
function unslice(g: Tensor, shape: Shape, starts: readonly number[], steps: readonly number[]): Tensor {
  let r = g;
  shape.forEach((d, i) => {
    const [s, k, n] = [starts[i]!, steps[i]!, r.shape[i]!];
    if (k > 1 && n > 0) {
      // interleave k-1 zeros after each element: [.., n, ..] -> [.., n, k, ..] -> [.., n·k, ..]
      const before = r.shape.slice(0, i + 1);
      const after = r.shape.slice(i + 1);
      r = r.reshape([...before, 1, ...after]);
      r = r.pad(new Array(r.rank).fill(0), r.shape.map((_, j) => (j === i + 1 ? k - 1 : 0)));
      r = r.reshape([...before.slice(0, -1), n * k, ...after]);
      r = r.slice(i, 0, Math.min(n * k, d - s));
    }
    const len = r.shape[i]!;
    const before = r.shape.map((_, j) => (j === i ? s : 0));
    const after = r.shape.map((_, j) => (j === i ? d - s - len : 0));
    if (s > 0 || d - s - len > 0) r = r.pad(before, after);
  });
  return r;
}

/** The rule for `op`, with elementwise operands summed back to their shapes. */
export function vjp(op: OpName, args: VjpArgs): ReadonlyArray<Tensor | undefined> {
  const rule = RULES[op];
  if (!rule) throw new Error(`grad: no VJP rule for op '${op}'`);
  const grads = rule(args);
  const elementwise = op === 'add' || op === 'sub' || op === 'mul' || op === 'div' || op === 'max' || op === 'min' ||
    op === 'pow' || op === 'mod' || op === 'where';
  return args.ins.map((x, i) => {
    const gi = grads[i];
    if (!gi || !isFloat(x.dtype)) return undefined;
    return elementwise ? sumTo(gi, x.shape) : gi;
  });
}

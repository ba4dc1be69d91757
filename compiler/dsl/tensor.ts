/**
 * @file The DSL's symbolic Tensor: every method records an op in the active trace and returns a
 * new Tensor. Broadcasting follows numpy/PyTorch; plain numbers become scalar constants of the
 * other operand's dtype; negative axes count from the end. Mistakes throw ShapeError naming the
 * op, the operand types and the model source line.
 */
import { type DType, isFloat } from '../../ir/dtype.ts';
import { ShapeError } from '../../ir/errors.ts';
import type { Attrs, OpName, ValueType } from '../../ir/ops.ts';
import { typeStr } from '../../ir/ops.ts';
import { type Shape, numel } from '../../ir/shape.ts';
import { callerLocation } from './loc.ts';
import type { TraceContext } from './trace.ts';

export type TensorLike = Tensor | number;
export type Axes = number | readonly number[];

/** A ShapeError raised by DSL argument checking, located at the calling model line. */
export function dslError(op: string, operands: readonly Tensor[], detail: string): ShapeError {
  return new ShapeError(op, operands.map((t) => typeStr(t.type)), detail, callerLocation());
}

export function normAxisOf(op: string, t: Tensor, axis: number, rank = t.rank): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) throw dslError(op, [t], `axis ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

function normAxes(op: string, t: Tensor, axes: Axes | undefined): number[] {
  if (axes === undefined) return [...Array(t.rank).keys()];
  const list = (typeof axes === 'number' ? [axes] : [...axes]).map((a) => normAxisOf(op, t, a));
  const sorted = [...new Set(list)].sort((a, b) => a - b);
  if (sorted.length !== list.length) throw dslError(op, [t], `axes ${JSON.stringify(axes)} repeat an axis`);
  return sorted;
}

export class Tensor {
  constructor(
    private readonly _ctx: TraceContext | undefined,
    private readonly _id: number,
  ) {}

  /** The trace this tensor belongs to. */
  get ctx(): TraceContext {
    return this._ctx!;
  }
  /** Its value id in the graph under construction. */
  get id(): number {
    return this._id;
  }
  get type(): ValueType {
    return this.ctx.typeOf(this.id);
  }
  get shape(): Shape {
    return this.type.shape;
  }
  get dtype(): DType {
    return this.type.dtype;
  }
  get rank(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numel(this.shape);
  }
  /** Size of one axis (negative counts from the end). */
  size(axis: number): number {
    return this.shape[normAxisOf('size', this, axis)]!;
  }
  toString(): string {
    return `Tensor(%${this.id}: ${typeStr(this.type)})`;
  }

  // ---- helpers ----
  protected rec(op: OpName, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
    return this.ctx.op(op, inputs, attrs);
  }
  /** A plain number as a scalar constant of this tensor's dtype. */
  scalar(v: number, dtype: DType = this.dtype): Tensor {
    return this.ctx.op('constant', [], { shape: [], dtype, value: v });
  }
  protected lift(o: TensorLike): Tensor {
    if (typeof o !== 'number') return o;
    if (!isFloat(this.dtype) && !Number.isInteger(o))
      throw dslError('scalar', [this], `the number ${o} cannot be used with a ${this.dtype} tensor (cast the tensor to a float type first)`);
    return this.scalar(o);
  }

  // ---- elementwise ----
  add(o: TensorLike): Tensor { return this.rec('add', [this, this.lift(o)]); }
  sub(o: TensorLike): Tensor { return this.rec('sub', [this, this.lift(o)]); }
  /** o - this (for `1 - x` without constants in model code). */
  rsub(o: TensorLike): Tensor { return this.rec('sub', [this.lift(o), this]); }
  mul(o: TensorLike): Tensor { return this.rec('mul', [this, this.lift(o)]); }
  div(o: TensorLike): Tensor { return this.rec('div', [this, this.lift(o)]); }
  /** o / this. */
  rdiv(o: TensorLike): Tensor { return this.rec('div', [this.lift(o), this]); }
  pow(o: TensorLike): Tensor { return this.rec('pow', [this, this.lift(o)]); }
  mod(o: TensorLike): Tensor { return this.rec('mod', [this, this.lift(o)]); }
  maximum(o: TensorLike): Tensor { return this.rec('max', [this, this.lift(o)]); }
  minimum(o: TensorLike): Tensor { return this.rec('min', [this, this.lift(o)]); }
  clamp(lo?: number, hi?: number): Tensor {
    let r: Tensor = this;
    if (lo !== undefined) r = r.maximum(lo);
    if (hi !== undefined) r = r.minimum(hi);
    return r;
  }
  neg(): Tensor { return this.rec('neg', [this]); }
  abs(): Tensor { return this.rec('abs', [this]); }
  sign(): Tensor { return this.rec('sign', [this]); }
  exp(): Tensor { return this.rec('exp', [this]); }
  log(): Tensor { return this.rec('log', [this]); }
  sqrt(): Tensor { return this.rec('sqrt', [this]); }
  rsqrt(): Tensor { return this.rec('rsqrt', [this]); }
  recip(): Tensor { return this.rec('recip', [this]); }
  sin(): Tensor { return this.rec('sin', [this]); }
  cos(): Tensor { return this.rec('cos', [this]); }
  tanh(): Tensor { return this.rec('tanh', [this]); }
  erf(): Tensor { return this.rec('erf', [this]); }
  sigmoid(): Tensor { return this.rec('sigmoid', [this]); }
  floor(): Tensor { return this.rec('floor', [this]); }
  ceil(): Tensor { return this.rec('ceil', [this]); }
  square(): Tensor { return this.mul(this); }
  relu(): Tensor { return this.maximum(0); }
  /** SiLU / swish: x·sigmoid(x). */
  silu(): Tensor { return this.mul(this.sigmoid()); }
  /** GELU: exact (erf) by default, or PyTorch's approximate='tanh'. */
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor {
    if (approximate === 'tanh') {
      const inner = this.add(this.mul(this).mul(this).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
      return this.mul(0.5).mul(inner.tanh().add(1));
    }
    return this.mul(0.5).mul(this.mul(Math.SQRT1_2).erf().add(1));
  }
  /** log(1 + x), accurate for small x: w = 1 + x; w == 1 ? x : log(w)·x/(w − 1) (Goldberg's trick). */
  log1p(): Tensor {
    const w = this.add(1);
    return this.rec('where', [w.eq(1), this, w.log().mul(this).div(w.sub(1))]);
  }
  /** log(1 + exp(x)) = relu(x) + log1p(exp(−|x|)), accurate for large |x| of either sign. */
  softplus(): Tensor {
    return this.relu().add(this.abs().neg().exp().log1p());
  }


  // ---- comparisons and logic ----
  eq(o: TensorLike): Tensor { return this.rec('eq', [this, this.lift(o)]); }
  ne(o: TensorLike): Tensor { return this.rec('ne', [this, this.lift(o)]); }
  lt(o: TensorLike): Tensor { return this.rec('lt', [this, this.lift(o)]); }
  le(o: TensorLike): Tensor { return this.rec('le', [this, this.lift(o)]); }
  gt(o: TensorLike): Tensor { return this.rec('gt', [this, this.lift(o)]); }
  ge(o: TensorLike): Tensor { return this.rec('ge', [this, this.lift(o)]); }
  and(o: Tensor): Tensor { return this.rec('and', [this, o]); }
  or(o: Tensor): Tensor { return this.rec('or', [this, o]); }
  xor(o: Tensor): Tensor { return this.rec('xor', [this, o]); }
  not(): Tensor { return this.rec('not', [this]); }

  cast(dtype: DType): Tensor { return dtype === this.dtype ? this : this.rec('cast', [this], { dtype }); }
  /** Alias of cast (PyTorch's .to(dtype)). */
  to(dtype: DType): Tensor { return this.cast(dtype); }

  // ---- reductions ----
  sum(axes?: Axes, keepdim = false): Tensor { return this.rec('reduce_sum', [this], { axes: normAxes('sum', this, axes), keepdims: keepdim }); }
  mean(axes?: Axes, keepdim = false): Tensor { return this.rec('reduce_mean', [this], { axes: normAxes('mean', this, axes), keepdims: keepdim }); }
  max(axes?: Axes, keepdim = false): Tensor { return this.rec('reduce_max', [this], { axes: normAxes('max', this, axes), keepdims: keepdim }); }
  min(axes?: Axes, keepdim = false): Tensor { return this.rec('reduce_min', [this], { axes: normAxes('min', this, axes), keepdims: keepdim }); }
  argmax(axis: number, keepdim = false): Tensor { return this.rec('argmax', [this], { axis: normAxisOf('argmax', this, axis), keepdims: keepdim }); }
  /** Variance (population by default; correction=1 for the unbiased estimate). */
  var(axes?: Axes, keepdim = false, correction = 0): Tensor {
    const ax = normAxes('var', this, axes);
    const n = ax.reduce((c, a) => c * this.shape[a]!, 1);
    const d = this.sub(this.mean(ax, true));
    return d.mul(d).sum(ax, keepdim).div(n - correction);
  }
  logsumexp(axis: number, keepdim = false): Tensor {
    const ax = normAxisOf('logsumexp', this, axis);
    const m = this.max(ax, true);
    const r = this.sub(m).exp().sum(ax, true).log().add(m);
    return keepdim ? r : r.squeeze(ax);
  }

  // ---- composites ----
  softmax(axis = -1): Tensor { return this.rec('softmax', [this], { axis: normAxisOf('softmax', this, axis) }); }
  logSoftmax(axis = -1): Tensor { return this.rec('log_softmax', [this], { axis: normAxisOf('log_softmax', this, axis) }); }
  /** Normalize over the last axis (no affine part). */
  layerNorm(eps = 1e-5): Tensor { return this.rec('layer_norm', [this], { eps }); }
  /** x / sqrt(mean(x²) + eps) over the last axis (no affine part). */
  rmsNorm(eps = 1e-6): Tensor { return this.rec('rms_norm', [this], { eps }); }

  // ---- movement ----
  /** Reshape; one entry may be -1 (inferred). */
  reshape(...shape: number[] | [readonly number[]]): Tensor {
    const s = (Array.isArray(shape[0]) ? shape[0] : shape) as number[];
    const known = s.filter((d) => d !== -1);
    const holes = s.length - known.length;
    if (holes > 1) throw dslError('reshape', [this], `only one dimension may be -1, got ${JSON.stringify(s)}`);
    let full = [...s];
    if (holes === 1) {
      const k = numel(known);
      if (k === 0 || this.numel % k !== 0)
        throw dslError('reshape', [this], `cannot infer -1 in ${JSON.stringify(s)} for ${this.numel} elements`);
      full = s.map((d) => (d === -1 ? this.numel / k : d));
    }
    if (full.length === this.rank && full.every((d, i) => d === this.shape[i])) return this;
    return this.rec('reshape', [this], { shape: full });
  }
  view(...shape: number[]): Tensor { return this.reshape(...shape); }
  flatten(start = 0, end = -1): Tensor {
    if (this.rank === 0) return this.reshape(1);
    const s = normAxisOf('flatten', this, start);
    const e = normAxisOf('flatten', this, end);
    const sh = this.shape;
    return this.reshape([...sh.slice(0, s), numel(sh.slice(s, e + 1)), ...sh.slice(e + 1)]);
  }
  unsqueeze(axis: number): Tensor {
    const a = normAxisOf('unsqueeze', this, axis, this.rank + 1);
    return this.reshape([...this.shape.slice(0, a), 1, ...this.shape.slice(a)]);
  }
  /** Remove size-1 axes (all of them, or the given ones, which must have size 1). */
  squeeze(axes?: Axes): Tensor {
    const ax = axes === undefined ? this.shape.flatMap((d, i) => (d === 1 ? [i] : [])) : normAxes('squeeze', this, axes);
    for (const a of ax) if (this.shape[a] !== 1) throw dslError('squeeze', [this], `axis ${a} has size ${this.shape[a]}, not 1`);
    return this.reshape(this.shape.filter((_, i) => !ax.includes(i)));
  }
  permute(...perm: number[]): Tensor {
    const p = perm.map((a) => normAxisOf('permute', this, a));
    if (p.every((a, i) => a === i) && p.length === this.rank) return this;
    return this.rec('permute', [this], { perm: p });
  }
  transpose(a: number, b: number): Tensor {
    const perm = [...Array(this.rank).keys()];
    const [x, y] = [normAxisOf('transpose', this, a), normAxisOf('transpose', this, b)];
    [perm[x], perm[y]] = [y, x];
    return this.permute(...perm);
  }
  /** Swap the last two axes. */
  get mT(): Tensor { return this.transpose(-2, -1); }
  /** Broadcast to `shape` by numpy rules (-1 keeps a dimension, like PyTorch's expand). */
  expand(...shape: number[]): Tensor {
    const off = shape.length - this.rank;
    const full = shape.map((d, i) => (d === -1 ? this.shape[i - off] ?? -1 : d));
    if (full.length === this.rank && full.every((d, i) => d === this.shape[i])) return this;
    return this.rec('broadcast', [this], { shape: full });
  }
  broadcastTo(shape: Shape): Tensor { return this.expand(...shape); }
  /** x[start:end:step] along one axis (negative start/end count from the end; clamped like Python). */
  slice(axis: number, start = 0, end?: number, step = 1): Tensor {
    const a = normAxisOf('slice', this, axis);
    const d = this.shape[a]!;
    const clampIdx = (v: number) => Math.min(d, Math.max(0, v < 0 ? v + d : v));
    const s = clampIdx(start);
    const e = Math.max(s, clampIdx(end ?? d));
    if (!Number.isInteger(step) || step < 1) throw dslError('slice', [this], `step ${step} must be a positive integer`);
    if (s === 0 && e === d && step === 1) return this;
    const starts = this.shape.map((_, i) => (i === a ? s : 0));
    const ends = this.shape.map((n, i) => (i === a ? e : n));
    const steps = this.shape.map((_, i) => (i === a ? step : 1));
    return this.rec('slice', [this], { starts, ends, steps });
  }
  narrow(axis: number, start: number, length: number): Tensor { return this.slice(axis, start, start + length); }
  /** x[..., index, ...] along `axis` (the axis is removed). */
  select(axis: number, index: number): Tensor {
    const a = normAxisOf('select', this, axis);
    const i = index < 0 ? index + this.shape[a]! : index;
    if (i < 0 || i >= this.shape[a]!) throw dslError('select', [this], `index ${index} is out of range for size ${this.shape[a]}`);
    return this.slice(a, i, i + 1).squeeze(a);
  }
  /** Split into `n` equal chunks along `axis`. */
  chunk(n: number, axis = 0): Tensor[] {
    const a = normAxisOf('chunk', this, axis);
    const d = this.shape[a]!;
    if (d % n !== 0) throw dslError('chunk', [this], `size ${d} of axis ${a} is not divisible into ${n} chunks`);
    return [...Array(n).keys()].map((i) => this.narrow(a, (i * d) / n, d / n));
  }
  /** Split along `axis` into pieces of the given sizes. */
  split(sizes: readonly number[], axis = 0): Tensor[] {
    const a = normAxisOf('split', this, axis);
    if (sizes.reduce((x, y) => x + y, 0) !== this.shape[a])
      throw dslError('split', [this], `sizes ${JSON.stringify(sizes)} do not add up to ${this.shape[a]}`);
    let off = 0;
    return sizes.map((s) => this.narrow(a, (off += s) - s, s));
  }
  /** Constant padding: `before[i]`/`after[i]` elements on axis i (lists may be shorter: they pad trailing axes). */
  pad(before: readonly number[], after: readonly number[], value = 0): Tensor {
    const r = this.rank;
    const fill = (p: readonly number[]) => [...Array(r - p.length).fill(0), ...p];
    if (before.length > r || after.length > r) throw dslError('pad', [this], 'more paddings than axes');
    return this.rec('pad', [this], { before: fill(before), after: fill(after), value });
  }

  // ---- linear algebra and indexing ----
  /** Matrix product with PyTorch semantics (1-D operands are promoted and the axis removed). */
  matmul(o: Tensor): Tensor {
    if (this.rank === 0 || o.rank === 0) throw dslError('matmul', [this, o], 'operands must have rank >= 1');
    const a = this.rank === 1 ? this.unsqueeze(0) : this;
    const b = o.rank === 1 ? o.unsqueeze(1) : o;
    let r = this.rec('matmul', [a, b]);
    if (this.rank === 1) r = r.squeeze(-2);
    if (o.rank === 1) r = r.squeeze(-1);
    return r;
  }
  /** numpy.take: out[..., j..., ...] = x[..., indices[j...], ...] along `axis` (indices are i32). */
  take(indices: Tensor, axis = 0): Tensor {
    return this.rec('gather', [this, indices], { axis: normAxisOf('take', this, axis) });
  }
  /** Add `updates` into a copy of this tensor at `indices` along `axis` (the transpose of take). */
  scatterAdd(indices: Tensor, updates: Tensor, axis = 0): Tensor {
    return this.rec('scatter_add', [this, indices, updates], { axis: normAxisOf('scatterAdd', this, axis) });
  }
  /** One-hot encoding of integer labels along a new last axis. */
  oneHot(classes: number, dtype: DType = 'f32'): Tensor {
    const ids = this.ctx.op('iota', [], { shape: [...this.shape, classes], axis: this.rank, dtype: this.dtype });
    return ids.eq(this.unsqueeze(-1)).cast(dtype);
  }

  isFloat(): boolean {
    return isFloat(this.dtype);
  }
}

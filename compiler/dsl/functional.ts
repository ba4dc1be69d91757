/**
 * @file Free DSL functions that are not methods of one tensor: sources (full, iota, constants,
 * random), concat/stack, where, attention. They record into the active trace.
 */
import type { DType } from '../../ir/dtype.ts';
import type { Shape } from '../../ir/shape.ts';
import { numel } from '../../ir/shape.ts';
import { type Tensor, type TensorLike, dslError, normAxisOf } from './tensor.ts';
import { activeTrace } from './trace.ts';

/** A tensor of `shape` filled with `value`. */
export function full(shape: Shape, value: number, dtype: DType = 'f32'): Tensor {
  const c = activeTrace().op('constant', [], { shape: [], dtype, value });
  return shape.length === 0 ? c : c.expand(...shape);
}
export function zeros(shape: Shape, dtype: DType = 'f32'): Tensor {
  return full(shape, 0, dtype);
}
export function ones(shape: Shape, dtype: DType = 'f32'): Tensor {
  return full(shape, 1, dtype);
}
/** A constant tensor from flat row-major values. */
export function constant(values: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
  if (values.length !== numel(shape))
    throw dslError('constant', [], `${values.length} values do not fill shape [${shape.join(',')}]`);
  return activeTrace().op('constant', [], { shape: [...shape], dtype, value: Array.from(values) });
}
/** Indices along `axis`, broadcast over `shape` (iota([3]) = [0, 1, 2]). */
export function iota(shape: Shape, axis = 0, dtype: DType = 'i32'): Tensor {
  return activeTrace().op('iota', [], { shape: [...shape], axis: axis < 0 ? axis + shape.length : axis, dtype });
}
export function arange(n: number, dtype: DType = 'i32'): Tensor {
  return iota([n], 0, dtype);
}
/** Uniform [0, 1) samples from the trace's seed (Philox4x32-10). */
export function rand(shape: Shape, dtype: DType = 'f32'): Tensor {
  const t = activeTrace();
  return t.op('random_uniform', [t.seed()], { shape: [...shape], dtype, stream: t.stream() });
}
/** Standard normal samples from the trace's seed. */
export function randn(shape: Shape, dtype: DType = 'f32'): Tensor {
  const t = activeTrace();
  return t.op('random_normal', [t.seed()], { shape: [...shape], dtype, stream: t.stream() });
}

export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw dslError('concat', [], 'needs at least one tensor');
  if (tensors.length === 1) return tensors[0]!;
  const a = normAxisOf('concat', tensors[0]!, axis);
  return activeTrace().op('concat', tensors, { axis: a });
}
export const cat = concat;
export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw dslError('stack', [], 'needs at least one tensor');
  const a = normAxisOf('stack', tensors[0]!, axis, tensors[0]!.rank + 1);
  return concat(tensors.map((t) => t.unsqueeze(a)), a);
}

/** Elementwise cond ? a : b with broadcasting; numbers take the other operand's dtype. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const like = typeof a === 'number' ? (typeof b === 'number' ? undefined : b) : a;
  const dtype: DType = like?.dtype ?? 'f32';
  const lift = (v: TensorLike) => (typeof v === 'number' ? cond.scalar(v, dtype) : v);
  return activeTrace().op('where', [cond, lift(a), lift(b)]);
}

export interface AttentionOptions {
  causal?: boolean;
  /** Defaults to 1/sqrt(head dim). */
  scale?: number;
}
/** Scaled dot-product attention over [..., seq, dim] operands (PyTorch's SDPA semantics). */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const scale = opts.scale ?? 1 / Math.sqrt(q.shape[q.rank - 1]!);
  return activeTrace().op('attention', [q, k, v], { causal: opts.causal ?? false, scale });
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  return a.matmul(b);
}

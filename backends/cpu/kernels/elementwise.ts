/**
 * @file CPU kernels for elementwise ops: unary, binary, comparisons, logic, where, cast.
 * Values are computed in double precision and rounded when stored into the output's dtype.
 */
import type { DType } from '../../../ir/dtype.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../../../ir/ops.ts';
import { UNARY, binaryFn, castValue } from '../../../ir/semantics.ts';
import { type Shape, numel } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import { broadcastMap } from './indexing.ts';

export type Store = (out: TensorData, i: number, v: number) => void;

export function unary(op: UnaryOp, x: TensorData, out: TensorData, store: Store): void {
  const f = UNARY[op];
  for (let i = 0; i < out.length; i++) store(out, i, f(x[i]!));
}

export function binary(
  op: BinaryOp | CompareOp | LogicalOp, operandDType: DType,
  a: TensorData, aShape: Shape, b: TensorData, bShape: Shape, out: TensorData, outShape: Shape, store: Store,
): void {
  const f = binaryFn(op, operandDType);
  const am = broadcastMap(aShape, outShape);
  const bm = broadcastMap(bShape, outShape);
  const n = numel(outShape);
  if (!am && !bm) for (let i = 0; i < n; i++) store(out, i, f(a[i]!, b[i]!));
  else for (let i = 0; i < n; i++) store(out, i, f(a[am ? am[i]! : i]!, b[bm ? bm[i]! : i]!));
}

export function where(
  c: TensorData, cShape: Shape, a: TensorData, aShape: Shape, b: TensorData, bShape: Shape,
  out: TensorData, outShape: Shape, store: Store,
): void {
  const [cm, am, bm] = [broadcastMap(cShape, outShape), broadcastMap(aShape, outShape), broadcastMap(bShape, outShape)];
  const n = numel(outShape);
  for (let i = 0; i < n; i++) {
    const cond = c[cm ? cm[i]! : i]!;
    store(out, i, cond ? a[am ? am[i]! : i]! : b[bm ? bm[i]! : i]!);
  }
}

export function cast(x: TensorData, from: DType, to: DType, out: TensorData, store: Store): void {
  for (let i = 0; i < out.length; i++) store(out, i, castValue(x[i]!, from, to));
}

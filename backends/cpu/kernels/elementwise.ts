/**
 * @file CPU kernels for elementwise ops: unary, binary, comparisons, logic, where, cast.
 * Values are computed in double precision and rounded when stored into the output's dtype.
 * Float add/sub/mul/div into plainly stored outputs take a loop without per-element calls (same bits).
 */
import { type DType, isFloat } from '../../../ir/dtype.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../../../ir/ops.ts';
import { UNARY, binaryFn, castValue } from '../../../ir/semantics.ts';
import { type Shape, numel } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import { broadcastMap } from './indexing.ts';

export type Store = (out: TensorData, i: number, v: number) => void;

export function unary(op: UnaryOp, x: TensorData, out: TensorData, store: Store, plain = false): void {
  const f = UNARY[op];
  if (plain) for (let i = 0; i < out.length; i++) out[i] = f(x[i]!);
  else for (let i = 0; i < out.length; i++) store(out, i, f(x[i]!));
}

export function binary(
  op: BinaryOp | CompareOp | LogicalOp, operandDType: DType,
  a: TensorData, aShape: Shape, b: TensorData, bShape: Shape, out: TensorData, outShape: Shape, store: Store, plain = false,
): void {
  const am = broadcastMap(aShape, outShape);
  const bm = broadcastMap(bShape, outShape);
  const n = numel(outShape);
  if (plain && isFloat(operandDType) && (op === 'add' || op === 'sub' || op === 'mul' || op === 'div')) {
    binaryFloat(op, a, am, b, bm, out, n);
    return;
  }
  const f = binaryFn(op, operandDType);
  if (!am && !bm) for (let i = 0; i < n; i++) store(out, i, f(a[i]!, b[i]!));
  else for (let i = 0; i < n; i++) store(out, i, f(a[am ? am[i]! : i]!, b[bm ? bm[i]! : i]!));
}

/**
 * Float add/sub/mul/div into an output stored as it is (`plain`: f32 storage or f64 precision): the
 * same double-precision operation and the same rounding on store as the generic loop, without a call
 * per element.
 */
function binaryFloat(op: 'add' | 'sub' | 'mul' | 'div', a: TensorData, am: Int32Array | undefined, b: TensorData, bm: Int32Array | undefined, out: TensorData, n: number): void {
  if (!am && !bm) {
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
    else if (op === 'sub') for (let i = 0; i < n; i++) out[i] = a[i]! - b[i]!;
    else if (op === 'mul') for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]!;
    else for (let i = 0; i < n; i++) out[i] = a[i]! / b[i]!;
    return;
  }
  if (am && bm) {
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = a[am[i]!]! + b[bm[i]!]!;
    else if (op === 'sub') for (let i = 0; i < n; i++) out[i] = a[am[i]!]! - b[bm[i]!]!;
    else if (op === 'mul') for (let i = 0; i < n; i++) out[i] = a[am[i]!]! * b[bm[i]!]!;
    else for (let i = 0; i < n; i++) out[i] = a[am[i]!]! / b[bm[i]!]!;
  } else if (am) {
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = a[am[i]!]! + b[i]!;
    else if (op === 'sub') for (let i = 0; i < n; i++) out[i] = a[am[i]!]! - b[i]!;
    else if (op === 'mul') for (let i = 0; i < n; i++) out[i] = a[am[i]!]! * b[i]!;
    else for (let i = 0; i < n; i++) out[i] = a[am[i]!]! / b[i]!;
  } else {
    const m = bm!;
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = a[i]! + b[m[i]!]!;
    else if (op === 'sub') for (let i = 0; i < n; i++) out[i] = a[i]! - b[m[i]!]!;
    else if (op === 'mul') for (let i = 0; i < n; i++) out[i] = a[i]! * b[m[i]!]!;
    else for (let i = 0; i < n; i++) out[i] = a[i]! / b[m[i]!]!;
  }
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

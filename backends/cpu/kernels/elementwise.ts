/**
 * @file CPU kernels for elementwise ops: unary, binary, comparisons, logic, where, cast.
 * Values are computed in double precision and rounded when stored into the output's dtype.
 */
import { type DType, isFloat } from '../../../ir/dtype.ts';
import { erf } from '../../../ir/math.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../../../ir/ops.ts';
import { type Shape, numel } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import { broadcastMap } from './indexing.ts';

export type Store = (out: TensorData, i: number, v: number) => void;

const UNARY: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  abs: Math.abs,
  sign: Math.sign,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  recip: (x) => 1 / x,
  sin: Math.sin,
  cos: Math.cos,
  tanh: Math.tanh,
  erf,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  floor: Math.floor,
  ceil: Math.ceil,
  not: (x) => (x ? 0 : 1),
};

function binaryFn(op: BinaryOp | CompareOp | LogicalOp, dtype: DType): (a: number, b: number) => number {
  const int = !isFloat(dtype);
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return int ? Math.imul : (a, b) => a * b;
    case 'div': return int ? (a, b) => (b === 0 ? 0 : Math.trunc(a / b)) : (a, b) => a / b;
    case 'mod': return int ? (a, b) => (b === 0 ? 0 : a % b) : (a, b) => a % b;
    case 'max': return (a, b) => (a !== a || b !== b ? NaN : a > b ? a : b);
    case 'min': return (a, b) => (a !== a || b !== b ? NaN : a < b ? a : b);
    case 'pow': return Math.pow;
    case 'eq': return (a, b) => +(a === b);
    case 'ne': return (a, b) => +(a !== b);
    case 'lt': return (a, b) => +(a < b);
    case 'le': return (a, b) => +(a <= b);
    case 'gt': return (a, b) => +(a > b);
    case 'ge': return (a, b) => +(a >= b);
    case 'and': return (a, b) => +(a !== 0 && b !== 0);
    case 'or': return (a, b) => +(a !== 0 || b !== 0);
    case 'xor': return (a, b) => +((a !== 0) !== (b !== 0));
  }
}

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

/** Convert one value to `to`: float→int truncates toward zero and saturates, NaN→0; x→bool is x≠0. */
export function castValue(v: number, from: DType, to: DType): number {
  if (to === 'bool') return v !== 0 && v === v ? 1 : 0;
  if (isFloat(to)) return from === 'bool' ? (v ? 1 : 0) : v;
  if (isFloat(from)) {
    if (v !== v) return 0;
    const t = Math.trunc(v);
    return to === 'i32' ? Math.min(2147483647, Math.max(-2147483648, t)) : Math.min(4294967295, Math.max(0, t));
  }
  // integer ↔ integer keeps the low 32 bits (the typed array store does the wrap)
  return v;
}

export function cast(x: TensorData, from: DType, to: DType, out: TensorData, store: Store): void {
  for (let i = 0; i < out.length; i++) store(out, i, castValue(x[i]!, from, to));
}

/**
 * @file The scalar semantics of the elementwise ops, in double precision: the one definition that the
 * CPU interpreter, the kernel-IR interpreter and constant folding all use (results are rounded to
 * the output dtype by whoever stores them).
 */
import { type DType, isFloat, roundBf16, roundF16 } from './dtype.ts';
import { erf } from './math.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from './ops.ts';

export const UNARY: Record<UnaryOp, (x: number) => number> = {
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

export function binaryFn(op: BinaryOp | CompareOp | LogicalOp, dtype: DType): (a: number, b: number) => number {
  const int = !isFloat(dtype);
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return int ? Math.imul : (a, b) => a * b;
    case 'div': return int ? (a, b) => (b === 0 ? 0 : Math.trunc(a / b)) : (a, b) => a / b;
    case 'mod': return int ? (a, b) => (b === 0 ? 0 : a % b) : (a, b) => a % b;
    case 'max': return (a, b) => (a !== a || b !== b ? NaN : a > b ? a : b);
    case 'min': return (a, b) => (a !== a || b !== b ? NaN : a < b ? a : b);
    case 'pow': return powC;
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


/** Convert one value to `to`: float→int truncates toward zero and saturates, NaN→0; x→bool is x≠0. */
export function castValue(v: number, from: DType, to: DType): number {
  if (to === 'bool') return v !== 0 ? 1 : 0; // NaN is non-zero, so true (as in C, CUDA, PyTorch)
  if (isFloat(to)) return from === 'bool' ? (v ? 1 : 0) : v;
  if (isFloat(from)) {
    if (v !== v) return 0;
    const t = Math.trunc(v);
    return to === 'i32' ? Math.min(2147483647, Math.max(-2147483648, t)) : Math.min(4294967295, Math.max(0, t));
  }
  // integer ↔ integer keeps the low 32 bits (the typed array store does the wrap)
  return v;
}


/** The value `v` becomes when stored as `dtype` (the typed-array conversions of the CPU backend). */
export function storeValue(v: number, dtype: DType): number {
  switch (dtype) {
    case 'f32': return Math.fround(v);
    case 'f16': return roundF16(v);
    case 'bf16': return roundBf16(v);
    case 'i32': return v | 0;
    case 'u32': return v >>> 0;
    case 'bool': return v ? 1 : 0;
  }
}

/** pow with C99/IEEE special cases (JavaScript's Math.pow differs: 1^NaN, 1^±inf, (−1)^±inf are 1). */
export function powC(a: number, b: number): number {
  if (a === 1) return 1;
  if (a === -1 && (b === Infinity || b === -Infinity)) return 1;
  return Math.pow(a, b);
}

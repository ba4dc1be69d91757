/**
 * @file The Graph IR op set: every op's operands, attributes, and its shape/dtype inference rule.
 *
 * Primitive ops are what backends implement; composite ops (softmax, log_softmax, layer_norm,
 * rms_norm, attention) also carry a decomposition into primitives (see decompose.ts).
 * Attributes are stored in canonical form (non-negative sorted axes, full shapes); `infer`
 * rejects anything else with a ShapeError naming the op and its operand types.
 *
 * Semantics worth stating once:
 * - Elementwise binary and ternary ops broadcast with numpy rules; operand dtypes must match.
 * - Integer div and mod truncate toward zero (C, WGSL and CUDA semantics); float mod is fmod.
 *   Integer x/0 and x%0 give 0; INT_MIN/−1 gives INT_MIN; abs(INT_MIN) is INT_MIN; neg is not defined on u32.
 * - Integer add/sub/mul wrap modulo 2^32. pow follows C99 (1^y = 1 for any y, including NaN).
 * - sign(±0) = ±0, sign(NaN) = NaN. cast float→int truncates toward zero and saturates (NaN → 0);
 *   cast x→bool is x ≠ 0 (NaN → true).
 * - Reductions over an empty axis: sum gives 0, mean NaN; max, min and argmax are shape errors, and so
 *   are softmax and log_softmax over an empty axis and attention with no keys (they are defined
 *   through the max of that axis; over an empty axis they have no value to normalize).
 * - matmul: [..., m, k] x [..., k, n] -> [..., m, n]; batch dims broadcast; both ranks >= 2.
 * - gather(x, idx){axis}: numpy.take with indices in [0, n) (no negative indices);
 *   scatter_add(base, idx, upd){axis}: its transpose.
 * - attention(q, k, v){causal, scale}: softmax(q kᵀ · scale [+ top-left causal mask]) v.
 * - attention_grad(q, k, v, out, dout){causal, scale, wrt}: the gradient of attention with respect to
 *   q (wrt=0), k (1) or v (2); `out` is the forward result. Its own op so backends can fuse it.
 * - random_uniform / random_normal(seed: u32[2]){shape, dtype, stream}: Philox4x32-10, see philox.ts.
 */
import { type DType, isDType, isFloat } from './dtype.ts';
import { ShapeError } from './errors.ts';
import { type Shape, canBroadcastTo, isValidShape, numel, shapeStr, tryBroadcastShapes } from './shape.ts';

export interface ValueType {
  readonly shape: Shape;
  readonly dtype: DType;
}
export function typeStr(t: ValueType): string {
  return `${t.dtype}${shapeStr(t.shape)}`;
}

export const UNARY_OPS = [
  'neg', 'abs', 'sign', 'exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid',
  'floor', 'ceil', 'not',
] as const;
export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'max', 'min', 'pow', 'mod'] as const;
export const COMPARE_OPS = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
export const LOGICAL_OPS = ['and', 'or', 'xor'] as const;
export const REDUCE_OPS = ['reduce_sum', 'reduce_max', 'reduce_min', 'reduce_mean'] as const;
export const COMPOSITE_OPS = ['softmax', 'log_softmax', 'layer_norm', 'rms_norm', 'attention', 'attention_grad'] as const;
export const OTHER_OPS = [
  'where', 'argmax', 'reshape', 'permute', 'broadcast', 'slice', 'pad', 'concat', 'matmul', 'gather',
  'scatter_add', 'iota', 'cast', 'constant', 'random_uniform', 'random_normal',
] as const;

export type UnaryOp = (typeof UNARY_OPS)[number];
export type BinaryOp = (typeof BINARY_OPS)[number];
export type CompareOp = (typeof COMPARE_OPS)[number];
export type LogicalOp = (typeof LOGICAL_OPS)[number];
export type ReduceOp = (typeof REDUCE_OPS)[number];
export type CompositeOp = (typeof COMPOSITE_OPS)[number];
export type OpName = UnaryOp | BinaryOp | CompareOp | LogicalOp | ReduceOp | CompositeOp | (typeof OTHER_OPS)[number];

export type OpCategory =
  | 'unary' | 'binary' | 'compare' | 'logical' | 'ternary' | 'reduce' | 'movement' | 'matmul'
  | 'index' | 'source' | 'cast' | 'random' | 'composite';

/** Attribute value kinds. 'value' is a number or a flat list of numbers (constants). */
export type AttrKind = 'int' | 'float' | 'bool' | 'ints' | 'dtype' | 'value';
export type AttrValue = number | boolean | DType | readonly number[];
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface OpSpec {
  readonly name: OpName;
  readonly category: OpCategory;
  /** Number of operands; -1 means one or more (concat). */
  readonly arity: number;
  /** Attribute names and kinds, in printing order. */
  readonly attrs: ReadonlyArray<readonly [string, AttrKind]>;
  readonly infer: (ins: readonly ValueType[], attrs: Attrs) => ValueType;
}

const FLOAT_ONLY_UNARY = new Set<string>([
  'exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'floor', 'ceil',
]);

function fail(op: string, ins: readonly ValueType[], detail: string): never {
  throw new ShapeError(op, ins.map(typeStr), detail);
}
function ints(a: Attrs, k: string): readonly number[] {
  return a[k] as readonly number[];
}
function sameDType(op: string, ins: readonly ValueType[]): DType {
  const d = ins[0]!.dtype;
  for (const t of ins) if (t.dtype !== d) fail(op, ins, `operand dtypes differ (${ins.map((t) => t.dtype).join(' vs ')})`);
  return d;
}
function broadcastAll(op: string, ins: readonly ValueType[]): number[] {
  const s = tryBroadcastShapes(...ins.map((t) => t.shape));
  if (!s) fail(op, ins, `shapes ${ins.map((t) => shapeStr(t.shape)).join(' and ')} cannot be broadcast together`);
  return s;
}
function checkAxes(op: string, ins: readonly ValueType[], axes: readonly number[], rank: number): void {
  for (let i = 0; i < axes.length; i++) {
    const a = axes[i]!;
    if (!Number.isInteger(a) || a < 0 || a >= rank) fail(op, ins, `axis ${a} is out of range for rank ${rank}`);
    if (i > 0 && a <= axes[i - 1]!) fail(op, ins, `axes ${shapeStr(axes)} must be sorted and unique`);
  }
}
function checkShape(op: string, ins: readonly ValueType[], s: unknown, what = 'shape'): asserts s is number[] {
  if (!isValidShape(s)) fail(op, ins, `${what} ${JSON.stringify(s)} is not a list of non-negative integers`);
}
function checkPerm(op: string, ins: readonly ValueType[], perm: readonly number[], rank: number): void {
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i))
    fail(op, ins, `perm ${shapeStr(perm)} is not a permutation of 0..${rank - 1}`);
}

const SPECS = new Map<OpName, OpSpec>();
function def(spec: OpSpec): void {
  SPECS.set(spec.name, spec);
}

for (const name of UNARY_OPS) {
  def({
    name, category: 'unary', arity: 1, attrs: [],
    infer: (ins) => {
      const t = ins[0]!;
      if (name === 'not') {
        if (t.dtype !== 'bool') fail(name, ins, 'operand must be bool');
      } else if (FLOAT_ONLY_UNARY.has(name)) {
        if (!isFloat(t.dtype)) fail(name, ins, `needs a float operand, got ${t.dtype}`);
      } else if (t.dtype === 'bool' || (name === 'neg' && t.dtype === 'u32')) {
        fail(name, ins, `is not defined for ${t.dtype}`);
      }
      return t;
    },
  });
}
for (const name of BINARY_OPS) {
  def({
    name, category: 'binary', arity: 2, attrs: [],
    infer: (ins) => {
      const d = sameDType(name, ins);
      if (d === 'bool') fail(name, ins, 'is not defined for bool');
      if (name === 'pow' && !isFloat(d)) fail(name, ins, `needs float operands, got ${d}`);
      return { shape: broadcastAll(name, ins), dtype: d };
    },
  });
}
for (const name of COMPARE_OPS) {
  def({
    name, category: 'compare', arity: 2, attrs: [],
    infer: (ins) => {
      sameDType(name, ins);
      return { shape: broadcastAll(name, ins), dtype: 'bool' };
    },
  });
}
for (const name of LOGICAL_OPS) {
  def({
    name, category: 'logical', arity: 2, attrs: [],
    infer: (ins) => {
      if (sameDType(name, ins) !== 'bool') fail(name, ins, 'operands must be bool');
      return { shape: broadcastAll(name, ins), dtype: 'bool' };
    },
  });
}
def({
  name: 'where', category: 'ternary', arity: 3, attrs: [],
  infer: (ins) => {
    if (ins[0]!.dtype !== 'bool') fail('where', ins, 'condition must be bool');
    const [a, b] = [ins[1]!, ins[2]!];
    if (a.dtype !== b.dtype) fail('where', ins, `value dtypes differ (${a.dtype} vs ${b.dtype})`);
    const d = a.dtype;
    return { shape: broadcastAll('where', ins), dtype: d };
  },
});
for (const name of REDUCE_OPS) {
  def({
    name, category: 'reduce', arity: 1, attrs: [['axes', 'ints'], ['keepdims', 'bool']],
    infer: (ins, a) => {
      const t = ins[0]!;
      const axes = ints(a, 'axes');
      checkAxes(name, ins, axes, t.shape.length);
      if (t.dtype === 'bool') fail(name, ins, 'is not defined for bool');
      if (name === 'reduce_mean' && !isFloat(t.dtype)) fail(name, ins, `needs a float operand, got ${t.dtype}`);
      if ((name === 'reduce_max' || name === 'reduce_min') && axes.some((ax) => t.shape[ax] === 0))
        fail(name, ins, 'cannot reduce an empty axis');
      const shape = a.keepdims
        ? t.shape.map((d, i) => (axes.includes(i) ? 1 : d))
        : t.shape.filter((_, i) => !axes.includes(i));
      return { shape, dtype: t.dtype };
    },
  });
}
def({
  name: 'argmax', category: 'reduce', arity: 1, attrs: [['axis', 'int'], ['keepdims', 'bool']],
  infer: (ins, a) => {
    const t = ins[0]!;
    const axis = a.axis as number;
    checkAxes('argmax', ins, [axis], t.shape.length);
    if (t.shape[axis] === 0) fail('argmax', ins, 'cannot reduce an empty axis');
    if (t.dtype === 'bool') fail('argmax', ins, 'is not defined for bool');
    const shape = a.keepdims ? t.shape.map((d, i) => (i === axis ? 1 : d)) : t.shape.filter((_, i) => i !== axis);
    return { shape, dtype: 'i32' };
  },
});
def({
  name: 'reshape', category: 'movement', arity: 1, attrs: [['shape', 'ints']],
  infer: (ins, a) => {
    const s = a.shape;
    checkShape('reshape', ins, s);
    if (numel(s) !== numel(ins[0]!.shape))
      fail('reshape', ins, `cannot reshape ${numel(ins[0]!.shape)} elements into ${shapeStr(s)}`);
    return { shape: [...s], dtype: ins[0]!.dtype };
  },
});
def({
  name: 'permute', category: 'movement', arity: 1, attrs: [['perm', 'ints']],
  infer: (ins, a) => {
    const t = ins[0]!;
    const perm = ints(a, 'perm');
    checkPerm('permute', ins, perm, t.shape.length);
    return { shape: perm.map((p) => t.shape[p]!), dtype: t.dtype };
  },
});
def({
  name: 'broadcast', category: 'movement', arity: 1, attrs: [['shape', 'ints']],
  infer: (ins, a) => {
    const s = a.shape;
    checkShape('broadcast', ins, s);
    if (!canBroadcastTo(ins[0]!.shape, s)) fail('broadcast', ins, `cannot broadcast to ${shapeStr(s)}`);
    return { shape: [...s], dtype: ins[0]!.dtype };
  },
});
def({
  name: 'slice', category: 'movement', arity: 1, attrs: [['starts', 'ints'], ['ends', 'ints'], ['steps', 'ints']],
  infer: (ins, a) => {
    const t = ins[0]!;
    const [st, en, sp] = [ints(a, 'starts'), ints(a, 'ends'), ints(a, 'steps')];
    const r = t.shape.length;
    if (st.length !== r || en.length !== r || sp.length !== r) fail('slice', ins, `starts/ends/steps need ${r} entries each`);
    const shape = t.shape.map((d, i) => {
      const [s, e, k] = [st[i]!, en[i]!, sp[i]!];
      if (!(Number.isInteger(k) && k >= 1)) fail('slice', ins, `step ${k} on axis ${i} must be a positive integer`);
      if (!(Number.isInteger(s) && Number.isInteger(e) && 0 <= s && s <= e && e <= d))
        fail('slice', ins, `range ${s}:${e} on axis ${i} is not within 0..${d}`);
      return Math.ceil((e - s) / k);
    });
    return { shape, dtype: t.dtype };
  },
});
def({
  name: 'pad', category: 'movement', arity: 1, attrs: [['before', 'ints'], ['after', 'ints'], ['value', 'float']],
  infer: (ins, a) => {
    const t = ins[0]!;
    const [b, f] = [ints(a, 'before'), ints(a, 'after')];
    const r = t.shape.length;
    if (b.length !== r || f.length !== r) fail('pad', ins, `before/after need ${r} entries each`);
    if ([...b, ...f].some((p) => !Number.isInteger(p) || p < 0)) fail('pad', ins, 'padding must be non-negative integers');
    return { shape: t.shape.map((d, i) => d + b[i]! + f[i]!), dtype: t.dtype };
  },
});
def({
  name: 'concat', category: 'movement', arity: -1, attrs: [['axis', 'int']],
  infer: (ins, a) => {
    const axis = a.axis as number;
    const first = ins[0]!;
    const r = first.shape.length;
    checkAxes('concat', ins, [axis], r);
    const d = sameDType('concat', ins);
    let total = 0;
    for (const t of ins) {
      if (t.shape.length !== r || t.shape.some((s, i) => i !== axis && s !== first.shape[i]))
        fail('concat', ins, `shapes must match except on axis ${axis}`);
      total += t.shape[axis]!;
    }
    return { shape: first.shape.map((s, i) => (i === axis ? total : s)), dtype: d };
  },
});
def({
  name: 'matmul', category: 'matmul', arity: 2, attrs: [],
  infer: (ins) => {
    const [x, y] = [ins[0]!, ins[1]!];
    const d = sameDType('matmul', ins);
    if (d === 'bool') fail('matmul', ins, 'is not defined for bool');
    if (x.shape.length < 2 || y.shape.length < 2) fail('matmul', ins, 'operands need rank >= 2');
    const [m, k] = x.shape.slice(-2) as [number, number];
    const [k2, n] = y.shape.slice(-2) as [number, number];
    if (k !== k2) fail('matmul', ins, `inner dimensions differ (${k} vs ${k2})`);
    const batch = tryBroadcastShapes(x.shape.slice(0, -2), y.shape.slice(0, -2));
    if (!batch) fail('matmul', ins, 'batch dimensions cannot be broadcast together');
    return { shape: [...batch, m, n], dtype: d };
  },
});
def({
  name: 'gather', category: 'index', arity: 2, attrs: [['axis', 'int']],
  infer: (ins, a) => {
    const [x, idx] = [ins[0]!, ins[1]!];
    const axis = a.axis as number;
    checkAxes('gather', ins, [axis], x.shape.length);
    if (idx.dtype !== 'i32') fail('gather', ins, 'indices must be i32');
    return { shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], dtype: x.dtype };
  },
});
def({
  name: 'scatter_add', category: 'index', arity: 3, attrs: [['axis', 'int']],
  infer: (ins, a) => {
    const [base, idx, upd] = [ins[0]!, ins[1]!, ins[2]!];
    const axis = a.axis as number;
    checkAxes('scatter_add', ins, [axis], base.shape.length);
    if (idx.dtype !== 'i32') fail('scatter_add', ins, 'indices must be i32');
    if (base.dtype !== upd.dtype) fail('scatter_add', ins, 'base and updates dtypes differ');
    const want = [...base.shape.slice(0, axis), ...idx.shape, ...base.shape.slice(axis + 1)];
    if (want.length !== upd.shape.length || want.some((d, i) => d !== upd.shape[i]))
      fail('scatter_add', ins, `updates must have shape ${shapeStr(want)}`);
    return base;
  },
});
def({
  name: 'iota', category: 'source', arity: 0, attrs: [['shape', 'ints'], ['axis', 'int'], ['dtype', 'dtype']],
  infer: (ins, a) => {
    checkShape('iota', ins, a.shape);
    checkAxes('iota', ins, [a.axis as number], a.shape.length);
    const d = a.dtype as DType;
    if (d === 'bool') fail('iota', ins, 'dtype cannot be bool');
    return { shape: [...a.shape], dtype: d };
  },
});
def({
  name: 'constant', category: 'source', arity: 0, attrs: [['shape', 'ints'], ['dtype', 'dtype'], ['value', 'value']],
  infer: (ins, a) => {
    checkShape('constant', ins, a.shape);
    const v = a.value;
    if (Array.isArray(v) && v.length !== numel(a.shape))
      fail('constant', ins, `has ${v.length} values for shape ${shapeStr(a.shape)}`);
    const d = a.dtype as DType;
    if (!isFloat(d)) {
      const [lo, hi] = d === 'i32' ? [-(2 ** 31), 2 ** 31 - 1] : d === 'u32' ? [0, 2 ** 32 - 1] : [0, 1];
      const bad = (Array.isArray(v) ? v : [v]).find((x: number) => !Number.isInteger(x) || x < lo || x > hi);
      if (bad !== undefined) fail('constant', ins, `value ${bad} is not representable as ${d}`);
    }
    return { shape: [...a.shape], dtype: a.dtype as DType };
  },
});
def({
  name: 'cast', category: 'cast', arity: 1, attrs: [['dtype', 'dtype']],
  infer: (ins, a) => ({ shape: ins[0]!.shape, dtype: a.dtype as DType }),
});
for (const name of ['random_uniform', 'random_normal'] as const) {
  def({
    name, category: 'random', arity: 1, attrs: [['shape', 'ints'], ['dtype', 'dtype'], ['stream', 'int']],
    infer: (ins, a) => {
      const seed = ins[0]!;
      if (seed.dtype !== 'u32' || seed.shape.length !== 1 || seed.shape[0] !== 2) fail(name, ins, 'seed must be u32[2]');
      checkShape(name, ins, a.shape);
      if (!isFloat(a.dtype as DType)) fail(name, ins, 'dtype must be a float type');
      const s = a.stream as number;
      if (!Number.isInteger(s) || s < 0 || s > 0xffffffff) fail(name, ins, `stream ${s} must be a u32`);
      return { shape: [...a.shape], dtype: a.dtype as DType };
    },
  });
}
for (const name of ['softmax', 'log_softmax'] as const) {
  def({
    name, category: 'composite', arity: 1, attrs: [['axis', 'int']],
    infer: (ins, a) => {
      checkAxes(name, ins, [a.axis as number], ins[0]!.shape.length);
      if (!isFloat(ins[0]!.dtype)) fail(name, ins, 'needs a float operand');
      if (ins[0]!.shape[a.axis as number] === 0) fail(name, ins, `cannot normalize over the empty axis ${a.axis}`);
      return ins[0]!;
    },
  });
}
for (const name of ['layer_norm', 'rms_norm'] as const) {
  def({
    name, category: 'composite', arity: 1, attrs: [['eps', 'float']],
    infer: (ins) => {
      const t = ins[0]!;
      if (!isFloat(t.dtype)) fail(name, ins, 'needs a float operand');
      if (t.shape.length < 1) fail(name, ins, 'needs rank >= 1 (it normalizes the last axis)');
      return t;
    },
  });
}
def({
  name: 'attention', category: 'composite', arity: 3, attrs: [['causal', 'bool'], ['scale', 'float']],
  infer: (ins) => {
    const [q, k, v] = [ins[0]!, ins[1]!, ins[2]!];
    const d = sameDType('attention', ins);
    if (!isFloat(d)) fail('attention', ins, 'needs float operands');
    const r = q.shape.length;
    if (r < 2 || k.shape.length !== r || v.shape.length !== r) fail('attention', ins, 'q, k, v need the same rank >= 2');
    const batch = q.shape.slice(0, -2);
    if (!batch.every((b, i) => b === k.shape[i] && b === v.shape[i])) fail('attention', ins, 'batch dimensions must match');
    const [sq, dq] = q.shape.slice(-2) as [number, number];
    const [sk, dk] = k.shape.slice(-2) as [number, number];
    const [sv, dv] = v.shape.slice(-2) as [number, number];
    if (dq !== dk) fail('attention', ins, `q and k head dims differ (${dq} vs ${dk})`);
    if (sk !== sv) fail('attention', ins, `k and v sequence lengths differ (${sk} vs ${sv})`);
    if (sk === 0) fail('attention', ins, 'needs at least one key (softmax over an empty axis)');
    return { shape: [...batch, sq, dv], dtype: d };
  },
});

def({
  name: 'attention_grad', category: 'composite', arity: 5, attrs: [['causal', 'bool'], ['scale', 'float'], ['wrt', 'int']],
  infer: (ins, a) => {
    const fwd = opSpec('attention').infer(ins.slice(0, 3), a);
    const [o, g] = [ins[3]!, ins[4]!];
    for (const t of [o, g])
      if (t.dtype !== fwd.dtype || t.shape.length !== fwd.shape.length || t.shape.some((d, i) => d !== fwd.shape[i]))
        fail('attention_grad', ins, `out and dout must be ${typeStr(fwd)}`);
    const w = a.wrt as number;
    if (w !== 0 && w !== 1 && w !== 2) fail('attention_grad', ins, `wrt must be 0 (q), 1 (k) or 2 (v), got ${w}`);
    return ins[w]!;
  },
});

export function opSpec(op: string): OpSpec {
  const s = SPECS.get(op as OpName);
  if (!s) throw new ShapeError(op, [], 'unknown op');
  return s;
}
export function isOpName(op: string): op is OpName {
  return SPECS.has(op as OpName);
}
export const ALL_OPS: readonly OpName[] = [...SPECS.keys()];

function attrKindOk(kind: AttrKind, v: unknown): boolean {
  switch (kind) {
    case 'int':
      return Number.isInteger(v);
    case 'float':
      return typeof v === 'number';
    case 'bool':
      return typeof v === 'boolean';
    case 'ints':
      return Array.isArray(v) && v.every((x) => Number.isInteger(x));
    case 'dtype':
      return typeof v === 'string' && isDType(v);
    case 'value':
      return typeof v === 'number' || (Array.isArray(v) && v.every((x) => typeof x === 'number'));
  }
}

/** Check operand count and attribute kinds, then infer the result type (throws ShapeError). */
export function inferType(op: OpName, ins: readonly ValueType[], attrs: Attrs): ValueType {
  const spec = opSpec(op);
  if (spec.arity >= 0 ? ins.length !== spec.arity : ins.length < 1)
    fail(op, ins, `takes ${spec.arity >= 0 ? spec.arity : 'at least 1'} operand(s), got ${ins.length}`);
  for (const [k, kind] of spec.attrs) {
    if (!(k in attrs)) fail(op, ins, `missing attribute '${k}'`);
    if (!attrKindOk(kind, attrs[k])) fail(op, ins, `attribute '${k}' must be ${kind}, got ${JSON.stringify(attrs[k])}`);
  }
  for (const k of Object.keys(attrs))
    if (!spec.attrs.some(([n]) => n === k)) fail(op, ins, `unknown attribute '${k}'`);
  return spec.infer(ins, attrs);
}


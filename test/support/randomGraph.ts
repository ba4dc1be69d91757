/**
 * @file Seeded random Graph IR generator (and matching random input feeds) for round-trip tests of
 * the text form and for differential tests of compiled programs against the CPU interpreter.
 *
 * Graphs are built with GraphBuilder, so they are valid by construction; every op of the op set
 * appears (unary, binary with numpy broadcasting, compare, logical, where, reductions, argmax,
 * movement ops, matmul with batch broadcasting, gather/scatter_add, iota, cast, constant, random,
 * and the composite ops, attention_grad included). Shapes stay small (input dims 1..5, rank 0..4).
 *
 * With `{ finiteF32: true }` every float is f32 and every value stays finite and moderate for feeds
 * from randomFeeds: the generator tracks a conservative value interval per value and guards
 * partial functions (log, sqrt, rsqrt, recip, div, mod, pow: operand made positive with abs + 1,
 * exp: operand squashed with tanh), uses no inf/nan constants, no integer div/mod and no u32
 * arithmetic, and rejects any op whose result interval could exceed ±1e4. Gather/scatter indices
 * always come from iota, in-range constants, or i32 index inputs (which randomFeeds fills in range).
 *
 * Two options reach regions the default graphs do not (both found compiler bugs, see
 * test/compiler/fuzzRepros): `emptyDims` makes zero-size dimensions (input and value dims are 0 with
 * probability 0.12, slices may be empty), so empty concat operands, pads of empty tensors and
 * reductions over empty axes appear; `viewChains` adds chains of 3..6 rounds of a reshape and 1-2 pads/slices/permutes
 * at rank 5..8 (elementwise ops in between), often ending in a reshape to rank 2 and a gather, the
 * shape of index arithmetic that made the index simplifier exponential. Without them the graphs are
 * what they always were for the same seed.
 */
import { mulberry32 } from '../../runtime/prng.ts';
import { type DType, isFloat } from '../../ir/dtype.ts';
import { type Graph, GraphBuilder, type InputKind } from '../../ir/graph.ts';
import {
  type Attrs, BINARY_OPS, COMPARE_OPS, inferType, LOGICAL_OPS, type OpName, REDUCE_OPS, UNARY_OPS, type ValueType,
} from '../../ir/ops.ts';
import { numel, type Shape, shapeEq, tryBroadcastShapes } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

export interface RandomGraphOptions {
  /** Number of ops to generate (helper nodes such as guards and operands come on top). Default: 4..24, from the seed. */
  nodes?: number;
  /** Only f32 floats, finite values, no integer division (for differential tests). */
  finiteF32?: boolean;
  /** Zero-size dimensions: value dims are 0 with probability 0.12 and slices may be empty. */
  emptyDims?: boolean;
  /** Chains of view ops at rank 5..8, often ending in a gather. */
  viewChains?: boolean;
}

export { mulberry32 };

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed ^ 0x9e3779b9);
  }
  float(): number {
    return this.next();
  }
  /** Integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('Rng.pick from an empty list');
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  shuffle<T>(xs: readonly T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
  /** Random sorted subset of 0..n-1. */
  subset(n: number, p = 0.5): number[] {
    const out: number[] = [];
    for (let i = 0; i < n; i++) if (this.chance(p)) out.push(i);
    return out;
  }
}

/** A value in the graph under construction with a conservative interval of what it can hold. */
interface V {
  readonly id: number;
  readonly t: ValueType;
  readonly lo: number;
  readonly hi: number;
}
type Interval = readonly [number, number];

const MAX_RANK = 4;
/** Rank limit with `viewChains`. */
const MAX_CHAIN_RANK = 8;
const MAX_DIM = 8;
const MAX_NUMEL = 1024;
/** In finite mode no f32/i32 value may leave [-LIMIT, LIMIT]. */
const LIMIT = 1e4;
/** Value range of float input feeds, and of non-index i32 input feeds. */
export const FEED_FLOAT_RANGE: Interval = [-2, 2];
export const FEED_INT_RANGE: Interval = [-4, 4];
const MAX_INPUTS = 10;

const FLOAT_ONLY_UNARY = new Set<string>(['exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'floor', 'ceil']);
const SPECIAL_FLOATS = [Infinity, -Infinity, NaN, -0, 0, 1e-7, 3.4e38, -1.5e-45, 65504, 1e21, 0.1];
const NAME_PARTS = ['x', 'w', 'h', 'blocks', 'attn', 'qkv', 'weight', 'bias', 'norm', 'mlp', 'fc1', 'emb', 'opt', 'm', 'v', '_t'];
const LOC_FILES = ['models/mlp.ts', 'models/fae/decoder.ts', 'models/dit.ts', 'C:\\models\\win "quoted".ts', 'models/ünï cödé.ts', 'a\tb.ts'];

function corners(a: Interval, b: Interval, f: (x: number, y: number) => number): Interval {
  const c = [f(a[0], b[0]), f(a[0], b[1]), f(a[1], b[0]), f(a[1], b[1])];
  return [Math.min(...c), Math.max(...c)];
}
function absMax(v: { lo: number; hi: number }): number {
  return Math.max(Math.abs(v.lo), Math.abs(v.hi));
}
function union(...vs: { lo: number; hi: number }[]): Interval {
  return [Math.min(...vs.map((v) => v.lo)), Math.max(...vs.map((v) => v.hi))];
}
function erfBound(x: number): number {
  return Math.tanh(1.2 * x); // erf and tanh(1.2x) agree in sign and are both within [-1, 1]
}

class Generator {
  readonly rng: Rng;
  readonly b: GraphBuilder;
  readonly finite: boolean;
  readonly empty: boolean;
  readonly chains: boolean;
  readonly maxRank: number;
  /** Values usable as operands (not seeds, not index inputs). */
  readonly pool: V[] = [];
  private readonly inputNames = new Set<string>();
  private readonly indexInputs: V[] = [];
  private readonly inputIds = new Set<number>();
  private seed: V | undefined;

  constructor(seed: number, opts: RandomGraphOptions) {
    this.rng = new Rng(seed);
    this.finite = !!opts.finiteF32;
    this.empty = !!opts.emptyDims;
    this.chains = !!opts.viewChains;
    this.maxRank = this.chains ? MAX_CHAIN_RANK : MAX_RANK;
    this.b = new GraphBuilder(`rand${seed >>> 0}`);
  }

  // --- dtypes, shapes, names -----------------------------------------------------------------

  floatDType(): DType {
    return this.finite ? 'f32' : this.rng.pick(['f32', 'f32', 'f32', 'f16', 'bf16'] as const);
  }
  anyDType(): DType {
    if (this.finite) return this.rng.pick(['f32', 'f32', 'f32', 'i32', 'bool'] as const);
    return this.rng.pick(['f32', 'f32', 'f16', 'bf16', 'i32', 'i32', 'u32', 'bool'] as const);
  }
  dims(rank: number, max = 5): number[] {
    return Array.from({ length: rank }, () => (this.empty && this.rng.chance(0.12) ? 0 : this.rng.int(1, max)));
  }
  randomShape(minRank = 0, maxRank = MAX_RANK): number[] {
    return this.dims(this.rng.int(minRank, maxRank));
  }
  /** Shape that broadcasts with `s`: a suffix of it, some dims set to 1, some 1-dims grown. */
  compatibleShape(s: Shape): number[] {
    const r = this.rng.chance(0.7) ? s.length : this.rng.int(0, s.length);
    const out = s.slice(s.length - r).map((d) => {
      if (d === 1 && this.rng.chance(0.3)) return this.rng.int(2, 4);
      return this.rng.chance(0.3) ? 1 : d;
    });
    if (r === s.length && out.length < MAX_RANK && this.rng.chance(0.15)) out.unshift(this.rng.int(1, 3)); // rank grows
    return out;
  }
  freshName(prefix?: string): string {
    for (;;) {
      const parts = [prefix ?? this.rng.pick(NAME_PARTS)];
      const extra = this.rng.int(0, 3);
      for (let i = 0; i < extra; i++) parts.push(this.rng.chance(0.4) ? String(this.rng.int(0, 11)) : this.rng.pick(NAME_PARTS));
      const name = parts.join('.');
      if (!this.inputNames.has(name)) return name;
    }
  }
  randomLoc(): string {
    return `${this.rng.pick(LOC_FILES)}:${this.rng.int(1, 400)}:${this.rng.int(1, 80)}`;
  }

  // --- value picking ---------------------------------------------------------------------------

  /** A random pool value satisfying `pred`, biased toward recent values (deeper chains). */
  pick(pred: (v: V) => boolean): V | undefined {
    const ok = this.pool.filter(pred);
    if (ok.length === 0) return undefined;
    if (this.rng.chance(0.6)) return ok[ok.length - 1 - this.rng.int(0, Math.min(5, ok.length - 1))];
    return this.rng.pick(ok);
  }
  isNumeric = (v: V): boolean => v.t.dtype !== 'bool' && !(this.finite && v.t.dtype === 'u32');

  // --- emitting --------------------------------------------------------------------------------

  /**
   * Append a node unless its result is too big or (finite mode) its interval too wide; `helper`
   * nodes (operands and guards made for another op) skip the size limits and get a 10x looser bound.
   */
  emit(op: OpName, ins: readonly V[], attrs: Attrs, range: Interval, helper = false): V | undefined {
    const t = inferType(op, ins.map((v) => v.t), attrs);
    if (!helper && (t.shape.length > this.maxRank || t.shape.some((d) => d > MAX_DIM) || numel(t.shape) > MAX_NUMEL)) return undefined;
    let [lo, hi] = range;
    if (t.dtype === 'bool') [lo, hi] = [0, 1];
    if (this.finite) {
      if (isFloat(t.dtype) && t.dtype !== 'f32') throw new Error(`randomGraph: ${op} made ${t.dtype} in finite mode`);
      const limit = helper ? 10 * LIMIT : LIMIT;
      if ((t.dtype === 'f32' || t.dtype === 'i32') && !(Math.abs(lo) <= limit && Math.abs(hi) <= limit && lo <= hi))
        return undefined;
    }
    const id = this.b.op(op, ins.map((v) => v.id), attrs, this.rng.chance(0.4) ? this.randomLoc() : undefined);
    const v: V = { id, t, lo, hi };
    this.pool.push(v);
    return v;
  }
  /** emit, for helper nodes that must exist (shapes are known to be small). */
  must(op: OpName, ins: readonly V[], attrs: Attrs, range: Interval): V {
    const v = this.emit(op, ins, attrs, range, true);
    if (!v) throw new Error(`randomGraph: helper ${op} was rejected`);
    return v;
  }

  input(type: ValueType, kind: InputKind, range: Interval, name = this.freshName()): V {
    this.inputNames.add(name);
    const id = this.b.input(name, type, kind);
    this.inputIds.add(id);
    return { id, t: type, lo: range[0], hi: range[1] };
  }
  addInput(shape: number[], dtype: DType, kind?: InputKind): V {
    const k = kind ?? this.rng.pick(['data', 'param', 'frozen', 'state'] as const);
    const range: Interval = isFloat(dtype) ? FEED_FLOAT_RANGE : dtype === 'bool' ? [0, 1] : dtype === 'u32' ? [0, 2 ** 32 - 1] : FEED_INT_RANGE;
    const v = this.input({ shape, dtype }, k, range);
    this.pool.push(v);
    return v;
  }
  seedInput(): V {
    if (!this.seed) this.seed = this.input({ shape: [2], dtype: 'u32' }, 'data', [0, 2 ** 32 - 1], this.freshName('seed'));
    return this.seed;
  }
  canAddInput(): boolean {
    return this.inputNames.size < MAX_INPUTS;
  }

  randomScalar(dtype: DType): number {
    const r = this.rng;
    switch (dtype) {
      case 'bool':
        return r.int(0, 1);
      case 'i32':
        return r.int(-3, 3);
      case 'u32':
        return r.chance(0.1) ? 4294967295 : r.int(0, 5);
      default:
        if (!this.finite && r.chance(0.15)) return r.pick(SPECIAL_FLOATS);
        if (r.chance(0.3)) return r.pick([0, 1, -1, 0.5, 2, -0]);
        return Math.round((r.float() * 4 - 2) * 1000) / 1000;
    }
  }
  constant(shape: number[], dtype: DType): V {
    const n = numel(shape);
    const list = n <= 8 && this.rng.chance(0.6) && n > 0;
    const value = list ? Array.from({ length: n }, () => this.randomScalar(dtype)) : this.randomScalar(dtype);
    const vals = typeof value === 'number' ? [value] : value;
    return this.must('constant', [], { shape, dtype, value }, [Math.min(...vals), Math.max(...vals)]);
  }
  scalarConst(dtype: DType, value: number): V {
    return this.must('constant', [], { shape: [], dtype, value }, [value, value]);
  }

  /** A value of exactly this shape and dtype: from the pool, a new input, a random op, iota, or a constant. */
  valueOfShape(shape: number[], dtype: DType): V {
    const exact = this.pool.filter((v) => v.t.dtype === dtype && shapeEq(v.t.shape, shape));
    const r = this.rng.float();
    if (exact.length && r < 0.35) return this.rng.pick(exact);
    if (r < 0.55 && this.canAddInput()) return this.addInput(shape, dtype);
    if (r < 0.65 && isFloat(dtype)) {
      const op = this.rng.pick(['random_uniform', 'random_normal'] as const);
      return this.must(op, [this.seedInput()], { shape, dtype, stream: this.rng.int(0, 9) }, op === 'random_uniform' ? [0, 1] : [-8, 8]);
    }
    if (r < 0.75 && dtype !== 'bool' && shape.length > 0) {
      const axis = this.rng.int(0, shape.length - 1);
      return this.must('iota', [], { shape, axis, dtype }, [0, Math.max(0, shape[axis]! - 1)]);
    }
    return this.constant(shape, dtype);
  }

  /** A second operand for an elementwise op with `x`: same dtype, shape broadcastable with x's. */
  partner(x: V): V {
    if (this.rng.chance(0.5)) {
      const p = this.pick((v) => v.t.dtype === x.t.dtype && !!tryBroadcastShapes(v.t.shape, x.t.shape));
      if (p) return p;
    }
    if (this.rng.chance(0.1)) return x;
    return this.valueOfShape(this.compatibleShape(x.t.shape), x.t.dtype);
  }

  /** A bool value, broadcastable with `like` if given. */
  boolValue(like?: V): V {
    const p = this.pick((v) => v.t.dtype === 'bool' && (!like || !!tryBroadcastShapes(v.t.shape, like.t.shape)));
    if (p && this.rng.chance(0.6)) return p;
    let x: V;
    if (!like) x = this.pick(this.isNumeric) ?? this.valueOfShape(this.randomShape(), 'f32');
    else if (this.isNumeric(like)) x = like;
    else x = this.valueOfShape(this.compatibleShape(like.t.shape), this.floatDType());
    let y = this.partner(x);
    const s = tryBroadcastShapes(x.t.shape, y.t.shape);
    if (like && !(s && tryBroadcastShapes(s, like.t.shape))) y = this.valueOfShape([], x.t.dtype);
    return this.emit(this.rng.pick(COMPARE_OPS), [x, y], {}, [0, 1]) ?? this.valueOfShape(like ? [...like.t.shape] : [], 'bool');
  }

  /** x with values in [1, ...] for partial functions (finite mode: abs then add 1). */
  positive(x: V, minLo: number): V {
    if (!this.finite || x.lo >= minLo) return x;
    const a = this.must('abs', [x], {}, [0, absMax(x)]);
    return this.must('add', [a, this.scalarConst(x.t.dtype, 1)], {}, [1, a.hi + 1]);
  }
  /** x squashed into [-1, 1] (finite mode, when |x| could exceed `bound`). */
  bounded(x: V, bound: number): V {
    if (!this.finite || absMax(x) <= bound) return x;
    return this.must('tanh', [x], {}, [Math.tanh(x.lo), Math.tanh(x.hi)]);
  }
  /** x with |x| >= minAbs everywhere (a divisor). */
  nonZero(x: V, minAbs: number): V {
    if (!this.finite || x.lo >= minAbs || x.hi <= -minAbs) return x;
    return this.positive(x, Infinity);
  }
  /** A value of rank >= 2 with the given dtype predicate, reshaping a lower-rank one if needed. */
  rank2(pred: (v: V) => boolean): V | undefined {
    const x = this.pick((v) => pred(v) && v.t.shape.length >= 2);
    if (x) return x;
    const y = this.pick(pred);
    if (!y) return undefined;
    const n = numel(y.t.shape);
    return this.emit('reshape', [y], { shape: this.rng.chance(0.5) ? [1, n] : [n, 1] }, [y.lo, y.hi]);
  }

  /** i32 indices in [0, bound): iota, an in-range constant, or an i32 index input; rank 0..2. */
  indices(bound: number): V {
    const r = this.rng.float();
    if (r < 0.35) {
      const rank = this.rng.int(1, 2);
      const shape = this.dims(rank, 4);
      const axis = this.rng.int(0, rank - 1);
      shape[axis] = this.rng.int(1, bound);
      const idx = this.must('iota', [], { shape, axis, dtype: 'i32' }, [0, shape[axis]! - 1]);
      if (rank === 2 && this.rng.chance(0.3)) return this.must('permute', [idx], { perm: [1, 0] }, [idx.lo, idx.hi]);
      return idx;
    }
    if (r < 0.7) {
      const shape = this.rng.chance(0.3) ? [] : this.dims(this.rng.int(1, 2), 3);
      const n = numel(shape);
      const value = n <= 1 || this.rng.chance(0.2) ? this.rng.int(0, bound - 1) : Array.from({ length: n }, () => this.rng.int(0, bound - 1));
      return this.must('constant', [], { shape, dtype: 'i32', value }, [0, bound - 1]);
    }
    const reuse = this.indexInputs.filter((v) => v.hi < bound);
    if (reuse.length && (this.rng.chance(0.5) || !this.canAddInput())) return this.rng.pick(reuse);
    if (!this.canAddInput()) return this.must('constant', [], { shape: [], dtype: 'i32', value: 0 }, [0, 0]);
    const v = this.input({ shape: this.dims(this.rng.int(0, 2), 4), dtype: 'i32' }, 'data', [0, bound - 1], this.freshName('idx'));
    this.indexInputs.push(v);
    return v;
  }

  // --- op families -------------------------------------------------------------------------

  unary(): V | undefined {
    const op = this.rng.pick(UNARY_OPS);
    if (op === 'not') return this.emit('not', [this.boolValue()], {}, [0, 1]);
    if (FLOAT_ONLY_UNARY.has(op)) {
      let x = this.pick((v) => isFloat(v.t.dtype));
      if (!x) return undefined;
      const T = Math.tanh, S = (z: number): number => 1 / (1 + Math.exp(-z));
      switch (op) {
        case 'exp':
          x = this.bounded(x, 8);
          return this.emit(op, [x], {}, [Math.exp(x.lo), Math.exp(x.hi)]);
        case 'log':
          x = this.positive(x, 1e-3);
          return this.emit(op, [x], {}, [Math.log(x.lo), Math.log(x.hi)]);
        case 'sqrt':
          x = this.positive(x, 0);
          return this.emit(op, [x], {}, [Math.sqrt(x.lo), Math.sqrt(x.hi)]);
        case 'rsqrt':
          x = this.positive(x, 1e-2);
          return this.emit(op, [x], {}, [1 / Math.sqrt(x.hi), 1 / Math.sqrt(x.lo)]);
        case 'recip':
          x = this.nonZero(x, 1e-2);
          return this.emit(op, [x], {}, corners([1, 1], [x.lo, x.hi], (a, c) => a / c));
        case 'tanh':
          return this.emit(op, [x], {}, [T(x.lo), T(x.hi)]);
        case 'sigmoid':
          return this.emit(op, [x], {}, [S(x.lo), S(x.hi)]);
        case 'erf':
          return this.emit(op, [x], {}, [erfBound(x.lo), erfBound(x.hi)]);
        case 'floor':
          return this.emit(op, [x], {}, [Math.floor(x.lo), Math.floor(x.hi)]);
        case 'ceil':
          return this.emit(op, [x], {}, [Math.ceil(x.lo), Math.ceil(x.hi)]);
        default: // sin, cos
          return this.emit(op, [x], {}, [-1, 1]);
      }
    }
    const x = this.pick((v) => this.isNumeric(v) && !(op === 'neg' && v.t.dtype === 'u32'));
    if (!x) return undefined;
    if (op === 'neg') return this.emit(op, [x], {}, [-x.hi, -x.lo]);
    if (op === 'abs') return this.emit(op, [x], {}, [x.lo >= 0 ? x.lo : x.hi <= 0 ? -x.hi : 0, absMax(x)]);
    return this.emit(op, [x], {}, [Math.sign(x.lo), Math.sign(x.hi)]); // sign
  }

  binary(): V | undefined {
    const op = this.rng.pick(BINARY_OPS);
    const floatOnly = op === 'pow' || (this.finite && (op === 'div' || op === 'mod'));
    let x = this.pick((v) => this.isNumeric(v) && (!floatOnly || isFloat(v.t.dtype)));
    if (!x) return undefined;
    let y = this.partner(x);
    switch (op) {
      case 'add':
        return this.emit(op, [x, y], {}, [x.lo + y.lo, x.hi + y.hi]);
      case 'sub':
        return this.emit(op, [x, y], {}, [x.lo - y.hi, x.hi - y.lo]);
      case 'mul':
        return this.emit(op, [x, y], {}, corners([x.lo, x.hi], [y.lo, y.hi], (a, c) => a * c));
      case 'max':
        return this.emit(op, [x, y], {}, [Math.max(x.lo, y.lo), Math.max(x.hi, y.hi)]);
      case 'min':
        return this.emit(op, [x, y], {}, [Math.min(x.lo, y.lo), Math.min(x.hi, y.hi)]);
      case 'div':
        y = this.nonZero(y, 1e-2);
        return this.emit(op, [x, y], {}, corners([x.lo, x.hi], [y.lo, y.hi], (a, c) => a / c));
      case 'mod': {
        y = this.nonZero(y, 1e-2);
        const m = Math.min(absMax(x), absMax(y));
        return this.emit(op, [x, y], {}, [x.lo >= 0 ? 0 : -m, x.hi <= 0 ? 0 : m]);
      }
      case 'pow':
        x = this.positive(x, 1e-2);
        y = this.bounded(y, 2);
        return this.emit(op, [x, y], {}, corners([x.lo, x.hi], [y.lo, y.hi], (a, c) => a ** c));
    }
  }

  compare(): V | undefined {
    const x = this.pick((v) => v.t.dtype !== 'u32' || !this.finite);
    if (!x) return undefined;
    return this.emit(this.rng.pick(COMPARE_OPS), [x, this.partner(x)], {}, [0, 1]);
  }

  logical(): V | undefined {
    const x = this.boolValue();
    return this.emit(this.rng.pick(LOGICAL_OPS), [x, this.boolValue(x)], {}, [0, 1]);
  }

  where(): V | undefined {
    const a = this.pick((v) => v.t.dtype !== 'u32' || !this.finite);
    if (!a) return undefined;
    const c = this.boolValue(a);
    let b = this.partner(a);
    if (!tryBroadcastShapes(c.t.shape, a.t.shape, b.t.shape)) b = this.valueOfShape([], a.t.dtype);
    return this.emit('where', [c, a, b], {}, union(a, b));
  }

  reduce(): V | undefined {
    const op = this.rng.pick(REDUCE_OPS);
    const x = this.pick((v) => this.isNumeric(v) && (op !== 'reduce_mean' || isFloat(v.t.dtype)));
    if (!x) return undefined;
    const r = x.t.shape.length;
    let axes = this.rng.chance(0.08) ? [] : this.rng.chance(0.2) ? [...Array(r).keys()] : this.rng.subset(r);
    // max/min have no value over an empty axis (a ShapeError); mean gives NaN, kept out of finite graphs
    if (op !== 'reduce_sum' && (op !== 'reduce_mean' || this.finite)) axes = axes.filter((a) => x.t.shape[a] !== 0);
    const n = numel(axes.map((a) => x.t.shape[a]!));
    const range: Interval = op === 'reduce_sum' ? [Math.min(x.lo, n * x.lo), Math.max(x.hi, n * x.hi)] : [x.lo, x.hi];
    return this.emit(op, [x], { axes, keepdims: this.rng.chance(0.5) }, range);
  }

  argmax(): V | undefined {
    const x = this.pick((v) => this.isNumeric(v) && v.t.shape.length >= 1 && !v.t.shape.includes(0));
    if (!x) return undefined;
    const axis = this.rng.int(0, x.t.shape.length - 1);
    return this.emit('argmax', [x], { axis, keepdims: this.rng.chance(0.5) }, [0, x.t.shape[axis]! - 1]);
  }

  reshape(): V | undefined {
    const x = this.pick(() => true);
    if (!x) return undefined;
    const n = numel(x.t.shape);
    const factors: number[] = [];
    for (let m = n, p = 2; m > 1 && n > 0; ) {
      if (m % p === 0) {
        factors.push(p);
        m /= p;
      } else p++;
    }
    const rank = this.rng.int(n === 1 ? 0 : 1, MAX_RANK);
    if (n === 0) return this.emit('reshape', [x], { shape: this.emptyShape(rank) }, [x.lo, x.hi]);
    const shape = new Array<number>(rank).fill(1);
    for (const f of factors) shape[this.rng.int(0, rank - 1)]! *= f;
    return this.emit('reshape', [x], { shape }, [x.lo, x.hi]);
  }

  permute(): V | undefined {
    const x = this.pick((v) => v.t.shape.length >= 2) ?? this.pick(() => true);
    if (!x) return undefined;
    const perm = this.rng.shuffle([...x.t.shape.keys()]);
    return this.emit('permute', [x], { perm }, [x.lo, x.hi]);
  }

  broadcast(): V | undefined {
    const x = this.pick(() => true);
    if (!x) return undefined;
    const lead = this.dims(this.rng.int(0, Math.max(0, MAX_RANK - x.t.shape.length)), 3);
    const shape = [...lead, ...x.t.shape.map((d) => (d === 1 && this.rng.chance(0.6) ? this.rng.int(1, 4) : d))];
    return this.emit('broadcast', [x], { shape }, [x.lo, x.hi]);
  }

  slice(): V | undefined {
    const x = this.pick((v) => v.t.shape.length >= 1) ?? this.pick(() => true);
    if (!x) return undefined;
    const starts: number[] = [], ends: number[] = [], steps: number[] = [];
    for (const d of x.t.shape) {
      const s = this.rng.chance(0.4) || d === 0 ? 0 : this.rng.int(0, d - 1);
      const e = this.empty && this.rng.chance(0.1) ? s : this.rng.chance(0.4) || d === 0 ? d : this.rng.int(s + 1, d);
      starts.push(s);
      ends.push(e);
      steps.push(this.rng.chance(0.6) ? 1 : this.rng.int(1, 3));
    }
    return this.emit('slice', [x], { starts, ends, steps }, [x.lo, x.hi]);
  }

  pad(): V | undefined {
    const x = this.pick((v) => v.t.shape.length >= 1) ?? this.pick(() => true);
    if (!x) return undefined;
    const before: number[] = [], after: number[] = [];
    for (const d of x.t.shape) {
      const room = Math.max(0, 6 - d);
      const p = this.rng.int(0, Math.min(2, room));
      before.push(p);
      after.push(this.rng.int(0, Math.min(2, room - p)));
    }
    const value = x.t.dtype === 'bool' ? this.rng.int(0, 1) : this.randomScalar(x.t.dtype === 'u32' ? 'u32' : isFloat(x.t.dtype) ? 'f32' : 'i32');
    return this.emit('pad', [x], { before, after, value }, [Math.min(x.lo, value), Math.max(x.hi, value)]);
  }

  concat(): V | undefined {
    const x = this.pick((v) => v.t.shape.length >= 1);
    if (!x) return undefined;
    const r = x.t.shape.length;
    const axis = this.rng.int(0, r - 1);
    const fits = (v: V): boolean =>
      v.t.dtype === x.t.dtype && v.t.shape.length === r && v.t.shape.every((d, i) => i === axis || d === x.t.shape[i]);
    const parts = [x];
    const count = this.rng.int(0, 2);
    for (let i = 0; i < count; i++) {
      const c = this.rng.float();
      const p = c < 0.5 ? this.pick(fits) : undefined;
      if (p) parts.push(p);
      else if (c < 0.75 && x.t.shape[axis]! > 0) {
        const d = x.t.shape[axis]!;
        const s = this.rng.int(0, d - 1);
        const st = x.t.shape.map(() => 0), en = [...x.t.shape], sp = x.t.shape.map(() => 1);
        st[axis] = s;
        en[axis] = this.rng.int(s + 1, d);
        parts.push(this.must('slice', [x], { starts: st, ends: en, steps: sp }, [x.lo, x.hi]));
      } else {
        const shape = [...x.t.shape];
        shape[axis] = this.empty && this.rng.chance(0.3) ? 0 : this.rng.int(1, 3);
        parts.push(this.valueOfShape(shape, x.t.dtype));
      }
    }
    return this.emit('concat', this.rng.shuffle(parts), { axis }, union(...parts));
  }

  matmul(): V | undefined {
    const x = this.rank2(this.isNumeric);
    if (!x) return undefined;
    const s = x.t.shape;
    const k = s[s.length - 1]!;
    const xb = s.slice(0, -2);
    const n = this.rng.int(1, 5);
    let y: V;
    if (this.rng.chance(0.25)) {
      y = this.must('permute', [x], { perm: [...xb.keys(), xb.length + 1, xb.length] }, [x.lo, x.hi]); // x @ xᵀ
    } else {
      const yb = this.rng.chance(0.4) ? [] : this.compatibleShape(xb);
      y = this.valueOfShape([...yb, k, n], x.t.dtype);
    }
    const bound = k * absMax(x) * absMax(y);
    return this.emit('matmul', [x, y], {}, [-bound, bound]);
  }

  gather(): V | undefined {
    const x = this.pick((v) => v.t.shape.length >= 1 && (v.t.dtype !== 'u32' || !this.finite));
    if (!x) return undefined;
    const axis = this.rng.int(0, x.t.shape.length - 1);
    if (x.t.shape[axis] === 0) return undefined; // no index is in range
    const idx = this.indices(x.t.shape[axis]!);
    return this.emit('gather', [x, idx], { axis }, [x.lo, x.hi]);
  }

  scatterAdd(): V | undefined {
    const base = this.pick((v) => v.t.shape.length >= 1 && this.isNumeric(v));
    if (!base) return undefined;
    const s = base.t.shape;
    const axis = this.rng.int(0, s.length - 1);
    if (s[axis] === 0) return undefined; // no index is in range
    const idx = this.indices(s[axis]!);
    const updShape = [...s.slice(0, axis), ...idx.t.shape, ...s.slice(axis + 1)];
    if (updShape.length > this.maxRank || numel(updShape) > MAX_NUMEL) return undefined;
    let upd: V;
    if (this.rng.chance(0.4)) {
      upd = this.must('gather', [base, idx], { axis }, [base.lo, base.hi]);
      if (isFloat(upd.t.dtype) && this.rng.chance(0.5)) upd = this.must('sin', [upd], {}, [-1, 1]);
    } else upd = this.valueOfShape(updShape, base.t.dtype);
    const c = numel(idx.t.shape);
    return this.emit('scatter_add', [base, idx, upd], { axis }, [base.lo + Math.min(0, c * upd.lo), base.hi + Math.max(0, c * upd.hi)]);
  }

  iota(): V | undefined {
    const shape = this.randomShape(1, 3);
    const axis = this.rng.int(0, shape.length - 1);
    const dtype = this.finite ? this.rng.pick(['i32', 'f32'] as const) : this.rng.pick(['i32', 'u32', 'f32', 'f16', 'bf16'] as const);
    return this.emit('iota', [], { shape, axis, dtype }, [0, Math.max(0, shape[axis]! - 1)]);
  }

  cast(): V | undefined {
    const x = this.pick((v) => v.t.dtype !== 'u32' || !this.finite);
    if (!x) return undefined;
    let dtype = this.anyDType();
    if (dtype === x.t.dtype && this.rng.chance(0.7)) dtype = this.anyDType();
    const range: Interval =
      dtype === 'bool' ? [0, 1]
      : isFloat(x.t.dtype) && !isFloat(dtype) ? [Math.trunc(x.lo), Math.trunc(x.hi)]
      : [x.lo, x.hi];
    return this.emit('cast', [x], { dtype }, range);
  }

  constantOp(): V | undefined {
    return this.constant(this.randomShape(0, 2), this.anyDType());
  }

  random(): V | undefined {
    const op = this.rng.pick(['random_uniform', 'random_normal'] as const);
    const stream = this.rng.pick([0, 1, 7, 4294967295, this.rng.int(0, 2 ** 31)]);
    return this.emit(op, [this.seedInput()], { shape: this.randomShape(0, 3), dtype: this.floatDType(), stream }, op === 'random_uniform' ? [0, 1] : [-8, 8]);
  }

  softmax(): V | undefined {
    const op = this.rng.pick(['softmax', 'log_softmax'] as const);
    const x = this.pick((v) => isFloat(v.t.dtype) && v.t.shape.length >= 1);
    if (!x) return undefined;
    const axis = this.rng.int(0, x.t.shape.length - 1);
    const n = x.t.shape[axis]!;
    if (n === 0) return undefined; // a ShapeError: softmax over an empty axis
    return this.emit(op, [x], { axis }, op === 'softmax' ? [0, 1] : [x.lo - x.hi - Math.log(n) - 1, 0]);
  }

  norm(): V | undefined {
    const op = this.rng.pick(['layer_norm', 'rms_norm'] as const);
    const x = this.pick((v) => isFloat(v.t.dtype) && v.t.shape.length >= 1);
    if (!x) return undefined;
    const eps = this.rng.pick(this.finite ? [1e-5, 1e-6, 0.001, 0.1] : [1e-5, 1e-6, 0.001, 0, 1e-12]);
    const b = Math.sqrt(x.t.shape[x.t.shape.length - 1]!) + 0.01;
    return this.emit(op, [x], { eps }, [-b, b]);
  }

  /** attention, and with `grad` also attention_grad on its result (wrt q, k or v). */
  attention(grad = false): V | undefined {
    const q = this.pick((v) => isFloat(v.t.dtype) && v.t.shape.length >= 2 && numel(v.t.shape) > 0);
    if (!q) return undefined;
    const s = q.t.shape;
    const r = s.length;
    const batch = s.slice(0, -2);
    const [sq, d] = s.slice(-2) as [number, number];
    let k: V;
    const c = this.rng.float();
    if (c < 0.3) k = q;
    else if (c < 0.5) {
      const st = s.map(() => 0), en = [...s], sp = s.map(() => 1);
      st[r - 2] = this.rng.int(0, sq - 1);
      k = this.must('slice', [q], { starts: st, ends: en, steps: sp }, [q.lo, q.hi]);
    } else k = this.valueOfShape([...batch, this.rng.int(1, 5), d], q.t.dtype);
    const sk = k.t.shape[r - 2]!;
    const v = this.rng.chance(0.3) ? k : this.valueOfShape([...batch, sk, this.rng.int(1, 5)], q.t.dtype);
    const scale = this.rng.chance(0.6) ? 1 / Math.sqrt(d) : this.finite ? this.rng.pick([0.5, 1, 0.125]) : this.rng.pick([0.5, 1, 0, -1, 2.5]);
    if (this.finite && Math.abs(scale) * d * absMax(q) * absMax(k) > LIMIT) return undefined;
    const causal = this.rng.chance(0.5);
    const out = this.emit('attention', [q, k, v], { causal, scale }, [v.lo, v.hi]);
    if (!grad || !out) return out;
    const dout = this.valueOfShape([...out.t.shape], out.t.dtype);
    const wrt = this.rng.int(0, 2);
    // Conservative bounds: dV = Pᵀ dO; dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O)); dQ = scale dS K; dK = scale dSᵀ Q.
    const dS = 2 * v.t.shape[r - 1]! * absMax(dout) * absMax(v);
    const bound =
      wrt === 2 ? sq * absMax(dout) : Math.abs(scale) * dS * (wrt === 0 ? sk * absMax(k) : sq * absMax(q));
    return this.emit('attention_grad', [q, k, v, out, dout], { causal, scale, wrt }, [-bound, bound]);
  }

  /** A shape of rank `rank` (>= 1) with at least one zero dimension. */
  emptyShape(rank: number): number[] {
    const shape = this.dims(rank, 3);
    shape[this.rng.int(0, rank - 1)] = 0;
    return shape;
  }

  /** x reshaped to rank 5..maxRank: its size's prime factors spread over the axes, the rest 1. */
  highRankReshape(x: V): V | undefined {
    const n = numel(x.t.shape);
    const rank = this.rng.int(5, this.maxRank);
    let shape: number[];
    if (n === 0) shape = this.emptyShape(rank);
    else {
      shape = new Array<number>(rank).fill(1);
      for (let m = n, p = 2; m > 1; ) {
        if (m % p === 0) {
          shape[this.rng.int(0, rank - 1)]! *= p;
          m /= p;
        } else p++;
      }
    }
    return this.emit('reshape', [x], { shape }, [x.lo, x.hi]);
  }

  /** One pad, slice, permute or elementwise op (with another value) of x, for viewChain. */
  viewStep(x: V): V | undefined {
    const r = x.t.shape.length;
    if (r === 0) return undefined;
    const c = this.rng.float();
    if (c < 0.4) {
      const before = x.t.shape.map(() => 0), after = x.t.shape.map(() => 0);
      for (let j = this.rng.int(1, 2); j > 0; j--) (this.rng.chance(0.5) ? before : after)[this.rng.int(0, r - 1)]! += this.rng.int(1, 2);
      const value = this.rng.pick([0, 1, -1]);
      return this.emit('pad', [x], { before, after, value }, [Math.min(x.lo, value), Math.max(x.hi, value)]);
    }
    if (c < 0.7) {
      const starts = x.t.shape.map(() => 0), ends = [...x.t.shape], steps = x.t.shape.map(() => 1);
      const a = this.rng.int(0, r - 1), d = x.t.shape[a]!;
      if (d > 1) {
        starts[a] = this.rng.int(0, d - 1);
        ends[a] = this.rng.int(starts[a]! + 1, d);
        steps[a] = this.rng.int(1, 3);
      }
      return this.emit('slice', [x], { starts, ends, steps }, [x.lo, x.hi]);
    }
    if (c < 0.85) return this.emit('permute', [x], { perm: this.rng.shuffle([...x.t.shape.keys()]) }, [x.lo, x.hi]);
    if (!isFloat(x.t.dtype) && x.t.dtype !== 'i32') return undefined;
    const p = this.valueOfShape(this.compatibleShape(x.t.shape), x.t.dtype);
    const bound = Math.max(absMax(x) + absMax(p), absMax(x) * absMax(p));
    return this.emit(this.rng.pick(['add', 'sub', 'mul'] as const), [x, p], {}, [-bound, bound]);
  }

  /**
   * A chain of view ops at rank 5..8: 3..6 rounds of a reshape followed by one or two pads, slices,
   * permutes or elementwise ops with another value, usually ending in a reshape to rank 2 and a
   * gather of rows. Each reshape after a pad nests the clamped pad indices inside div/mod of a linear
   * form of all axes: chains like these made index simplification exponential.
   */
  viewChain(): V | undefined {
    const ok = (v: V): boolean => numel(v.t.shape) <= 64 && v.t.dtype !== 'bool' && !(this.finite && v.t.dtype === 'u32');
    let x = this.pick(ok);
    if ((!x || this.rng.chance(0.3)) && this.canAddInput()) x = this.addInput(this.rng.pick([[4, 8], [2, 16], [32], [2, 2, 8], [3, 8]]), this.floatDType(), 'data');
    if (!x) return undefined;
    const rounds = this.rng.int(3, 6);
    for (let k = 0; k < rounds; k++) {
      x = this.highRankReshape(x) ?? x;
      for (let j = this.rng.int(1, 2); j > 0; j--) x = this.viewStep(x) ?? x;
    }
    const s = x.t.shape;
    if (s.length >= 1 && s[0]! > 0 && numel(s) > 0 && this.rng.chance(0.7)) {
      const rows = this.emit('reshape', [x], { shape: [s[0]!, numel(s) / s[0]!] }, [x.lo, x.hi]);
      if (rows) return this.emit('gather', [rows, this.indices(s[0]!)], { axis: 0 }, [x.lo, x.hi]) ?? rows;
    }
    return x;
  }

  // --- driver ------------------------------------------------------------------------------

  build(nodes: number): Graph {
    const nIn = this.rng.int(1, 3);
    for (let i = 0; i < nIn; i++) {
      const dtype = i === 0 || this.rng.chance(0.7) ? this.floatDType() : this.anyDType();
      this.addInput(this.randomShape(), dtype);
    }
    const families: [number, () => V | undefined][] = [
      [10, () => this.unary()], [10, () => this.binary()], [4, () => this.compare()], [2, () => this.logical()],
      [3, () => this.where()], [5, () => this.reduce()], [2, () => this.argmax()], [3, () => this.reshape()],
      [3, () => this.permute()], [2, () => this.broadcast()], [3, () => this.slice()], [2, () => this.pad()],
      [2, () => this.concat()], [4, () => this.matmul()], [2, () => this.gather()], [2, () => this.scatterAdd()],
      [1, () => this.iota()], [2, () => this.cast()], [1, () => this.constantOp()], [1, () => this.random()],
      [2, () => this.softmax()], [2, () => this.norm()], [2, () => this.attention()],
      [1, () => this.attention(true)],
      ...(this.chains ? [[12, () => this.viewChain()] as [number, () => V | undefined]] : []),
    ];
    const total = families.reduce((s, [w]) => s + w, 0);
    let made = 0;
    for (let attempt = 0; made < nodes && attempt < nodes * 20; attempt++) {
      let r = this.rng.float() * total;
      const [, f] = families.find(([w]) => (r -= w) < 0) ?? families[0]!;
      if (f()) made++;
    }
    const nodeVals = this.pool.filter((v) => !this.inputIds.has(v.id));
    const outs = new Set<V>();
    if (nodeVals.length) outs.add(nodeVals[nodeVals.length - 1]!);
    const nOut = this.rng.int(1, 3);
    while (outs.size < nOut) {
      const v = nodeVals.length && this.rng.chance(0.9) ? this.rng.pick(nodeVals) : this.rng.pick(this.pool);
      if (!outs.has(v)) outs.add(v);
      else if (outs.size >= this.pool.length) break;
    }
    const outNames = this.rng.shuffle(['out', 'loss', 'logits', 'y.0', 'aux.grad_norm', 'data', 'z']);
    [...outs].forEach((v, i) => this.b.output(outNames[i]!, v.id));
    return this.b.build();
  }
}

/** A valid random graph, the same for the same seed and options. */
export function randomGraph(seed: number, opts: RandomGraphOptions = {}): Graph {
  const g = new Generator(seed, opts);
  return g.build(opts.nodes ?? g.rng.int(4, 24));
}

/**
 * Random feeds for every input of `g`: u32 inputs get arbitrary u32 values (random seeds), i32 inputs
 * used as gather/scatter_add indices get values in range for every such use, other i32 inputs values
 * in FEED_INT_RANGE, bool inputs 0/1, float inputs uniform in FEED_FLOAT_RANGE (rounded to their dtype).
 */
export function randomFeeds(g: Graph, seed: number): Record<string, HostTensor> {
  const rng = new Rng(seed ^ 0x5eed);
  const indexBound = new Map<number, number>();
  for (const n of g.nodes) {
    if (n.op !== 'gather' && n.op !== 'scatter_add') continue;
    const idx = n.inputs[1]!;
    if (!g.input(idx)) continue;
    const dim = g.typeOf(n.inputs[0]!).shape[n.attrs.axis as number]!;
    indexBound.set(idx, Math.min(dim, indexBound.get(idx) ?? Infinity));
  }
  const feeds: Record<string, HostTensor> = {};
  for (const i of g.inputs) {
    const { dtype, shape } = i.type;
    const n = numel(shape);
    const bound = indexBound.get(i.id);
    const gen = (): number => {
      switch (dtype) {
        case 'u32':
          return rng.int(0, 2 ** 32 - 1);
        case 'i32':
          return bound !== undefined ? rng.int(0, bound - 1) : rng.int(FEED_INT_RANGE[0], FEED_INT_RANGE[1]);
        case 'bool':
          return rng.int(0, 1);
        default:
          return FEED_FLOAT_RANGE[0] + rng.float() * (FEED_FLOAT_RANGE[1] - FEED_FLOAT_RANGE[0]);
      }
    };
    feeds[i.name] = hostTensor(dtype, shape, Array.from({ length: n }, gen));
  }
  return feeds;
}

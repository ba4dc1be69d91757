/**
 * @file Test helpers for the op tests: run one op on the CPU backend, build host tensors without
 * going through the code under test, compare numbers (NaN- and -0-aware), and an independent
 * reference for rounding to f16 / bf16 (a table of every bit pattern, nearest with ties to even).
 */
import { expect } from 'vitest';
import { type Precision, runGraph } from '../../backends/cpu/interpreter.ts';
import type { DType } from '../../ir/dtype.ts';
import { type Graph, GraphBuilder } from '../../ir/graph.ts';
import type { Attrs, OpName } from '../../ir/ops.ts';
import type { HostTensor, TensorData } from '../../ir/tensor.ts';

// ---------------------------------------------------------------- host tensors

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A host tensor built directly (no rounding by the code under test). f64 → Float64Array storage for floats. */
export function T(dtype: DType, shape: readonly number[], values: ArrayLike<number>, f64 = false): HostTensor {
  const n = numelOf(shape);
  if (values.length !== n) throw new Error(`T: ${values.length} values for shape [${shape.join(',')}]`);
  let data: TensorData;
  switch (dtype) {
    case 'i32': data = new Int32Array(n); break;
    case 'u32': data = new Uint32Array(n); break;
    case 'bool': data = new Uint8Array(n); break;
    default: data = f64 ? new Float64Array(n) : new Float32Array(n);
  }
  for (let i = 0; i < n; i++) data[i] = values[i]!;
  if (dtype === 'f16' || dtype === 'bf16')
    for (let i = 0; i < n; i++)
      if (!isRepresentable(dtype, data[i]!)) throw new Error(`T: ${data[i]} is not representable in ${dtype}`);
  return { dtype, shape: [...shape], data };
}
export const F32 = (shape: readonly number[], values: ArrayLike<number>): HostTensor => T('f32', shape, values);
export const F64 = (shape: readonly number[], values: ArrayLike<number>): HostTensor => T('f32', shape, values, true);
export const I32 = (shape: readonly number[], values: ArrayLike<number>): HostTensor => T('i32', shape, values);
export const U32 = (shape: readonly number[], values: ArrayLike<number>): HostTensor => T('u32', shape, values);
export const B = (shape: readonly number[], values: ArrayLike<number>): HostTensor => T('bool', shape, values);

/** A graph with inputs a0..an (types of `inputs`) and one node `op`, output 'out'. */
export function opGraph(op: OpName, inputs: readonly HostTensor[], attrs: Attrs = {}): Graph {
  const b = new GraphBuilder(`test_${op}`);
  const ids = inputs.map((t, i) => b.input(`a${i}`, { shape: t.shape, dtype: t.dtype }));
  b.output('out', b.op(op, ids, attrs));
  return b.build();
}

/** Run one op on the CPU backend. */
export function runOp(op: OpName, inputs: readonly HostTensor[], attrs: Attrs = {}, precision: Precision = 'f32'): HostTensor {
  const feeds: Record<string, HostTensor> = {};
  inputs.forEach((t, i) => (feeds[`a${i}`] = t));
  const graph = opGraph(op, inputs, attrs);
  const out = runGraph(graph, feeds, { precision }).out!;
  if (recorded && precision === 'f32') recorded.push({ op, graph, feeds, out });
  return out;
}

/** One runOp call: the op's graph, its feeds and the CPU backend's result. */
export interface OpCall {
  readonly op: OpName;
  readonly graph: Graph;
  readonly feeds: Readonly<Record<string, HostTensor>>;
  readonly out: HostTensor;
}
let recorded: OpCall[] | undefined;

/** Record every f32-precision runOp call from now on (test/backends/wgslOps.test.ts replays them on other backends). */
export function recordOps(): OpCall[] {
  recorded ??= [];
  return recorded;
}

export function vals(t: HostTensor): number[] {
  return Array.from(t.data as ArrayLike<number>);
}

// ---------------------------------------------------------------- comparisons

function fmt(v: number): string {
  return Object.is(v, -0) ? '-0' : String(v);
}

/** Exact elementwise equality where NaN equals NaN and -0 differs from +0. */
export function expectExact(got: ArrayLike<number>, want: readonly number[], what = ''): void {
  const g = Array.from(got);
  expect(g.length, `${what} length`).toBe(want.length);
  const bad: string[] = [];
  for (let i = 0; i < want.length; i++) if (!Object.is(g[i], want[i])) bad.push(`[${i}] got ${fmt(g[i]!)} want ${fmt(want[i]!)}`);
  expect(bad, `${what} mismatches`).toEqual([]);
}

/** Elementwise |got - want| <= atol + rtol·|want| (NaN matches NaN; infinities must match exactly). */
export function expectClose(got: ArrayLike<number>, want: readonly number[], rtol: number, atol = 0, what = ''): void {
  const g = Array.from(got);
  expect(g.length, `${what} length`).toBe(want.length);
  const bad: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const [a, w] = [g[i]!, want[i]!];
    if (Number.isNaN(w) ? !Number.isNaN(a) : !Number.isFinite(w) ? a !== w : !(Math.abs(a - w) <= atol + rtol * Math.abs(w)))
      bad.push(`[${i}] got ${fmt(a)} want ${fmt(w)} (rel ${Math.abs(a - w) / Math.abs(w)})`);
  }
  expect(bad, `${what} mismatches`).toEqual([]);
}

// ---------------------------------------------------------------- narrow floats (independent reference)

/** Decode IEEE half bits. */
export function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1024 + m) * 2 ** (e - 25);
}
const dv = new DataView(new ArrayBuffer(4));
/** Decode bfloat16 bits (the top half of an f32). */
export function bf16Value(h: number): number {
  dv.setUint32(0, (h & 0xffff) << 16);
  return dv.getFloat32(0);
}

interface Table {
  /** Non-negative finite values in increasing order (bits 0..maxBits), then one virtual entry for +inf. */
  values: number[];
  bits: number[];
  infBits: number;
  byValue: Map<number, number>;
}
function makeTable(decode: (h: number) => number, maxBits: number, infBits: number, infAsValue: number): Table {
  const values: number[] = [];
  const bits: number[] = [];
  const byValue = new Map<number, number>();
  for (let h = 0; h <= maxBits; h++) {
    values.push(decode(h));
    bits.push(h);
    byValue.set(decode(h), h);
  }
  // +inf behaves like the next value after the largest finite one (max + ulp) for rounding purposes.
  values.push(infAsValue);
  bits.push(infBits);
  return { values, bits, infBits, byValue };
}
const F16_TABLE = makeTable(f16Value, 0x7bff, 0x7c00, 65536);
const BF16_TABLE = makeTable(bf16Value, 0x7f7f, 0x7f80, 2 ** 128);

function nearestBits(tab: Table, x: number, signBit: number, nanBits: number): number {
  if (Number.isNaN(x)) return nanBits;
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  const v = tab.values;
  if (a >= v[v.length - 1]!) return sign | tab.infBits;
  // largest index with v[i] <= a
  let lo = 0, hi = v.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (v[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const [vl, vh] = [v[lo]!, v[hi]!];
  const dl = a - vl, dh = vh - a; // both exact: table values have few significant bits
  let pick: number;
  if (dl < dh) pick = lo;
  else if (dh < dl) pick = hi;
  else pick = (tab.bits[lo]! & 1) === 0 ? lo : hi;
  return sign | tab.bits[pick]!;
}

/** Bits of the nearest f16 to x (ties to even; overflow to inf; NaN → 0x7e00). */
export function refF16Bits(x: number): number {
  return nearestBits(F16_TABLE, x, 0x8000, 0x7e00);
}
/** Bits of the nearest bf16 to x (ties to even; NaN → 0x7fc0). */
export function refBf16Bits(x: number): number {
  return nearestBits(BF16_TABLE, x, 0x8000, 0x7fc0);
}
export function refRoundF16(x: number): number {
  return f16Value(refF16Bits(x));
}
export function refRoundBf16(x: number): number {
  return bf16Value(refBf16Bits(x));
}
export function refRound(d: 'f32' | 'f16' | 'bf16', x: number): number {
  return d === 'f32' ? Math.fround(x) : d === 'f16' ? refRoundF16(x) : refRoundBf16(x);
}

/** Bits of a value that must be exactly representable in `d` (throws otherwise). */
export function bitsOf(d: 'f16' | 'bf16', v: number): number {
  if (Number.isNaN(v)) return d === 'f16' ? 0x7e00 : 0x7fc0;
  const tab = d === 'f16' ? F16_TABLE : BF16_TABLE;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | tab.infBits;
  const b = tab.byValue.get(a);
  if (b === undefined) throw new Error(`${v} is not representable in ${d}`);
  return sign | b;
}
export function isRepresentable(d: 'f16' | 'bf16', v: number): boolean {
  if (Number.isNaN(v) || !Number.isFinite(v)) return true;
  return (d === 'f16' ? F16_TABLE : BF16_TABLE).byValue.has(Math.abs(v));
}

// ---------------------------------------------------------------- naive index helpers

/** All multi-indices of `shape` in row-major order. */
export function multiIndices(shape: readonly number[]): number[][] {
  const out: number[][] = [];
  const n = numelOf(shape);
  for (let i = 0; i < n; i++) {
    const idx = new Array<number>(shape.length);
    let r = i;
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d] = r % shape[d]!;
      r = Math.floor(r / shape[d]!);
    }
    out.push(idx);
  }
  return out;
}
/** Row-major flat offset of a multi-index. */
export function offsetOf(shape: readonly number[], idx: readonly number[]): number {
  let o = 0;
  for (let d = 0; d < shape.length; d++) o = o * shape[d]! + idx[d]!;
  return o;
}
/** Deterministic pseudo-random test data in [lo, hi) (a small LCG; independent of Philox). */
export function testData(n: number, seed = 1, lo = -2, hi = 2): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(lo + ((hi - lo) * (s >>> 8)) / 2 ** 24);
  }
  return out;
}
/** testData rounded to f32 (so it can be fed to f32 inputs without changing). */
export function testDataF32(n: number, seed = 1, lo = -2, hi = 2): number[] {
  return testData(n, seed, lo, hi).map(Math.fround);
}

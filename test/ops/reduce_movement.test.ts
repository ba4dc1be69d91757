/**
 * @file CPU-backend (oracle) tests of reductions, argmax, movement ops (reshape, permute, broadcast,
 * slice, pad, concat), matmul, gather/scatter_add, iota and constant, against hand-computed
 * literals and naive nested-loop references written here.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { KilnError, ShapeError } from '../../ir/errors.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import type { Attrs, OpName } from '../../ir/ops.ts';
import {
  F32, F64, I32, T, U32, expectClose, expectExact, multiIndices, offsetOf, opGraph, refRound, runOp, testDataF32, vals,
} from './helpers.ts';

const NAN = NaN;
const INF = Infinity;
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

// ------------------------------------------------------------------------------------------ reductions

type RKind = 'sum' | 'max' | 'min' | 'mean';
/** Naive reduction: for every output index, loop over all reduced indices. */
function refReduce(kind: RKind, x: number[], shape: number[], axes: number[], keepdims: boolean): { shape: number[]; data: number[] } {
  const keptShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const redShape = axes.map((a) => shape[a]!);
  const data: number[] = [];
  for (const o of multiIndices(keptShape)) {
    let acc = kind === 'max' ? -INF : kind === 'min' ? INF : 0;
    let nan = false;
    for (const r of multiIndices(redShape)) {
      const idx = [...o];
      axes.forEach((a, k) => (idx[a] = r[k]!));
      const v = x[offsetOf(shape, idx)]!;
      if (Number.isNaN(v)) nan = true;
      if (kind === 'sum' || kind === 'mean') acc += v;
      else if (kind === 'max') acc = Math.max(acc, v);
      else acc = Math.min(acc, v);
    }
    if (kind === 'mean') acc /= prod(redShape);
    data.push(nan ? NAN : acc);
  }
  return { shape: keepdims ? keptShape : shape.filter((_, i) => !axes.includes(i)), data };
}

describe('reduce_sum / reduce_max / reduce_min / reduce_mean', () => {
  const shape = [2, 3, 4];
  const x = testDataF32(24, 7);
  const axesCases = [[0], [1], [2], [0, 2], [1, 2], [0, 1, 2], []];
  for (const kind of ['sum', 'max', 'min', 'mean'] as RKind[]) {
    for (const axes of axesCases) {
      for (const keepdims of [false, true]) {
        it(`reduce_${kind} axes=[${axes}] keepdims=${keepdims}`, () => {
          const out = runOp(`reduce_${kind}` as OpName, [F32(shape, x)], { axes, keepdims });
          const ref = refReduce(kind, x, shape, axes, keepdims);
          expect(out.shape).toEqual(ref.shape);
          expect(out.dtype).toBe('f32');
          // The oracle accumulates in double and rounds once.
          expectExact(vals(out), ref.data.map(Math.fround));
        });
      }
    }
  }

  it('hand-computed literals on a [2,3] tensor', () => {
    const m = F32([2, 3], [1, 2, 3, 4, 5, 6]);
    expectExact(vals(runOp('reduce_sum', [m], { axes: [0], keepdims: false })), [5, 7, 9]);
    expectExact(vals(runOp('reduce_sum', [m], { axes: [1], keepdims: false })), [6, 15]);
    expectExact(vals(runOp('reduce_sum', [m], { axes: [0, 1], keepdims: false })), [21]);
    expectExact(vals(runOp('reduce_mean', [m], { axes: [1], keepdims: true })), [2, 5]);
    expect(runOp('reduce_mean', [m], { axes: [1], keepdims: true }).shape).toEqual([2, 1]);
    expectExact(vals(runOp('reduce_max', [m], { axes: [0], keepdims: false })), [4, 5, 6]);
    expectExact(vals(runOp('reduce_min', [m], { axes: [1], keepdims: false })), [1, 4]);
    expect(runOp('reduce_sum', [m], { axes: [0, 1], keepdims: false }).shape).toEqual([]);
    expect(runOp('reduce_sum', [m], { axes: [0, 1], keepdims: true }).shape).toEqual([1, 1]);
  });

  it('rank-0 input with no axes is the identity', () => {
    const out = runOp('reduce_sum', [F32([], [2.5])], { axes: [], keepdims: false });
    expect(out.shape).toEqual([]);
    expectExact(vals(out), [2.5]);
  });

  it('reduce_max / reduce_min propagate NaN (wherever it is)', () => {
    const x = F32([4, 3], [1, NAN, 3, NAN, 1, 2, 5, 6, NAN, -INF, -INF, -INF]);
    expectExact(vals(runOp('reduce_max', [x], { axes: [1], keepdims: false })), [NAN, NAN, NAN, -INF]);
    expectExact(vals(runOp('reduce_min', [x], { axes: [1], keepdims: false })), [NAN, NAN, NAN, -INF]);
    expectExact(vals(runOp('reduce_max', [x], { axes: [0], keepdims: false })), [NAN, NAN, NAN]);
    expectExact(vals(runOp('reduce_sum', [x], { axes: [1], keepdims: false })), [NAN, NAN, NAN, -INF]);
  });

  it('inf handling in sums and means', () => {
    const x = F32([3, 2], [INF, 1, INF, -INF, 3e38, 3e38]);
    expectExact(vals(runOp('reduce_sum', [x], { axes: [1], keepdims: false })), [INF, NAN, INF]);
    // 3e38 + 3e38 overflows f32 but the mean (accumulated in double) does not
    expectExact(vals(runOp('reduce_mean', [x], { axes: [1], keepdims: false })), [INF, NAN, Math.fround(3e38)]);
  });

  it('sums accumulate in double and round once to f32', () => {
    // 2^24 + 1 + 1 = 2^24 + 2 exactly; sequential f32 accumulation would give 2^24.
    expectExact(vals(runOp('reduce_sum', [F32([3], [2 ** 24, 1, 1])], { axes: [0], keepdims: false })), [2 ** 24 + 2]);
  });

  it('integer reductions: i32 sum wraps, u32 sum wraps, max/min signed vs unsigned', () => {
    const i = I32([2, 2], [2147483647, 1, -5, -7]);
    const s = runOp('reduce_sum', [i], { axes: [1], keepdims: false });
    expect(s.dtype).toBe('i32');
    expectExact(vals(s), [-2147483648, -12]);
    expectExact(vals(runOp('reduce_max', [i], { axes: [1], keepdims: false })), [2147483647, -5]);
    expectExact(vals(runOp('reduce_min', [i], { axes: [0, 1], keepdims: false })), [-7]);
    const u = U32([3], [4294967295, 1, 2147483648]);
    expectExact(vals(runOp('reduce_sum', [u], { axes: [0], keepdims: false })), [2147483648]);
    expectExact(vals(runOp('reduce_max', [u], { axes: [0], keepdims: false })), [4294967295]);
    expectExact(vals(runOp('reduce_min', [u], { axes: [0], keepdims: false })), [1]);
  });

  it('reduce_sum over an empty axis gives 0; reduce_mean over an empty axis gives NaN (0/0)', () => {
    const e = F32([0, 3], []);
    const s = runOp('reduce_sum', [e], { axes: [0], keepdims: false });
    expect(s.shape).toEqual([3]);
    expectExact(vals(s), [0, 0, 0]);
    const m = runOp('reduce_mean', [e], { axes: [0], keepdims: true });
    expect(m.shape).toEqual([1, 3]);
    expectExact(vals(m), [NAN, NAN, NAN]);
    // reducing the non-empty axis of a zero-size tensor gives a zero-size result
    const z = runOp('reduce_max', [e], { axes: [1], keepdims: false });
    expect(z.shape).toEqual([0]);
  });

  it('reduce_max / reduce_min / argmax of an empty axis are ShapeErrors', () => {
    const b = new GraphBuilder('g');
    const e = b.input('e', { shape: [2, 0], dtype: 'f32' });
    expect(() => b.op('reduce_max', [e], { axes: [1], keepdims: false })).toThrow('reduce_max with operands f32[2,0]: cannot reduce an empty axis');
    expect(() => b.op('reduce_min', [e], { axes: [0, 1], keepdims: false })).toThrow('reduce_min with operands f32[2,0]: cannot reduce an empty axis');
    expect(() => b.op('argmax', [e], { axis: 1, keepdims: false })).toThrow('argmax with operands f32[2,0]: cannot reduce an empty axis');
  });

  it('f64 mode keeps the double sum / mean', () => {
    const x = F64([3], [0.1, 0.2, 0.3]);
    const s = runOp('reduce_sum', [x], { axes: [0], keepdims: false }, 'f64');
    expect(s.data).toBeInstanceOf(Float64Array);
    expectExact(vals(s), [0.1 + 0.2 + 0.3]); // 0.6000000000000001
    expectClose(vals(runOp('reduce_mean', [x], { axes: [0], keepdims: false }, 'f64')), [0.2], 1e-15);
    expectExact(vals(runOp('reduce_max', [x], { axes: [0], keepdims: false }, 'f64')), [0.3]);
  });

  it('f16 mean is rounded to f16', () => {
    const out = runOp('reduce_mean', [T('f16', [3], [1, 1, 2])], { axes: [0], keepdims: false });
    expect(out.dtype).toBe('f16');
    expectExact(vals(out), [refRound('f16', 4 / 3)]);
  });
});

describe('argmax', () => {
  it('first occurrence of the maximum, along each axis', () => {
    const x = F32([3, 4], [1, 3, 3, 2, 5, 5, 5, 5, -1, -2, 0, 0]);
    const a1 = runOp('argmax', [x], { axis: 1, keepdims: false });
    expect(a1.dtype).toBe('i32');
    expect(a1.data).toBeInstanceOf(Int32Array);
    expect(a1.shape).toEqual([3]);
    expectExact(vals(a1), [1, 0, 2]);
    const a0 = runOp('argmax', [x], { axis: 0, keepdims: true });
    expect(a0.shape).toEqual([1, 4]);
    expectExact(vals(a0), [1, 1, 1, 1]);
  });
  it('NaN counts as the maximum (first NaN wins)', () => {
    const x = F32([3, 4], [1, NAN, 5, NAN, NAN, 9, 9, 9, 2, 7, 7, NAN]);
    expectExact(vals(runOp('argmax', [x], { axis: 1, keepdims: false })), [1, 0, 3]);
  });
  it('all -inf or all equal gives 0; ints and a middle axis', () => {
    expectExact(vals(runOp('argmax', [F32([2, 2], [-INF, -INF, 4, 4])], { axis: 1, keepdims: false })), [0, 0]);
    const xi = I32([2, 3, 2], [0, 9, 5, 9, -1, 9, 7, -3, 7, 0, 2, 8]);
    // axis 1 of [2,3,2]: for (0,·,0): 0,5,-1 → 1; (0,·,1): 9,9,9 → 0; (1,·,0): 7,7,2 → 0; (1,·,1): -3,0,8 → 2
    expectExact(vals(runOp('argmax', [xi], { axis: 1, keepdims: false })), [1, 0, 0, 2]);
    expectExact(vals(runOp('argmax', [U32([3], [1, 4294967295, 2])], { axis: 0, keepdims: false })), [1]);
  });
  it('naive reference on random data, all axes of a rank-3 tensor', () => {
    const shape = [3, 4, 5];
    const x = testDataF32(60, 11).map((v) => Math.round(v * 2) / 2); // many ties
    for (let axis = 0; axis < 3; axis++) {
      const outShape = shape.filter((_, i) => i !== axis);
      const want = multiIndices(outShape).map((o) => {
        let best = 0, bv = -INF;
        for (let k = 0; k < shape[axis]!; k++) {
          const idx = [...o];
          idx.splice(axis, 0, k);
          const v = x[offsetOf(shape, idx)]!;
          if (v > bv) [best, bv] = [k, v];
        }
        return best;
      });
      expectExact(vals(runOp('argmax', [F32(shape, x)], { axis, keepdims: false })), want, `axis ${axis}`);
    }
  });
});

// ------------------------------------------------------------------------------------------ movement

describe('reshape', () => {
  it('keeps row-major order', () => {
    const x = F32([2, 3], [1, 2, 3, 4, 5, 6]);
    for (const s of [[3, 2], [6], [1, 6, 1], [2, 1, 3]]) {
      const out = runOp('reshape', [x], { shape: s });
      expect(out.shape).toEqual(s);
      expectExact(vals(out), [1, 2, 3, 4, 5, 6]);
    }
    const sc = runOp('reshape', [F32([1, 1], [7])], { shape: [] });
    expect(sc.shape).toEqual([]);
    expectExact(vals(sc), [7]);
    const z = runOp('reshape', [F32([0, 4], [])], { shape: [2, 0, 3] });
    expect(z.shape).toEqual([2, 0, 3]);
  });
  it('works for ints/bools and in f64 mode', () => {
    expectExact(vals(runOp('reshape', [I32([2, 2], [1, -2, 3, -4])], { shape: [4] })), [1, -2, 3, -4]);
    const f = runOp('reshape', [F64([2], [0.1, 0.2])], { shape: [1, 2] }, 'f64');
    expect(f.data).toBeInstanceOf(Float64Array);
    expectExact(vals(f), [0.1, 0.2]);
  });
});

function refPermute(x: number[], shape: number[], perm: number[]): number[] {
  const outShape = perm.map((p) => shape[p]!);
  return multiIndices(outShape).map((o) => {
    const idx = new Array<number>(shape.length);
    perm.forEach((p, i) => (idx[p] = o[i]!));
    return x[offsetOf(shape, idx)]!;
  });
}

describe('permute', () => {
  const cases: [number[], number[]][] = [
    [[], []],
    [[5], [0]],
    [[2, 3], [1, 0]],
    [[2, 3, 4], [2, 0, 1]],
    [[2, 3, 4], [1, 2, 0]],
    [[2, 3, 4, 5], [3, 1, 0, 2]],
    [[2, 1, 3, 2], [0, 3, 2, 1]],
    [[0, 3], [1, 0]],
  ];
  for (const [shape, perm] of cases) {
    it(`rank ${shape.length}: [${shape}] perm [${perm}]`, () => {
      const x = Array.from({ length: prod(shape) }, (_, i) => i);
      const out = runOp('permute', [F32(shape, x)], { perm });
      expect(out.shape).toEqual(perm.map((p) => shape[p]!));
      expectExact(vals(out), refPermute(x, shape, perm));
    });
  }
  it('hand-computed transpose', () => {
    expectExact(vals(runOp('permute', [I32([2, 3], [1, 2, 3, 4, 5, 6])], { perm: [1, 0] })), [1, 4, 2, 5, 3, 6]);
  });
});

describe('broadcast', () => {
  it('[3,1] → [2,3,4]', () => {
    const out = runOp('broadcast', [F32([3, 1], [1, 2, 3])], { shape: [2, 3, 4] });
    expect(out.shape).toEqual([2, 3, 4]);
    expectExact(vals(out), multiIndices([2, 3, 4]).map(([, j]) => j! + 1));
  });
  it('scalar → [2,2], [1,3] → [0,3], identity, ints', () => {
    expectExact(vals(runOp('broadcast', [F32([], [5])], { shape: [2, 2] })), [5, 5, 5, 5]);
    const z = runOp('broadcast', [F32([1, 3], [1, 2, 3])], { shape: [0, 3] });
    expect(z.shape).toEqual([0, 3]);
    expect(z.data.length).toBe(0);
    expectExact(vals(runOp('broadcast', [I32([2], [1, 2])], { shape: [2] })), [1, 2]);
    expectExact(vals(runOp('broadcast', [I32([2], [1, -2])], { shape: [3, 2] })), [1, -2, 1, -2, 1, -2]);
  });
});

describe('slice', () => {
  const x10 = Array.from({ length: 10 }, (_, i) => i);
  it('1-D with steps (incl. non-divisible ranges)', () => {
    const s = (st: number, en: number, sp: number) => vals(runOp('slice', [F32([10], x10)], { starts: [st], ends: [en], steps: [sp] }));
    expectExact(s(1, 8, 3), [1, 4, 7]);
    expectExact(s(1, 9, 3), [1, 4, 7]);
    expectExact(s(1, 10, 3), [1, 4, 7]);
    expectExact(s(0, 10, 1), x10);
    expectExact(s(9, 10, 5), [9]);
    expectExact(s(0, 10, 20), [0]);
  });
  it('empty results', () => {
    const e = runOp('slice', [F32([10], x10)], { starts: [4], ends: [4], steps: [1] });
    expect(e.shape).toEqual([0]);
    const e2 = runOp('slice', [F32([3], [1, 2, 3])], { starts: [3], ends: [3], steps: [2] });
    expect(e2.shape).toEqual([0]);
    const e3 = runOp('slice', [F32([2, 3], [1, 2, 3, 4, 5, 6])], { starts: [0, 1], ends: [2, 1], steps: [1, 1] });
    expect(e3.shape).toEqual([2, 0]);
  });
  it('2-D and 3-D vs naive reference', () => {
    const shape = [4, 5, 6];
    const x = Array.from({ length: 120 }, (_, i) => i);
    const [starts, ends, steps] = [[1, 0, 5], [4, 5, 6], [2, 2, 3]];
    const out = runOp('slice', [F32(shape, x)], { starts, ends, steps });
    const outShape = starts.map((s, i) => Math.ceil((ends[i]! - s) / steps[i]!));
    expect(out.shape).toEqual([2, 3, 1]);
    expect(outShape).toEqual([2, 3, 1]);
    expectExact(vals(out), multiIndices(outShape).map((o) => x[offsetOf(shape, o.map((v, i) => starts[i]! + v * steps[i]!))]!));
    expectExact(vals(runOp('slice', [I32([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9])], { starts: [0, 0], ends: [3, 3], steps: [2, 2] })), [1, 3, 7, 9]);
  });
});

describe('pad', () => {
  it('2-D with a fill value (hand-computed)', () => {
    const out = runOp('pad', [F32([2, 2], [1, 2, 3, 4])], { before: [1, 0], after: [0, 2], value: -1 });
    expect(out.shape).toEqual([3, 4]);
    expectExact(vals(out), [-1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1]);
  });
  it('zeros, NaN and inf fill; zero-size input; rank 0', () => {
    expectExact(vals(runOp('pad', [F32([2], [5, 6])], { before: [2], after: [1], value: 0 })), [0, 0, 5, 6, 0]);
    expectExact(vals(runOp('pad', [F32([1], [5])], { before: [1], after: [1], value: NAN })), [NAN, 5, NAN]);
    expectExact(vals(runOp('pad', [F32([1], [5])], { before: [0], after: [1], value: -INF })), [5, -INF]);
    const z = runOp('pad', [F32([0, 2], [])], { before: [1, 0], after: [1, 1], value: 3 });
    expect(z.shape).toEqual([2, 3]);
    expectExact(vals(z), [3, 3, 3, 3, 3, 3]);
    expectExact(vals(runOp('pad', [F32([], [9])], { before: [], after: [], value: 1 })), [9]);
  });
  it('fill value is converted to the dtype (int truncates, f16 rounds)', () => {
    expectExact(vals(runOp('pad', [I32([1], [5])], { before: [1], after: [1], value: 7 })), [7, 5, 7]);
    expectExact(vals(runOp('pad', [I32([1], [5])], { before: [1], after: [0], value: -2.7 })), [-2, 5]);
    expectExact(vals(runOp('pad', [T('f16', [1], [1])], { before: [1], after: [0], value: 0.1 })), [refRound('f16', 0.1), 1]);
  });
  it('3-D vs naive reference', () => {
    const shape = [2, 3, 2];
    const x = Array.from({ length: 12 }, (_, i) => i + 1);
    const [before, after] = [[1, 0, 2], [0, 2, 1]];
    const outShape = shape.map((d, i) => d + before[i]! + after[i]!);
    const out = runOp('pad', [F32(shape, x)], { before, after, value: 0.5 });
    expect(out.shape).toEqual(outShape);
    const want = multiIndices(outShape).map((o) => {
      const src = o.map((v, i) => v - before[i]!);
      return src.every((v, i) => v >= 0 && v < shape[i]!) ? x[offsetOf(shape, src)]! : 0.5;
    });
    expectExact(vals(out), want);
  });
});

describe('concat', () => {
  it('three operands on axis 0 and axis 1', () => {
    const a = F32([1, 2], [1, 2]), b = F32([2, 2], [3, 4, 5, 6]), c = F32([1, 2], [7, 8]);
    const out = runOp('concat', [a, b, c], { axis: 0 });
    expect(out.shape).toEqual([4, 2]);
    expectExact(vals(out), [1, 2, 3, 4, 5, 6, 7, 8]);
    const p = F32([2, 1], [1, 2]), q = F32([2, 3], [3, 4, 5, 6, 7, 8]), r = F32([2, 2], [9, 10, 11, 12]);
    const o1 = runOp('concat', [p, q, r], { axis: 1 });
    expect(o1.shape).toEqual([2, 6]);
    expectExact(vals(o1), [1, 3, 4, 5, 9, 10, 2, 6, 7, 8, 11, 12]);
  });
  it('zero-size parts are skipped', () => {
    const out = runOp('concat', [F32([2, 0], []), F32([2, 2], [1, 2, 3, 4]), F32([2, 0], [])], { axis: 1 });
    expect(out.shape).toEqual([2, 2]);
    expectExact(vals(out), [1, 2, 3, 4]);
    const all = runOp('concat', [F32([0, 3], []), F32([0, 3], []), F32([0, 3], [])], { axis: 0 });
    expect(all.shape).toEqual([0, 3]);
    const mid = runOp('concat', [F32([1, 2], [1, 2]), F32([0, 2], []), F32([1, 2], [3, 4])], { axis: 0 });
    expectExact(vals(mid), [1, 2, 3, 4]);
  });
  it('middle axis of rank 3 vs naive; single operand; ints', () => {
    const sa = [2, 1, 2], sb = [2, 3, 2];
    const a = Array.from({ length: 4 }, (_, i) => 100 + i), b = Array.from({ length: 12 }, (_, i) => i);
    const out = runOp('concat', [I32(sa, a), I32(sb, b)], { axis: 1 });
    expect(out.shape).toEqual([2, 4, 2]);
    const want = multiIndices([2, 4, 2]).map(([i, j, k]) => (j! < 1 ? a[offsetOf(sa, [i!, j!, k!])]! : b[offsetOf(sb, [i!, j! - 1, k!])]!));
    expectExact(vals(out), want);
    expectExact(vals(runOp('concat', [F32([2], [1, 2])], { axis: 0 })), [1, 2]);
  });
});

// ------------------------------------------------------------------------------------------ matmul

/** Naive batched matmul with batch broadcasting. */
function refMatmul(a: number[], as: number[], b: number[], bs: number[], int = false): { shape: number[]; data: number[] } {
  const [m, k] = as.slice(-2) as [number, number];
  const n = bs[bs.length - 1]!;
  const ab = as.slice(0, -2), bb = bs.slice(0, -2);
  const r = Math.max(ab.length, bb.length);
  const pa = [...Array(r - ab.length).fill(1), ...ab], pb = [...Array(r - bb.length).fill(1), ...bb];
  const batch = pa.map((d, i) => (d === 1 ? pb[i]! : d));
  const data: number[] = [];
  for (const bi of multiIndices(batch)) {
    const ia = offsetOf(pa, bi.map((v, i) => (pa[i] === 1 ? 0 : v))) * m * k;
    const ib = offsetOf(pb, bi.map((v, i) => (pb[i] === 1 ? 0 : v))) * k * n;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) acc = int ? (acc + Math.imul(a[ia + i * k + p]!, b[ib + p * n + j]!)) | 0 : acc + a[ia + i * k + p]! * b[ib + p * n + j]!;
        data.push(acc);
      }
  }
  return { shape: [...batch, m, n], data };
}

describe('matmul', () => {
  it('2-D hand-computed', () => {
    const out = runOp('matmul', [F32([2, 3], [1, 2, 3, 4, 5, 6]), F32([3, 2], [7, 8, 9, 10, 11, 12])]);
    expect(out.shape).toEqual([2, 2]);
    expectExact(vals(out), [58, 64, 139, 154]);
  });
  const cases: [number[], number[]][] = [
    [[3, 4], [4, 5]],
    [[2, 3, 4], [2, 4, 5]],
    [[2, 1, 3, 4], [5, 4, 2]],
    [[1, 3, 4], [2, 2, 4, 2]],
    [[3, 4], [2, 4, 1]],
    [[1, 1], [1, 7]],
  ];
  for (const [as, bs] of cases) {
    it(`[${as}] x [${bs}] vs naive`, () => {
      const a = testDataF32(prod(as), 21), b = testDataF32(prod(bs), 22);
      const out = runOp('matmul', [F32(as, a), F32(bs, b)]);
      const ref = refMatmul(a, as, b, bs);
      expect(out.shape).toEqual(ref.shape);
      expectClose(vals(out), ref.data.map(Math.fround), 1e-6, 1e-6);
      const o64 = runOp('matmul', [F64(as, a), F64(bs, b)], {}, 'f64');
      expect(o64.data).toBeInstanceOf(Float64Array);
      expectClose(vals(o64), ref.data, 1e-12, 1e-15);
    });
  }
  it('batch broadcasting [2,1,3,4] x [5,4,2] → [2,5,3,2] with exact integers', () => {
    const as = [2, 1, 3, 4], bs = [5, 4, 2];
    const a = Array.from({ length: 24 }, (_, i) => (i % 7) - 3), b = Array.from({ length: 40 }, (_, i) => (i % 5) - 2);
    const out = runOp('matmul', [F32(as, a), F32(bs, b)]);
    expect(out.shape).toEqual([2, 5, 3, 2]);
    expectExact(vals(out), refMatmul(a, as, b, bs).data);
  });
  it('i32 matmul wraps modulo 2^32; u32 too', () => {
    const out = runOp('matmul', [I32([2, 2], [65536, 2147483647, 3, -4]), I32([2, 2], [65536, 1, 1, 2])]);
    expect(out.dtype).toBe('i32');
    // row 0: [65536·65536 + 2147483647·1, 65536·1 + 2147483647·2] = [2^32 + 2^31 - 1, 65536 + 2^32 - 2] mod 2^32
    expectExact(vals(out), [2147483647, 65534, 3 * 65536 - 4, 3 - 8]);
    const a = Array.from({ length: 12 }, (_, i) => (i * 2654435761) | 0), b = Array.from({ length: 8 }, (_, i) => (i * 40503 + 7) | 0);
    expectExact(vals(runOp('matmul', [I32([3, 4], a), I32([4, 2], b)])), refMatmul(a, [3, 4], b, [4, 2], true).data);
    const u = runOp('matmul', [U32([1, 2], [4294967295, 2]), U32([2, 1], [2, 3])]);
    expectExact(vals(u), [4], 'u32'); // -2 + 6 mod 2^32
  });
  it('k = 0 gives zeros; m = 0 gives an empty result', () => {
    const z = runOp('matmul', [F32([2, 0], []), F32([0, 3], [])]);
    expect(z.shape).toEqual([2, 3]);
    expectExact(vals(z), [0, 0, 0, 0, 0, 0]);
    expect(runOp('matmul', [F32([0, 2], []), F32([2, 3], [1, 2, 3, 4, 5, 6])]).shape).toEqual([0, 3]);
    expect(runOp('matmul', [F32([0, 2, 2], []), F32([2, 1], [1, 2])]).shape).toEqual([0, 2, 1]);
  });
  it('f32 result is the double dot product rounded once; f16 likewise', () => {
    const out = runOp('matmul', [F32([1, 3], [2 ** 24, 1, 1]), F32([3, 1], [1, 1, 1])]);
    expectExact(vals(out), [2 ** 24 + 2]);
    const h = runOp('matmul', [T('f16', [1, 2], [1, 2 ** -11]), T('f16', [2, 1], [1, 1 + 2 ** -10])]);
    expect(h.dtype).toBe('f16');
    expectExact(vals(h), [refRound('f16', 1 + 2 ** -11 + 2 ** -21)]);
  });
  it('NaN and inf propagate', () => {
    expectExact(vals(runOp('matmul', [F32([1, 2], [NAN, 0]), F32([2, 1], [1, 1])])), [NAN]);
    expectExact(vals(runOp('matmul', [F32([1, 2], [INF, 1]), F32([2, 1], [0, 1])])), [NAN]);
  });
});

// ------------------------------------------------------------------------------------------ gather / scatter_add

function refGather(x: number[], xs: number[], idx: number[], is: number[], axis: number): { shape: number[]; data: number[] } {
  const shape = [...xs.slice(0, axis), ...is, ...xs.slice(axis + 1)];
  const data = multiIndices(shape).map((o) => {
    const pre = o.slice(0, axis), mid = o.slice(axis, axis + is.length), post = o.slice(axis + is.length);
    return x[offsetOf(xs, [...pre, idx[offsetOf(is, mid)]!, ...post])]!;
  });
  return { shape, data };
}

describe('gather', () => {
  it('axis 0 with repeated indices (hand-computed)', () => {
    const out = runOp('gather', [F32([4, 2], [0, 1, 10, 11, 20, 21, 30, 31]), I32([3], [3, 0, 3])], { axis: 0 });
    expect(out.shape).toEqual([3, 2]);
    expectExact(vals(out), [30, 31, 0, 1, 30, 31]);
  });
  it('middle axis with 2-D indices vs naive', () => {
    const xs = [2, 3, 2], is = [2, 2];
    const x = Array.from({ length: 12 }, (_, i) => i * 1.5);
    const idx = [2, 0, 1, 2];
    const out = runOp('gather', [F32(xs, x), I32(is, idx)], { axis: 1 });
    const ref = refGather(x, xs, idx, is, 1);
    expect(out.shape).toEqual([2, 2, 2, 2]);
    expectExact(vals(out), ref.data);
  });
  it('last axis, scalar index, empty indices', () => {
    const x = I32([2, 3], [1, 2, 3, 4, 5, 6]);
    const last = runOp('gather', [x, I32([2], [2, 2])], { axis: 1 });
    expect(last.shape).toEqual([2, 2]);
    expectExact(vals(last), [3, 3, 6, 6]);
    const sc = runOp('gather', [x, I32([], [1])], { axis: 0 });
    expect(sc.shape).toEqual([3]);
    expectExact(vals(sc), [4, 5, 6]);
    const e = runOp('gather', [x, I32([0], [])], { axis: 1 });
    expect(e.shape).toEqual([2, 0]);
  });
  it('out-of-range and negative indices are errors naming the index', () => {
    const x = F32([3], [1, 2, 3]);
    expect(() => runOp('gather', [x, I32([2], [0, 3])], { axis: 0 })).toThrow('gather: index 3 is out of range for an axis of size 3');
    expect(() => runOp('gather', [x, I32([1], [-1])], { axis: 0 })).toThrow(KilnError);
    expect(() => runOp('gather', [x, I32([1], [-1])], { axis: 0 })).toThrow('index -1 is out of range');
  });
});

describe('scatter_add', () => {
  it('axis 0, repeated indices accumulate (hand-computed)', () => {
    const out = runOp('scatter_add', [F32([4], [0, 0, 0, 0]), I32([4], [0, 2, 0, 0]), F32([4], [1, 2, 3, 4])], { axis: 0 });
    expectExact(vals(out), [8, 0, 2, 0]);
    const out2 = runOp('scatter_add', [F32([3, 2], [1, 1, 1, 1, 1, 1]), I32([2], [2, 2]), F32([2, 2], [1, 2, 3, 4])], { axis: 0 });
    expectExact(vals(out2), [1, 1, 1, 1, 5, 7]);
  });
  it('middle axis with 2-D indices vs naive (the transpose of gather)', () => {
    const bs = [2, 3, 2], is = [2, 2];
    const base = Array.from({ length: 12 }, (_, i) => i);
    const idx = [1, 1, 0, 1];
    const us = [2, 2, 2, 2];
    const upd = Array.from({ length: 16 }, (_, i) => (i + 1) * 0.25);
    const want = [...base];
    for (const o of multiIndices(us)) {
      const dst = [o[0]!, idx[offsetOf(is, [o[1]!, o[2]!])]!, o[3]!];
      want[offsetOf(bs, dst)]! += upd[offsetOf(us, o)]!;
    }
    const out = runOp('scatter_add', [F32(bs, base), I32(is, idx), F32(us, upd)], { axis: 1 });
    expect(out.shape).toEqual(bs);
    expectExact(vals(out), want);
  });
  it('i32 scatter_add and empty updates', () => {
    expectExact(vals(runOp('scatter_add', [I32([2], [2147483647, 0]), I32([2], [0, 1]), I32([2], [1, -1])], { axis: 0 })), [-2147483648, -1]);
    expectExact(vals(runOp('scatter_add', [F32([2], [1, 2]), I32([0], []), F32([0], [])], { axis: 0 })), [1, 2]);
  });
  it('accumulates in double and rounds once (order-independent f32 result)', () => {
    const out = runOp('scatter_add', [F32([1], [2 ** 24]), I32([2], [0, 0]), F32([2], [1, 1])], { axis: 0 });
    expectExact(vals(out), [2 ** 24 + 2]);
  });
  it('out-of-range index is an error', () => {
    expect(() => runOp('scatter_add', [F32([2], [0, 0]), I32([1], [2]), F32([1], [1])], { axis: 0 })).toThrow(
      'scatter_add: index 2 is out of range for an axis of size 2',
    );
  });
  it('runtime index errors carry the node location when it has one', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', { shape: [3], dtype: 'f32' });
    const i = b.input('i', { shape: [1], dtype: 'i32' });
    b.output('y', b.op('gather', [x, i], { axis: 0 }, 'models/toy.ts:12:3'));
    expect(() => runGraph(b.build(), { x: F32([3], [1, 2, 3]), i: I32([1], [5]) })).toThrow(
      'gather: index 5 is out of range for an axis of size 3 (at models/toy.ts:12:3)',
    );
  });
  it('f64 mode gather/scatter_add keep doubles', () => {
    const g = runOp('gather', [F64([2], [0.1, 0.2]), I32([1], [1])], { axis: 0 }, 'f64');
    expect(g.data).toBeInstanceOf(Float64Array);
    expectExact(vals(g), [0.2]);
    const s = runOp('scatter_add', [F64([1], [0.1]), I32([1], [0]), F64([1], [0.2])], { axis: 0 }, 'f64');
    expectExact(vals(s), [0.30000000000000004]);
  });
});

// ------------------------------------------------------------------------------------------ iota / constant

function source(op: OpName, attrs: Attrs, precision: 'f32' | 'f64' = 'f32') {
  return runGraph(opGraph(op, [], attrs), {}, { precision }).out!;
}

describe('iota', () => {
  it('along each axis', () => {
    expectExact(vals(source('iota', { shape: [2, 3], axis: 0, dtype: 'i32' })), [0, 0, 0, 1, 1, 1]);
    expectExact(vals(source('iota', { shape: [2, 3], axis: 1, dtype: 'i32' })), [0, 1, 2, 0, 1, 2]);
    const t = source('iota', { shape: [2, 3, 2], axis: 1, dtype: 'f32' });
    expect(t.dtype).toBe('f32');
    expectExact(vals(t), multiIndices([2, 3, 2]).map((i) => i[1]!));
    const u = source('iota', { shape: [4], axis: 0, dtype: 'u32' });
    expect(u.data).toBeInstanceOf(Uint32Array);
    expectExact(vals(u), [0, 1, 2, 3]);
    expect(source('iota', { shape: [0, 3], axis: 1, dtype: 'i32' }).shape).toEqual([0, 3]);
  });
  it('large f16 iota rounds', () => {
    expectExact(vals(source('iota', { shape: [2050], axis: 0, dtype: 'f16' })).slice(2047), [2047, 2048, 2048]);
  });
});

describe('constant', () => {
  it('scalar and list values', () => {
    const s = source('constant', { shape: [], dtype: 'f32', value: 3.5 });
    expect(s.shape).toEqual([]);
    expectExact(vals(s), [3.5]);
    expectExact(vals(source('constant', { shape: [2, 2], dtype: 'f32', value: 7 })), [7, 7, 7, 7]);
    expectExact(vals(source('constant', { shape: [2, 2], dtype: 'i32', value: [1, -2, 3, -4] })), [1, -2, 3, -4]);
    expectExact(vals(source('constant', { shape: [3], dtype: 'f32', value: [0.1, NAN, -INF] })), [Math.fround(0.1), NAN, -INF]);
    expectExact(vals(source('constant', { shape: [3], dtype: 'bool', value: [0, 1, 1] })), [0, 1, 1]);
    expect(source('constant', { shape: [0], dtype: 'f32', value: [] }).shape).toEqual([0]);
  });
  it('values are converted to the dtype', () => {
    expectExact(vals(source('constant', { shape: [], dtype: 'f16', value: 0.1 })), [refRound('f16', 0.1)]);
    expectExact(vals(source('constant', { shape: [], dtype: 'bf16', value: 0.1 })), [refRound('bf16', 0.1)]);
    expectExact(vals(source('constant', { shape: [], dtype: 'u32', value: 4294967295 })), [4294967295]);
  });
  it('integer and bool constants must hold representable values', () => {
    const b = new GraphBuilder('g');
    expect(() => b.op('constant', [], { shape: [], dtype: 'u32', value: -1 })).toThrow('constant: value -1 is not representable as u32');
    expect(() => b.op('constant', [], { shape: [2], dtype: 'i32', value: [2.7, -2.7] })).toThrow('constant: value 2.7 is not representable as i32');
    expect(() => b.op('constant', [], { shape: [3], dtype: 'bool', value: [0, 2, -1] })).toThrow('constant: value 2 is not representable as bool');
    expect(() => b.op('constant', [], { shape: [], dtype: 'i32', value: 2 ** 31 })).toThrow(/not representable as i32/);
  });
  it('f64 mode keeps double constants', () => {
    const c = source('constant', { shape: [], dtype: 'f32', value: 0.1 }, 'f64');
    expect(c.data).toBeInstanceOf(Float64Array);
    expectExact(vals(c), [0.1]);
  });
  it('a list of the wrong length is a ShapeError', () => {
    const b = new GraphBuilder('g');
    expect(() => b.op('constant', [], { shape: [2, 2], dtype: 'f32', value: [1, 2, 3] })).toThrow('constant: has 3 values for shape [2,2]');
    expect(() => b.op('constant', [], { shape: [2, 2], dtype: 'f32', value: [1, 2, 3] })).toThrow(ShapeError);
  });
});

// ------------------------------------------------------------------------------------------ f64 mode sample

describe('movement / index / source ops in f64 precision keep doubles', () => {
  // 0.1, 1/3, 1 + 2^-40 are not f32 values: any f32 rounding on the way would show.
  const x = [0.1, 1 / 3, 1 + 2 ** -40, -0.7, 2 ** -1000, 1e300];
  const cases: [string, OpName, Attrs, number[], number[]][] = [
    ['reshape', 'reshape', { shape: [3, 2] }, [3, 2], x],
    ['permute', 'permute', { perm: [1, 0] }, [3, 2], [x[0]!, x[3]!, x[1]!, x[4]!, x[2]!, x[5]!]],
    ['broadcast', 'broadcast', { shape: [2, 2, 3] }, [2, 2, 3], [...x, ...x]],
    ['slice', 'slice', { starts: [0, 1], ends: [2, 3], steps: [1, 2] }, [2, 1], [x[1]!, x[4]!]],
    ['pad', 'pad', { before: [0, 1], after: [0, 0], value: 0.1 }, [2, 4], [0.1, x[0]!, x[1]!, x[2]!, 0.1, x[3]!, x[4]!, x[5]!]],
  ];
  for (const [name, op, attrs, shape, want] of cases) {
    it(name, () => {
      const out = runOp(op, [F64([2, 3], x)], attrs, 'f64');
      expect(out.data).toBeInstanceOf(Float64Array);
      expect(out.shape).toEqual(shape);
      expectExact(vals(out), want);
    });
  }
  it('concat / where / iota / compare', () => {
    const c = runOp('concat', [F64([2], [0.1, 0.2]), F64([1], [1 / 3])], { axis: 0 }, 'f64');
    expect(c.data).toBeInstanceOf(Float64Array);
    expectExact(vals(c), [0.1, 0.2, 1 / 3]);
    const w = runOp('where', [T('bool', [3], [1, 0, 1]), F64([3], [0.1, 0.2, 0.3]), F64([], [1 / 3])], {}, 'f64');
    expect(w.data).toBeInstanceOf(Float64Array);
    expectExact(vals(w), [0.1, 1 / 3, 0.3]);
    const i = runGraph(opGraph('iota', [], { shape: [3], axis: 0, dtype: 'f32' }), {}, { precision: 'f64' }).out!;
    expect(i.data).toBeInstanceOf(Float64Array);
    expectExact(vals(i), [0, 1, 2]);
    // 0.1 and fround(0.1) differ in f64 mode; in f32 mode both inputs are rounded to f32 first
    expectExact(vals(runOp('eq', [F64([1], [0.1]), F64([1], [Math.fround(0.1)])], {}, 'f64')), [0]);
    expectExact(vals(runOp('eq', [F64([1], [0.1]), F64([1], [Math.fround(0.1)])])), [1]);
    // reduce_min / argmax on doubles that are equal in f32
    expectExact(vals(runOp('argmax', [F64([2], [1, 1 + 2 ** -40])], { axis: 0, keepdims: false }, 'f64')), [1]);
    expectExact(vals(runOp('argmax', [F64([2], [1, 1 + 2 ** -40])], { axis: 0, keepdims: false })), [0]);
    expectExact(vals(runOp('reduce_min', [F64([2], [1 + 2 ** -40, 1 + 2 ** -39])], { axes: [0], keepdims: false }, 'f64')), [1 + 2 ** -40]);
  });
});

/**
 * @file CPU-backend (oracle) tests of the elementwise ops: unary, binary, compare, logical, where
 * and cast, against hand-computed / high-precision (mpmath, 50 digits) literals. Covers special
 * values, numpy broadcasting, integer wrap/truncation, cast saturation, narrow-float rounding (with an
 * independent table-based f16/bf16 rounding reference), and the f64 precision mode.
 */
import { describe, expect, it } from 'vitest';
import type { DType } from '../../ir/dtype.ts';
import { ShapeError } from '../../ir/errors.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import type { OpName } from '../../ir/ops.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import {
  B, F32, F64, I32, T, U32, bf16Value, bitsOf, expectClose, expectExact, f16Value, multiIndices, offsetOf,
  refBf16Bits, refF16Bits, refRound, runOp, testDataF32, vals,
} from './helpers.ts';

const INF = Infinity;
const NAN = NaN;

/** One f32 ulp at |w| (w finite, nonzero). */
function ulp32(w: number): number {
  const a = Math.abs(Math.fround(w));
  const e = Math.floor(Math.log2(a));
  return 2 ** (Math.max(e, -126) - 23);
}

/** f32 mode: exact for special results, within one f32 ulp of the correctly rounded value otherwise. */
function expectF32(got: ArrayLike<number>, want: readonly number[], what: string): void {
  const g = Array.from(got);
  expect(g.length).toBe(want.length);
  const bad: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const r = Math.fround(w);
    const ok = !Number.isFinite(r) || r === 0 || Number.isNaN(w) ? Object.is(g[i], r) : Math.abs(g[i]! - r) <= ulp32(w);
    if (!ok) bad.push(`${what}[${i}]: got ${g[i]} want ${r}`);
  }
  expect(bad).toEqual([]);
}

// ------------------------------------------------------------------------------------------ unary

/** x (all exactly representable in f32) and the true f(x) (double nearest, from mpmath). */
const UNARY_CASES: Record<string, { x: number[]; want: number[] }> = {
  neg: { x: [0, -0, 1.5, -2, INF, -INF, NAN], want: [-0, 0, -1.5, 2, -INF, INF, NAN] },
  abs: { x: [0, -0, 1.5, -2, INF, -INF, NAN], want: [0, 0, 1.5, 2, INF, INF, NAN] },
  sign: { x: [0, 3.5, -2, INF, -INF, 1e-30], want: [0, 1, -1, 1, -1, 1] },
  exp: {
    x: [0, -0, 1, -2.5, 0.5, 10, INF, -INF, NAN, 100, -200],
    want: [1, 1, 2.718281828459045, 0.0820849986238988, 1.6487212707001282, 22026.465794806718, INF, 0, NAN, INF, 0],
  },
  log: {
    x: [1, 2, 0.5, 10, 0, -0, -1, INF, -INF, NAN],
    want: [0, 0.6931471805599453, -0.6931471805599453, 2.302585092994046, -INF, -INF, NAN, INF, NAN, NAN],
  },
  sqrt: {
    x: [0, -0, 4, 2, 0.5, 10, -1, INF, -INF, NAN],
    want: [0, -0, 2, 1.4142135623730951, 0.7071067811865476, 3.1622776601683795, NAN, INF, NAN, NAN],
  },
  rsqrt: {
    x: [4, 2, 0.5, 10, 0, -0, INF, -1, NAN],
    want: [0.5, 0.7071067811865476, 1.4142135623730951, 0.31622776601683794, INF, -INF, 0, NAN, NAN],
  },
  recip: {
    x: [2, 3, -7, 0.25, 0, -0, INF, -INF, NAN],
    want: [0.5, 0.3333333333333333, -0.14285714285714285, 4, INF, -INF, 0, -0, NAN],
  },
  sin: {
    x: [0, -0, 1, 3, -0.5, 100, INF, -INF, NAN],
    want: [0, -0, 0.8414709848078965, 0.1411200080598672, -0.479425538604203, -0.5063656411097588, NAN, NAN, NAN],
  },
  cos: {
    x: [0, -0, 1, 3, -0.5, 100, INF, NAN],
    want: [1, 1, 0.5403023058681398, -0.9899924966004454, 0.8775825618903728, 0.8623188722876839, NAN, NAN],
  },
  tanh: {
    x: [0, -0, 1, -0.5, 3, 20, INF, -INF, NAN],
    want: [0, -0, 0.7615941559557649, -0.46211715726000974, 0.9950547536867305, 1, 1, -1, NAN],
  },
  erf: {
    x: [0, 0.5, 1, 2, -3, INF, -INF, NAN, 10, -10],
    want: [0, 0.5204998778130465, 0.8427007929497149, 0.9953222650189527, -0.9999779095030014, 1, -1, NAN, 1, -1],
  },
  sigmoid: {
    x: [0, 1, -2.5, 20, -20, -50, INF, -INF, NAN, 800, -800],
    want: [0.5, 0.7310585786300049, 0.07585818002124355, 0.9999999979388464, 2.0611536181902037e-9, 1.9287498479639178e-22, 1, 0, NAN, 1, 0],
  },
  floor: { x: [2.7, -2.7, -0.5, 0.5, -0, 0, 3, INF, -INF, NAN], want: [2, -3, -1, 0, -0, 0, 3, INF, -INF, NAN] },
  ceil: { x: [2.1, -2.7, -0.5, 0.5, -0, 0, 3, INF, -INF, NAN], want: [3, -2, -0, 1, -0, 0, 3, INF, -INF, NAN] },
};

describe('unary float ops (f32)', () => {
  for (const [op, { x, want }] of Object.entries(UNARY_CASES)) {
    it(`${op}: values and special values`, () => {
      const out = runOp(op as OpName, [F32([x.length], x)]);
      expect(out.dtype).toBe('f32');
      expect(out.shape).toEqual([x.length]);
      expect(out.data).toBeInstanceOf(Float32Array);
      expectF32(vals(out), want, op);
    });
  }

  it('sign of -0 is a zero and sign of NaN is NaN (numpy semantics)', () => {
    const out = vals(runOp('sign', [F32([2], [-0, NAN])]));
    expect(out[0] === 0).toBe(true); // +0 or -0 both acceptable
    expect(Number.isNaN(out[1])).toBe(true);
  });

  it('erf(-0) is -0 (erf is odd; C99 erf(±0) = ±0)', () => {
    expectExact(vals(runOp('erf', [F32([1], [-0])])), [-0]);
  });

  it('exp overflows to inf and underflows to 0 when stored to f32', () => {
    // exp(89) = 4.49e38 > f32 max 3.40e38; exp(-104) = 6.8e-46 < half the smallest f32 subnormal (7.0e-46).
    expectExact(vals(runOp('exp', [F32([3], [89, 88, -104])])), [INF, Math.fround(1.6516362549940018e38), 0]);
  });

  it('unary ops on a rank-0 and a zero-size tensor', () => {
    const s = runOp('neg', [F32([], [3])]);
    expect(s.shape).toEqual([]);
    expectExact(vals(s), [-3]);
    const z = runOp('exp', [F32([0, 3], [])]);
    expect(z.shape).toEqual([0, 3]);
    expect(z.data.length).toBe(0);
  });

  it('not on bool', () => {
    const out = runOp('not', [B([4], [0, 1, 1, 0])]);
    expect(out.dtype).toBe('bool');
    expect(out.data).toBeInstanceOf(Uint8Array);
    expectExact(vals(out), [1, 0, 0, 1]);
  });
});

describe('unary ops on integers', () => {
  it('neg/abs/sign on i32 (wrap at -2^31)', () => {
    const x = [0, 5, -7, 2147483647, -2147483648];
    expectExact(vals(runOp('neg', [I32([5], x)])), [0, -5, 7, -2147483647, -2147483648]);
    expectExact(vals(runOp('abs', [I32([5], x)])), [0, 5, 7, 2147483647, -2147483648]);
    expectExact(vals(runOp('sign', [I32([5], x)])), [0, 1, -1, 1, -1]);
    expect(runOp('neg', [I32([5], x)]).data).toBeInstanceOf(Int32Array);
  });
  it('abs/sign on u32', () => {
    const x = [0, 1, 4294967295, 2147483648];
    expectExact(vals(runOp('abs', [U32([4], x)])), x);
    expectExact(vals(runOp('sign', [U32([4], x)])), [0, 1, 1, 1]);
  });
});

describe('unary ops in f64 precision', () => {
  for (const op of ['exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'floor', 'ceil', 'neg', 'abs']) {
    it(`${op} keeps double precision (≤1e-15 rel)`, () => {
      const { x } = UNARY_CASES[op]!;
      // exp(100) and exp(-200) overflow/underflow f32 but not f64
      const want = op === 'exp' ? [...UNARY_CASES.exp!.want.slice(0, 9), 2.6881171418161356e43, 1.3838965267367376e-87] : UNARY_CASES[op]!.want;
      const out = runOp(op as OpName, [F64([x.length], x)], {}, 'f64');
      expect(out.data).toBeInstanceOf(Float64Array);
      expectClose(vals(out), want, 1e-15, 0, op);
    });
  }
  it('f32 inputs fed as Float32Array are widened in f64 mode', () => {
    const out = runOp('sqrt', [F32([1], [2])], {}, 'f64');
    expect(out.data).toBeInstanceOf(Float64Array);
    expect(out.data[0]).toBe(1.4142135623730951);
  });
});

// ------------------------------------------------------------------------------------------ erf

describe('erf against 50-digit values', () => {
  // [x, erf(x)] from mpmath at 50 digits, rounded to double.
  const KNOWN: [number, number][] = [
    [0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527], [-3, -0.9999779095030014],
    [0.1, 0.1124629160182849], [0.01, 0.011283415555849616], [1.5, 0.9661051464753108], [3.5, 0.9999992569016276],
    [5, 0.9999999999984626], [1e-10, 1.1283791670955126e-10], [-0.25, -0.27632639016823696], [4.5, 0.9999999998033839],
    [5.9, 0.9999999999999999], [7, 1], [-6, -1],
  ];
  // Points on a 1/512 grid where the series implementation was seen to drift most (all true values from mpmath).
  const HARD: [number, number][] = [
    [4.998046875, 0.9999999999984316], [5.626953125, 0.9999999999999982], [4.73046875, 0.9999999999776666],
    [5.091796875, 0.9999999999994018], [3.83203125, 0.9999999401706928], [5.75, 0.9999999999999996], [5.95, 1],
  ];

  it('known values, f64 mode, 1e-15 relative', () => {
    const out = runOp('erf', [F64([KNOWN.length], KNOWN.map((k) => k[0]))], {}, 'f64');
    expectClose(vals(out), KNOWN.map((k) => k[1]), 1e-15, 0, 'erf');
  });
  it('hard points in [3.8, 6), f64 mode, 1e-15 relative', () => {
    const out = runOp('erf', [F64([HARD.length], HARD.map((k) => k[0]))], {}, 'f64');
    expectClose(vals(out), HARD.map((k) => k[1]), 1e-15, 0, 'erf');
  });
  it('known values, f32 mode: the correctly rounded f32', () => {
    const xs = KNOWN.filter(([x]) => Math.fround(x) === x);
    const out = runOp('erf', [F32([xs.length], xs.map((k) => k[0]))]);
    expectExact(vals(out), xs.map((k) => Math.fround(k[1])));
  });
  it('is odd on a grid', () => {
    const xs = Array.from({ length: 241 }, (_, i) => -6 + i * 0.05);
    const pos = vals(runOp('erf', [F64([xs.length], xs)], {}, 'f64'));
    const neg = vals(runOp('erf', [F64([xs.length], xs.map((x) => -x))], {}, 'f64'));
    for (let i = 0; i < xs.length; i++) expect(neg[i] === -pos[i]!).toBe(true); // (±0 checked separately)
  });
  it('is bounded by 1 and non-decreasing on a fine grid of [0, 6.5] (f64 mode)', () => {
    const xs = Array.from({ length: 6.5 * 1024 + 1 }, (_, i) => i / 1024);
    const y = vals(runOp('erf', [F64([xs.length], xs)], {}, 'f64'));
    const above1 = xs.flatMap((x, i) => (y[i]! > 1 ? [`erf(${x}) = ${y[i]}`] : []));
    const drops: string[] = [];
    for (let i = 1; i < xs.length; i++) if (y[i]! < y[i - 1]!) drops.push(`erf(${xs[i]}) = ${y[i]} < erf(${xs[i - 1]}) = ${y[i - 1]}`);
    expect(above1.slice(0, 3), `${above1.length} values above 1`).toEqual([]);
    expect(drops.slice(0, 3), `${drops.length} decreasing steps`).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------ binary (float)

function bin(op: OpName, a: number[], b: number[], dtype: 'f32' | 'i32' | 'u32' = 'f32'): number[] {
  return vals(runOp(op, [T(dtype, [a.length], a), T(dtype, [b.length], b)]));
}

describe('binary float ops (f32)', () => {
  it('add/sub/mul/div with special values', () => {
    expectExact(bin('add', [1, -0, -0, INF, INF, NAN, 3e38], [2, 0, -0, -INF, 1, 1, 3e38]), [3, 0, -0, NAN, INF, NAN, INF]);
    expectExact(bin('sub', [1, 0, INF, -0], [2, 0, INF, 0]), [-1, 0, NAN, -0]);
    expectExact(bin('mul', [3, -0, INF, 1.5, 1e30], [-2, 5, 0, 1.5, 1e30]), [-6, -0, NAN, 2.25, INF]);
    expectExact(bin('div', [1, -1, 0, 1, 7, INF, -0], [0, 0, 0, INF, 2, INF, 5]), [INF, -INF, NAN, 0, 3.5, NAN, -0]);
  });

  it('results are rounded to f32 with ties to even', () => {
    // 1 + 2^-24 is a tie between 1 and 1+2^-23 → 1 (even); (1+2^-23) + 2^-24 is a tie → 1+2^-22 (even).
    expectExact(bin('add', [1, 1 + 2 ** -23, 1], [2 ** -24, 2 ** -24, 2 ** -24 + 2 ** -40]), [1, 1 + 2 ** -22, 1 + 2 ** -23]);
    // 1/3 rounded to f32, and a product that is not exact in f32.
    expectExact(bin('div', [1], [3]), [Math.fround(1 / 3)]);
    expectExact(bin('mul', [1 + 2 ** -23], [1 + 2 ** -23]), [Math.fround(1 + 2 ** -22)]);
  });

  it('max/min propagate NaN from either side', () => {
    expectExact(bin('max', [1, NAN, 2, -INF, 5], [NAN, 1, 3, -INF, -5]), [NAN, NAN, 3, -INF, 5]);
    expectExact(bin('min', [1, NAN, 2, INF, 5], [NAN, 1, 3, INF, -5]), [NAN, NAN, 2, INF, -5]);
  });

  it('pow: ordinary values', () => {
    expectF32(bin('pow', [2, 2, 1.5, 10, -2, -2, 0, 4], [10, 0.5, 2.5, -3, 3, 2, 0, -0.5]), [1024, 1.4142135623730951, 2.7556759606310752, 0.001, -8, 4, 1, 0.5], 'pow');
  });
  it('pow: IEEE/C99 special cases (NaN base with 0 exponent, negative base with fractional exponent, 0^negative)', () => {
    expectExact(bin('pow', [NAN, -8, 0, -0, INF, 2], [0, 1 / 3, -1, -1, -1, NAN]), [1, NAN, INF, -INF, 0, NAN].map(Math.fround));
  });
  it('pow(1, y) = 1 and pow(-1, ±inf) = 1 for any y, even NaN (C99 pow, CUDA powf, PyTorch)', () => {
    expectExact(bin('pow', [1, 1, 1, -1, -1], [NAN, INF, -INF, INF, -INF]), [1, 1, 1, 1, 1]);
  });

  it('mod is fmod (sign of the dividend)', () => {
    expectExact(
      bin('mod', [5.5, -5.5, 5.5, -5.5, 3, 1, INF, 3, -0, 6], [2, 2, -2, -2, INF, 0, 2, -INF, 2, 3]),
      [1.5, -1.5, 1.5, -1.5, 3, NAN, NAN, 3, -0, 0],
    );
  });
});

describe('binary ops in f64 precision', () => {
  it('add/sub/mul/div are double precision', () => {
    const a = F64([3], [0.1, 1, 1e-300]);
    const b = F64([3], [0.2, 3, 1e300]);
    expectExact(vals(runOp('add', [a, b], {}, 'f64')), [0.30000000000000004, 4, 1e300]);
    expectExact(vals(runOp('sub', [a, b], {}, 'f64')), [0.1 - 0.2, -2, -1e300]);
    expectClose(vals(runOp('mul', [a, b], {}, 'f64')), [0.020000000000000004, 3, 1], 1e-15);
    const d = runOp('div', [a, b], {}, 'f64');
    expect(d.data).toBeInstanceOf(Float64Array);
    expectExact(vals(d), [0.5, 0.3333333333333333, 0]); // 1e-300 / 1e300 underflows to 0 in double
    // the same adds in f32 mode are rounded to f32
    expectExact(vals(runOp('add', [F32([1], [0.1]), F32([1], [0.2])])), [Math.fround(Math.fround(0.1) + Math.fround(0.2))]);
  });
  it('pow/max/min/mod in double precision', () => {
    expectClose(vals(runOp('pow', [F64([2], [2, 1.5]), F64([2], [0.5, 2.5])], {}, 'f64')), [1.4142135623730951, 2.7556759606310752], 1e-15);
    expectExact(vals(runOp('max', [F64([2], [0.1, NAN]), F64([2], [0.2, 0])], {}, 'f64')), [0.2, NAN]);
    expectExact(vals(runOp('min', [F64([1], [0.1]), F64([1], [0.2])], {}, 'f64')), [0.1]);
    expectClose(vals(runOp('mod', [F64([1], [1]), F64([1], [0.1])], {}, 'f64')), [0.09999999999999995], 1e-12);
  });
});

// ------------------------------------------------------------------------------------------ integers

describe('integer arithmetic', () => {
  const MAX = 2147483647, MIN = -2147483648;
  it('i32 add/sub/mul wrap modulo 2^32', () => {
    expectExact(bin('add', [MAX, MIN, 5, MAX], [1, -1, -7, MAX], 'i32'), [MIN, MAX, -2, -2]);
    expectExact(bin('sub', [MIN, MAX, 0], [1, -1, MIN], 'i32'), [MAX, MIN, MIN]);
    expectExact(bin('mul', [65536, MAX, MIN, -3, 46341, 123456789], [65536, 2, -1, 7, 46341, 987654321], 'i32'), [0, -2, MIN, -21, -2147479015, -67153019]);
  });
  it('i32 div truncates toward zero; x/0 = 0; MIN/-1 wraps', () => {
    expectExact(bin('div', [7, -7, 7, -7, 6, 0, 5, -5, MIN, MIN, MAX], [2, 2, -2, -2, 3, 5, 0, 0, -1, 2, MIN], 'i32'), [3, -3, -3, 3, 2, 0, 0, 0, MIN, -1073741824, 0]);
  });
  it('i32 mod truncates (sign of the dividend); x%0 = 0', () => {
    expectExact(bin('mod', [7, -7, 7, -7, 6, 5, -5, MIN, MIN], [3, 3, -3, -3, 3, 0, 0, -1, 3], 'i32'), [1, -1, 1, -1, 0, 0, 0, 0, -2]);
  });
  it('i32 max/min', () => {
    expectExact(bin('max', [MIN, -1, 3], [MAX, -2, 3], 'i32'), [MAX, -1, 3]);
    expectExact(bin('min', [MIN, -1, 3], [MAX, -2, 3], 'i32'), [MIN, -2, 3]);
  });
  it('u32 add/sub/mul wrap; div/mod on the unsigned values', () => {
    const U = 4294967295;
    expectExact(bin('add', [U, U, 2147483648], [1, U, 2147483648], 'u32'), [0, 4294967294, 0]);
    expectExact(bin('sub', [0, 1, 5], [1, U, 3], 'u32'), [U, 2, 2]);
    expectExact(bin('mul', [U, U, 65536, 3000000000], [U, 2, 65536, 2], 'u32'), [1, 4294967294, 0, 1705032704]);
    expectExact(bin('div', [U, U, 7, 3000000000], [2, 0, 2, 1000000000], 'u32'), [2147483647, 0, 3, 3]);
    expectExact(bin('mod', [U, 7, 3000000000, 5], [10, 0, 7, 7], 'u32'), [5, 0, 3000000000 % 7, 5]);
    expectExact(bin('max', [U, 0], [1, 2147483648], 'u32'), [U, 2147483648]);
    const out = runOp('add', [U32([1], [U]), U32([1], [1])]);
    expect(out.data).toBeInstanceOf(Uint32Array);
  });
});

// ------------------------------------------------------------------------------------------ compare / logical

describe('compare and logical ops', () => {
  it('float comparisons incl. NaN, ±0, ±inf', () => {
    const a = [1, 2, NAN, NAN, -0, INF, -INF];
    const b = [2, 2, 1, NAN, 0, INF, 3];
    const want: Record<string, number[]> = {
      eq: [0, 1, 0, 0, 1, 1, 0],
      ne: [1, 0, 1, 1, 0, 0, 1],
      lt: [1, 0, 0, 0, 0, 0, 1],
      le: [1, 1, 0, 0, 1, 1, 1],
      gt: [0, 0, 0, 0, 0, 0, 0],
      ge: [0, 1, 0, 0, 1, 1, 0],
    };
    for (const [op, w] of Object.entries(want)) {
      const out = runOp(op as OpName, [F32([7], a), F32([7], b)]);
      expect(out.dtype).toBe('bool');
      expect(out.data).toBeInstanceOf(Uint8Array);
      expectExact(vals(out), w, op);
    }
  });
  it('integer comparisons use the signed / unsigned value', () => {
    expectExact(bin('lt', [-1, 5, -2147483648], [0, 5, 2147483647], 'i32'), [1, 0, 1]);
    expectExact(bin('gt', [4294967295, 2147483648, 0], [0, 2147483647, 1], 'u32'), [1, 1, 0]);
    expectExact(bin('eq', [4294967295], [4294967295], 'u32'), [1]);
  });
  it('bool comparisons', () => {
    expectExact(vals(runOp('eq', [B([4], [0, 0, 1, 1]), B([4], [0, 1, 0, 1])])), [1, 0, 0, 1]);
    expectExact(vals(runOp('lt', [B([4], [0, 0, 1, 1]), B([4], [0, 1, 0, 1])])), [0, 1, 0, 0]);
  });
  it('and/or/xor truth tables', () => {
    const a = B([4], [0, 0, 1, 1]);
    const b = B([4], [0, 1, 0, 1]);
    expectExact(vals(runOp('and', [a, b])), [0, 0, 0, 1]);
    expectExact(vals(runOp('or', [a, b])), [0, 1, 1, 1]);
    expectExact(vals(runOp('xor', [a, b])), [0, 1, 1, 0]);
  });
});

// ------------------------------------------------------------------------------------------ broadcasting

/** Naive numpy-broadcast reference for a binary function. */
function refBroadcast(f: (a: number, b: number) => number, a: number[], as: number[], b: number[], bs: number[]): { shape: number[]; data: number[] } {
  const r = Math.max(as.length, bs.length);
  const pa = [...Array(r - as.length).fill(1), ...as];
  const pb = [...Array(r - bs.length).fill(1), ...bs];
  const shape = pa.map((d, i) => (d === 1 ? pb[i]! : d));
  const data = multiIndices(shape).map((idx) => {
    const ia = idx.map((v, i) => (pa[i] === 1 ? 0 : v));
    const ib = idx.map((v, i) => (pb[i] === 1 ? 0 : v));
    return f(a[offsetOf(pa, ia)]!, b[offsetOf(pb, ib)]!);
  });
  return { shape, data };
}

describe('numpy broadcasting', () => {
  const cases: [string, number[], number[]][] = [
    ['scalar + tensor', [], [2, 3]],
    ['tensor + scalar', [2, 3], []],
    ['[3,1] + [1,4]', [3, 1], [1, 4]],
    ['[2,3,4] + [4]', [2, 3, 4], [4]],
    ['[4] + [2,3,4]', [4], [2, 3, 4]],
    ['[2,1,4] + [3,1]', [2, 1, 4], [3, 1]],
    ['[1] + [5]', [1], [5]],
    ['[1,1,1] + []', [1, 1, 1], []],
  ];
  for (const [name, as, bs] of cases) {
    it(`sub ${name}`, () => {
      const na = as.reduce((x, y) => x * y, 1), nb = bs.reduce((x, y) => x * y, 1);
      const a = testDataF32(na, 3), b = testDataF32(nb, 4);
      const out = runOp('sub', [F32(as, a), F32(bs, b)]);
      const ref = refBroadcast((x, y) => Math.fround(x - y), a, as, b, bs);
      expect(out.shape).toEqual(ref.shape);
      expectExact(vals(out), ref.data);
    });
  }

  it('compare and logical ops broadcast too', () => {
    const out = runOp('lt', [F32([3, 1], [1, 2, 3]), F32([1, 4], [0, 1, 2, 3])]);
    expect(out.shape).toEqual([3, 4]);
    expectExact(vals(out), [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]); // a[i] < b[j] with a = [1,2,3], b = [0,1,2,3]
    const l = runOp('xor', [B([2, 1], [0, 1]), B([3], [0, 1, 1])]);
    expect(l.shape).toEqual([2, 3]);
    expectExact(vals(l), [0, 1, 1, 1, 0, 0]);
  });

  it('zero-size dims', () => {
    const z = runOp('add', [F32([0, 3], []), F32([1, 3], [1, 2, 3])]);
    expect(z.shape).toEqual([0, 3]);
    expect(z.data.length).toBe(0);
    const z2 = runOp('mul', [F32([2, 1], [1, 2]), F32([0], [])]);
    expect(z2.shape).toEqual([2, 0]);
    const z3 = runOp('add', [F32([0], []), F32([], [5])]);
    expect(z3.shape).toEqual([0]);
    const z4 = runOp('eq', [I32([3, 0], []), I32([1], [1])]);
    expect(z4.shape).toEqual([3, 0]);
  });

  it('incompatible shapes are a ShapeError naming op and operands', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', { shape: [3], dtype: 'f32' });
    const y = b.input('y', { shape: [4], dtype: 'f32' });
    const z = b.input('z', { shape: [2, 3], dtype: 'f32' });
    const w = b.input('w', { shape: [3, 2], dtype: 'f32' });
    const e = b.input('e', { shape: [0], dtype: 'f32' });
    const two = b.input('two', { shape: [2], dtype: 'f32' });
    expect(() => b.op('add', [x, y])).toThrow(new ShapeError('add', ['f32[3]', 'f32[4]'], 'shapes [3] and [4] cannot be broadcast together'));
    expect(() => b.op('add', [x, y])).toThrow('add with operands f32[3], f32[4]: shapes [3] and [4] cannot be broadcast together');
    expect(() => b.op('mul', [z, w])).toThrow('mul with operands f32[2,3], f32[3,2]: shapes [2,3] and [3,2] cannot be broadcast together');
    expect(() => b.op('lt', [e, two])).toThrow('lt with operands f32[0], f32[2]: shapes [0] and [2] cannot be broadcast together');
    expect(() => b.op('add', [x, y])).toThrow(ShapeError);
  });

  it('where broadcasts all three operands', () => {
    const cs = [1, 4], as = [3, 1], bs = [2, 1, 1];
    const c = [1, 0, 0, 1];
    const a = [10, 20, 30];
    const bb = [-1, -2];
    const out = runOp('where', [B(cs, c), F32(as, a), F32(bs, bb)]);
    expect(out.shape).toEqual([2, 3, 4]);
    expect(out.dtype).toBe('f32');
    const want = multiIndices([2, 3, 4]).map(([i, j, k]) => (c[k!] ? a[j!]! : bb[i!]!));
    expectExact(vals(out), want);
  });
  it('where with scalar operands, i32 values and NaN data', () => {
    expectExact(vals(runOp('where', [B([3], [1, 0, 1]), I32([], [7]), I32([3], [1, 2, 3])])), [7, 2, 7]);
    expectExact(vals(runOp('where', [B([], [0]), F32([2], [NAN, 1]), F32([2], [5, NAN])])), [5, NAN]);
    const z = runOp('where', [B([0, 1], []), F32([2], [1, 2]), F32([], [0])]);
    expect(z.shape).toEqual([0, 2]);
  });
});

// ------------------------------------------------------------------------------------------ cast

function cast(x: number[], from: DType, to: DType): number[] {
  return vals(runOp('cast', [T(from, [x.length], x)], { dtype: to }));
}

describe('cast', () => {
  it('f32 → i32 truncates toward zero, saturates, NaN → 0', () => {
    expectExact(
      cast([1.9, -1.9, 0.5, -0.5, -0, 2147483647, 2147483520, 3e9, -3e9, -2147483648, INF, -INF, NAN], 'f32', 'i32'),
      [1, -1, 0, 0, 0, 2147483647, 2147483520, 2147483647, -2147483648, -2147483648, 2147483647, -2147483648, 0],
    );
  });
  it('f32 → u32 truncates, saturates at 0 and 2^32-1, NaN → 0', () => {
    expectExact(
      cast([1.9, -1.9, -0.5, 4e9, 4294967040, 5e9, INF, -INF, NAN, 2147483648], 'f32', 'u32'),
      [1, 0, 0, 4000000000, 4294967040, 4294967295, 4294967295, 0, 0, 2147483648],
    );
  });
  it('→ bool is x ≠ 0', () => {
    expectExact(cast([0, -0, 0.1, -2, INF, -INF, 1e-45], 'f32', 'bool'), [0, 0, 1, 1, 1, 1, 1]);
    expectExact(cast([0, 5, -1, -2147483648], 'i32', 'bool'), [0, 1, 1, 1]);
    expectExact(cast([0, 4294967295], 'u32', 'bool'), [0, 1]);
  });
  it('NaN → bool is true (NaN ≠ 0; C, CUDA, WGSL bool(f32), PyTorch and numpy agree)', () => {
    expectExact(cast([NAN], 'f32', 'bool'), [1]);
  });
  it('bool → float / int', () => {
    expectExact(cast([0, 1], 'bool', 'f32'), [0, 1]);
    expectExact(cast([0, 1], 'bool', 'f16'), [0, 1]);
    expectExact(cast([0, 1], 'bool', 'i32'), [0, 1]);
    expectExact(cast([0, 1], 'bool', 'u32'), [0, 1]);
  });
  it('i32 ↔ u32 keep the 32 bits', () => {
    expectExact(cast([-1, -2147483648, 0, 2147483647, -5], 'i32', 'u32'), [4294967295, 2147483648, 0, 2147483647, 4294967291]);
    expectExact(cast([4294967295, 2147483648, 0, 2147483647, 4294967291], 'u32', 'i32'), [-1, -2147483648, 0, 2147483647, -5]);
  });
  it('int → f32 rounds to nearest even', () => {
    expectExact(cast([16777217, 16777219, 2147483647, -2147483647, 3], 'i32', 'f32'), [16777216, 16777220, 2147483648, -2147483648, 3]);
    expectExact(cast([4294967295, 16777217], 'u32', 'f32'), [4294967296, 16777216]);
  });
  it('f32 → f16: exact bits incl. ties to even, subnormals, overflow', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0, 0x0000], [-0, 0x8000], [INF, 0x7c00], [-INF, 0xfc00],
      [1 + 2 ** -11, 0x3c00], // tie → even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // tie → even (up)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [1 + 2 ** -11 - 2 ** -20, 0x3c00], // just below the tie
      [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [100000, 0x7c00], [-65520, 0xfc00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [2 ** -25 + 2 ** -40, 0x0001],
      [-(2 ** -26), 0x8000], [2 ** -14 - 2 ** -25, 0x0400], // rounds up from the subnormals into the normals
      [Math.fround(0.1), 0x2e66], [Math.fround(1 / 3), 0x3555], [Math.fround(Math.PI), 0x4248],
    ];
    const out = runOp('cast', [F32([cases.length], cases.map((c) => c[0]))], { dtype: 'f16' });
    expect(out.dtype).toBe('f16');
    const got = vals(out).map((v) => bitsOf('f16', v));
    expect(got.map((b) => b.toString(16))).toEqual(cases.map((c) => c[1].toString(16)));
    expect(Number.isNaN(vals(runOp('cast', [F32([1], [NAN])], { dtype: 'f16' }))[0])).toBe(true);
    // the table reference agrees with the hand-written bits
    expect(cases.map((c) => refF16Bits(c[0]))).toEqual(cases.map((c) => c[1]));
  });
  it('f32 → bf16: exact bits incl. ties to even and overflow', () => {
    const cases: [number, number][] = [
      [1, 0x3f80], [-2, 0xc000], [-0, 0x8000], [INF, 0x7f80], [-INF, 0xff80],
      [1 + 2 ** -8, 0x3f80], // tie → even (down)
      [1 + 3 * 2 ** -8, 0x3f82], // tie → even (up)
      [1 + 2 ** -8 + 2 ** -20, 0x3f81],
      [Math.fround(0.1), 0x3dcd], [Math.fround(Math.PI), 0x4049],
      [3.4028234663852886e38, 0x7f80], // f32 max rounds up to inf
      [3.3895313892515355e38, 0x7f7f], // bf16 max
      [2 ** -133, 0x0001], // subnormals are kept
      [Math.fround(1e-40), 0x0001],
    ];
    const out = runOp('cast', [F32([cases.length], cases.map((c) => c[0]))], { dtype: 'bf16' });
    expect(out.dtype).toBe('bf16');
    expect(vals(out).map((v) => bitsOf('bf16', v).toString(16))).toEqual(cases.map((c) => c[1].toString(16)));
    expect(Number.isNaN(vals(runOp('cast', [F32([1], [NAN])], { dtype: 'bf16' }))[0])).toBe(true);
    expect(cases.map((c) => refBf16Bits(c[0]))).toEqual(cases.map((c) => c[1]));
  });
  it('narrow → wide and narrow → narrow', () => {
    expectExact(cast([f16Value(0x3555), 65504, -0], 'f16', 'f32'), [f16Value(0x3555), 65504, -0]);
    expectExact(cast([bf16Value(0x3dcd)], 'bf16', 'f32'), [bf16Value(0x3dcd)]);
    // f16 1+2^-10 → bf16: tie between 1 and 1+2^-7? no: 2^-10 is below half a bf16 ulp → 1
    expectExact(cast([1 + 2 ** -10, 1 + 2 ** -8 + 2 ** -10, 65504], 'f16', 'bf16'), [1, 1 + 2 ** -7, 65536]);
    // bf16 → f16: overflow and rounding
    expectExact(cast([bf16Value(0x4780), bf16Value(0x3dcd)], 'bf16', 'f16'), [INF, refRound('f16', bf16Value(0x3dcd))]);
    expectExact(cast([-2.75, 65504, 1.5], 'f16', 'i32'), [-2, 65504, 1]);
  });
  it('int → f16 rounds', () => {
    expectExact(cast([2049, 2051, 70000, -3], 'i32', 'f16'), [2048, 2052, INF, -3]);
  });
  it('cast in f64 mode keeps doubles for float targets and still truncates for ints', () => {
    const x = F64([3], [0.1, 1 + 2 ** -30, -2.5]);
    const f16 = runOp('cast', [x], { dtype: 'f16' }, 'f64');
    expect(f16.data).toBeInstanceOf(Float64Array);
    expectExact(vals(f16), [0.1, 1 + 2 ** -30, -2.5]);
    expectExact(vals(runOp('cast', [x], { dtype: 'i32' }, 'f64')), [0, 1, -2]);
  });
});

// ------------------------------------------------------------------------------------------ narrow float arithmetic

describe('f16/bf16 arithmetic results are stored rounded', () => {
  it('f16 add/mul/div/exp', () => {
    const a = T('f16', [6], [1, 1 + 2 ** -10, 300, 1, 2048, 1]);
    const b = T('f16', [6], [2 ** -11, 2 ** -11, 300, 3, 1, 2 ** -24]);
    const add = runOp('add', [a, b]);
    expect(add.dtype).toBe('f16');
    expectExact(vals(add), [1, 1 + 2 ** -9, 600, 4, 2048, 1]);
    expectExact(vals(runOp('mul', [a, b])), [2 ** -11, refRound('f16', (1 + 2 ** -10) * 2 ** -11), INF, 3, 2048, 2 ** -24]);
    expectExact(vals(runOp('div', [a, b])), [2048, 2050, 1, refRound('f16', 1 / 3), 2048, INF]);
    const e = T('f16', [3], [1, -1, 0.5]);
    expectExact(vals(runOp('exp', [e])), [Math.E, Math.exp(-1), Math.exp(0.5)].map((v) => refRound('f16', v)));
  });
  it('bf16 add/mul/div/sqrt', () => {
    const a = T('bf16', [5], [1, 256, 256, 1, 3]);
    const b = T('bf16', [5], [2 ** -8, 1, 1.5, 3, 7]);
    expectExact(vals(runOp('add', [a, b])), [1, 256, 258, 4, 10]);
    expectExact(vals(runOp('div', [a, b])), [256, 256, refRound('bf16', 256 / 1.5), refRound('bf16', 1 / 3), refRound('bf16', 3 / 7)]);
    expectExact(vals(runOp('sqrt', [T('bf16', [2], [2, 3])])), [refRound('bf16', Math.SQRT2), refRound('bf16', Math.sqrt(3))]);
  });
  it('f16 reduce_sum rounds the exact sum once', () => {
    // 1 + 2^-11 + 2^-24 is just above the tie 1 + 2^-11, so it rounds up to 1 + 2^-10.
    const out = runOp('reduce_sum', [T('f16', [3], [1, 2 ** -11, 2 ** -24])], { axes: [0], keepdims: false });
    expectExact(vals(out), [1 + 2 ** -10]);
  });
  it('bf16 reduce_sum rounds the exact sum once (no double rounding through f32)', () => {
    // exact sum 1 + 2^-8 + 2^-30 lies just above the bf16 tie 1 + 2^-8 → nearest is 1 + 2^-7.
    // Rounding to f32 first gives exactly the tie 1 + 2^-8, which then rounds to even (1).
    const out = runOp('reduce_sum', [T('bf16', [3], [1, 2 ** -8, 2 ** -30])], { axes: [0], keepdims: false });
    expect(out.dtype).toBe('bf16');
    expectExact(vals(out), [1 + 2 ** -7]);
  });
  it('bf16 matmul rounds the exact dot product once', () => {
    const out = runOp('matmul', [T('bf16', [1, 3], [1, 2 ** -8, 2 ** -30]), T('bf16', [3, 1], [1, 1, 1])]);
    expectExact(vals(out), [1 + 2 ** -7]);
  });
  it('f16 where/compare keep values; comparisons see the rounded inputs', () => {
    const c = runOp('eq', [T('f16', [1], [1]), T('f16', [1], [1])]);
    expectExact(vals(c), [1]);
  });
  it('f16 ops in f64 mode are not rounded', () => {
    const a = T('f16', [1], [1], true);
    const b = T('f16', [1], [2 ** -11], true);
    const out = runOp('add', [a, b], {}, 'f64');
    expect(out.data).toBeInstanceOf(Float64Array);
    expectExact(vals(out), [1 + 2 ** -11]);
  });
});

describe('runGraph with chained elementwise ops', () => {
  it('computes a small expression graph with broadcasting', () => {
    // y = sigmoid(x·w + b) with x [2,3], w [3] (broadcast over rows), b scalar; then y > 0.5
    const b = new GraphBuilder('expr');
    const x = b.input('x', { shape: [2, 3], dtype: 'f32' });
    const w = b.input('w', { shape: [3], dtype: 'f32' });
    const bias = b.input('b', { shape: [], dtype: 'f32' });
    const y = b.op('sigmoid', [b.op('add', [b.op('mul', [x, w]), bias])]);
    b.output('y', y);
    b.output('pos', b.op('gt', [y, b.op('constant', [], { shape: [], dtype: 'f32', value: 0.5 })]));
    const xv = [1, -2, 0.5, 0, 3, -1];
    const wv = [0.5, 0.25, -2];
    const out = runGraph(b.build(), { x: F32([2, 3], xv), w: F32([3], wv), b: F32([], [0.125]) }, { precision: 'f64' });
    const want = xv.map((v, i) => 1 / (1 + Math.exp(-(v * wv[i % 3]! + 0.125))));
    expectClose(vals(out.y!), want, 1e-15);
    expectExact(vals(out.pos!), want.map((v) => +(v > 0.5)));
  });
});

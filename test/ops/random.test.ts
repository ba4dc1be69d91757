/**
 * @file Counter-based randomness: Philox4x32-10 known-answer vectors from Random123, the documented
 * element → (block, word) mapping of random_uniform / random_normal on the CPU backend, and
 * statistical sanity (moments with CLT tolerances, Kolmogorov–Smirnov bounds) over 100k samples.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import type { DType } from '../../ir/dtype.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import { mulhi32, philox4x32 } from '../../ir/philox.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { U32, expectClose, expectExact, isRepresentable, opGraph, refRound, vals } from './helpers.ts';

const hex = (w: ArrayLike<number>) => Array.from(w, (v) => (v >>> 0).toString(16).padStart(8, '0')).join(' ');

describe('Philox4x32 known-answer vectors (Random123 kat_vectors)', () => {
  it('10 rounds', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe('d16cfe09 94fdcceb 5001e420 24126ea1');
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0], 10))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
  });
  it('7 rounds', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0], 7))).toBe('5f6fb709 0d893f64 4f121f81 4f730a48');
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], 7))).toBe('4dfccaba 190a87f0 c47362ba b6b5242a');
  });
  it('mulhi32 is the high word of the exact 64-bit product', () => {
    const xs = [0, 1, 2, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xd2511f53, 0xcd9e8d57, 0xffffffff, 0x12345678, 0x9e3779b9];
    for (const a of xs)
      for (const b of xs) expect(mulhi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
  });
  it('returns u32 words, reuses the out buffer', () => {
    const out = new Uint32Array(4);
    const r = philox4x32([1, 2, 3, 4], [5, 6], 10, out);
    expect(r).toBe(out);
    expect(r).toBeInstanceOf(Uint32Array);
  });
});

// ------------------------------------------------------------------------------------------ graph helpers

function randomGraph(op: 'random_uniform' | 'random_normal', shape: number[], dtype: DType, stream: number) {
  return opGraph(op, [U32([2], [0, 0])], { shape, dtype, stream });
}
function sample(op: 'random_uniform' | 'random_normal', shape: number[], seed: [number, number], stream = 0, dtype: DType = 'f32', precision: 'f32' | 'f64' = 'f32'): HostTensor {
  return runGraph(randomGraph(op, shape, dtype, stream), { a0: U32([2], seed) }, { precision }).out!;
}

/** The documented recipe, from philox4x32 words (uniform). */
function refUniform(n: number, seed: [number, number], stream: number): number[] {
  return Array.from({ length: n }, (_, i) => {
    const w = philox4x32([Math.floor(i / 4), stream, 0, 0], seed);
    return (w[i % 4]! >>> 8) / 2 ** 24;
  });
}
/** The documented recipe (Box–Muller on word pairs), from philox4x32 words. */
function refNormal(n: number, seed: [number, number], stream: number): number[] {
  return Array.from({ length: n }, (_, i) => {
    const w = philox4x32([Math.floor(i / 4), stream, 0, 0], seed);
    const k = i % 4;
    const p = k >> 1;
    const u1 = ((w[2 * p]! >>> 8) + 1) / 2 ** 24;
    const u2 = (w[2 * p + 1]! >>> 8) / 2 ** 24;
    const r = Math.sqrt(-2 * Math.log(u1));
    const th = 2 * Math.PI * u2;
    return k % 2 === 0 ? r * Math.cos(th) : r * Math.sin(th);
  });
}

describe('element → Philox block/word mapping', () => {
  const seed: [number, number] = [0x12345678, 0x9abcdef0];
  it('random_uniform: element i uses word i mod 4 of block floor(i/4) with counter (j, stream, 0, 0)', () => {
    for (const stream of [0, 3, 0xffffffff]) {
      const out = sample('random_uniform', [3, 5], seed, stream);
      expect(out.shape).toEqual([3, 5]);
      expect(out.dtype).toBe('f32');
      expectExact(vals(out), refUniform(15, seed, stream), `stream ${stream}`);
    }
  });
  it('random_uniform: hand-checked first elements for seed (0,0), stream 0', () => {
    // block 0 words 6627e8d5 e169c58d bc57ac4c 9b00dbd8 → (w >>> 8) / 2^24
    const out = vals(sample('random_uniform', [5], [0, 0], 0));
    expectExact(out.slice(0, 4), [0x6627e8 / 2 ** 24, 0xe169c5 / 2 ** 24, 0xbc57ac / 2 ** 24, 0x9b00db / 2 ** 24]);
    const w1 = philox4x32([1, 0, 0, 0], [0, 0]);
    expect(out[4]).toBe((w1[0]! >>> 8) / 2 ** 24);
  });
  it('random_normal: Box–Muller on (w0,w1) for elements 4j, 4j+1 and (w2,w3) for 4j+2, 4j+3', () => {
    for (const stream of [0, 7]) {
      const o64 = sample('random_normal', [2, 7], seed, stream, 'f32', 'f64');
      expect(o64.data).toBeInstanceOf(Float64Array);
      expectClose(vals(o64), refNormal(14, seed, stream), 1e-13, 1e-15);
      const o32 = sample('random_normal', [2, 7], seed, stream);
      expectClose(vals(o32), refNormal(14, seed, stream).map(Math.fround), 1.2e-7, 1e-7);
    }
    // hand-checked element 0 for seed (0,0), stream 0: u1 = (0x6627e8 + 1)/2^24, u2 = 0xe169c5/2^24
    const z0 = Math.sqrt(-2 * Math.log((0x6627e8 + 1) / 2 ** 24)) * Math.cos((2 * Math.PI * 0xe169c5) / 2 ** 24);
    expectClose(vals(sample('random_normal', [1], [0, 0], 0, 'f32', 'f64')), [z0], 1e-14);
  });
  it('normal pairs share a radius: z[4j]² + z[4j+1]² = -2 ln u1', () => {
    const z = vals(sample('random_normal', [8], seed, 1, 'f32', 'f64'));
    for (let j = 0; j < 2; j++)
      for (const p of [0, 1]) {
        const w = philox4x32([j, 1, 0, 0], seed);
        const u1 = ((w[2 * p]! >>> 8) + 1) / 2 ** 24;
        expect(Math.abs(z[4 * j + 2 * p]! ** 2 + z[4 * j + 2 * p + 1]! ** 2 - -2 * Math.log(u1))).toBeLessThan(1e-12);
      }
  });
  it('the same stream gives a prefix-consistent sequence for different shapes', () => {
    const a = vals(sample('random_uniform', [10], seed, 2));
    const b = vals(sample('random_uniform', [2, 3], seed, 2));
    expectExact(b, a.slice(0, 6));
  });
  it('zero-size and rank-0 shapes', () => {
    expect(sample('random_uniform', [0, 4], seed).data.length).toBe(0);
    const s = sample('random_normal', [], seed, 5);
    expect(s.shape).toEqual([]);
    expectClose(vals(s), [Math.fround(refNormal(1, seed, 5)[0]!)], 0);
  });
});

describe('determinism and independence', () => {
  it('same seed + stream → identical numbers (across runs and across nodes of one graph)', () => {
    expectExact(vals(sample('random_uniform', [100], [1, 2], 4)), vals(sample('random_uniform', [100], [1, 2], 4)));
    const b = new GraphBuilder('two');
    const s = b.input('seed', { shape: [2], dtype: 'u32' });
    b.output('x', b.op('random_normal', [s], { shape: [50], dtype: 'f32', stream: 9 }));
    b.output('y', b.op('random_normal', [s], { shape: [50], dtype: 'f32', stream: 9 }));
    b.output('z', b.op('random_normal', [s], { shape: [50], dtype: 'f32', stream: 10 }));
    const out = runGraph(b.build(), { seed: U32([2], [42, 0]) });
    expectExact(vals(out.x!), vals(out.y!));
    expect(vals(out.x!)).not.toEqual(vals(out.z!));
  });
  it('different streams, seeds (either word) give different numbers', () => {
    const base = vals(sample('random_uniform', [64], [1, 2], 0));
    for (const [seed, stream] of [[[1, 2], 1], [[2, 2], 0], [[1, 3], 0], [[2, 1], 0]] as [[number, number], number][]) {
      const other = vals(sample('random_uniform', [64], seed, stream));
      const same = other.filter((v, i) => v === base[i]).length;
      expect(same, `seed ${seed} stream ${stream}`).toBeLessThan(3);
    }
  });
  it('uniform and normal of the same seed/stream are not independent (documented: same words)', () => {
    // element 0 of uniform uses w0; element 0 of normal uses w0 (u1) and w1 (u2).
    const u = vals(sample('random_uniform', [2], [5, 6], 0, 'f32', 'f64'));
    const z = vals(sample('random_normal', [1], [5, 6], 0, 'f32', 'f64'));
    const want = Math.sqrt(-2 * Math.log(u[0]! + 2 ** -24)) * Math.cos(2 * Math.PI * u[1]!);
    expectClose(z, [want], 1e-13);
  });
});

// ------------------------------------------------------------------------------------------ statistics

const N = 100_000;

/** Standard normal CDF (Abramowitz & Stegun 26.2.17, |error| < 7.5e-8). */
function normalCdf(x: number): number {
  const ax = Math.abs(x);
  const t = 1 / (1 + 0.2316419 * ax);
  const poly = t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  const tail = (Math.exp((-ax * ax) / 2) / Math.sqrt(2 * Math.PI)) * poly;
  return x >= 0 ? 1 - tail : tail;
}
/** Kolmogorov–Smirnov statistic of samples against a CDF. */
function ksStat(xs: readonly number[], cdf: (x: number) => number): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = cdf(s[i]!);
    d = Math.max(d, (i + 1) / n - f, f - i / n);
  }
  return d;
}
function moments(xs: readonly number[]): { mean: number; variance: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  return { mean, variance };
}
/** KS critical value at α = 0.001 (asymptotic). */
const KS_CRIT = 1.95 / Math.sqrt(N);

describe('statistics over 100k samples', () => {
  for (const [seed, stream] of [[[0, 0], 0], [[123456789, 987654321], 17]] as [[number, number], number][]) {
    it(`random_uniform: range, resolution, mean, variance, KS (seed ${seed}, stream ${stream})`, () => {
      const u = vals(sample('random_uniform', [N], seed, stream));
      let lo = Infinity, hi = -Infinity;
      for (const v of u) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
        expect(Number.isInteger(v * 2 ** 24)).toBe(true);
      }
      expect(lo).toBeGreaterThanOrEqual(0);
      expect(hi).toBeLessThan(1);
      const { mean, variance } = moments(u);
      // sd(mean) = sqrt(1/12/N); sd(var estimate) ≈ sqrt((1/80 - 1/144)/N) = sqrt(1/180/N); 5 sigma
      expect(Math.abs(mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / N));
      expect(Math.abs(variance - 1 / 12)).toBeLessThan(5 * Math.sqrt(1 / 180 / N));
      expect(ksStat(u, (x) => Math.min(1, Math.max(0, x)))).toBeLessThan(KS_CRIT);
      // the four words of a block are not correlated: lag-1 autocorrelation ~ N(0, 1/N)
      let c = 0;
      for (let i = 1; i < N; i++) c += (u[i]! - mean) * (u[i - 1]! - mean);
      expect(Math.abs(c / (N - 1) / variance)).toBeLessThan(5 / Math.sqrt(N));
    });
    it(`random_normal: mean, variance, KS (seed ${seed}, stream ${stream})`, () => {
      const z = vals(sample('random_normal', [N], seed, stream));
      const { mean, variance } = moments(z);
      // sd(mean) = 1/sqrt(N); sd(var estimate) = sqrt(2/N); 5 sigma
      expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(N));
      expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / N));
      expect(ksStat(z, normalCdf)).toBeLessThan(KS_CRIT);
      // the sin and cos halves separately are N(0,1) too
      expect(ksStat(z.filter((_, i) => i % 2 === 0), normalCdf)).toBeLessThan(1.95 / Math.sqrt(N / 2));
      expect(ksStat(z.filter((_, i) => i % 2 === 1), normalCdf)).toBeLessThan(1.95 / Math.sqrt(N / 2));
      expect(z.every((v) => Number.isFinite(v))).toBe(true);
    });
  }
});

describe('narrow-float random outputs', () => {
  for (const dtype of ['f16', 'bf16'] as const) {
    it(`random_normal ${dtype}: values are the double-precision stream rounded to ${dtype}`, () => {
      const z = sample('random_normal', [1000], [9, 9], 3, dtype);
      expect(z.dtype).toBe(dtype);
      const zv = vals(z);
      expect(zv.every((v) => isRepresentable(dtype, v))).toBe(true);
      expectExact(zv, refNormal(1000, [9, 9], 3).map((v) => refRound(dtype, v)));
      expect(Math.abs(moments(zv).mean)).toBeLessThan(5 / Math.sqrt(1000));
    });
    it(`random_uniform ${dtype}: stays in [0, 1) (never rounds up to 1)`, () => {
      const u = vals(sample('random_uniform', [N], [0, 0], 0, dtype));
      expect(u.every((v) => isRepresentable(dtype, v))).toBe(true);
      const ones = u.filter((v) => v >= 1).length;
      expect(ones, `${ones} of ${N} samples are 1.0`).toBe(0);
    });
  }
});

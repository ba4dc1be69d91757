/**
 * @file CPU-backend (oracle) tests of the composite ops (softmax, log_softmax, layer_norm, rms_norm,
 * attention) against naive double-precision loop references written here; f16/bf16 operands are
 * computed in f32 and the result rounded (checked bit-for-bit against the f32 result rounded by an
 * independent rounding reference).
 */
import { describe, expect, it } from 'vitest';
import type { Attrs, OpName } from '../../ir/ops.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { F32, F64, T, expectClose, expectExact, isRepresentable, multiIndices, offsetOf, refRound, runOp, testData, vals } from './helpers.ts';

const INF = Infinity;
const NAN = NaN;
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

// ------------------------------------------------------------------------------------------ references

/** Apply `f` to every 1-D fibre of x along `axis`. */
function alongAxis(x: number[], shape: number[], axis: number, f: (row: number[]) => number[]): number[] {
  const out = new Array<number>(x.length);
  const outer = shape.map((d, i) => (i === axis ? 1 : d));
  for (const o of multiIndices(outer)) {
    const offs = Array.from({ length: shape[axis]! }, (_, k) => offsetOf(shape, o.map((v, i) => (i === axis ? k : v))));
    const r = f(offs.map((p) => x[p]!));
    offs.forEach((p, k) => (out[p] = r[k]!));
  }
  return out;
}
function softmaxRow(r: number[]): number[] {
  const m = Math.max(...r);
  const e = r.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
function logSoftmaxRow(r: number[]): number[] {
  const m = Math.max(...r);
  const s = r.reduce((a, v) => a + Math.exp(v - m), 0);
  return r.map((v) => v - m - Math.log(s));
}
function layerNormRow(r: number[], eps: number): number[] {
  const mean = r.reduce((a, b) => a + b, 0) / r.length;
  const v = r.reduce((a, b) => a + (b - mean) ** 2, 0) / r.length;
  return r.map((x) => (x - mean) / Math.sqrt(v + eps));
}
function rmsNormRow(r: number[], eps: number): number[] {
  const ms = r.reduce((a, b) => a + b * b, 0) / r.length;
  return r.map((x) => x / Math.sqrt(ms + eps));
}
/** Naive attention over [..., S, D] (same batch dims), top-left causal mask (key j visible to query i iff j <= i). */
function refAttention(q: number[], qs: number[], k: number[], ks: number[], v: number[], vs: number[], causal: boolean, scale: number): number[] {
  const batch = qs.slice(0, -2);
  const [sq, d] = qs.slice(-2) as [number, number];
  const sk = ks[ks.length - 2]!;
  const dv = vs[vs.length - 1]!;
  const out: number[] = [];
  for (let b = 0; b < prod(batch); b++) {
    for (let i = 0; i < sq; i++) {
      const s: number[] = [];
      for (let j = 0; j < sk; j++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[(b * sq + i) * d + c]! * k[(b * sk + j) * d + c]!;
        s.push(causal && j > i ? -INF : dot * scale);
      }
      const p = softmaxRow(s);
      for (let c = 0; c < dv; c++) {
        let acc = 0;
        for (let j = 0; j < sk; j++) acc += p[j]! * v[(b * sk + j) * dv + c]!;
        out.push(acc);
      }
    }
  }
  return out;
}

const f32data = (n: number, seed: number, lo = -2, hi = 2) => testData(n, seed, lo, hi).map(Math.fround);

// ------------------------------------------------------------------------------------------ softmax / log_softmax

describe('softmax and log_softmax', () => {
  const shape = [2, 3, 5];
  const x = f32data(30, 5, -4, 4);
  for (const axis of [0, 1, 2]) {
    it(`softmax axis ${axis} vs naive (f32 and f64 modes)`, () => {
      const want = alongAxis(x, shape, axis, softmaxRow);
      const out = runOp('softmax', [F32(shape, x)], { axis });
      expect(out.shape).toEqual(shape);
      expect(out.dtype).toBe('f32');
      expectClose(vals(out), want, 2e-6, 1e-7);
      const o64 = runOp('softmax', [F64(shape, x)], { axis }, 'f64');
      expect(o64.data).toBeInstanceOf(Float64Array);
      expectClose(vals(o64), want, 1e-13);
    });
    it(`log_softmax axis ${axis} vs naive (f32 and f64 modes)`, () => {
      const want = alongAxis(x, shape, axis, logSoftmaxRow);
      expectClose(vals(runOp('log_softmax', [F32(shape, x)], { axis })), want, 2e-6, 1e-6);
      expectClose(vals(runOp('log_softmax', [F64(shape, x)], { axis }, 'f64')), want, 1e-13, 1e-15);
    });
  }
  it('hand-computed values', () => {
    expectClose(vals(runOp('softmax', [F64([3], [1, 2, 3])], { axis: 0 }, 'f64')), [0.09003057317038046, 0.24472847105479764, 0.6652409557748219], 1e-15);
    expectClose(vals(runOp('softmax', [F32([2], [0, 0])], { axis: 0 })), [0.5, 0.5], 0);
  });
  it('is stable for large inputs (shift-invariant)', () => {
    const big = [1000, 1001, 1002];
    expectClose(vals(runOp('softmax', [F32([3], big)], { axis: 0 })), [0.09003057317038046, 0.24472847105479764, 0.6652409557748219], 1e-6);
    expectClose(vals(runOp('log_softmax', [F32([3], big)], { axis: 0 })), [-2.40760596444438, -1.4076059644443804, -0.4076059644443803], 1e-6);
    expectClose(vals(runOp('softmax', [F32([3], [-1000, -1001, -1002])], { axis: 0 })), [0.6652409557748219, 0.24472847105479764, 0.09003057317038046], 1e-6);
    expectClose(vals(runOp('softmax', [F32([2], [3e38, -3e38])], { axis: 0 })), [1, 0], 0);
  });
  it('-inf entries get probability 0 (log_softmax -inf); an all -inf row is NaN', () => {
    expectExact(vals(runOp('softmax', [F32([2, 3], [-INF, 0, 0, -INF, -INF, 5])], { axis: 1 })), [0, 0.5, 0.5, 0, 0, 1]);
    expectExact(vals(runOp('log_softmax', [F32([3], [-INF, 0, 0])], { axis: 0 })), [-INF, Math.fround(-Math.LN2), Math.fround(-Math.LN2)]);
    expectExact(vals(runOp('softmax', [F32([2], [-INF, -INF])], { axis: 0 })), [NAN, NAN]);
    expectExact(vals(runOp('softmax', [F32([2], [NAN, 1])], { axis: 0 })), [NAN, NAN]);
    expectExact(vals(runOp('softmax', [F32([2], [INF, 1])], { axis: 0 })), [NAN, NAN]); // inf - inf = NaN, as in PyTorch
  });
  it('sums to 1 along the axis (f64)', () => {
    const o = vals(runOp('softmax', [F64(shape, x)], { axis: 1 }, 'f64'));
    for (const [i, k] of multiIndices([2, 5])) expect(Math.abs(o[offsetOf(shape, [i!, 0, k!])]! + o[offsetOf(shape, [i!, 1, k!])]! + o[offsetOf(shape, [i!, 2, k!])]! - 1)).toBeLessThan(1e-15);
  });
});

// ------------------------------------------------------------------------------------------ norms

describe('layer_norm and rms_norm', () => {
  it('hand-computed values', () => {
    expectClose(
      vals(runOp('layer_norm', [F64([4], [1, 2, 3, 4])], { eps: 0 }, 'f64')),
      [-1.3416407864998738, -0.4472135954999579, 0.4472135954999579, 1.3416407864998738], 1e-15,
    );
    expectClose(
      vals(runOp('rms_norm', [F64([4], [1, 2, 3, 4])], { eps: 0 }, 'f64')),
      [0.3651483716701107, 0.7302967433402214, 1.0954451150103321, 1.4605934866804429], 1e-15,
    );
  });
  for (const eps of [1e-5, 0.5]) {
    it(`layer_norm over the last axis, eps=${eps}, vs naive`, () => {
      const shape = [2, 3, 8];
      const x = f32data(48, 9, -3, 5);
      const want = alongAxis(x, shape, 2, (r) => layerNormRow(r, eps));
      const out = runOp('layer_norm', [F32(shape, x)], { eps });
      expect(out.shape).toEqual(shape);
      expectClose(vals(out), want, 1e-5, 1e-6);
      expectClose(vals(runOp('layer_norm', [F64(shape, x)], { eps }, 'f64')), want, 1e-12, 1e-14);
    });
    it(`rms_norm over the last axis, eps=${eps}, vs naive`, () => {
      const shape = [3, 7];
      const x = f32data(21, 10, -3, 5);
      const want = alongAxis(x, shape, 1, (r) => rmsNormRow(r, eps));
      expectClose(vals(runOp('rms_norm', [F32(shape, x)], { eps })), want, 1e-5, 1e-6);
      expectClose(vals(runOp('rms_norm', [F64(shape, x)], { eps }, 'f64')), want, 1e-12, 1e-14);
    });
  }
  it('constant rows normalize to 0 (layer_norm) and rank-1 inputs work', () => {
    expectExact(vals(runOp('layer_norm', [F32([2, 3], [5, 5, 5, 1, 2, 3])], { eps: 1e-5 })).slice(0, 3), [0, 0, 0]);
    expectClose(vals(runOp('rms_norm', [F32([2], [3, 4])], { eps: 0 })), [3 / Math.sqrt(12.5), 4 / Math.sqrt(12.5)], 1e-6);
  });
  it('large offsets do not lose the variance (two-pass mean / variance)', () => {
    const x = [1e4 + 1, 1e4 + 2, 1e4 + 3, 1e4 + 4];
    expectClose(vals(runOp('layer_norm', [F32([4], x)], { eps: 0 })), [-1.3416407864998738, -0.4472135954999579, 0.4472135954999579, 1.3416407864998738], 1e-5);
  });
});

// ------------------------------------------------------------------------------------------ attention

interface AttnCase {
  name: string;
  qs: number[];
  ks: number[];
  vs: number[];
  causal: boolean;
  scale?: number;
}
const ATTN_CASES: AttnCase[] = [
  { name: 'rank 2, Sq = Sk', qs: [3, 4], ks: [3, 4], vs: [3, 4], causal: false },
  { name: 'batch [2,3], Sq=4 != Sk=5, Dv=6', qs: [2, 3, 4, 8], ks: [2, 3, 5, 8], vs: [2, 3, 5, 6], causal: false },
  { name: 'causal Sq = Sk = 4', qs: [2, 4, 4], ks: [2, 4, 4], vs: [2, 4, 3], causal: true },
  { name: 'causal Sq=3 < Sk=5 (top-left)', qs: [3, 4], ks: [5, 4], vs: [5, 2], causal: true },
  { name: 'causal Sq=5 > Sk=3 (top-left)', qs: [2, 5, 4], ks: [2, 3, 4], vs: [2, 3, 4], causal: true },
  { name: 'custom scale, Sq=1', qs: [2, 1, 1, 6], ks: [2, 1, 7, 6], vs: [2, 1, 7, 5], causal: false, scale: 0.8 },
  { name: 'Sk = 1', qs: [4, 3], ks: [1, 3], vs: [1, 2], causal: true },
];

function attnInputs(c: AttnCase): { q: number[]; k: number[]; v: number[]; scale: number } {
  return {
    q: f32data(prod(c.qs), 31),
    k: f32data(prod(c.ks), 32),
    v: f32data(prod(c.vs), 33),
    scale: c.scale ?? 1 / Math.sqrt(c.qs[c.qs.length - 1]!),
  };
}

describe('attention', () => {
  it('hand-computed: q=[1,0], k=I, v=[[1,2],[3,4]], scale 1', () => {
    const out = runOp('attention', [F64([1, 2], [1, 0]), F64([2, 2], [1, 0, 0, 1]), F64([2, 2], [1, 2, 3, 4])], { causal: false, scale: 1 }, 'f64');
    // p = [e/(1+e), 1/(1+e)] = [0.7310585786300049, 0.2689414213699951]
    expectClose(vals(out), [1.5378828427399902, 2.5378828427399904], 1e-15);
    // causal: query 0 sees key 0 only
    const c = runOp('attention', [F64([1, 2], [1, 0]), F64([2, 2], [1, 0, 0, 1]), F64([2, 2], [1, 2, 3, 4])], { causal: true, scale: 1 }, 'f64');
    expectClose(vals(c), [1, 2], 1e-15);
  });
  for (const c of ATTN_CASES) {
    it(`${c.name} vs naive (f32 and f64 modes)`, () => {
      const { q, k, v, scale } = attnInputs(c);
      const want = refAttention(q, c.qs, k, c.ks, v, c.vs, c.causal, scale);
      const attrs = { causal: c.causal, scale };
      const out = runOp('attention', [F32(c.qs, q), F32(c.ks, k), F32(c.vs, v)], attrs);
      expect(out.shape).toEqual([...c.qs.slice(0, -1), c.vs[c.vs.length - 1]!]);
      expect(out.dtype).toBe('f32');
      expectClose(vals(out), want, 1e-5, 2e-6);
      const o64 = runOp('attention', [F64(c.qs, q), F64(c.ks, k), F64(c.vs, v)], attrs, 'f64');
      expect(o64.data).toBeInstanceOf(Float64Array);
      expectClose(vals(o64), want, 1e-12, 1e-14);
    });
  }
  it('causal differs from non-causal exactly in the masked rows', () => {
    const c = ATTN_CASES[4]!; // Sq=5 > Sk=3: rows 2..4 see every key, so they match the non-causal result
    const { q, k, v, scale } = attnInputs(c);
    const ins = [F64(c.qs, q), F64(c.ks, k), F64(c.vs, v)];
    const causal = vals(runOp('attention', ins, { causal: true, scale }, 'f64'));
    const full = vals(runOp('attention', ins, { causal: false, scale }, 'f64'));
    const dv = 4;
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 5; i++)
        for (let d = 0; d < dv; d++) {
          const p = (b * 5 + i) * dv + d;
          if (i >= 2) expect(causal[p]).toBe(full[p]);
          else expect(causal[p]).not.toBe(full[p]);
        }
  });
});

// ------------------------------------------------------------------------------------------ narrow-float operands

describe('composites on f16/bf16 operands are computed in f32 and rounded', () => {
  /** Values representable in both f16 and bf16 (8 significant bits, small exponents). */
  const narrowData = (n: number, seed: number) => testData(n, seed, -2, 2).map((v) => Math.round(v * 64) / 64);

  const cases: [string, OpName, number[][], Attrs][] = [
    ['softmax', 'softmax', [[2, 5]], { axis: 1 }],
    ['log_softmax', 'log_softmax', [[3, 4]], { axis: 0 }],
    ['layer_norm', 'layer_norm', [[2, 6]], { eps: 1e-5 }],
    ['rms_norm', 'rms_norm', [[2, 6]], { eps: 1e-6 }],
    ['attention', 'attention', [[2, 3, 4], [2, 5, 4], [2, 5, 3]], { causal: true, scale: 0.5 }],
    ['attention (non-causal)', 'attention', [[3, 4], [2, 4], [2, 2]], { causal: false, scale: 0.5 }],
  ];
  for (const dtype of ['f16', 'bf16'] as const) {
    for (const [name, op, shapes, attrs] of cases) {
      it(`${name} with ${dtype} operands`, () => {
        const data = shapes.map((s, i) => narrowData(prod(s), 40 + i));
        for (const d of data) for (const v of d) expect(isRepresentable(dtype, v)).toBe(true);
        const narrow: HostTensor[] = shapes.map((s, i) => T(dtype, s, data[i]!));
        const wide: HostTensor[] = shapes.map((s, i) => F32(s, data[i]!));
        const out = runOp(op, narrow, attrs);
        expect(out.dtype).toBe(dtype);
        const y32 = vals(runOp(op, wide, attrs));
        expectExact(vals(out), y32.map((v) => refRound(dtype, v)));
        // and the f32 result itself is close to the double-precision naive reference
        let want: number[];
        if (op === 'attention') {
          want = refAttention(data[0]!, shapes[0]!, data[1]!, shapes[1]!, data[2]!, shapes[2]!, attrs.causal as boolean, attrs.scale as number);
        } else {
          const s = shapes[0]!;
          const axis = op === 'softmax' || op === 'log_softmax' ? (attrs.axis as number) : s.length - 1;
          const row = op === 'softmax' ? softmaxRow : op === 'log_softmax' ? logSoftmaxRow
            : op === 'layer_norm' ? (r: number[]) => layerNormRow(r, attrs.eps as number) : (r: number[]) => rmsNormRow(r, attrs.eps as number);
          want = alongAxis(data[0]!, s, axis, row);
        }
        expectClose(y32, want, 1e-5, 2e-6);
      });
    }
  }
});

/**
 * Gradient checks for every differentiable op: grad() vs central finite differences in f64 on the
 * CPU backend, random inputs. Tolerance: max|analytic − numeric| / max|numeric| < 1e-6.
 */
import { describe, expect, it } from 'vitest';
import { attention, concat, where } from '../../compiler/dsl/functional.ts';
import type { Tensor } from '../../compiler/dsl/tensor.ts';
import { trace } from '../../compiler/dsl/trace.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { printGraph } from '../../ir/printer.ts';
import { gradCheck, randomTensor } from '../support/gradcheck.ts';

type Case = {
  name: string;
  inputs: Record<string, { shape: number[]; lo?: number; hi?: number; dtype?: 'i32'; values?: number[] }>;
  f: (x: Record<string, Tensor>) => Tensor;
};

const P = { lo: 0.5, hi: 2 }; // positive inputs (log, sqrt, pow base, ...)
const cases: Case[] = [
  ...(['neg', 'abs', 'exp', 'sin', 'cos', 'tanh', 'erf', 'sigmoid'] as const).map((op) => ({
    name: op, inputs: { x: { shape: [3, 4] } }, f: (x: Record<string, Tensor>) => x.x![op](),
  })),
  ...(['log', 'sqrt', 'rsqrt', 'recip'] as const).map((op) => ({
    name: op, inputs: { x: { shape: [3, 4], ...P } }, f: (x: Record<string, Tensor>) => x.x![op](),
  })),
  { name: 'floor/ceil/sign (zero grad)', inputs: { x: { shape: [5] } }, f: (x) => x.x!.floor().add(x.x!.ceil()).add(x.x!.sign()).add(x.x!) },
  { name: 'add broadcast', inputs: { a: { shape: [2, 3, 4] }, b: { shape: [3, 1] } }, f: (x) => x.a!.add(x.b!) },
  { name: 'sub broadcast', inputs: { a: { shape: [4] }, b: { shape: [2, 1, 4] } }, f: (x) => x.a!.sub(x.b!) },
  { name: 'mul broadcast', inputs: { a: { shape: [2, 1, 4] }, b: { shape: [3, 1] } }, f: (x) => x.a!.mul(x.b!) },
  { name: 'div', inputs: { a: { shape: [2, 3] }, b: { shape: [3], ...P } }, f: (x) => x.a!.div(x.b!) },
  { name: 'max/min', inputs: { a: { shape: [4, 3] }, b: { shape: [3] } }, f: (x) => x.a!.maximum(x.b!).add(x.a!.minimum(x.b!).mul(2)) },
  { name: 'pow', inputs: { a: { shape: [3, 2], ...P }, b: { shape: [2] } }, f: (x) => x.a!.pow(x.b!) },
  { name: 'mod', inputs: { a: { shape: [5], lo: 0.1, hi: 0.9 }, b: { shape: [5], lo: 0.3, hi: 0.35 } }, f: (x) => x.a!.mod(x.b!) },
  { name: 'where', inputs: { c: { shape: [3, 4] }, a: { shape: [3, 1] }, b: { shape: [4] } }, f: (x) => where(x.c!.gt(0), x.a!, x.b!) },
  { name: 'reduce_sum', inputs: { x: { shape: [2, 3, 4] } }, f: (x) => x.x!.sum([0, 2]) },
  { name: 'reduce_sum keepdims', inputs: { x: { shape: [2, 3, 4] } }, f: (x) => x.x!.sum(1, true) },
  { name: 'reduce_mean', inputs: { x: { shape: [2, 3, 4] } }, f: (x) => x.x!.mean([1]) },
  { name: 'reduce_max', inputs: { x: { shape: [3, 5] } }, f: (x) => x.x!.max(1) },
  { name: 'reduce_min keepdims', inputs: { x: { shape: [3, 5] } }, f: (x) => x.x!.min(0, true) },
  { name: 'reshape', inputs: { x: { shape: [2, 6] } }, f: (x) => x.x!.reshape(3, 4).exp() },
  { name: 'permute', inputs: { x: { shape: [2, 3, 4] } }, f: (x) => x.x!.permute(2, 0, 1).mul(x.x!.permute(2, 0, 1).sin()) },
  { name: 'broadcast', inputs: { x: { shape: [3, 1] } }, f: (x) => x.x!.expand(2, 3, 4).sin() },
  { name: 'slice', inputs: { x: { shape: [7, 5] } }, f: (x) => x.x!.slice(0, 1, 7, 2).slice(1, 1, 4).exp() },
  { name: 'pad', inputs: { x: { shape: [2, 3] } }, f: (x) => x.x!.pad([1, 0], [2, 3], 0.5).exp() },
  { name: 'concat', inputs: { a: { shape: [2, 3] }, b: { shape: [2, 1] }, c: { shape: [2, 2] } }, f: (x) => concat([x.a!, x.b!, x.c!.sin()], 1) },
  { name: 'matmul', inputs: { a: { shape: [3, 4] }, b: { shape: [4, 2] } }, f: (x) => x.a!.matmul(x.b!) },
  { name: 'matmul batch broadcast', inputs: { a: { shape: [2, 1, 3, 4] }, b: { shape: [5, 4, 2] } }, f: (x) => x.a!.matmul(x.b!) },
  {
    name: 'gather', inputs: { x: { shape: [4, 3] }, i: { shape: [5], dtype: 'i32', values: [0, 3, 3, 1, 0] } },
    f: (x) => x.x!.take(x.i!, 0).sin(),
  },
  {
    name: 'scatter_add', inputs: { b: { shape: [3, 4] }, u: { shape: [3, 2] }, i: { shape: [2], dtype: 'i32', values: [1, 1] } },
    f: (x) => x.b!.scatterAdd(x.i!, x.u!, 1).exp(),
  },
  { name: 'cast f32→f32 chain', inputs: { x: { shape: [3] } }, f: (x) => x.x!.cast('f32').mul(x.x!) },
  { name: 'softmax', inputs: { x: { shape: [3, 5] } }, f: (x) => x.x!.softmax(0) },
  { name: 'log_softmax', inputs: { x: { shape: [3, 5] } }, f: (x) => x.x!.logSoftmax(-1) },
  { name: 'layer_norm', inputs: { x: { shape: [3, 6] } }, f: (x) => x.x!.layerNorm(1e-5) },
  { name: 'rms_norm', inputs: { x: { shape: [3, 6] } }, f: (x) => x.x!.rmsNorm(1e-6) },
  {
    name: 'attention', inputs: { q: { shape: [2, 3, 4] }, k: { shape: [2, 5, 4] }, v: { shape: [2, 5, 3] } },
    f: (x) => attention(x.q!, x.k!, x.v!, { scale: 0.7 }),
  },
  {
    name: 'attention causal', inputs: { q: { shape: [1, 2, 4, 4] }, k: { shape: [1, 2, 4, 4] }, v: { shape: [1, 2, 4, 2] } },
    f: (x) => attention(x.q!, x.k!, x.v!, { causal: true }),
  },
  { name: 'gelu/silu/softplus', inputs: { x: { shape: [8] } }, f: (x) => x.x!.gelu().add(x.x!.gelu('tanh')).add(x.x!.silu()).add(x.x!.softplus()) },
];

describe('VJP rules match finite differences (f64, rel err < 1e-6)', () => {
  cases.forEach((c, ci) => {
    it(c.name, () => {
      const names = Object.keys(c.inputs);
      const g = trace(`t${ci}`, (t) => {
        const xs: Record<string, Tensor> = {};
        for (const n of names) {
          const s = c.inputs[n]!;
          xs[n] = t.input(n, s.shape, s.dtype ?? 'f32');
        }
        const y = c.f(xs);
        const w = t.input('w', y.shape);
        return { loss: y.mul(w).sum() };
      });
      const feeds: Record<string, ReturnType<typeof randomTensor>> = {};
      names.forEach((n, k) => {
        const s = c.inputs[n]!;
        feeds[n] = s.values ? hostTensor('i32', s.shape, s.values) : randomTensor(s.shape, 100 * ci + k, s.lo ?? -1, s.hi ?? 1);
      });
      const wShape = g.inputByName('w')!.type.shape;
      feeds.w = randomTensor(wShape, 999 + ci);
      const wrt = names.filter((n) => !c.inputs[n]!.dtype);
      const r = gradCheck(g, feeds, 'loss', wrt);
      expect(r.relErr, `${c.name}: worst input ${r.worstInput}`).toBeLessThan(1e-6);
    });
  });
});

describe('grad transform', () => {
  it('does no gradient work for branches that do not reach the loss, and zero-fills unreachable inputs', () => {
    const g = trace('branch', (t) => {
      const x = t.input('x', [3]);
      const y = t.input('y', [3]);
      const z = t.input('z', [3]);
      return { loss: x.mul(y).sum(), metric: z.exp().sum() };
    });
    const gg = grad(g, { loss: 'loss', wrt: ['x', 'z'], outputs: [] });
    const text = printGraph(gg);
    expect(text).not.toMatch(/= exp/); // metric not requested and z does not reach the loss: no exp, no exp VJP
    const r = runGraph(gg, { x: hostTensor('f32', [3], [1, 2, 3]), y: hostTensor('f32', [3], [4, 5, 6]), z: hostTensor('f32', [3], [1, 1, 1]) });
    expect(Array.from(r['grad.x']!.data)).toEqual([4, 5, 6]);
    expect(Array.from(r['grad.z']!.data)).toEqual([0, 0, 0]);
    expect(Object.keys(r).sort()).toEqual(['grad.x', 'grad.z', 'loss']);
  });

  it('keeps requested metrics and the loss as outputs', () => {
    const g = trace('m', (t) => {
      const x = t.input('x', [2]);
      return { loss: x.square().sum(), metric: x.max(), unused: x.exp().sum() };
    });
    const gg = grad(g, { loss: 'loss', wrt: ['x'], outputs: ['metric'] });
    expect(gg.outputs.map((o) => o.name)).toEqual(['loss', 'metric', 'grad.x']);
    const r = runGraph(gg, { x: hostTensor('f32', [2], [3, -1]) });
    expect(r.loss!.data[0]).toBe(10);
    expect(r.metric!.data[0]).toBe(3);
    expect(Array.from(r['grad.x']!.data)).toEqual([6, -2]);
  });

  it('gradient nodes carry the forward node source location', () => {
    const g = trace('loc', (t) => {
      const x = t.input('x', [2]);
      return { loss: x.exp().sum() };
    });
    const gg = grad(g, { loss: 'loss', wrt: ['x'] });
    const locs = gg.nodes.map((n) => n.loc ?? '');
    expect(locs.every((l) => l.includes('test/autodiff/opGrads.test.ts'))).toBe(true);
  });

  it('accumulates gradients of a value used several times and differentiates a shared subexpression once', () => {
    const g = trace('fanout', (t) => {
      const x = t.input('x', [3]);
      const e = x.exp();
      return { loss: e.mul(e).add(e).sum() };
    });
    const r = runGraph(grad(g, { loss: 'loss', wrt: ['x'] }), { x: hostTensor('f32', [3], [0, 1, -1]) }, { precision: 'f64' });
    [0, 1, -1].forEach((v, i) => expect(r['grad.x']!.data[i]).toBeCloseTo(2 * Math.exp(2 * v) + Math.exp(v), 12));
  });

  it('rejects unknown losses, unknown inputs and integer inputs with clear errors', () => {
    const g = trace('err', (t) => {
      const x = t.input('x', [2]);
      const i = t.input('i', [2], 'i32');
      return { loss: x.sum(), n: i.sum() };
    });
    expect(() => grad(g, { loss: 'nope', wrt: ['x'] })).toThrow(/no output 'nope'/);
    expect(() => grad(g, { loss: 'loss', wrt: ['y'] })).toThrow(/no input 'y'/);
    expect(() => grad(g, { loss: 'loss', wrt: ['i'] })).toThrow(/only float inputs/);
    expect(() => grad(g, { loss: 'n', wrt: ['x'] })).toThrow(/must be a float/);
  });
});

/**
 * @file Tracing tests: the IR that DSL Tensor methods record (ops and canonical attributes),
 * PyTorch-style conveniences (reshape -1, negative axes, squeeze/unsqueeze/chunk/split/select/
 * narrow/flatten/mT/expand, 1-D matmul), scalar lifting, the model source location attached to
 * shape errors (checked against this file's own text), and Module parameter naming / init.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import {
  Module, Parameter, RNG_SEED_INPUT, Tensor, attention, concat, constant, full, iota, nn, rand, randn, stack, trace, where,
} from '../../compiler/dsl/index.ts';
import { KilnError, ShapeError } from '../../ir/errors.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { F32, F64, I32, T, U32, expectClose, expectExact, multiIndices, offsetOf, refRound, testDataF32, vals } from '../ops/helpers.ts';

// ------------------------------------------------------------------------------------------ helpers

const THIS_FILE = 'test/dsl/tracing.test.ts';
const SRC = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
/** 1-based line number of the line carrying the comment marker `// <-- name` (read from this file's text). */
function lineOf(name: string): number {
  const tag = `// <-- ${name}`;
  const hits = SRC.flatMap((l, i) => (l.trimEnd().endsWith(tag) ? [i + 1] : []));
  if (hits.length !== 1) throw new Error(`marker ${name} found ${hits.length} times`);
  return hits[0]!;
}
/** Run fn expecting a ShapeError; returns it. */
function catchShape(fn: () => unknown): ShapeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ShapeError);
    return e as ShapeError;
  }
  throw new Error('expected a ShapeError');
}
function expectLocAt(e: ShapeError, marker: string): void {
  const want = `${THIS_FILE}:${lineOf(marker)}:`;
  expect(e.loc, e.message).toBeDefined();
  expect(e.loc!.startsWith(want), `loc ${e.loc} should start with ${want}`).toBe(true);
  expect(e.message).toContain(`(at ${want}`);
}
/** The nodes of g other than constants, as [op, attrs]. */
function ops(g: Graph): [string, Record<string, unknown>][] {
  return g.nodes.filter((n) => n.op !== 'constant').map((n) => [n.op, { ...n.attrs }]);
}
function outNode(g: Graph, name = 'out'): Node {
  return g.node(g.output(name)!.id)!;
}
function outType(g: Graph, name = 'out') {
  return g.typeOf(g.output(name)!.id);
}
function run(g: Graph, feeds: Record<string, HostTensor>, precision: 'f32' | 'f64' = 'f32') {
  return runGraph(g, feeds, { precision });
}

// ------------------------------------------------------------------------------------------ IR of methods

describe('Tensor methods record canonical IR', () => {
  it('elementwise with a scalar: constant of the tensor dtype, then the op', () => {
    const g = trace('t', (t) => t.input('x', [2, 3]).add(2));
    expect(g.nodes.map((n) => n.op)).toEqual(['constant', 'add']);
    expect(g.nodes[0]!.attrs).toEqual({ shape: [], dtype: 'f32', value: 2 });
    expect(outType(g)).toEqual({ shape: [2, 3], dtype: 'f32' });
    expect(g.inputs.map((i) => [i.name, i.kind])).toEqual([['x', 'data']]);
  });
  it('reductions normalize negative axes, sort them, and keep keepdims', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [2, 3, 4]);
      return { a: x.sum(-1), b: x.mean([-1, 0], true), c: x.max(), d: x.min(1), e: x.argmax(-2, true) };
    });
    expect(outNode(g, 'a').attrs).toEqual({ axes: [2], keepdims: false });
    expect(outNode(g, 'b').attrs).toEqual({ axes: [0, 2], keepdims: true });
    expect(outType(g, 'b').shape).toEqual([1, 3, 1]);
    expect(outNode(g, 'c').attrs).toEqual({ axes: [0, 1, 2], keepdims: false });
    expect(outType(g, 'c').shape).toEqual([]);
    expect([outNode(g, 'd').op, outNode(g, 'd').attrs]).toEqual(['reduce_min', { axes: [1], keepdims: false }]);
    expect([outNode(g, 'e').op, outNode(g, 'e').attrs]).toEqual(['argmax', { axis: 1, keepdims: true }]);
    expect(outType(g, 'e')).toEqual({ shape: [2, 1, 4], dtype: 'i32' });
  });
  it('composites: softmax default axis is the last; norms carry eps', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [2, 5]);
      return { s: x.softmax(), l: x.logSoftmax(0), n: x.layerNorm(), r: x.rmsNorm(1e-3) };
    });
    expect([outNode(g, 's').op, outNode(g, 's').attrs]).toEqual(['softmax', { axis: 1 }]);
    expect([outNode(g, 'l').op, outNode(g, 'l').attrs]).toEqual(['log_softmax', { axis: 0 }]);
    expect([outNode(g, 'n').op, outNode(g, 'n').attrs]).toEqual(['layer_norm', { eps: 1e-5 }]);
    expect([outNode(g, 'r').op, outNode(g, 'r').attrs]).toEqual(['rms_norm', { eps: 1e-3 }]);
  });
  it('attention defaults to scale 1/sqrt(head dim) and non-causal', () => {
    const g = trace('t', (t) => attention(t.input('q', [2, 3, 16]), t.input('k', [2, 5, 16]), t.input('v', [2, 5, 8]), { causal: true }));
    expect([outNode(g).op, outNode(g).attrs]).toEqual(['attention', { causal: true, scale: 0.25 }]);
    expect(outType(g).shape).toEqual([2, 3, 8]);
    const g2 = trace('t', (t) => attention(t.input('q', [3, 4]), t.input('k', [3, 4]), t.input('v', [3, 4]), { scale: 2 }));
    expect(outNode(g2).attrs).toEqual({ causal: false, scale: 2 });
  });
  it('pad fills leading axes with zero padding', () => {
    const g = trace('t', (t) => t.input('x', [2, 3, 4]).pad([1], [2], -1));
    expect(outNode(g).attrs).toEqual({ before: [0, 0, 1], after: [0, 0, 2], value: -1 });
    expect(outType(g).shape).toEqual([2, 3, 7]);
  });
  it('take / scatterAdd / oneHot / cast', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [4, 3]);
      const i = t.input('i', [2], 'i32');
      return { g: x.take(i, -1), s: x.scatterAdd(i, t.input('u', [2, 3])), o: i.oneHot(5), c: x.cast('f16'), same: x.to('f32').mul(1) };
    });
    expect([outNode(g, 'g').op, outNode(g, 'g').attrs]).toEqual(['gather', { axis: 1 }]);
    expect(outType(g, 'g').shape).toEqual([4, 2]);
    expect([outNode(g, 's').op, outNode(g, 's').attrs]).toEqual(['scatter_add', { axis: 0 }]);
    expect(outType(g, 'o')).toEqual({ shape: [2, 5], dtype: 'f32' });
    expect([outNode(g, 'c').op, outNode(g, 'c').attrs]).toEqual(['cast', { dtype: 'f16' }]);
    // x.to('f32') on an f32 tensor records nothing
    expect(g.nodes.filter((n) => n.op === 'cast').length).toBe(2); // f16 cast + oneHot's bool→f32 cast
    const out = run(g, { x: F32([4, 3], Array.from({ length: 12 }, (_, k) => k)), i: I32([2], [2, 0]), u: F32([2, 3], [1, 1, 1, 2, 2, 2]) });
    expectExact(vals(out.g!), [2, 0, 5, 3, 8, 6, 11, 9]);
    expectExact(vals(out.s!), [2, 3, 4, 3, 4, 5, 7, 8, 9, 9, 10, 11]);
    expectExact(vals(out.o!), [0, 0, 1, 0, 0, 1, 0, 0, 0, 0]);
  });
  it('random ops share one rng_seed input and get fresh streams', () => {
    const g = trace('t', () => ({ a: rand([3]), b: randn([2, 2]), c: rand([3], 'f16') }));
    expect(g.inputs.map((i) => [i.name, i.type])).toEqual([[RNG_SEED_INPUT, { shape: [2], dtype: 'u32' }]]);
    expect(ops(g)).toEqual([
      ['random_uniform', { shape: [3], dtype: 'f32', stream: 0 }],
      ['random_normal', { shape: [2, 2], dtype: 'f32', stream: 1 }],
      ['random_uniform', { shape: [3], dtype: 'f16', stream: 2 }],
    ]);
    const seed = { [RNG_SEED_INPUT]: U32([2], [1, 2]) };
    const o1 = run(g, seed), o2 = run(g, seed);
    expectExact(vals(o1.a!), vals(o2.a!));
    expect(vals(o1.a!)).not.toEqual(vals(run(g, { [RNG_SEED_INPUT]: U32([2], [1, 3]) }).a!));
  });
  it('sources: full / constant / iota', () => {
    const g = trace('t', () => ({ f: full([2, 2], 3), c: constant([1, 2, 3, 4, 5, 6], [2, 3], 'i32'), i: iota([2, 3], -1) }));
    expect(outNode(g, 'f').op).toBe('broadcast');
    expect(outNode(g, 'i').attrs).toEqual({ shape: [2, 3], axis: 1, dtype: 'i32' });
    const o = run(g, {});
    expectExact(vals(o.f!), [3, 3, 3, 3]);
    expectExact(vals(o.c!), [1, 2, 3, 4, 5, 6]);
    expectExact(vals(o.i!), [0, 1, 2, 0, 1, 2]);
  });
});

// ------------------------------------------------------------------------------------------ movement conveniences

describe('movement conveniences', () => {
  it('reshape with -1 (and a no-op reshape records nothing)', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [2, 3, 4]);
      return { a: x.reshape(2, -1), b: x.reshape(-1), c: x.reshape([-1, 3, 2]), d: x.view(2, 3, 4).add(0), e: x.reshape(4, -1, 3) };
    });
    expect(outNode(g, 'a').attrs).toEqual({ shape: [2, 12] });
    expect(outNode(g, 'b').attrs).toEqual({ shape: [24] });
    expect(outNode(g, 'c').attrs).toEqual({ shape: [4, 3, 2] });
    expect(outNode(g, 'e').attrs).toEqual({ shape: [4, 2, 3] });
    expect(g.nodes.filter((n) => n.op === 'reshape').length).toBe(4);
  });
  it('reshape errors: two -1s, -1 that does not divide', () => {
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 3]).reshape(-1, -1))).message).toContain('reshape with operands f32[2,3]: only one dimension may be -1, got [-1,-1]');
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 3]).reshape(4, -1))).message).toContain('reshape with operands f32[2,3]: cannot infer -1 in [4,-1] for 6 elements');
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 3]).reshape(4, 2))).message).toContain('reshape with operands f32[2,3]: cannot reshape 6 elements into [4,2]');
  });
  it('squeeze / unsqueeze', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [1, 2, 1, 3]);
      const y = t.input('y', [2, 3]);
      return { a: x.squeeze(), b: x.squeeze(-2), c: x.squeeze([0, 2]), d: y.unsqueeze(-1), e: y.unsqueeze(0), f: y.unsqueeze(-3), h: y.unsqueeze(1) };
    });
    expect(outType(g, 'a').shape).toEqual([2, 3]);
    expect(outType(g, 'b').shape).toEqual([1, 2, 3]);
    expect(outType(g, 'c').shape).toEqual([2, 3]);
    expect(outType(g, 'd').shape).toEqual([2, 3, 1]);
    expect(outType(g, 'e').shape).toEqual([1, 2, 3]);
    expect(outType(g, 'f').shape).toEqual([1, 2, 3]);
    expect(outType(g, 'h').shape).toEqual([2, 1, 3]);
    expect(catchShape(() => trace('t', (t) => t.input('x', [1, 2]).squeeze(1))).message).toContain('squeeze with operands f32[1,2]: axis 1 has size 2, not 1');
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 3]).unsqueeze(3))).message).toContain('unsqueeze with operands f32[2,3]: axis 3 is out of range for rank 3');
  });
  it('chunk / split / narrow / select (slices with canonical attrs)', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [2, 6]);
      const [c0, c1, c2] = x.chunk(3, -1);
      const [s0, s1, s2] = x.split([1, 2, 3], 1);
      return { c0: c0!, c1: c1!, c2: c2!, s0: s0!, s1: s1!, s2: s2!, n: x.narrow(1, 2, 3), sel: x.select(0, -1), neg: x.slice(1, -2), st: x.slice(1, 1, 100, 2) };
    });
    const sl = (name: string) => outNode(g, name).attrs;
    expect(sl('c0')).toEqual({ starts: [0, 0], ends: [2, 2], steps: [1, 1] });
    expect(sl('c1')).toEqual({ starts: [0, 2], ends: [2, 4], steps: [1, 1] });
    expect(sl('c2')).toEqual({ starts: [0, 4], ends: [2, 6], steps: [1, 1] });
    expect(sl('s0')).toEqual({ starts: [0, 0], ends: [2, 1], steps: [1, 1] });
    expect(sl('s1')).toEqual({ starts: [0, 1], ends: [2, 3], steps: [1, 1] });
    expect(sl('s2')).toEqual({ starts: [0, 3], ends: [2, 6], steps: [1, 1] });
    expect(sl('n')).toEqual({ starts: [0, 2], ends: [2, 5], steps: [1, 1] });
    expect(outNode(g, 'sel').op).toBe('reshape');
    expect(outType(g, 'sel').shape).toEqual([6]);
    expect(sl('neg')).toEqual({ starts: [0, 4], ends: [2, 6], steps: [1, 1] });
    expect(sl('st')).toEqual({ starts: [0, 1], ends: [2, 6], steps: [1, 2] });
    expect(outType(g, 'st').shape).toEqual([2, 3]);
    const x = Array.from({ length: 12 }, (_, k) => k);
    const o = run(g, { x: F32([2, 6], x) });
    expectExact(vals(o.c1!), [2, 3, 8, 9]);
    expectExact(vals(o.s2!), [3, 4, 5, 9, 10, 11]);
    expectExact(vals(o.n!), [2, 3, 4, 8, 9, 10]);
    expectExact(vals(o.sel!), [6, 7, 8, 9, 10, 11]);
    expectExact(vals(o.st!), [1, 3, 5, 7, 9, 11]);
  });
  it('chunk / split / select errors', () => {
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 6]).chunk(4, 1)[0]!)).message).toContain('chunk with operands f32[2,6]: size 6 of axis 1 is not divisible into 4 chunks');
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 6]).split([1, 2], 1)[0]!)).message).toContain('split with operands f32[2,6]: sizes [1,2] do not add up to 6');
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 6]).select(0, 2))).message).toContain('select with operands f32[2,6]: index 2 is out of range for size 2');
  });
  it('flatten / mT / transpose / permute with negative axes', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [2, 3, 4]);
      return {
        f1: x.flatten(1), f0: x.flatten(), f01: x.flatten(0, 1), fs: t.input('s', []).flatten(),
        mt: x.mT, mt2: t.input('m', [3, 5]).mT, tr: x.transpose(0, -1), pm: x.permute(-1, 0, 1), id: x.permute(0, 1, 2).add(0),
      };
    });
    expect(outNode(g, 'f1').attrs).toEqual({ shape: [2, 12] });
    expect(outNode(g, 'f0').attrs).toEqual({ shape: [24] });
    expect(outNode(g, 'f01').attrs).toEqual({ shape: [6, 4] });
    expect(outNode(g, 'fs').attrs).toEqual({ shape: [1] });
    expect([outNode(g, 'mt').op, outNode(g, 'mt').attrs]).toEqual(['permute', { perm: [0, 2, 1] }]);
    expect(outNode(g, 'mt2').attrs).toEqual({ perm: [1, 0] });
    expect(outNode(g, 'tr').attrs).toEqual({ perm: [2, 1, 0] });
    expect(outNode(g, 'pm').attrs).toEqual({ perm: [2, 0, 1] });
    expect(outType(g, 'pm').shape).toEqual([4, 2, 3]);
    expect(g.nodes.filter((n) => n.op === 'permute').length).toBe(4); // the identity permute records nothing
  });
  it('expand / broadcastTo (-1 keeps a dimension, new leading dims)', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [1, 3, 1]);
      return { a: x.expand(2, -1, 4), b: x.expand(5, 2, 3, 4), c: x.broadcastTo([3, 1, 3, 2]), d: x.expand(1, 3, 1).add(0) };
    });
    expect([outNode(g, 'a').op, outNode(g, 'a').attrs]).toEqual(['broadcast', { shape: [2, 3, 4] }]);
    expect(outNode(g, 'b').attrs).toEqual({ shape: [5, 2, 3, 4] });
    expect(outNode(g, 'c').attrs).toEqual({ shape: [3, 1, 3, 2] });
    expect(g.nodes.filter((n) => n.op === 'broadcast').length).toBe(3);
    expect(catchShape(() => trace('t', (t) => t.input('x', [2, 3]).expand(3, 3))).message).toContain('broadcast with operands f32[2,3]: cannot broadcast to [3,3]');
  });
  it('concat / stack / cat with negative axes', () => {
    const g = trace('t', (t) => {
      const a = t.input('a', [2, 3]), b = t.input('b', [2, 3]);
      return { c: concat([a, b], -1), s: stack([a, b], -1), s0: stack([a, b]), one: concat([a]).add(0) };
    });
    expect([outNode(g, 'c').op, outNode(g, 'c').attrs]).toEqual(['concat', { axis: 1 }]);
    expect(outType(g, 'c').shape).toEqual([2, 6]);
    expect(outType(g, 's').shape).toEqual([2, 3, 2]);
    expect(outNode(g, 's').attrs).toEqual({ axis: 2 });
    expect(outType(g, 's0').shape).toEqual([2, 2, 3]);
    const o = run(g, { a: F32([2, 3], [1, 2, 3, 4, 5, 6]), b: F32([2, 3], [7, 8, 9, 10, 11, 12]) });
    expectExact(vals(o.c!), [1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11, 12]);
    expectExact(vals(o.s!), [1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 6, 12]);
  });
});

// ------------------------------------------------------------------------------------------ matmul semantics

function naiveMatmul2(a: number[], m: number, k: number, b: number[], n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
      out.push(s);
    }
  return out;
}

describe('matmul with PyTorch semantics', () => {
  const cases: [number[], number[], number[]][] = [
    [[3], [3], []],
    [[3], [3, 2], [2]],
    [[2, 3], [3], [2]],
    [[5, 2, 3], [3], [5, 2]],
    [[3], [5, 3, 4], [5, 4]],
    [[2, 1, 2, 3], [4, 3, 2], [2, 4, 2, 2]],
  ];
  for (const [as, bs, want] of cases) {
    it(`[${as}] @ [${bs}] → [${want}]`, () => {
      const g = trace('mm', (t) => t.input('a', as).matmul(t.input('b', bs)));
      expect(outType(g).shape).toEqual(want);
      expect(g.nodes.filter((n) => n.op === 'matmul').length).toBe(1);
      for (const n of g.nodes.filter((n) => n.op === 'matmul')) expect(n.type.shape.length).toBeGreaterThanOrEqual(2);
      const a = testDataF32(as.reduce((x, y) => x * y, 1), 1), b = testDataF32(bs.reduce((x, y) => x * y, 1), 2);
      const got = vals(run(g, { a: F64(as, a), b: F64(bs, b) }, 'f64').out!);
      // naive: promote 1-D operands, loop over broadcast batch, drop the promoted axes
      const A = as.length === 1 ? [1, as[0]!] : as, Bs = bs.length === 1 ? [bs[0]!, 1] : bs;
      const [m, k] = A.slice(-2) as [number, number], n = Bs[Bs.length - 1]!;
      const ab = A.slice(0, -2), bb = Bs.slice(0, -2);
      const r = Math.max(ab.length, bb.length);
      const pa = [...Array(r - ab.length).fill(1), ...ab], pb = [...Array(r - bb.length).fill(1), ...bb];
      const batch = pa.map((d, i) => (d === 1 ? pb[i]! : d));
      const ref: number[] = [];
      for (const bi of multiIndices(batch)) {
        const oa = offsetOf(pa, bi.map((v, i) => (pa[i] === 1 ? 0 : v))) * m * k;
        const ob = offsetOf(pb, bi.map((v, i) => (pb[i] === 1 ? 0 : v))) * k * n;
        ref.push(...naiveMatmul2(a.slice(oa, oa + m * k), m, k, b.slice(ob, ob + k * n), n));
      }
      expectClose(got, ref, 1e-13, 1e-14);
    });
  }
  it('dot product literal and scalar operands rejected', () => {
    const g = trace('dot', (t) => t.input('a', [3]).matmul(t.input('b', [3])));
    expectExact(vals(run(g, { a: F32([3], [1, 2, 3]), b: F32([3], [4, 5, 6]) }).out!), [32]);
    expect(catchShape(() => trace('t', (t) => t.input('a', []).matmul(t.input('b', [3])))).message).toContain('matmul with operands f32[], f32[3]: operands must have rank >= 1');
  });
});

// ------------------------------------------------------------------------------------------ scalar lifting

describe('plain numbers are lifted to the tensor dtype', () => {
  it('f16 / i32 / u32 tensors', () => {
    const g = trace('t', (t) => ({
      h: t.input('h', [2], 'f16').add(0.1),
      i: t.input('i', [2], 'i32').mul(3),
      u: t.input('u', [2], 'u32').sub(1),
      r: t.input('r', [2]).rsub(1),
      d: t.input('d', [2]).rdiv(2),
    }));
    const consts = g.nodes.filter((n) => n.op === 'constant').map((n) => n.attrs);
    expect(consts).toEqual([
      { shape: [], dtype: 'f16', value: 0.1 },
      { shape: [], dtype: 'i32', value: 3 },
      { shape: [], dtype: 'u32', value: 1 },
      { shape: [], dtype: 'f32', value: 1 },
      { shape: [], dtype: 'f32', value: 2 },
    ]);
    expect(outType(g, 'h').dtype).toBe('f16');
    const o = run(g, { h: T('f16', [2], [1, 2]), i: I32([2], [5, -7]), u: U32([2], [0, 7]), r: F32([2], [0.25, 3]), d: F32([2], [4, -0.5]) });
    expectExact(vals(o.h!), [refRound('f16', 1 + refRound('f16', 0.1)), refRound('f16', 2 + refRound('f16', 0.1))]);
    expectExact(vals(o.i!), [15, -21]);
    expectExact(vals(o.u!), [4294967295, 6]);
    expectExact(vals(o.r!), [0.75, -2]);
    expectExact(vals(o.d!), [0.5, -4]);
  });
  it('where lifts numbers to the other operand dtype (f32 if both are numbers)', () => {
    const g = trace('t', (t) => {
      const c = t.input('c', [3], 'bool');
      return { a: where(c, 1, t.input('x', [3], 'i32')), b: where(c, 1, 2), h: where(c, t.input('y', [3], 'f16'), -1) };
    });
    expect(outType(g, 'a').dtype).toBe('i32');
    expect(outType(g, 'b').dtype).toBe('f32');
    expect(outType(g, 'h').dtype).toBe('f16');
    const o = run(g, { c: T('bool', [3], [1, 0, 1]), x: I32([3], [7, 8, 9]), y: T('f16', [3], [0.5, 0.5, 0.5]) });
    expectExact(vals(o.a!), [1, 8, 1]);
    expectExact(vals(o.b!), [1, 2, 1]);
    expectExact(vals(o.h!), [0.5, -1, 0.5]);
  });
  it('clamp / relu / comparisons with numbers', () => {
    const g = trace('t', (t) => {
      const x = t.input('x', [4]);
      return { c: x.clamp(-1, 1), r: x.relu(), gt: x.gt(0) };
    });
    expect(ops(g).map((o) => o[0])).toEqual(['max', 'min', 'max', 'gt']);
    const o = run(g, { x: F32([4], [-3, -0.5, 0.5, 3]) });
    expectExact(vals(o.c!), [-1, -0.5, 0.5, 1]);
    expectExact(vals(o.r!), [0, 0, 0.5, 3]);
    expectExact(vals(o.gt!), [0, 0, 1, 1]);
  });
});

describe('DSL activation helpers (f64 values from 50-digit references)', () => {
  it('gelu / gelu tanh / silu / softplus / var / logsumexp', () => {
    const g = trace('act', (t) => {
      const x = t.input('x', [3]);
      return { ge: x.gelu(), gt: x.gelu('tanh'), si: x.silu(), sp: x.softplus(), v: x.var(), vu: x.var(0, false, 1), lse: x.logsumexp(0) };
    });
    const o = run(g, { x: F64([3], [1, -2, 2]) }, 'f64');
    expectClose(vals(o.ge!).slice(0, 1), [0.8413447460685429], 1e-15);
    expectClose(vals(o.gt!).slice(0, 1), [0.8411919906082768], 1e-15);
    expectClose(vals(o.si!).slice(0, 2), [0.7310585786300049, -0.23840584404423512], 1e-15);
    expectClose(vals(o.sp!), [1.3132616875182228, 0.1269280110429725, 2.1269280110429727], 1e-15);
    expectClose(vals(o.v!), [26 / 9], 1e-15); // mean 1/3, E[x²] = 3 → 3 - 1/9
    expectClose(vals(o.vu!), [13 / 3], 1e-15); // 78/9 / (3 - 1)
    expectClose(vals(o.lse!), [Math.log(Math.E + Math.exp(-2) + Math.exp(2))], 1e-15);
  });
  it('softplus keeps relative accuracy for very negative inputs (log1p(exp(x)); PyTorch / torch.nn.functional.softplus)', () => {
    const g = trace('sp', (t) => t.input('x', [3]).softplus());
    // log1p(exp(x)) from 50-digit references
    const want = [9.357622968839737e-14, 2.061153620314381e-9, 4.248354255291589e-18];
    expectClose(vals(run(g, { x: F64([3], [-30, -20, -40]) }, 'f64').out!), want, 1e-12, 0);
    expectClose(vals(run(g, { x: F32([3], [-30, -20, -40]) }).out!), want.map(Math.fround), 1e-6, 0);
  });
});

// ------------------------------------------------------------------------------------------ source locations

class BadMlp extends Module {
  fc1 = new nn.Linear(4, 8);
  fc2 = new nn.Linear(6, 2); // wrong in_features
  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x).relu();
    return this.fc2.forward(h); // <-- L_mlp_fc2
  }
}

describe('shape mistakes in model code point at the model line', () => {
  it('GraphBuilder rule (matmul) called directly', () => {
    const e = catchShape(() =>
      trace('bad', (t) => {
        const a = t.input('a', [2, 3]);
        const b = t.input('b', [4, 5]);
        return a.matmul(b); // <-- L_matmul
      }),
    );
    expect(e.message.startsWith('matmul with operands f32[2,3], f32[4,5]: inner dimensions differ (3 vs 4) (at test/dsl/tracing.test.ts:')).toBe(true);
    expectLocAt(e, 'L_matmul');
  });
  it('broadcasting mistake', () => {
    const e = catchShape(() =>
      trace('bad', (t) => {
        const a = t.input('a', [2, 3]);
        return a.add(t.input('b', [2])); // <-- L_add
      }),
    );
    expect(e.detail).toBe('shapes [2,3] and [2] cannot be broadcast together');
    expectLocAt(e, 'L_add');
  });
  it('DSL argument check (squeeze of a non-1 axis)', () => {
    const e = catchShape(() =>
      trace('bad', (t) => {
        const x = t.input('x', [2, 3]);
        return x.squeeze(0); // <-- L_squeeze
      }),
    );
    expectLocAt(e, 'L_squeeze');
  });
  it('reshape -1 that cannot be inferred', () => {
    const e = catchShape(() =>
      trace('bad', (t) => {
        const x = t.input('x', [2, 3]);
        return x.reshape(4, -1); // <-- L_reshape
      }),
    );
    expectLocAt(e, 'L_reshape');
  });
  it('mistake inside an nn layer called from the test: the location is the calling line', () => {
    const lin = new nn.Linear(5, 3);
    const e = catchShape(() =>
      trace(
        'bad',
        (t) => {
          const x = t.input('x', [2, 4]);
          return lin.forward(x); // <-- L_linear
        },
        { params: lin },
      ),
    );
    expect(e.op).toBe('matmul');
    expect(e.operands).toEqual(['f32[2,4]', 'f32[5,3]']);
    expectLocAt(e, 'L_linear');
  });
  it('mistake inside nn.LayerNorm (affine broadcast)', () => {
    const ln = new nn.LayerNorm(5);
    const e = catchShape(() =>
      trace('bad', (t) => ln.forward(t.input('x', [2, 4])), { params: ln }), // <-- L_ln
    );
    expect(e.op).toBe('mul');
    expectLocAt(e, 'L_ln');
  });
  it('mistake inside a layer called by a model defined in the test: the model line', () => {
    const m = new BadMlp();
    const e = catchShape(() => trace('bad', (t) => m.forward(t.input('x', [3, 4])), { params: m }));
    expect(e.message).toContain('matmul with operands f32[3,8], f32[6,2]: inner dimensions differ (8 vs 6)');
    expectLocAt(e, 'L_mlp_fc2');
  });
  it('successful nodes record their model line too', () => {
    const g = trace('ok', (t) => {
      const x = t.input('x', [2, 3]);
      const y = x.exp(); // <-- L_exp
      return y.sum(1); // <-- L_sum
    });
    const exp = g.nodes.find((n) => n.op === 'exp')!;
    const sum = g.nodes.find((n) => n.op === 'reduce_sum')!;
    expect(exp.loc!.startsWith(`${THIS_FILE}:${lineOf('L_exp')}:`)).toBe(true);
    expect(sum.loc!.startsWith(`${THIS_FILE}:${lineOf('L_sum')}:`)).toBe(true);
  });
  it('location of a runtime error (out-of-range gather) is the model line', () => {
    const g = trace('ok', (t) => {
      const x = t.input('x', [3]);
      return x.take(t.input('i', [1], 'i32')); // <-- L_take
    });
    expect(() => run(g, { x: F32([3], [1, 2, 3]), i: I32([1], [3]) })).toThrow(`gather: index 3 is out of range for an axis of size 3 (at ${THIS_FILE}:${lineOf('L_take')}:`);
  });
  it('misuse outside a trace, tensors escaping a trace, unregistered parameters', () => {
    let leaked: Tensor | undefined;
    trace('a', (t) => (leaked = t.input('x', [2])));
    expect(() => trace('b', (t) => t.input('y', [2]).add(leaked!))).toThrow('add: a tensor from another trace was used');
    expect(() => full([2], 1)).toThrow('no active trace');
    const lin = new nn.Linear(2, 2);
    lin.namedParameters();
    expect(() => trace('c', (t) => lin.forward(t.input('x', [1, 2])))).toThrow(KilnError);
    expect(() => trace('c', (t) => lin.forward(t.input('x', [1, 2])))).toThrow('parameter weight f32[2,2] is used in a trace but its module was not passed');
  });
});

// ------------------------------------------------------------------------------------------ modules

class Attn extends Module {
  qkv = new nn.Linear(8, 24);
  proj = new nn.Linear(8, 8, { bias: false });
}
class Block extends Module {
  norm1 = new nn.LayerNorm(8);
  attn = new Attn();
  norm2 = new nn.RMSNorm(8);
}
class TiedHead extends Module {
  constructor(readonly weight: Parameter) {
    super();
  }
}
class Net extends Module {
  embed = new Parameter([16, 8], { kind: 'normal', std: 0.02 });
  blocks = [new Block(), new Block()];
  head = new TiedHead(this.embed);
  final = new nn.Linear(8, 3);
}

describe('Module parameter naming and init', () => {
  const blockKeys = (i: number) => [
    `blocks.${i}.norm1.weight`, `blocks.${i}.norm1.bias`,
    `blocks.${i}.attn.qkv.weight`, `blocks.${i}.attn.qkv.bias`, `blocks.${i}.attn.proj.weight`,
    `blocks.${i}.norm2.weight`,
  ];
  const KEYS = ['embed', ...blockKeys(0), ...blockKeys(1), 'final.weight', 'final.bias'];

  it('state_dict keys: nested modules, arrays of modules, tied parameters once', () => {
    const net = new Net();
    expect(net.namedParameters().map(([k]) => k)).toEqual(KEYS);
    expect(net.parameters().length).toBe(KEYS.length);
    expect(net.parameters()[0]).toBe(net.head.weight);
    expect(net.embed.name).toBe('embed');
    expect(net.blocks[1]!.attn.qkv.weight.name).toBe('blocks.1.attn.qkv.weight');
    expect(net.numParams()).toBe(16 * 8 + 2 * (8 + 8 + 24 * 8 + 24 + 8 * 8 + 8) + 8 * 3 + 3);
    expect(net.namedModules().map(([k]) => k)).toEqual([
      '', 'blocks.0', 'blocks.0.norm1', 'blocks.0.attn', 'blocks.0.attn.qkv', 'blocks.0.attn.proj', 'blocks.0.norm2',
      'blocks.1', 'blocks.1.norm1', 'blocks.1.attn', 'blocks.1.attn.qkv', 'blocks.1.attn.proj', 'blocks.1.norm2', 'head', 'final',
    ]);
    expect(net.blocks[0]!.namedParameters('blocks.0.').map(([k]) => k)).toEqual(blockKeys(0));
  });
  it('trace registers each parameter once, as param inputs in state_dict order', () => {
    const net = new Net();
    const g = trace('net', (t) => {
      const x = t.input('x', [2, 8]);
      const logits = x.matmul(net.head.weight.mT); // uses the tied parameter under its other name
      return { logits, y: net.final.forward(x.add(net.embed.sum(0))) };
    }, { params: net });
    expect(g.inputs.filter((i) => i.kind === 'param').map((i) => i.name)).toEqual(KEYS);
    expect(g.inputs.map((i) => i.name)).toEqual([...KEYS, 'x']);
    expect(g.inputByName('blocks.0.attn.qkv.weight')!.type).toEqual({ shape: [24, 8], dtype: 'f32' });
  });
  it('initState: keys, shapes, deterministic per seed, different across seeds and across parameters', () => {
    const net = new Net();
    const s1 = net.initState(1), s1b = new Net().initState(1), s2 = net.initState(2);
    expect([...s1.keys()]).toEqual(KEYS);
    for (const [k, p] of net.namedParameters()) {
      expect(s1.get(k)!.shape).toEqual(p.shape);
      expect(s1.get(k)!.dtype).toBe('f32');
      expectExact(vals(s1.get(k)!), vals(s1b.get(k)!), k);
    }
    expect(vals(s1.get('embed')!)).not.toEqual(vals(s2.get('embed')!));
    expect(vals(s1.get('blocks.0.attn.qkv.weight')!)).not.toEqual(vals(s2.get('blocks.0.attn.qkv.weight')!));
    expect(vals(s1.get('blocks.0.attn.qkv.weight')!)).not.toEqual(vals(s1.get('blocks.1.attn.qkv.weight')!));
    expect(vals(s1.get('blocks.0.norm1.weight')!).every((v) => v === 1)).toBe(true);
    expect(vals(s1.get('blocks.0.norm1.bias')!).every((v) => v === 0)).toBe(true);
    expect(vals(s1.get('blocks.1.norm2.weight')!).every((v) => v === 1)).toBe(true);
    // seeds above 2^32 use the high word
    expect(vals(net.initState(2 ** 32 + 1).get('embed')!)).not.toEqual(vals(s1.get('embed')!));
  });
  it('normal init has roughly the requested std', () => {
    const big = new (class extends Module {
      w = new Parameter([100, 100], { kind: 'normal', std: 0.02, mean: 1 });
    })();
    const v = vals(big.initState(3).get('w')!);
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
    expect(Math.abs(mean - 1)).toBeLessThan(5 * 0.02 / 100);
    expect(Math.abs(sd - 0.02)).toBeLessThan(0.02 * 5 * Math.sqrt(1 / 2 / 10000));
  });
  it('Linear default init: U(±1/sqrt(in)) for weight and bias', () => {
    const lin = new nn.Linear(50, 40);
    const st = lin.initState(7);
    const bound = 1 / Math.sqrt(50);
    const w = vals(st.get('weight')!), bias = vals(st.get('bias')!);
    for (const v of [...w, ...bias]) expect(Math.abs(v)).toBeLessThanOrEqual(Math.fround(bound));
    // the range is actually used: extremes near the bounds, mean near 0
    expect(Math.max(...w)).toBeGreaterThan(0.95 * bound);
    expect(Math.min(...w)).toBeLessThan(-0.95 * bound);
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    expect(Math.abs(mean)).toBeLessThan(5 * bound / Math.sqrt(3 * w.length));
    expect(Math.max(...bias.map(Math.abs))).toBeGreaterThan(0.5 * bound);
  });
  it('Linear forward = x Wᵀ + b on the CPU backend (naive reference)', () => {
    const lin = new nn.Linear(3, 2);
    const g = trace('lin', (t) => lin.forward(t.input('x', [4, 3])), { params: lin });
    const st = lin.initState(5);
    const W = vals(st.get('weight')!), bv = vals(st.get('bias')!);
    const x = testDataF32(12, 9);
    const y = vals(run(g, { x: F64([4, 3], x), weight: st.get('weight')!, bias: st.get('bias')! }, 'f64').out!);
    const want: number[] = [];
    for (let i = 0; i < 4; i++)
      for (let o = 0; o < 2; o++) {
        let s = bv[o]!;
        for (let k = 0; k < 3; k++) s += x[i * 3 + k]! * W[o * 3 + k]!;
        want.push(s);
      }
    expectClose(y, want, 1e-14, 1e-15);
  });
  it('LayerNorm / RMSNorm forward with affine parameters (naive reference)', () => {
    const ln = new nn.LayerNorm(4, { eps: 1e-3 });
    const rms = new nn.RMSNorm(4, { affine: false });
    expect(ln.namedParameters().map(([k]) => k)).toEqual(['weight', 'bias']);
    expect(rms.namedParameters()).toEqual([]);
    const g = trace('n', (t) => {
      const x = t.input('x', [2, 4]);
      return { ln: ln.forward(x), rms: rms.forward(x) };
    }, { params: ln });
    const x = [1, 2, 3, 5, -1, 0, 0, 3];
    const w = [1, 2, 0.5, -1], b = [0, 1, -1, 0.25];
    const o = run(g, { x: F64([2, 4], x), weight: F64([4], w), bias: F64([4], b) }, 'f64');
    const wantLn: number[] = [], wantRms: number[] = [];
    for (let r = 0; r < 2; r++) {
      const row = x.slice(r * 4, r * 4 + 4);
      const mean = row.reduce((a, c) => a + c, 0) / 4;
      const v = row.reduce((a, c) => a + (c - mean) ** 2, 0) / 4;
      const ms = row.reduce((a, c) => a + c * c, 0) / 4;
      row.forEach((c, j) => {
        wantLn.push(((c - mean) / Math.sqrt(v + 1e-3)) * w[j]! + b[j]!);
        wantRms.push(c / Math.sqrt(ms + 1e-6));
      });
    }
    expectClose(vals(o.ln!), wantLn, 1e-13, 1e-15);
    expectClose(vals(o.rms!), wantRms, 1e-13, 1e-15);
  });
});

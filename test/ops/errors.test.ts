/**
 * @file Error messages: every op's shape/dtype/attribute rule, broken on purpose, must throw a
 * ShapeError from GraphBuilder whose message names the op, the operand types and the rule; and
 * runGraph must name the input that was missing, mis-shaped, mis-typed or unknown.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import type { DType } from '../../ir/dtype.ts';
import { KilnError, ShapeError } from '../../ir/errors.ts';
import { GraphBuilder } from '../../ir/graph.ts';
import type { Attrs, OpName } from '../../ir/ops.ts';
import { F32, F64, I32, T, expectExact, vals } from './helpers.ts';

type Ty = [number[], DType];
const f = (...shape: number[]): Ty => [shape, 'f32'];
const i = (...shape: number[]): Ty => [shape, 'i32'];
const u = (...shape: number[]): Ty => [shape, 'u32'];
const b = (...shape: number[]): Ty => [shape, 'bool'];
const h = (...shape: number[]): Ty => [shape, 'f16'];

/** The ShapeError thrown by GraphBuilder.op for `op` on operands of types `ins`. */
function shapeError(op: string, ins: Ty[], attrs: Attrs = {}, loc?: string): ShapeError {
  const g = new GraphBuilder('g');
  const ids = ins.map(([shape, dtype], k) => g.input(`x${k}`, { shape, dtype }));
  try {
    g.op(op as OpName, ids, attrs, loc);
  } catch (e) {
    expect(e).toBeInstanceOf(ShapeError);
    expect(e).toBeInstanceOf(KilnError);
    return e as ShapeError;
  }
  throw new Error(`${op} did not throw`);
}
function msg(op: string, ins: Ty[], attrs: Attrs = {}): string {
  return shapeError(op, ins, attrs).message;
}

describe('ShapeError structure', () => {
  it('matmul inner dimension mismatch (the canonical example)', () => {
    const e = shapeError('matmul', [f(2, 3), f(4, 5)]);
    expect(e.message).toBe('matmul with operands f32[2,3], f32[4,5]: inner dimensions differ (3 vs 4)');
    expect(e.name).toBe('ShapeError');
    expect(e.op).toBe('matmul');
    expect(e.operands).toEqual(['f32[2,3]', 'f32[4,5]']);
    expect(e.detail).toBe('inner dimensions differ (3 vs 4)');
    expect(e.loc).toBeUndefined();
  });
  it('a location passed to GraphBuilder.op is appended', () => {
    const e = shapeError('matmul', [f(2, 3), f(4, 5)], {}, 'models/mlp.ts:12:7');
    expect(e.message).toBe('matmul with operands f32[2,3], f32[4,5]: inner dimensions differ (3 vs 4) (at models/mlp.ts:12:7)');
    expect(e.loc).toBe('models/mlp.ts:12:7');
    expect(e.stack).toContain('models/mlp.ts:12:7');
  });
  it('rank-0 and zero-size operands print as f32[] and f32[0,3]', () => {
    expect(msg('add', [f(), i(0, 3)])).toBe('add with operands f32[], i32[0,3]: operand dtypes differ (f32 vs i32)');
    expect(msg('matmul', [f(), f(0, 3)])).toBe('matmul with operands f32[], f32[0,3]: operands need rank >= 2');
  });
});

describe('elementwise rules', () => {
  it('binary: dtypes must match, broadcastable, bool not allowed, pow needs floats', () => {
    expect(msg('add', [f(3), i(3)])).toBe('add with operands f32[3], i32[3]: operand dtypes differ (f32 vs i32)');
    expect(msg('sub', [f(3), f(4)])).toBe('sub with operands f32[3], f32[4]: shapes [3] and [4] cannot be broadcast together');
    expect(msg('mul', [f(2, 3), f(3, 2)])).toBe('mul with operands f32[2,3], f32[3,2]: shapes [2,3] and [3,2] cannot be broadcast together');
    expect(msg('div', [b(2), b(2)])).toBe('div with operands bool[2], bool[2]: is not defined for bool');
    expect(msg('pow', [i(2), i(2)])).toBe('pow with operands i32[2], i32[2]: needs float operands, got i32');
    expect(msg('mod', [h(2), f(2)])).toBe('mod with operands f16[2], f32[2]: operand dtypes differ (f16 vs f32)');
    expect(msg('max', [u(2), i(2)])).toBe('max with operands u32[2], i32[2]: operand dtypes differ (u32 vs i32)');
  });
  it('unary: float-only ops, not on bool only, neg not on u32, nothing numeric on bool', () => {
    for (const op of ['exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'floor', 'ceil'])
      expect(msg(op, [i(2)])).toBe(`${op} with operands i32[2]: needs a float operand, got i32`);
    expect(msg('not', [f(2)])).toBe('not with operands f32[2]: operand must be bool');
    expect(msg('neg', [u(2)])).toBe('neg with operands u32[2]: is not defined for u32');
    expect(msg('abs', [b(2)])).toBe('abs with operands bool[2]: is not defined for bool');
    expect(msg('sign', [b(2)])).toBe('sign with operands bool[2]: is not defined for bool');
  });
  it('compare and logical', () => {
    expect(msg('lt', [f(2), i(2)])).toBe('lt with operands f32[2], i32[2]: operand dtypes differ (f32 vs i32)');
    expect(msg('eq', [f(2), f(3)])).toBe('eq with operands f32[2], f32[3]: shapes [2] and [3] cannot be broadcast together');
    expect(msg('and', [f(2), f(2)])).toBe('and with operands f32[2], f32[2]: operands must be bool');
    expect(msg('or', [b(2), i(2)])).toBe('or with operands bool[2], i32[2]: operand dtypes differ (bool vs i32)');
    expect(msg('xor', [b(2), b(3)])).toBe('xor with operands bool[2], bool[3]: shapes [2] and [3] cannot be broadcast together');
  });
  it('where: bool condition, broadcastable', () => {
    expect(msg('where', [f(2), f(2), f(2)])).toBe('where with operands f32[2], f32[2], f32[2]: condition must be bool');
    expect(msg('where', [b(2), f(3), f(2)])).toBe('where with operands bool[2], f32[3], f32[2]: shapes [2] and [3] and [2] cannot be broadcast together');
  });
  it('where: mismatched value dtypes name all three operands', () => {
    expect(msg('where', [b(2), f(2), i(2)])).toBe('where with operands bool[2], f32[2], i32[2]: value dtypes differ (f32 vs i32)');
  });
  it('cast to an unknown dtype', () => {
    expect(msg('cast', [f(2)], { dtype: 'f64' as never })).toBe('cast with operands f32[2]: attribute \'dtype\' must be dtype, got "f64"');
  });
});

describe('reduction rules', () => {
  it('axes out of range, unsorted, repeated; dtype rules; empty axes', () => {
    expect(msg('reduce_sum', [f(2, 3)], { axes: [2], keepdims: false })).toBe('reduce_sum with operands f32[2,3]: axis 2 is out of range for rank 2');
    expect(msg('reduce_sum', [f(2, 3)], { axes: [-1], keepdims: false })).toBe('reduce_sum with operands f32[2,3]: axis -1 is out of range for rank 2');
    expect(msg('reduce_max', [f(2, 3)], { axes: [1, 0], keepdims: false })).toBe('reduce_max with operands f32[2,3]: axes [1,0] must be sorted and unique');
    expect(msg('reduce_min', [f(2, 3)], { axes: [1, 1], keepdims: false })).toBe('reduce_min with operands f32[2,3]: axes [1,1] must be sorted and unique');
    expect(msg('reduce_sum', [b(2)], { axes: [0], keepdims: false })).toBe('reduce_sum with operands bool[2]: is not defined for bool');
    expect(msg('reduce_mean', [i(2)], { axes: [0], keepdims: false })).toBe('reduce_mean with operands i32[2]: needs a float operand, got i32');
    expect(msg('reduce_max', [f(0, 2)], { axes: [0], keepdims: false })).toBe('reduce_max with operands f32[0,2]: cannot reduce an empty axis');
  });
  it('argmax', () => {
    expect(msg('argmax', [f(2, 3)], { axis: 2, keepdims: false })).toBe('argmax with operands f32[2,3]: axis 2 is out of range for rank 2');
    expect(msg('argmax', [f(2, 0)], { axis: 1, keepdims: false })).toBe('argmax with operands f32[2,0]: cannot reduce an empty axis');
    expect(msg('argmax', [b(2)], { axis: 0, keepdims: false })).toBe('argmax with operands bool[2]: is not defined for bool');
  });
  it('attribute kinds are checked: missing, wrong kind, unknown', () => {
    expect(msg('reduce_sum', [f(2)], { axes: [0] })).toBe("reduce_sum with operands f32[2]: missing attribute 'keepdims'");
    expect(msg('reduce_sum', [f(2)], { axes: 0, keepdims: false })).toBe("reduce_sum with operands f32[2]: attribute 'axes' must be ints, got 0");
    expect(msg('reduce_sum', [f(2)], { axes: [0.5], keepdims: false })).toBe("reduce_sum with operands f32[2]: attribute 'axes' must be ints, got [0.5]");
    expect(msg('reduce_sum', [f(2)], { axes: [0], keepdims: 1 })).toBe("reduce_sum with operands f32[2]: attribute 'keepdims' must be bool, got 1");
    expect(msg('reduce_sum', [f(2)], { axes: [0], keepdims: false, axis: 0 })).toBe("reduce_sum with operands f32[2]: unknown attribute 'axis'");
  });
});

describe('movement rules', () => {
  it('reshape', () => {
    expect(msg('reshape', [f(2, 3)], { shape: [4] })).toBe('reshape with operands f32[2,3]: cannot reshape 6 elements into [4]');
    expect(msg('reshape', [f(2, 3)], { shape: [-1, 6] })).toBe('reshape with operands f32[2,3]: shape [-1,6] is not a list of non-negative integers');
  });
  it('permute', () => {
    expect(msg('permute', [f(2, 3)], { perm: [0, 0] })).toBe('permute with operands f32[2,3]: perm [0,0] is not a permutation of 0..1');
    expect(msg('permute', [f(2, 3)], { perm: [1, 0, 2] })).toBe('permute with operands f32[2,3]: perm [1,0,2] is not a permutation of 0..1');
    expect(msg('permute', [f(2, 3, 4)], { perm: [2, 1] })).toBe('permute with operands f32[2,3,4]: perm [2,1] is not a permutation of 0..2');
  });
  it('broadcast', () => {
    expect(msg('broadcast', [f(3)], { shape: [2] })).toBe('broadcast with operands f32[3]: cannot broadcast to [2]');
    expect(msg('broadcast', [f(2, 3)], { shape: [3] })).toBe('broadcast with operands f32[2,3]: cannot broadcast to [3]');
    expect(msg('broadcast', [f(3)], { shape: [2, -3] })).toBe('broadcast with operands f32[3]: shape [2,-3] is not a list of non-negative integers');
  });
  it('slice', () => {
    const a = { starts: [0, 0], ends: [2, 3], steps: [1, 1] };
    expect(msg('slice', [f(2, 3)], { ...a, starts: [0] })).toBe('slice with operands f32[2,3]: starts/ends/steps need 2 entries each');
    expect(msg('slice', [f(2, 3)], { ...a, steps: [0, 1] })).toBe('slice with operands f32[2,3]: step 0 on axis 0 must be a positive integer');
    expect(msg('slice', [f(2, 3)], { ...a, steps: [1, -1] })).toBe('slice with operands f32[2,3]: step -1 on axis 1 must be a positive integer');
    expect(msg('slice', [f(2, 3)], { ...a, starts: [2, 0], ends: [1, 3] })).toBe('slice with operands f32[2,3]: range 2:1 on axis 0 is not within 0..2');
    expect(msg('slice', [f(2, 3)], { ...a, ends: [2, 4] })).toBe('slice with operands f32[2,3]: range 0:4 on axis 1 is not within 0..3');
    expect(msg('slice', [f(2, 3)], { ...a, starts: [-1, 0] })).toBe('slice with operands f32[2,3]: range -1:2 on axis 0 is not within 0..2');
  });
  it('pad', () => {
    expect(msg('pad', [f(2, 3)], { before: [1], after: [0, 0], value: 0 })).toBe('pad with operands f32[2,3]: before/after need 2 entries each');
    expect(msg('pad', [f(2, 3)], { before: [1, -1], after: [0, 0], value: 0 })).toBe('pad with operands f32[2,3]: padding must be non-negative integers');
    expect(msg('pad', [f(2)], { before: [1], after: [0], value: 'x' as never })).toBe('pad with operands f32[2]: attribute \'value\' must be float, got "x"');
  });
  it('concat', () => {
    expect(msg('concat', [f(2, 3), f(2, 4), f(3, 3)], { axis: 1 })).toBe('concat with operands f32[2,3], f32[2,4], f32[3,3]: shapes must match except on axis 1');
    expect(msg('concat', [f(2, 3), f(2)], { axis: 0 })).toBe('concat with operands f32[2,3], f32[2]: shapes must match except on axis 0');
    expect(msg('concat', [f(2), i(2)], { axis: 0 })).toBe('concat with operands f32[2], i32[2]: operand dtypes differ (f32 vs i32)');
    expect(msg('concat', [f(2), f(2)], { axis: 1 })).toBe('concat with operands f32[2], f32[2]: axis 1 is out of range for rank 1');
    expect(msg('concat', [], { axis: 0 })).toBe('concat: takes at least 1 operand(s), got 0');
  });
});

describe('matmul, gather, scatter_add, sources, random, composites', () => {
  it('matmul', () => {
    expect(msg('matmul', [f(2, 3), f(4, 5)])).toBe('matmul with operands f32[2,3], f32[4,5]: inner dimensions differ (3 vs 4)');
    expect(msg('matmul', [f(3), f(3, 2)])).toBe('matmul with operands f32[3], f32[3,2]: operands need rank >= 2');
    expect(msg('matmul', [f(2, 2, 3), f(3, 3, 4)])).toBe('matmul with operands f32[2,2,3], f32[3,3,4]: batch dimensions cannot be broadcast together');
    expect(msg('matmul', [b(2, 2), b(2, 2)])).toBe('matmul with operands bool[2,2], bool[2,2]: is not defined for bool');
    expect(msg('matmul', [f(2, 2), h(2, 2)])).toBe('matmul with operands f32[2,2], f16[2,2]: operand dtypes differ (f32 vs f16)');
    expect(msg('matmul', [f(2, 2)])).toBe('matmul with operands f32[2,2]: takes 2 operand(s), got 1');
  });
  it('gather and scatter_add', () => {
    expect(msg('gather', [f(3, 2), f(2)], { axis: 0 })).toBe('gather with operands f32[3,2], f32[2]: indices must be i32');
    expect(msg('gather', [f(3, 2), u(2)], { axis: 0 })).toBe('gather with operands f32[3,2], u32[2]: indices must be i32');
    expect(msg('gather', [f(3, 2), i(2)], { axis: 2 })).toBe('gather with operands f32[3,2], i32[2]: axis 2 is out of range for rank 2');
    expect(msg('scatter_add', [f(3, 2), i(4), f(3, 2)], { axis: 0 })).toBe('scatter_add with operands f32[3,2], i32[4], f32[3,2]: updates must have shape [4,2]');
    expect(msg('scatter_add', [f(3, 2), i(4), f(4)], { axis: 0 })).toBe('scatter_add with operands f32[3,2], i32[4], f32[4]: updates must have shape [4,2]');
    expect(msg('scatter_add', [f(3, 2), i(4), i(4, 2)], { axis: 0 })).toBe('scatter_add with operands f32[3,2], i32[4], i32[4,2]: base and updates dtypes differ');
    expect(msg('scatter_add', [f(3, 2), f(4), f(4, 2)], { axis: 0 })).toBe('scatter_add with operands f32[3,2], f32[4], f32[4,2]: indices must be i32');
  });
  it('iota and constant', () => {
    expect(msg('iota', [], { shape: [2, 3], axis: 2, dtype: 'i32' })).toBe('iota: axis 2 is out of range for rank 2');
    expect(msg('iota', [], { shape: [2, 3], axis: 0, dtype: 'bool' })).toBe('iota: dtype cannot be bool');
    expect(msg('iota', [], { shape: [2, -3], axis: 0, dtype: 'i32' })).toBe('iota: shape [2,-3] is not a list of non-negative integers');
    expect(msg('constant', [], { shape: [2, 2], dtype: 'f32', value: [1, 2, 3] })).toBe('constant: has 3 values for shape [2,2]');
    expect(msg('constant', [f(2)], { shape: [], dtype: 'f32', value: 1 })).toBe('constant with operands f32[2]: takes 0 operand(s), got 1');
  });
  it('random ops', () => {
    const a = { shape: [4], dtype: 'f32' as DType, stream: 0 };
    expect(msg('random_uniform', [u(3)], a)).toBe('random_uniform with operands u32[3]: seed must be u32[2]');
    expect(msg('random_normal', [i(2)], a)).toBe('random_normal with operands i32[2]: seed must be u32[2]');
    expect(msg('random_uniform', [u(2)], { ...a, dtype: 'i32' as DType })).toBe('random_uniform with operands u32[2]: dtype must be a float type');
    expect(msg('random_uniform', [u(2)], { ...a, stream: -1 })).toBe('random_uniform with operands u32[2]: stream -1 must be a u32');
    expect(msg('random_uniform', [u(2)], { ...a, stream: 2 ** 32 })).toBe('random_uniform with operands u32[2]: stream 4294967296 must be a u32');
  });
  it('composites', () => {
    expect(msg('softmax', [i(2, 3)], { axis: 1 })).toBe('softmax with operands i32[2,3]: needs a float operand');
    expect(msg('log_softmax', [f(2, 3)], { axis: 2 })).toBe('log_softmax with operands f32[2,3]: axis 2 is out of range for rank 2');
    expect(msg('layer_norm', [f()], { eps: 1e-5 })).toBe('layer_norm with operands f32[]: needs rank >= 1 (it normalizes the last axis)');
    expect(msg('rms_norm', [i(4)], { eps: 1e-5 })).toBe('rms_norm with operands i32[4]: needs a float operand');
    const att = { causal: false, scale: 1 };
    expect(msg('attention', [f(2, 4), f(3, 5), f(3, 5)], att)).toBe('attention with operands f32[2,4], f32[3,5], f32[3,5]: q and k head dims differ (4 vs 5)');
    expect(msg('attention', [f(2, 4), f(3, 4), f(2, 4)], att)).toBe('attention with operands f32[2,4], f32[3,4], f32[2,4]: k and v sequence lengths differ (3 vs 2)');
    expect(msg('attention', [f(2, 2, 4), f(3, 3, 4), f(3, 3, 4)], att)).toBe('attention with operands f32[2,2,4], f32[3,3,4], f32[3,3,4]: batch dimensions must match');
    expect(msg('attention', [f(2, 4), f(1, 3, 4), f(1, 3, 4)], att)).toBe('attention with operands f32[2,4], f32[1,3,4], f32[1,3,4]: q, k, v need the same rank >= 2');
    expect(msg('attention', [f(4), f(4), f(4)], att)).toBe('attention with operands f32[4], f32[4], f32[4]: q, k, v need the same rank >= 2');
    expect(msg('attention', [i(2, 4), i(3, 4), i(3, 4)], att)).toBe('attention with operands i32[2,4], i32[3,4], i32[3,4]: needs float operands');
    expect(msg('attention', [f(2, 4), f(3, 4), f(3, 4)], { causal: false })).toBe("attention with operands f32[2,4], f32[3,4], f32[3,4]: missing attribute 'scale'");
  });
  it('unknown op', () => {
    expect(() => new GraphBuilder('g').op('frobnicate' as OpName, [])).toThrow('frobnicate: unknown op');
  });
  it('builder misuse is a plain Error naming the graph', () => {
    const g = new GraphBuilder('gg');
    expect(() => g.op('neg', [7])).toThrow('graph gg: neg uses undefined value %7');
    expect(() => g.input('1x', { shape: [], dtype: 'f32' })).toThrow("graph gg: input name '1x' is not a valid identifier");
    g.input('x', { shape: [], dtype: 'f32' });
    expect(() => g.input('x', { shape: [], dtype: 'f32' })).toThrow("graph gg: duplicate input 'x'");
    expect(() => g.output('y', 99)).toThrow("graph gg: output 'y' names undefined value %99");
  });
});

// ------------------------------------------------------------------------------------------ runGraph feeds

describe('runGraph input errors name the input', () => {
  function graph() {
    const g = new GraphBuilder('net');
    const x = g.input('x', { shape: [2, 3], dtype: 'f32' });
    const w = g.input('fc.weight', { shape: [3], dtype: 'f32' }, 'param');
    g.output('y', g.op('mul', [x, w]));
    return g.build();
  }
  const x = F32([2, 3], [1, 2, 3, 4, 5, 6]);
  const w = F32([3], [1, 1, 1]);
  it('works when fed correctly', () => {
    expectExact(vals(runGraph(graph(), { x, 'fc.weight': w }).y!), [1, 2, 3, 4, 5, 6]);
  });
  it('missing input', () => {
    expect(() => runGraph(graph(), { x })).toThrow("graph net: input 'fc.weight' (f32[3]) was not fed");
    expect(() => runGraph(graph(), { x })).toThrow(KilnError);
  });
  it('wrong shape', () => {
    expect(() => runGraph(graph(), { x: F32([3, 2], [1, 2, 3, 4, 5, 6]), 'fc.weight': w })).toThrow("graph net: input 'x' expects f32[2,3], got f32[3,2]");
    expect(() => runGraph(graph(), { x: F32([6], [1, 2, 3, 4, 5, 6]), 'fc.weight': w })).toThrow("graph net: input 'x' expects f32[2,3], got f32[6]");
  });
  it('wrong dtype', () => {
    expect(() => runGraph(graph(), { x: I32([2, 3], [1, 2, 3, 4, 5, 6]), 'fc.weight': w })).toThrow("graph net: input 'x' expects f32[2,3], got i32[2,3]");
    expect(() => runGraph(graph(), { x: T('f16', [2, 3], [1, 2, 3, 4, 5, 6]), 'fc.weight': w })).toThrow("input 'x' expects f32[2,3], got f16[2,3]");
  });
  it('data length does not match the declared shape', () => {
    const bad = { dtype: 'f32' as const, shape: [2, 3], data: new Float32Array(5) };
    expect(() => runGraph(graph(), { x: bad, 'fc.weight': w })).toThrow("graph net: input 'x' has 5 values for shape [2,3]");
  });
  it('unknown feed', () => {
    expect(() => runGraph(graph(), { x, 'fc.weight': w, z: w })).toThrow("graph net: feed 'z' is not an input (inputs: x, fc.weight)");
  });
  it('f64 feeds are accepted in f32 mode (rounded) and f32 feeds in f64 mode (widened)', () => {
    const y = runGraph(graph(), { x: F64([2, 3], [0.1, 2, 3, 4, 5, 6]), 'fc.weight': w }).y!;
    expect(y.data).toBeInstanceOf(Float32Array);
    expect(y.data[0]).toBe(Math.fround(0.1));
    const y64 = runGraph(graph(), { x, 'fc.weight': w }, { precision: 'f64' }).y!;
    expect(y64.data).toBeInstanceOf(Float64Array);
  });
});

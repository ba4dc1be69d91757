import { describe, expect, it } from 'vitest';
import { KilnError } from '../../ir/errors.ts';
import { Graph, GraphBuilder, type GraphInput, type Node } from '../../ir/graph.ts';
import { ALL_OPS, type ValueType } from '../../ir/ops.ts';
import { ParseError, parseGraph } from '../../ir/parser.ts';
import { printGraph } from '../../ir/printer.ts';
import { verify, VerifyError } from '../../ir/verify.ts';
import { randomFeeds, randomGraph } from '../support/randomGraph.ts';

const f32 = (...shape: number[]): ValueType => ({ dtype: 'f32', shape });

/** print → parse → print is the identity, with and without locations; the parsed graph verifies. */
function expectRoundTrip(g: Graph, what = g.name): Graph {
  const text = printGraph(g);
  const parsed = parseGraph(text);
  expect(printGraph(parsed), what).toBe(text);
  verify(parsed);
  const withLocs = printGraph(g, { locs: true });
  const parsedLocs = parseGraph(withLocs);
  expect(printGraph(parsedLocs, { locs: true }), `${what} (locs)`).toBe(withLocs);
  expect(parsedLocs.nodes.map((n) => n.loc)).toEqual(g.nodes.map((n) => n.loc));
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// Hand-built graphs that together use every op, with attribute edge cases.

function elementwiseGraph(): Graph {
  const b = new GraphBuilder('elementwise');
  const x = b.input('x', f32(2, 3));
  const w = b.input('blocks.0.attn.qkv.weight', f32(3), 'param');
  const m = b.input('opt.m.0', f32(1, 3), 'state');
  const c = b.input('mask', { dtype: 'bool', shape: [2, 1] });
  const i = b.input('ids', { dtype: 'i32', shape: [2, 3] });
  const u = b.input('u', { dtype: 'u32', shape: [3] });
  const h = b.input('h', { dtype: 'f16', shape: [] });
  for (const op of ['exp', 'log', 'sqrt', 'rsqrt', 'recip', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'floor', 'ceil'] as const)
    b.op(op, [x], {}, `models/unary.ts:1:${op.length}`);
  for (const op of ['neg', 'abs', 'sign'] as const) b.op(op, [i]);
  b.op('abs', [u]);
  b.op('sign', [u]);
  b.op('neg', [h]);
  const notC = b.op('not', [c]);
  for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min', 'pow', 'mod'] as const) b.op(op, [x, w]);
  b.op('div', [i, i]);
  b.op('mod', [i, i]);
  b.op('add', [u, u]);
  let last = notC;
  for (const op of ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const) {
    const cmp = b.op(op, [x, m]);
    last = b.op(op === 'eq' ? 'and' : op === 'ne' ? 'or' : 'xor', [cmp, c]);
  }
  const sel = b.op('where', [last, x, w], {}, 'C:\\models\\"quoted" ünï.ts:7:1\t');
  for (const dtype of ['f32', 'f16', 'bf16', 'i32', 'u32', 'bool'] as const) b.op('cast', [sel], { dtype });
  b.output('y', sel);
  b.output('data', notC); // an output may be called like a keyword
  return b.build();
}

function shapeGraph(): Graph {
  const b = new GraphBuilder('shapes.v2');
  const x = b.input('x', f32(2, 3, 4));
  const seed = b.input('seed', { dtype: 'u32', shape: [2] });
  b.op('reduce_sum', [x], { axes: [], keepdims: false });
  b.op('reduce_max', [x], { axes: [0, 2], keepdims: true });
  b.op('reduce_min', [x], { axes: [1], keepdims: false });
  const mean = b.op('reduce_mean', [x], { axes: [0, 1, 2], keepdims: false });
  b.op('reshape', [mean], { shape: [1, 1] });
  b.op('argmax', [x], { axis: 2, keepdims: true });
  const p = b.op('permute', [x], { perm: [2, 0, 1] });
  b.op('broadcast', [b.op('reduce_sum', [x], { axes: [1], keepdims: true })], { shape: [5, 2, 3, 4] });
  b.op('slice', [x], { starts: [0, 1, 0], ends: [2, 3, 4], steps: [2, 1, 3] });
  b.op('pad', [x], { before: [0, 1, 2], after: [1, 0, 0], value: -Infinity });
  b.op('pad', [x], { before: [0, 0, 0], after: [0, 0, 1], value: NaN });
  b.op('concat', [x, x, b.op('slice', [x], { starts: [0, 0, 1], ends: [2, 3, 3], steps: [1, 1, 1] })], { axis: 2 });
  const a4 = b.input('a', f32(2, 1, 3, 4));
  const w = b.input('w', f32(5, 4, 2), 'param');
  b.op('matmul', [a4, w]);
  const idx = b.op('iota', [], { shape: [2, 3], axis: 1, dtype: 'i32' });
  const g = b.op('gather', [p, idx], { axis: 1 });
  const cidx = b.op('constant', [], { shape: [4], dtype: 'i32', value: [0, 1, 1, 0] });
  const upd = b.op('constant', [], { shape: [4, 2, 3], dtype: 'f32', value: 0.5 });
  b.op('scatter_add', [p, cidx, upd], { axis: 0 });
  b.op('iota', [], { shape: [3], axis: 0, dtype: 'f16' });
  b.op('constant', [], { shape: [], dtype: 'f32', value: -0 });
  b.op('constant', [], { shape: [8], dtype: 'f32', value: [Infinity, -Infinity, NaN, -0, 1e-7, 1e21, -1.5e-45, 3.4028234663852886e38] });
  b.op('constant', [], { shape: [2], dtype: 'bool', value: [1, 0] });
  b.op('constant', [], { shape: [1], dtype: 'f32', value: [NaN] });
  b.op('random_uniform', [seed], { shape: [2, 2], dtype: 'f32', stream: 4294967295 });
  const r = b.op('random_normal', [seed], { shape: [3], dtype: 'bf16', stream: 0 });
  b.op('softmax', [x], { axis: 0 });
  b.op('log_softmax', [x], { axis: 2 });
  b.op('layer_norm', [x], { eps: 1e-5 });
  b.op('rms_norm', [r], { eps: 0 });
  const q = b.input('q', f32(2, 3, 4));
  const k = b.input('k', f32(2, 5, 4));
  const v = b.input('v', f32(2, 5, 6));
  const att = b.op('attention', [q, k, v], { causal: true, scale: 0.125 });
  const dout = b.op('constant', [], { shape: [2, 3, 6], dtype: 'f32', value: 1 });
  const dk = b.op('attention_grad', [q, k, v, att, dout], { causal: true, scale: 0.125, wrt: 1 });
  b.op('attention', [q, k, v], { causal: false, scale: -2.5e-3 });
  b.output('att', att);
  b.output('dk', dk);
  b.output('g', g);
  return b.build();
}

describe('text form round trip', () => {
  it('round-trips hand-built graphs that use every op', () => {
    const graphs = [elementwiseGraph(), shapeGraph()];
    for (const g of graphs) expectRoundTrip(g);
    const used = new Set(graphs.flatMap((g) => g.nodes.map((n) => n.op)));
    expect(ALL_OPS.filter((op) => !used.has(op))).toEqual([]);
  });

  it('reads special numbers exactly', () => {
    const g = parseGraph(`graph nums {
  %0 : f32[9] = constant {shape=[9], dtype=f32, value=[inf,-inf,nan,-0,0,1e-7,-2.5E+3,.5,1.]}
  %1 : f32[] = constant {shape=[], dtype=f32, value=-0}
  output y = %0
}`);
    const v = g.nodes[0]!.attrs.value as number[];
    expect(v.map((x) => (Object.is(x, -0) ? '-0' : String(x)))).toEqual(['Infinity', '-Infinity', 'NaN', '-0', '0', '1e-7', '-2500', '0.5', '1']);
    expect(Object.is(g.nodes[1]!.attrs.value, -0)).toBe(true);
    expect(printGraph(g)).toContain('value=[inf,-inf,nan,-0,0,1e-7,-2500,0.5,1]');
  });

  it('accepts comments, blank lines, free spacing, any distinct node numbers and attribute order', () => {
    const text = `# a hand-written graph

graph   hand {   # trailing comment
  data %blocks.0.attn.qkv.weight : f32[2, 3]

  %17 : f32[3,2]=permute %blocks.0.attn.qkv.weight {perm=[1,0]}   loc("m.ts:1:2")
  %0042 : f32[3] = reduce_sum %17 { keepdims = false , axes = [1] }
  %5 : f32[3] = neg %42
  output out = %5
  output t = %17
}
# done
`;
    const g = parseGraph(text);
    expect(printGraph(g, { locs: true })).toBe(`graph hand {
  data %blocks.0.attn.qkv.weight : f32[2,3]
  %0 : f32[3,2] = permute %blocks.0.attn.qkv.weight {perm=[1,0]} loc("m.ts:1:2")
  %1 : f32[3] = reduce_sum %0 {axes=[1], keepdims=false}
  %2 : f32[3] = neg %1
  output out = %2
  output t = %0
}
`);
    expect(g.nodes[0]!.loc).toBe('m.ts:1:2');
    expect(g.nodes[1]!.loc).toBeUndefined();
  });

  it('round-trips 300 random graphs, with and without locations', () => {
    let nodes = 0;
    const used = new Set<string>();
    for (let seed = 0; seed < 300; seed++) {
      const g = randomGraph(seed, { finiteF32: seed % 3 === 0 });
      verify(g);
      expectRoundTrip(g, `seed ${seed}`);
      nodes += g.nodes.length;
      for (const n of g.nodes) used.add(n.op);
    }
    expect(nodes).toBeGreaterThan(300 * 10);
    expect(ALL_OPS.filter((op) => !used.has(op))).toEqual([]);
  });
});

describe('random graph generator', () => {
  it('is deterministic in its seed', () => {
    for (const seed of [0, 1, 12345, 0xffffffff]) {
      expect(printGraph(randomGraph(seed), { locs: true })).toBe(printGraph(randomGraph(seed), { locs: true }));
      expect(printGraph(randomGraph(seed, { finiteF32: true }))).toBe(printGraph(randomGraph(seed, { finiteF32: true })));
    }
    expect(printGraph(randomGraph(1))).not.toBe(printGraph(randomGraph(2)));
    expect(randomGraph(7, { nodes: 40 }).nodes.length).toBeGreaterThanOrEqual(40);
  });

  it('finiteF32 graphs hold only f32 floats, finite constants, and no integer division', () => {
    for (let seed = 0; seed < 200; seed++) {
      const g = randomGraph(seed, { finiteF32: true });
      for (const v of [...g.inputs, ...g.nodes]) expect(['f32', 'i32', 'u32', 'bool']).toContain(v.type.dtype);
      for (const n of g.nodes) {
        for (const a of Object.values(n.attrs))
          for (const x of typeof a === 'number' ? [a] : Array.isArray(a) ? a : []) expect(Number.isFinite(x)).toBe(true);
        if (n.op === 'div' || n.op === 'mod') expect(n.type.dtype).toBe('f32');
        for (const i of n.inputs) if (g.typeOf(i).dtype === 'u32') expect(n.op).toMatch(/^random_/);
      }
    }
  });

  it('randomFeeds covers every input with the right type and in-range indices', () => {
    for (let seed = 0; seed < 100; seed++) {
      const g = randomGraph(seed, { finiteF32: seed % 2 === 0 });
      const feeds = randomFeeds(g, seed);
      expect(Object.keys(feeds).sort()).toEqual(g.inputs.map((i) => i.name).sort());
      for (const i of g.inputs) {
        const t = feeds[i.name]!;
        expect(t.dtype).toBe(i.type.dtype);
        expect(t.shape).toEqual(i.type.shape);
        if (i.type.dtype === 'f32') for (const x of t.data) expect(Math.abs(x)).toBeLessThanOrEqual(2);
      }
      for (const n of g.nodes) {
        if (n.op !== 'gather' && n.op !== 'scatter_add') continue;
        const idx = g.input(n.inputs[1]!);
        if (!idx) continue;
        const dim = g.typeOf(n.inputs[0]!).shape[n.attrs.axis as number]!;
        for (const x of feeds[idx.name]!.data) expect(x >= 0 && x < dim).toBe(true);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Errors

const BASE = `graph t {
  data %x : f32[2,3]
  param %w.0 : f32[3]
  %0 : f32[2,3] = add %x, %w.0
  %1 : f32[2] = reduce_sum %0 {axes=[1], keepdims=false}
  output y = %1
}
`;

function parseError(text: string): ParseError {
  try {
    parseGraph(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ParseError);
    expect(e).toBeInstanceOf(KilnError);
    return e as ParseError;
  }
  throw new Error('expected a ParseError');
}
/** Replace line `line` (1-based) of BASE. */
function withLine(line: number, text: string): string {
  const lines = BASE.split('\n');
  lines[line - 1] = text;
  return lines.join('\n');
}

describe('parse errors', () => {
  it('the base text parses', () => {
    expect(printGraph(parseGraph(BASE))).toBe(BASE);
  });

  const cases: [string, string, number, number, RegExp][] = [
    ['syntax: = for :', withLine(2, '  data %x = f32[2,3]'), 2, 11, /^expected ':' but found '='$/],
    ['syntax: missing =', withLine(4, '  %0 : f32[2,3] add %x, %w.0'), 4, 17, /^expected '=' but found 'add'$/],
    ['syntax: missing comma', withLine(4, '  %0 : f32[2,3] = add %x %w.0'), 4, 26, /^expected ',' or end of line but found '%w.0'$/],
    ['syntax: unclosed attributes', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=[1], keepdims=false'), 5, 56, /^expected ',' or '}' but found end of line$/],
    ['syntax: missing }', BASE.replace(/\}\n$/, ''), 7, 1, /expected an input .* or '}' but found end of input$/],
    ['syntax: input named by number', withLine(2, '  data %0 : f32[2,3]'), 2, 8, /^expected an input name like %x but found '%0'$/],
    ['syntax: stray character', withLine(4, '  %0 : f32[2,3] = add %x, %w.0 ?'), 4, 32, /^unexpected character "\?"$/],
    ['syntax: text after }', BASE + 'graph u {\n', 8, 1, /^unexpected 'graph' after the closing '}'$/],
    ['unknown op', withLine(4, '  %0 : f32[2,3] = addd %x, %w.0'), 4, 19, /^unknown op 'addd' \(did you mean 'add'\?\)$/],
    ['undefined value', withLine(4, '  %0 : f32[2,3] = add %x, %v'), 4, 27, /^undefined value %v$/],
    ['undefined node value', withLine(6, '  output y = %7'), 6, 14, /^undefined value %7$/],
    ['duplicate node', withLine(5, '  %0 : f32[2] = reduce_sum %0 {axes=[1], keepdims=false}'), 5, 3, /^%0 is already defined \(at 4:3\)$/],
    ['duplicate input', withLine(3, '  param %x : f32[3]'), 3, 9, /^%x is already defined \(at 2:8\)$/],
    ['duplicate output', withLine(6, '  output y = %1\n  output y = %0'), 7, 10, /^output 'y' is already defined \(at 6:10\)$/],
    ['wrong annotated type', withLine(5, '  %1 : f32[3] = reduce_sum %0 {axes=[1], keepdims=false}'), 5, 8,
      /^%1 is annotated f32\[3\] but reduce_sum infers f32\[2\]$/],
    ['wrong annotated dtype', withLine(4, '  %0 : f16[2,3] = add %x, %w.0'), 4, 8, /^%0 is annotated f16\[2,3\] but add infers f32\[2,3\]$/],
    ['missing attribute', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=[1]}'), 5, 17, /^missing attribute 'keepdims' for reduce_sum$/],
    ['missing attribute block', withLine(5, '  %1 : f32[2] = reduce_sum %0'), 5, 17, /^missing attribute 'axes' for reduce_sum$/],
    ['unknown attribute', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=[1], keepdims=false, axis=0}'), 5, 58,
      /^unknown attribute 'axis' for reduce_sum \(it takes axes, keepdims\)$/],
    ['attribute on an op without any', withLine(4, '  %0 : f32[2,3] = add %x, %w.0 {axis=1}'), 4, 33, /^unknown attribute 'axis': add takes no attributes$/],
    ['attribute given twice', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=[1], axes=[1], keepdims=false}'), 5, 42, /^attribute 'axes' is given twice$/],
    ['attribute of the wrong kind', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=1, keepdims=false}'), 5, 37,
      /^attribute 'axes' of reduce_sum must be a list of integers, found '1'$/],
    ['non-integer in ints', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=[1.5], keepdims=false}'), 5, 38,
      /^attribute 'axes' of reduce_sum must be a list of integers, found '1.5'$/],
    ['bool attribute', withLine(5, '  %1 : f32[2] = reduce_sum %0 {axes=[1], keepdims=1}'), 5, 51,
      /^attribute 'keepdims' of reduce_sum must be true or false, found '1'$/],
    ['bad dtype in a type', withLine(2, '  data %x : f64[2,3]'), 2, 13, /^unknown dtype 'f64' \(expected one of f32, f16, bf16, i32, u32, bool\)$/],
    ['bad dtype in an attribute', withLine(5, '  %1 : i32[2,3] = cast %0 {dtype=int32}'), 5, 34, /^unknown dtype 'int32'/],
    ['bad dimension', withLine(3, '  param %w.0 : f32[-3]'), 3, 20, /^dimension '-3' must be a non-negative integer$/],
    ['too few operands', withLine(4, '  %0 : f32[2,3] = add %x'), 4, 19, /^add takes 2 operands, found 1$/],
    ['too many operands', withLine(4, '  %0 : f32[2,3] = neg %x, %x'), 4, 19, /^neg takes 1 operand, found 2$/],
    ['no operands for concat', withLine(4, '  %0 : f32[2,3] = concat {axis=0}'), 4, 19, /^concat takes at least 1 operand, found 0$/],
    ['shape rule broken', withLine(4, '  %0 : f32[2,3] = matmul %x, %w.0'), 4, 19, /^matmul with operands f32\[2,3\], f32\[3\]: operands need rank >= 2$/],
    ['bad loc string', withLine(4, '  %0 : f32[2,3] = add %x, %w.0 loc("a\\qb")'), 4, 36, /^invalid string "a\\qb"$/],
    ['unterminated loc string', withLine(4, '  %0 : f32[2,3] = add %x, %w.0 loc("ab)'), 4, 36, /^unterminated string$/],
  ];
  it.each(cases)('%s', (_name, text, line, column, message) => {
    const e = parseError(text);
    expect([e.line, e.column]).toEqual([line, column]);
    expect(e.detail).toMatch(message);
    expect(e.message).toBe(`${line}:${column}: ${e.detail}`);
  });
});

// ---------------------------------------------------------------------------------------------
// The verifier on graphs built without GraphBuilder

describe('verify', () => {
  const x: GraphInput = { id: 0, name: 'x', kind: 'data', type: f32(2, 3) };
  const neg = (id: number, input: number): Node => ({ id, op: 'neg', inputs: [input], attrs: {}, type: f32(2, 3) });

  it('accepts a well-formed graph', () => {
    expect(() => verify(new Graph('ok', [x], [neg(1, 0), neg(2, 1)], [{ name: 'y', id: 2 }]))).not.toThrow();
  });

  it('catches a use before definition', () => {
    const g = new Graph('bad', [x], [neg(2, 1), neg(1, 0)], [{ name: 'y', id: 2 }]);
    expect(() => verify(g)).toThrow(VerifyError);
    expect(() => verify(g)).toThrow('graph bad: neg (%2) uses %1 before it is defined');
  });

  it('catches a wrong recorded type', () => {
    const sum: Node = { id: 1, op: 'reduce_sum', inputs: [0], attrs: { axes: [1], keepdims: false }, type: f32(3) };
    const g = new Graph('bad', [x], [sum], [{ name: 'y', id: 1 }]);
    expect(() => verify(g)).toThrow('graph bad: %1 = reduce_sum records type f32[3] but infers f32[2]');
  });

  it('catches a double definition and an undefined output', () => {
    expect(() => verify(new Graph('bad', [x], [neg(0, 0)], [{ name: 'y', id: 0 }]))).toThrow('value %0 is defined twice');
    expect(() => verify(new Graph('bad', [x], [neg(1, 0)], [{ name: 'y', id: 9 }]))).toThrow("output 'y' names undefined value %9");
  });
});

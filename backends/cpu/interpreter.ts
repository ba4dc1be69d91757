/**
 * @file The CPU backend: a direct interpreter of the Graph IR. It is the oracle every other backend
 * is tested against, so it favours obvious correctness over speed: each op is computed in double
 * precision and rounded to its dtype when stored. In 'f64' precision every float value is kept in
 * double precision (used for finite-difference gradient checks). Composite ops run through their
 * decomposition into primitives (ir/decompose.ts).
 */
import { decompositionGraph, isComposite } from '../../ir/decompose.ts';
import { type DType, type FloatDType, isFloat, roundBf16, roundF16 } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { BinaryOp, CompareOp, CompositeOp, LogicalOp, ReduceOp, UnaryOp, ValueType } from '../../ir/ops.ts';
import { attrsKey } from '../../ir/printer.ts';
import { UNIFORM_BITS, fillNormal, fillUniform } from '../../ir/philox.ts';
import { numel, shapeEq, stridesOf } from '../../ir/shape.ts';
import { type HostTensor, type TensorData, allocData, describeTensor } from '../../ir/tensor.ts';
import { type Store, binary, cast, unary, where } from './kernels/elementwise.ts';
import { gather, scatterAdd } from './kernels/gather.ts';
import { matmul } from './kernels/matmul.ts';
import { broadcast, concat, pad, permute, slice } from './kernels/movement.ts';
import { argmax, reduce } from './kernels/reduce.ts';

export type Precision = 'f32' | 'f64';
export interface RunOptions {
  /** 'f32' (default): values rounded to their dtypes. 'f64': floats kept in double precision. */
  precision?: Precision;
}

function storeFor(dtype: DType, f64: boolean): Store {
  if (dtype === 'bool') return (o, i, v) => { o[i] = v ? 1 : 0; };
  if (f64 || dtype === 'f32' || !isFloat(dtype)) return (o, i, v) => { o[i] = v; };
  const r = dtype === 'f16' ? roundF16 : roundBf16;
  return (o, i, v) => { o[i] = r(v); };
}

/** Convert a fed tensor to the interpreter's storage for `t` (checking dtype and shape). */
function adoptFeed(g: Graph, name: string, t: ValueType, x: HostTensor, f64: boolean): TensorData {
  if (x.dtype !== t.dtype || !shapeEq(x.shape, t.shape))
    throw new KilnError(`graph ${g.name}: input '${name}' expects ${t.dtype}[${t.shape.join(',')}], got ${describeTensor(x)}`);
  if (x.data.length !== numel(t.shape))
    throw new KilnError(`graph ${g.name}: input '${name}' has ${x.data.length} values for shape [${t.shape.join(',')}]`);
  if (!isFloat(t.dtype)) return x.data;
  const want = f64 ? Float64Array : Float32Array;
  if (x.data instanceof want && (f64 || t.dtype === 'f32')) return x.data;
  const out = allocData(t.dtype, x.data.length, f64);
  const store = storeFor(t.dtype, f64);
  for (let i = 0; i < out.length; i++) store(out, i, x.data[i]!);
  return out;
}

const decompCache = new Map<string, Graph>();
function decomposition(n: Node, types: ValueType[]): Graph {
  const key = `${n.op}|${JSON.stringify(types)}|${attrsKey(n.attrs)}`;
  let g = decompCache.get(key);
  if (!g) {
    g = decompositionGraph(n.op as CompositeOp, types, n.attrs);
    decompCache.set(key, g);
  }
  return g;
}

/** Run `g` on `feeds` (one tensor per input, by name); returns every output by name. */
export function runGraph(g: Graph, feeds: Readonly<Record<string, HostTensor>>, opts: RunOptions = {}): Record<string, HostTensor> {
  const f64 = opts.precision === 'f64';
  const vals = new Map<number, TensorData>();
  for (const name of Object.keys(feeds))
    if (!g.inputByName(name)) throw new KilnError(`graph ${g.name}: feed '${name}' is not an input (inputs: ${g.inputs.map((i) => i.name).join(', ')})`);
  for (const i of g.inputs) {
    const x = feeds[i.name];
    if (!x) throw new KilnError(`graph ${g.name}: input '${i.name}' (${i.type.dtype}[${i.type.shape.join(',')}]) was not fed`);
    vals.set(i.id, adoptFeed(g, i.name, i.type, x, f64));
  }
  // Free each intermediate after its last use.
  const lastUse = new Map<number, number>();
  g.nodes.forEach((n, k) => n.inputs.forEach((i) => lastUse.set(i, k)));
  const keep = new Set(g.outputs.map((o) => o.id));
  g.nodes.forEach((n, k) => {
    try {
      vals.set(n.id, evalNode(g, n, vals, f64));
    } catch (e) {
      if (e instanceof KilnError && !e.message.includes(' (at ')) e.message += n.loc ? ` (at ${n.loc})` : '';
      throw e;
    }
    for (const i of n.inputs) if (lastUse.get(i) === k && !keep.has(i) && !g.input(i)) vals.delete(i);
  });
  const out: Record<string, HostTensor> = {};
  for (const o of g.outputs) {
    const t = g.typeOf(o.id);
    out[o.name] = { dtype: t.dtype, shape: [...t.shape], data: vals.get(o.id)! };
  }
  return out;
}

function evalNode(g: Graph, n: Node, vals: Map<number, TensorData>, f64: boolean): TensorData {
  const ins = n.inputs.map((i) => vals.get(i)!);
  const types = n.inputs.map((i) => g.typeOf(i));
  const outT = n.type;
  const out = allocData(outT.dtype, numel(outT.shape), f64);
  const store = storeFor(outT.dtype, f64);
  // a float output stored as computed (no bf16/f16 rounding): the kernels' faster paths apply
  const plain = isFloat(outT.dtype) && (f64 || outT.dtype === 'f32');
  const a = n.attrs;
  const x = ins[0]!;
  const xs = types[0]?.shape ?? [];
  switch (n.op) {
    case 'neg': case 'abs': case 'sign': case 'exp': case 'log': case 'sqrt': case 'rsqrt': case 'recip':
    case 'sin': case 'cos': case 'tanh': case 'erf': case 'sigmoid': case 'floor': case 'ceil': case 'not':
      unary(n.op as UnaryOp, x, out, store, plain);
      break;
    case 'add': case 'sub': case 'mul': case 'div': case 'max': case 'min': case 'pow': case 'mod':
    case 'eq': case 'ne': case 'lt': case 'le': case 'gt': case 'ge': case 'and': case 'or': case 'xor':
      binary(n.op as BinaryOp | CompareOp | LogicalOp, types[0]!.dtype, x, xs, ins[1]!, types[1]!.shape, out, outT.shape, store, plain);
      break;
    case 'where':
      where(x, xs, ins[1]!, types[1]!.shape, ins[2]!, types[2]!.shape, out, outT.shape, store);
      break;
    case 'cast':
      cast(x, types[0]!.dtype, outT.dtype, out, store);
      break;
    case 'reduce_sum': case 'reduce_max': case 'reduce_min': case 'reduce_mean':
      reduce(n.op as ReduceOp, x, xs, a.axes as number[], out, store);
      break;
    case 'argmax':
      argmax(x, xs, a.axis as number, out);
      break;
    case 'reshape':
      out.set(x as never);
      break;
    case 'permute':
      permute(x, xs, a.perm as number[], out);
      break;
    case 'broadcast':
      broadcast(x, xs, outT.shape, out);
      break;
    case 'slice':
      slice(x, xs, a.starts as number[], a.steps as number[], outT.shape, out);
      break;
    case 'pad': {
      const padded = allocData(outT.dtype, 1, f64);
      store(padded, 0, a.value as number);
      pad(x, xs, a.before as number[], padded[0]!, outT.shape, out);
      break;
    }
    case 'concat':
      concat(ins.map((d, i) => ({ data: d, shape: types[i]!.shape })), a.axis as number, outT.shape, out);
      break;
    case 'matmul':
      matmul(x, xs, ins[1]!, types[1]!.shape, outT.shape, out, store, !isFloat(outT.dtype), plain);
      break;
    case 'gather':
      gather(x, xs, ins[1]!, a.axis as number, out);
      break;
    case 'scatter_add':
      scatterAdd(x, xs, ins[1]!, ins[2]!, a.axis as number, out, store);
      break;
    case 'iota': {
      const s = stridesOf(outT.shape);
      const axis = a.axis as number;
      for (let i = 0; i < out.length; i++) store(out, i, Math.floor(i / s[axis]!) % outT.shape[axis]!);
      break;
    }
    case 'constant': {
      const v = a.value;
      if (typeof v === 'number') for (let i = 0; i < out.length; i++) store(out, i, v);
      else (v as number[]).forEach((e, i) => store(out, i, e));
      break;
    }
    case 'random_uniform': case 'random_normal': {
      const tmp = new Float64Array(out.length);
      if (n.op === 'random_uniform') fillUniform(tmp, x[0]!, x[1]!, a.stream as number, UNIFORM_BITS[outT.dtype as FloatDType]);
      else fillNormal(tmp, x[0]!, x[1]!, a.stream as number);
      for (let i = 0; i < out.length; i++) store(out, i, tmp[i]!);
      break;
    }
    case 'softmax': case 'log_softmax': case 'layer_norm': case 'rms_norm': case 'attention': case 'attention_grad': {
      if (!isComposite(n.op)) throw new Error('unreachable');
      const sub = decomposition(n, types);
      const feeds: Record<string, HostTensor> = {};
      ins.forEach((d, i) => (feeds[`a${i}`] = { dtype: types[i]!.dtype, shape: types[i]!.shape, data: d }));
      return runGraph(sub, feeds, { precision: f64 ? 'f64' : 'f32' }).out!.data;
    }
    default: {
      const never: never = n.op;
      throw new KilnError(`cpu backend: op ${String(never)} is not implemented`);
    }
  }
  return out;
}

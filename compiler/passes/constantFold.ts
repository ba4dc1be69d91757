/**
 * @file Constant folding of splat constants (constants with one value for every element): elementwise
 * ops, casts, movement ops and reductions whose operands are all splats become splats, computed with
 * the IR's scalar semantics (ir/semantics.ts) and rounded to the result dtype. List constants are
 * left alone (folding them would grow the program).
 */
import type { Graph } from '../../ir/graph.ts';
import { isFloat } from '../../ir/dtype.ts';
import type { BinaryOp, CompareOp, LogicalOp, UnaryOp } from '../../ir/ops.ts';
import { opSpec } from '../../ir/ops.ts';
import { UNARY, binaryFn, castValue, storeValue } from '../../ir/semantics.ts';
import { copyNode, rewriteGraph } from '../../ir/rewrite.ts';

export function constantFold(g: Graph): Graph {
  const splat = new Map<number, number>(); // new-graph id → splat value
  return rewriteGraph(g, (n, ins, b) => {
    const vals = ins.map((i) => splat.get(i));
    let v: number | undefined;
    if (n.op === 'constant') {
      if (typeof n.attrs.value === 'number') v = n.attrs.value;
    } else if (ins.length > 0 && vals.every((x) => x !== undefined)) {
      v = foldScalar(n.op, vals as number[], ins.map((i) => b.typeOf(i)), n);
    }
    if (v === undefined) return copyNode(n, ins, b);
    const id = n.op === 'constant' ? copyNode(n, ins, b) : b.op('constant', [], { shape: [...n.type.shape], dtype: n.type.dtype, value: storeValue(v, n.type.dtype) }, n.loc);
    splat.set(id, storeValue(v, n.type.dtype));
    return id;
  });
}

function foldScalar(op: string, v: number[], types: { shape: readonly number[]; dtype: string }[], n: { attrs: Record<string, unknown>; type: { dtype: string } }): number | undefined {
  const cat = opSpec(op).category;
  const dtype = types[0]!.dtype as Parameters<typeof binaryFn>[1];
  switch (cat) {
    case 'unary': return UNARY[op as UnaryOp](v[0]!);
    case 'binary': case 'compare': case 'logical': return binaryFn(op as BinaryOp | CompareOp | LogicalOp, dtype)(v[0]!, v[1]!);
    case 'ternary': return v[0] ? v[1] : v[2];
    case 'cast': return castValue(v[0]!, dtype, n.type.dtype as typeof dtype);
    case 'movement':
      if (op === 'pad') return Object.is(storeValue(n.attrs.value as number, n.type.dtype as typeof dtype), v[0]) ? v[0] : undefined;
      if (op === 'concat') return v.every((x) => Object.is(x, v[0])) ? v[0] : undefined;
      return v[0];
    case 'reduce': {
      if (op === 'argmax') return 0;
      const axes = n.attrs.axes as number[];
      const count = axes.reduce((c, a) => c * types[0]!.shape[a]!, 1);
      if (count === 0) return op === 'reduce_sum' ? 0 : undefined;
      if (op === 'reduce_sum') return isFloat(dtype) ? v[0]! * count : (v[0]! * count) | 0;
      return v[0];
    }
    default: return undefined;
  }
}


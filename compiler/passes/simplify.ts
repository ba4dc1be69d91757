/**
 * @file Algebraic simplification: identities that remove work without changing any value bit
 * (x+(−0) for floats and x+0 for integers, x−0, x·1, x/1, x^1, −(−x), where(c, x, x), where on a constant condition, same-dtype casts,
 * reductions over no axes), and (a·b)ᵀ → bᵀ·aᵀ when the product is used only transposed (also through a cast: cast(a·b)ᵀ → cast(bᵀ·aᵀ)) (the
 * transposes then fold into the matmul's operand loads instead of costing a copy kernel).
 * A replacement narrower than the node it replaces is broadcast back.
 */
import type { Graph, GraphBuilder } from '../../ir/graph.ts';
import { isFloat } from '../../ir/dtype.ts';
import type { Attrs, OpName, ValueType } from '../../ir/ops.ts';
import { shapeEq } from '../../ir/shape.ts';
import { copyNode, rewriteGraph } from '../../ir/rewrite.ts';

export interface Def {
  op: OpName;
  inputs: readonly number[];
  attrs: Attrs;
}

/** `id` as a value of type `t` (broadcast when its shape is smaller), or undefined if it cannot be. */
export function fit(b: GraphBuilder, id: number, t: ValueType): number | undefined {
  const s = b.typeOf(id);
  if (s.dtype !== t.dtype) return undefined;
  if (shapeEq(s.shape, t.shape)) return id;
  return b.op('broadcast', [id], { shape: [...t.shape] });
}

export function splatValue(d: Def | undefined): number | undefined {
  return d?.op === 'constant' && typeof d.attrs.value === 'number' ? d.attrs.value : undefined;
}

export function simplify(g: Graph): Graph {
  const defs = new Map<number, Def>();
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  /** For a cast node of the new graph: its operand's definition and whether the cast is that operand's only use. */
  const castInputs = new Map<number, { def: Def; onlyUse: boolean }>();
  return rewriteGraph(g, (n, ins, b) => {
    const c = ins.map((i) => splatValue(defs.get(i)));
    const is = (k: number, v: number) => c[k] !== undefined && Object.is(c[k], v);
    let r: number | undefined;
    switch (n.op) {
      case 'add': {
        // x + (−0) = x for every float x; x + 0 is not (−0 + 0 = +0), except for integers.
        const zero = isFloat(n.type.dtype) ? -0 : 0;
        r = is(1, zero) ? fit(b, ins[0]!, n.type) : is(0, zero) ? fit(b, ins[1]!, n.type) : undefined;
        break;
      }
      case 'sub': r = is(1, 0) ? fit(b, ins[0]!, n.type) : undefined; break;
      case 'mul': r = is(1, 1) ? fit(b, ins[0]!, n.type) : is(0, 1) ? fit(b, ins[1]!, n.type) : undefined; break;
      case 'div': case 'pow': r = is(1, 1) ? fit(b, ins[0]!, n.type) : undefined; break;
      case 'neg': {
        const d = defs.get(ins[0]!);
        r = d?.op === 'neg' ? d.inputs[0] : undefined;
        break;
      }
      case 'where':
        if (ins[1] === ins[2]) r = fit(b, ins[1]!, n.type);
        else if (c[0] !== undefined) r = fit(b, c[0] ? ins[1]! : ins[2]!, n.type);
        break;
      case 'cast': r = b.typeOf(ins[0]!).dtype === n.type.dtype ? ins[0] : undefined; break;
      case 'permute': {
        const perm = n.attrs.perm as number[];
        const rank = perm.length;
        const d = defs.get(ins[0]!);
        const swapsLast = rank >= 2 && perm[rank - 1] === rank - 2 && perm[rank - 2] === rank - 1 && perm.slice(0, -2).every((p, i) => p === i);
        const onlyUse = (users.get(n.inputs[0]!)?.length ?? 0) === 1 && !outputs.has(n.inputs[0]!);
        // Also through a cast of the product used only here: (a·b)ᵀ cast back to f32 by autocast.
        const castOf = d?.op === 'cast' && onlyUse ? castInputs.get(ins[0]!) : undefined;
        const mm = d?.op === 'matmul' ? d : castOf?.def.op === 'matmul' && castOf.onlyUse ? castOf.def : undefined;
        if (mm && swapsLast && onlyUse) {
          const t = (x: number) => {
            const xr = b.typeOf(x).shape.length;
            const p = [...Array(xr).keys()];
            [p[xr - 2], p[xr - 1]] = [xr - 1, xr - 2];
            return b.op('permute', [x], { perm: p }, n.loc);
          };
          r = b.op('matmul', [t(mm.inputs[1]!), t(mm.inputs[0]!)], {}, n.loc);
          if (mm !== d) r = b.op('cast', [r], d!.attrs, n.loc);
        }
        break;
      }
      case 'reduce_sum': case 'reduce_max': case 'reduce_min': case 'reduce_mean':
        r = (n.attrs.axes as number[]).length === 0 ? ins[0] : undefined;
        break;
      default: break;
    }
    if (r !== undefined) return r;
    const id = copyNode(n, ins, b);
    defs.set(id, { op: n.op, inputs: ins, attrs: n.attrs });
    if (n.op === 'cast' && defs.has(ins[0]!))
      castInputs.set(id, { def: defs.get(ins[0]!)!, onlyUse: (users.get(n.inputs[0]!)?.length ?? 0) === 1 && !outputs.has(n.inputs[0]!) });
    return id;
  });
}

/**
 * @file Algebraic simplification: identities that remove work without changing any value bit
 * (x+(−0) for floats and x+0 for integers, x−0, x·1, x/1, x^1, −(−x), where(c, x, x), where on a constant condition, same-dtype casts,
 * reductions over no axes), and (a·b)ᵀ → bᵀ·aᵀ when the product is used only transposed (also through a cast: cast(a·b)ᵀ → cast(bᵀ·aᵀ)) (the
 * transposes then fold into the matmul's operand loads instead of costing a copy kernel).
 * A replacement narrower than the node it replaces is broadcast back.
 * A sum over axes that a zero pad does not pad is the pad of the sum, and a sum of two such pads with
 * disjoint parts (a gradient of two slices of one value: the halves of a gated MLP) is the sum of
 * the two padded sums (sumOfPads): the same additions in the same order, and the reduction's kernel
 * then computes each part alone instead of both parts and a select per element.
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
        r = (n.attrs.axes as number[]).length === 0 ? ins[0] : n.op === 'reduce_sum' ? sumOfPads(b, defs, ins[0]!, n.attrs, n.loc) : undefined;
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

/** The zero pad `x` = pad(y) when none of its padding is on `axes`: [y, before, after]. */
function padOff(defs: ReadonlyMap<number, Def>, x: number, axes: readonly number[]): [number, number[], number[]] | undefined {
  const d = defs.get(x);
  if (d?.op !== 'pad' || d.attrs.value !== 0) return undefined;
  const before = d.attrs.before as number[], after = d.attrs.after as number[];
  if (axes.some((a) => before[a] !== 0 || after[a] !== 0)) return undefined;
  return [d.inputs[0]!, before, after];
}

/**
 * reduce_sum(pad(y)) → pad(reduce_sum(y)) when the pad is off the reduced axes, and
 * reduce_sum(pad(y1) + pad(y2)) → pad(reduce_sum(y1)) + pad(reduce_sum(y2)) when the two pads are
 * that and their parts are disjoint along one axis (the other axes unpadded): exact (each element of
 * the sum is one part's element plus +0, and the parts' sums add the same elements in the same order).
 */
function sumOfPads(b: GraphBuilder, defs: ReadonlyMap<number, Def>, x: number, attrs: Attrs, loc: Parameters<GraphBuilder['op']>[3]): number | undefined {
  const axes = attrs.axes as number[], keep = attrs.keepdims === true;
  const rank = b.typeOf(x).shape.length;
  const ax = axes.map((a) => (a < 0 ? a + rank : a));
  const padded = (p: [number, number[], number[]]) => {
    const [y, before, after] = p;
    const s = b.op('reduce_sum', [y], attrs, loc);
    const kept = (v: number[]) => (keep ? v : v.filter((_, i) => !ax.includes(i)));
    return b.op('pad', [s], { before: kept(before), after: kept(after), value: 0 }, loc);
  };
  const one = padOff(defs, x, ax);
  if (one) return padded(one);
  const d = defs.get(x);
  if (d?.op !== 'add') return undefined;
  const [p, q] = d.inputs.map((i) => padOff(defs, i, ax));
  if (!p || !q || b.typeOf(d.inputs[0]!).dtype !== b.typeOf(d.inputs[1]!).dtype) return undefined;
  // One padded axis, the same for both, with disjoint parts [before, extent − after).
  const axesOf = (t: [number, number[], number[]]) => t[1].map((v, i) => (v !== 0 || t[2][i] !== 0 ? i : -1)).filter((i) => i >= 0);
  const [ap, aq] = [axesOf(p), axesOf(q)];
  if (ap.length !== 1 || aq.length !== 1 || ap[0] !== aq[0]) return undefined;
  const k = ap[0]!, n = b.typeOf(x).shape[k]!;
  const part = (t: [number, number[], number[]]) => [t[1][k]!, n - t[2][k]!] as const;
  const [s1, e1] = part(p), [s2, e2] = part(q);
  if (!(e1 <= s2 || e2 <= s1)) return undefined;
  return b.op('add', [padded(p), padded(q)], {}, loc);
}

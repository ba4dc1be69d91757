/**
 * @file View folding on the graph: identity views disappear and chains of the same movement op
 * compose into one (reshape∘reshape, permute∘permute, broadcast∘broadcast, slice∘slice, pad∘pad with
 * equal fill). Mixed chains (e.g. permute then reshape then slice) are folded later, at lowering,
 * into one index map per load (compiler/lower/view.ts).
 */
import type { Graph } from '../../ir/graph.ts';
import { shapeEq } from '../../ir/shape.ts';
import { copyNode, rewriteGraph } from '../../ir/rewrite.ts';
import type { Def } from './simplify.ts';

export function viewFold(g: Graph): Graph {
  const defs = new Map<number, Def>();
  return rewriteGraph(g, (n, ins, b) => {
    const x = ins[0]!;
    const inT = ins.length ? b.typeOf(x) : undefined;
    const d = ins.length ? defs.get(x) : undefined;
    const emit = (op: Def['op'], inputs: number[], attrs: Def['attrs']) => {
      const id = b.op(op, inputs, attrs, n.loc);
      defs.set(id, { op, inputs, attrs });
      return id;
    };
    switch (n.op) {
      case 'reshape':
        if (shapeEq(inT!.shape, n.type.shape)) return x;
        if (d?.op === 'reshape') return shapeEq(b.typeOf(d.inputs[0]!).shape, n.type.shape) ? d.inputs[0]! : emit('reshape', [d.inputs[0]!], n.attrs);
        break;
      case 'broadcast':
        if (shapeEq(inT!.shape, n.type.shape)) return x;
        if (d?.op === 'broadcast') return emit('broadcast', [d.inputs[0]!], n.attrs);
        break;
      case 'permute': {
        const perm = n.attrs.perm as number[];
        if (perm.every((p, i) => p === i)) return x;
        if (d?.op === 'permute') {
          const inner = d.attrs.perm as number[];
          const composed = perm.map((p) => inner[p]!);
          return composed.every((p, i) => p === i) ? d.inputs[0]! : emit('permute', [d.inputs[0]!], { perm: composed });
        }
        break;
      }
      case 'slice': {
        const [st, en, sp] = [n.attrs.starts as number[], n.attrs.ends as number[], n.attrs.steps as number[]];
        if (st.every((s) => s === 0) && sp.every((s) => s === 1) && en.every((e, i) => e === inT!.shape[i])) return x;
        if (d?.op === 'slice') {
          const [s1, k1] = [d.attrs.starts as number[], d.attrs.steps as number[]];
          const starts = st.map((s2, i) => s1[i]! + s2 * k1[i]!);
          const steps = sp.map((k2, i) => k1[i]! * k2);
          const ends = n.type.shape.map((len, i) => (len === 0 ? starts[i]! : starts[i]! + (len - 1) * steps[i]! + 1));
          return emit('slice', [d.inputs[0]!], { starts, ends, steps });
        }
        break;
      }
      case 'pad': {
        const [bf, af] = [n.attrs.before as number[], n.attrs.after as number[]];
        if (bf.every((p) => p === 0) && af.every((p) => p === 0)) return x;
        if (d?.op === 'pad' && Object.is(d.attrs.value, n.attrs.value)) {
          const before = bf.map((p, i) => p + (d.attrs.before as number[])[i]!);
          const after = af.map((p, i) => p + (d.attrs.after as number[])[i]!);
          return emit('pad', [d.inputs[0]!], { before, after, value: n.attrs.value! });
        }
        break;
      }
      default:
        break;
    }
    const id = copyNode(n, ins, b);
    defs.set(id, { op: n.op, inputs: ins, attrs: n.attrs });
    return id;
  });
}

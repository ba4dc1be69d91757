/**
 * @file View folding on the graph: identity views disappear and chains of the same movement op
 * compose into one (reshape∘reshape, permute∘permute, broadcast∘broadcast, slice∘slice, pad∘pad with
 * equal fill). Mixed chains (e.g. permute then reshape then slice) are folded later, at lowering,
 * into one index map per load (compiler/lower/view.ts). And a slice that reads a cast through views that
 * nothing else reads moves before the cast (narrowCasts).
 */
import type { Graph, Node } from '../../ir/graph.ts';
import { numel, shapeEq } from '../../ir/shape.ts';
import { GraphRewriter, copyNode, rewriteGraph } from '../../ir/rewrite.ts';
import type { Def } from './simplify.ts';

export function viewFold(g: Graph): Graph {
  const defs = new Map<number, Def>();
  return rewriteGraph(narrowCasts(g), (n, ins, b) => {
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

/**
 * slice(views(cast(x))) → cast(slice(views(x))) where the slice keeps fewer elements than it reads and
 * nothing else reads the cast or the views (reshape, permute) between them: only the kept elements are
 * cast, and where the cast is materialized only they are stored (a fused qkv projection's V third in
 * bf16 for the attention, instead of all three thirds). The same values: a cast is per element.
 */
export function narrowCasts(g: Graph): Graph {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const single = (v: number) => users.get(v)?.length === 1 && !outputs.has(v);
  const plans = new Map<number, { cast: Node; chain: Node[] }>();
  for (const n of g.nodes) {
    if (n.op !== 'slice' || numel(n.type.shape) >= numel(g.typeOf(n.inputs[0]!).shape)) continue;
    const chain: Node[] = [];
    let v = n.inputs[0]!;
    for (let d = g.node(v); d && (d.op === 'reshape' || d.op === 'permute') && single(v); d = g.node(v)) {
      chain.unshift(d);
      v = d.inputs[0]!;
    }
    const cast = g.node(v);
    if (cast?.op === 'cast' && single(v)) plans.set(n.id, { cast, chain });
  }
  if (!plans.size) return g;
  const rw = new GraphRewriter(g).copyInputs();
  rw.copyNodes(g.nodes, (n, _ins, b) => {
    const p = plans.get(n.id);
    if (!p) return undefined;
    let x = rw.get(p.cast.inputs[0]!);
    for (const c of p.chain) x = b.op(c.op, [x], c.attrs, c.loc);
    return b.op('cast', [b.op('slice', [x], n.attrs, n.loc)], p.cast.attrs, p.cast.loc);
  });
  return rw.copyOutputs().build();
}

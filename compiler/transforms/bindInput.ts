/**
 * @file bindInput: replace an input of a graph by a value computed in the same graph, from outputs
 * that do not depend on that input. Used to make a value "detached" structurally (Kiln has no
 * stop-gradient op): differentiate with the value as an input, then bind it (FAE's adaptive GAN
 * weight, models/fae/programs.ts).
 */
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { dce } from '../passes/dce.ts';
import { TracedRewriter } from './rewrite.ts';

export interface BindEnv {
  /** A value of the graph's output `name` (it must not depend on the input being bound). */
  output(name: string): Tensor;
  /** Another input of the graph. */
  input(name: string): Tensor;
}
export interface BindResult {
  /** The value the input takes (its exact type). */
  value: Tensor;
  /** Extra outputs to add. */
  outputs?: Record<string, Tensor>;
}

/**
 * Replace input `name` of `g` by a value computed in the graph from outputs that do not depend on
 * it: nodes independent of the input come first (in their order), then the computed value, then the
 * nodes that read the input. The input disappears from the signature; outputs in `drop` are removed.
 */
export function bindInput(g: Graph, name: string, compute: (env: BindEnv) => BindResult, opts: { drop?: readonly string[] } = {}): Graph {
  const target = g.inputByName(name);
  if (!target) throw new KilnError(`bindInput: graph ${g.name} has no input '${name}'`);
  const dep = new Set<number>([target.id]);
  for (const n of g.nodes) if (n.inputs.some((i) => dep.has(i))) dep.add(n.id);
  const r = new TracedRewriter(g);
  r.rewriter.copyInputs((i) => i.id !== target.id);
  return r.run(() => {
    r.rewriter.copyNodes(g.nodes.filter((n) => !dep.has(n.id)));
    const bound = compute({
      output: (o) => {
        const out = g.output(o);
        if (!out) throw new KilnError(`bindInput: graph ${g.name} has no output '${o}'`);
        if (dep.has(out.id)) throw new KilnError(`bindInput: output '${o}' depends on input '${name}', which it would define`);
        return r.tensor(out.id);
      },
      input: (i) => {
        const x = g.inputByName(i);
        if (!x || x.id === target.id) throw new KilnError(`bindInput: graph ${g.name} has no other input '${i}'`);
        return r.tensor(x.id);
      },
    });
    const [want, got] = [target.type, bound.value.type];
    if (want.dtype !== got.dtype || want.shape.length !== got.shape.length || want.shape.some((d, k) => d !== got.shape[k]))
      throw new KilnError(`bindInput: input '${name}' is ${want.dtype}[${want.shape.join(',')}], the bound value is ${got.dtype}[${got.shape.join(',')}]`);
    r.set(target.id, bound.value);
    r.rewriter.copyNodes(g.nodes.filter((n) => dep.has(n.id)));
    const drop = new Set(opts.drop ?? []);
    r.rewriter.copyOutputs((o) => !drop.has(o.name));
    for (const [k, t] of Object.entries(bound.outputs ?? {})) r.builder.output(k, t.id);
    return dce(r.build());
  });
}

/**
 * @file Reverse-mode automatic differentiation of a Graph.
 *
 * grad(g, { loss: 'loss', wrt: ['fc1.weight', ...] }) returns one graph computing the forward
 * outputs (all of them, or those named in `outputs`) and, for every input named in `wrt`, an
 * output `grad.<name>` holding d(sum of loss)/d(input). Only nodes on a path from a `wrt` input to
 * the loss get gradient work; a `wrt` input that does not reach the loss gets zeros. Each gradient
 * node inherits the model source location of the forward node it differentiates.
 */
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { isFloat } from '../../ir/dtype.ts';
import { full } from '../dsl/functional.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { dumpGraph } from '../debug.ts';
import { dce } from '../passes/dce.ts';
import { copyGraph } from './rewrite.ts';
import { vjp } from './vjp.ts';

export interface GradOptions {
  /** Output whose sum is differentiated. */
  loss: string;
  /** Inputs to differentiate with respect to (float inputs only). */
  wrt: readonly string[];
  /** Forward outputs to keep (default: all). The loss is always kept. */
  outputs?: readonly string[];
  /** Prefix of gradient output names (default 'grad.'). */
  prefix?: string;
}

export function gradName(input: string, prefix = 'grad.'): string {
  return `${prefix}${input}`;
}

export function grad(g: Graph, opts: GradOptions): Graph {
  const prefix = opts.prefix ?? 'grad.';
  const lossOut = g.output(opts.loss);
  if (!lossOut) throw new KilnError(`grad: graph ${g.name} has no output '${opts.loss}' (outputs: ${g.outputs.map((o) => o.name).join(', ')})`);
  const lossType = g.typeOf(lossOut.id);
  if (!isFloat(lossType.dtype)) throw new KilnError(`grad: loss '${opts.loss}' must be a float, got ${lossType.dtype}`);
  const wrtIds = opts.wrt.map((name) => {
    const i = g.inputByName(name);
    if (!i) throw new KilnError(`grad: graph ${g.name} has no input '${name}'`);
    if (!isFloat(i.type.dtype)) throw new KilnError(`grad: input '${name}' is ${i.type.dtype}; only float inputs have gradients`);
    return i.id;
  });

  // Which values depend on a wrt input, and which nodes reach the loss.
  const dependsOnWrt = new Set(wrtIds);
  for (const n of g.nodes) if (n.inputs.some((i) => dependsOnWrt.has(i))) dependsOnWrt.add(n.id);
  const reachesLoss = new Set([lossOut.id]);
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k]!;
    if (reachesLoss.has(n.id)) for (const i of n.inputs) reachesLoss.add(i);
  }

  // The forward pass (copied), then the backward pass written with DSL tensors in the same graph.
  const r = copyGraph(g, `${g.name}_grad`);
  const { ctx, builder: b } = r;
  const val = (id: number) => r.tensor(id);

  return r.run(() => {
    const keep = opts.outputs ?? g.outputs.map((o) => o.name);
    for (const name of new Set([opts.loss, ...keep])) {
      if (!g.output(name)) throw new KilnError(`grad: graph ${g.name} has no output '${name}'`);
      b.output(name, r.rewriter.output(name));
    }

    const cot = new Map<number, Tensor>();
    const lossT = val(lossOut.id);
    ctx.loc = g.node(lossOut.id)?.loc;
    cot.set(lossOut.id, full(lossT.shape, 1, lossT.dtype));
    for (let k = g.nodes.length - 1; k >= 0; k--) {
      const n = g.nodes[k]!;
      const gOut = cot.get(n.id);
      if (!gOut || !dependsOnWrt.has(n.id) || !reachesLoss.has(n.id)) continue;
      ctx.loc = n.loc;
      const grads = vjp(n.op, { g: gOut, ins: n.inputs.map(val), out: val(n.id), attrs: n.attrs });
      n.inputs.forEach((i, j) => {
        const gi = grads[j];
        if (!gi || !dependsOnWrt.has(i)) return;
        const prev = cot.get(i);
        cot.set(i, prev ? prev.add(gi) : gi);
      });
    }
    opts.wrt.forEach((name, j) => {
      const id = wrtIds[j]!;
      const t = g.typeOf(id);
      b.output(gradName(name, prefix), (cot.get(id) ?? full(t.shape, 0, t.dtype)).id);
    });
    const out = dce(b.build());
    dumpGraph('ir', 'grad', out);
    return out;
  });
}

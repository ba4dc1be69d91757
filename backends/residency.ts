/**
 * @file Checks every Executable makes the same way: which inputs are resident (param, frozen, state)
 * and written, and that each run feeds exactly the data inputs with the right types.
 */
import { KilnError } from '../ir/errors.ts';
import type { Graph, GraphInput } from '../ir/graph.ts';
import { shapeEq } from '../ir/shape.ts';
import type { HostTensor } from '../ir/tensor.ts';

/** The resident input `name`, checking that `value` (if given) has its type. */
export function residentInput(g: Graph, name: string, value?: HostTensor): GraphInput {
  const i = g.inputByName(name);
  if (!i || i.kind === 'data') throw new KilnError(`graph ${g.name}: '${name}' is not a resident (param, frozen or state) input`);
  if (value && (i.type.dtype !== value.dtype || !shapeEq(i.type.shape, value.shape)))
    throw new KilnError(`graph ${g.name}: '${name}' expects ${i.type.dtype}[${i.type.shape.join(',')}], got ${value.dtype}[${value.shape.join(',')}]`);
  return i;
}

/** Check a run's feeds: every data input fed with its type, no resident or unknown names; returns the data inputs with their values. */
export function checkFeeds(g: Graph, feeds: Readonly<Record<string, HostTensor>>, written: ReadonlySet<string>): Array<[GraphInput, HostTensor]> {
  for (const k of Object.keys(feeds)) if (!g.inputByName(k)) throw new KilnError(`graph ${g.name}: feed '${k}' is not an input`);
  const data: Array<[GraphInput, HostTensor]> = [];
  for (const i of g.inputs) {
    if (i.kind !== 'data') {
      if (!written.has(i.name)) throw new KilnError(`graph ${g.name}: resident input '${i.name}' has not been written`);
      if (feeds[i.name]) throw new KilnError(`graph ${g.name}: '${i.name}' is resident (${i.kind}); set it with write(), not as a feed`);
      continue;
    }
    const x = feeds[i.name];
    if (!x) throw new KilnError(`graph ${g.name}: input '${i.name}' (${i.type.dtype}[${i.type.shape.join(',')}]) was not fed`);
    if (x.dtype !== i.type.dtype || !shapeEq(x.shape, i.type.shape))
      throw new KilnError(`graph ${g.name}: input '${i.name}' expects ${i.type.dtype}[${i.type.shape.join(',')}], got ${x.dtype}[${x.shape.join(',')}]`);
    data.push([i, x]);
  }
  return data;
}

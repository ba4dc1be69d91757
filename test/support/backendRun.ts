/**
 * @file Run a graph once on any backend: compile it for the backend, write its resident inputs
 * (params, frozen, state) from `feeds`, feed the data inputs, fetch every output. Precision is f32
 * unless asked (the cuda backend's own default is bf16; the tests that use this compare at f32 tolerances).
 */
import type { Backend } from '../../backends/backend.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { type Precision, compileOn } from '../../runtime/compile.ts';

export async function runOnBackend(backend: Backend, graph: Graph, feeds: Readonly<Record<string, HostTensor>>, precision: Precision = 'f32', options: Omit<NonNullable<Parameters<typeof compileOn>[2]>, 'precision'> = {}): Promise<Record<string, HostTensor>> {
  const exe = await compileOn(backend, graph, { ...options, precision });
  try {
    const data: Record<string, HostTensor> = {};
    for (const i of graph.inputs) {
      const v = feeds[i.name];
      if (!v) throw new Error(`runOnBackend: no value for input '${i.name}'`);
      if (i.kind === 'data') data[i.name] = v;
      else await exe.write(i.name, v);
    }
    return await exe.run(data, graph.outputs.map((o) => o.name));
  } finally {
    exe.dispose();
  }
}

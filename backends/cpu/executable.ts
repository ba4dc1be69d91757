/**
 * @file The CPU backend as an Executable: resident inputs live in host memory and the graph runs
 * through the interpreter.
 */
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { type Backend, type Executable, NEXT_PREFIX } from '../backend.ts';
import { checkFeeds, residentInput } from '../residency.ts';
import { type Precision, runGraph } from './interpreter.ts';

export class CpuExecutable implements Executable {
  private readonly resident = new Map<string, HostTensor>();
  constructor(readonly graph: Graph, private readonly precision: Precision = 'f32') {
    for (const o of graph.outputs) {
      if (!o.name.startsWith(NEXT_PREFIX)) continue;
      const target = graph.inputByName(o.name.slice(NEXT_PREFIX.length));
      if (!target || target.kind === 'data')
        throw new KilnError(`graph ${graph.name}: output '${o.name}' does not name a param or state input`);
    }
  }
  async write(name: string, value: HostTensor): Promise<void> {
    residentInput(this.graph, name, value);
    this.resident.set(name, { dtype: value.dtype, shape: [...value.shape], data: value.data.slice() });
  }
  async read(name: string): Promise<HostTensor> {
    const t = this.resident.get(name);
    if (!t) throw new KilnError(`graph ${this.graph.name}: resident input '${name}' has not been written`);
    return { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() };
  }
  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    const all: Record<string, HostTensor> = {};
    for (const [i, x] of checkFeeds(this.graph, feeds, new Set(this.resident.keys()))) all[i.name] = x;
    for (const i of this.graph.inputs) if (i.kind !== 'data') all[i.name] = this.resident.get(i.name)!;
    const outs = runGraph(this.graph, all, { precision: this.precision });
    const want = fetch ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(NEXT_PREFIX));
    const result: Record<string, HostTensor> = {};
    for (const n of want) {
      const t = outs[n];
      if (!t) throw new KilnError(`graph ${this.graph.name}: no output '${n}' to fetch`);
      result[n] = t;
    }
    for (const [n, t] of Object.entries(outs))
      if (n.startsWith(NEXT_PREFIX)) this.resident.set(n.slice(NEXT_PREFIX.length), t);
    return result;
  }
  dispose(): void {
    this.resident.clear();
  }
}

export const cpuBackend: Backend = {
  name: 'cpu',
  consumes: 'graph',
  compile: async (graph: Graph) => new CpuExecutable(graph),
};

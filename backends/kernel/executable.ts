/**
 * @file The kernel-IR interpreter as a backend ('kernel-cpu'): runs the compiler's KernelProgram on
 * the CPU with GPU memory layout. Slow, but it executes exactly what the GPU code generators print,
 * so fusion, scheduling and memory planning are tested end to end without a GPU.
 */
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import type { Backend, Executable } from '../backend.ts';
import { checkFeeds, residentInput } from '../residency.ts';
import { ProgramMemory } from './interpreter.ts';

export class KernelExecutable implements Executable {
  private readonly mem: ProgramMemory;
  private readonly written = new Set<string>();
  constructor(readonly graph: Graph, program: KernelProgram) {
    this.mem = new ProgramMemory(program);
  }
  async write(name: string, value: HostTensor): Promise<void> {
    residentInput(this.graph, name, value);
    this.mem.setInput(name, value);
    this.written.add(name);
  }
  async read(name: string): Promise<HostTensor> {
    const i = residentInput(this.graph, name);
    if (!this.written.has(name)) throw new KilnError(`graph ${this.graph.name}: resident input '${name}' has not been written`);
    return hostTensor(i.type.dtype, i.type.shape, this.mem.getInput(name));
  }
  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    for (const [i, x] of checkFeeds(this.graph, feeds, this.written)) this.mem.setInput(i.name, x);
    this.mem.run();
    const want = fetch ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(NEXT_PREFIX));
    const out: Record<string, HostTensor> = {};
    for (const n of want) {
      const o = this.graph.output(n);
      if (!o) throw new KilnError(`graph ${this.graph.name}: no output '${n}' to fetch`);
      out[n] = hostTensor(this.graph.typeOf(o.id).dtype, this.graph.typeOf(o.id).shape, this.mem.getOutput(n));
    }
    // Apply the state updates after all outputs are read (outputs may alias inputs).
    const updates = this.graph.outputs.filter((o) => o.name.startsWith(NEXT_PREFIX)).map((o) => [o.name.slice(NEXT_PREFIX.length), this.mem.getOutput(o.name)] as const);
    for (const [name, vals] of updates) {
      const i = residentInput(this.graph, name);
      this.mem.setInput(name, hostTensor(i.type.dtype, i.type.shape, vals));
    }
    return out;
  }
  dispose(): void {}
}

export const kernelCpuBackend: Backend = {
  name: 'kernel-cpu',
  consumes: 'kernels',
  compile: async (graph: Graph, program?: KernelProgram) => {
    if (!program) throw new KilnError('kernel-cpu runs compiled kernel programs: use compileOn(backend, graph) from runtime/compile.ts');
    return new KernelExecutable(graph, program);
  },
};

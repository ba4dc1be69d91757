/**
 * @file The kernel-IR interpreter as a backend ('kernel-cpu'): runs the compiler's KernelProgram on
 * the CPU with GPU memory layout. Slow, but it executes exactly what the GPU code generators print,
 * so fusion, scheduling and memory planning are tested end to end without a GPU.
 */
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { shapeEq } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import type { Backend, Executable } from '../backend.ts';
import { ProgramMemory } from './interpreter.ts';

export class KernelExecutable implements Executable {
  private readonly mem: ProgramMemory;
  private readonly written = new Set<string>();
  constructor(readonly graph: Graph, program: KernelProgram) {
    this.mem = new ProgramMemory(program);
  }
  private resident(name: string) {
    const i = this.graph.inputByName(name);
    if (!i || i.kind === 'data') throw new KilnError(`graph ${this.graph.name}: '${name}' is not a resident (param, frozen or state) input`);
    return i;
  }
  async write(name: string, value: HostTensor): Promise<void> {
    const i = this.resident(name);
    if (i.type.dtype !== value.dtype || !shapeEq(i.type.shape, value.shape))
      throw new KilnError(`graph ${this.graph.name}: '${name}' expects ${i.type.dtype}[${i.type.shape.join(',')}], got ${value.dtype}[${value.shape.join(',')}]`);
    this.mem.setInput(name, value);
    this.written.add(name);
  }
  async read(name: string): Promise<HostTensor> {
    const i = this.resident(name);
    if (!this.written.has(name)) throw new KilnError(`graph ${this.graph.name}: resident input '${name}' has not been written`);
    return hostTensor(i.type.dtype, i.type.shape, this.mem.getInput(name));
  }
  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    for (const i of this.graph.inputs) {
      if (i.kind !== 'data') {
        if (!this.written.has(i.name)) throw new KilnError(`graph ${this.graph.name}: resident input '${i.name}' has not been written`);
        if (feeds[i.name]) throw new KilnError(`graph ${this.graph.name}: '${i.name}' is resident (${i.kind}); set it with write(), not as a feed`);
        continue;
      }
      const x = feeds[i.name];
      if (!x) throw new KilnError(`graph ${this.graph.name}: input '${i.name}' (${i.type.dtype}[${i.type.shape.join(',')}]) was not fed`);
      if (x.dtype !== i.type.dtype || !shapeEq(x.shape, i.type.shape))
        throw new KilnError(`graph ${this.graph.name}: input '${i.name}' expects ${i.type.dtype}[${i.type.shape.join(',')}], got ${x.dtype}[${x.shape.join(',')}]`);
      this.mem.setInput(i.name, x);
    }
    for (const k of Object.keys(feeds)) if (!this.graph.inputByName(k)) throw new KilnError(`graph ${this.graph.name}: feed '${k}' is not an input`);
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
      const i = this.resident(name);
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

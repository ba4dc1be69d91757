/**
 * @file Compile a graph for a backend: the CPU reference interpreter takes the Graph IR as it is;
 * kernel backends get the compiler's KernelProgram (passes, fusion, scheduling, memory plan).
 */
import type { Backend, Executable } from '../backends/backend.ts';
import { compile } from '../compiler/compile.ts';
import type { Graph } from '../ir/graph.ts';

export async function compileOn(backend: Backend, graph: Graph): Promise<Executable> {
  if (backend.consumes === 'graph') return backend.compile(graph);
  return backend.compile(graph, compile(graph).program);
}

/**
 * @file The contract between the runtime and a backend (types only).
 *
 * A backend compiles a Graph into an Executable that owns device memory for the graph's resident
 * inputs (kinds 'param' and 'state'). Each run feeds only the 'data' inputs, returns only the
 * requested outputs, and makes every output named `next.<input>` the new value of that resident
 * input, so that training state never leaves the device between steps.
 */
import type { Graph } from '../ir/graph.ts';
import type { GemmTarget } from '../ir/kernel/types.ts';
import type { KernelProgram } from '../ir/kernel/types.ts';
import type { HostTensor } from '../ir/tensor.ts';

export { NEXT_PREFIX } from '../ir/graph.ts';

export interface Executable {
  readonly graph: Graph;
  /** Set a resident input (param or state) from the host. */
  write(name: string, value: HostTensor): Promise<void>;
  /** Copy a resident input back to the host. */
  read(name: string): Promise<HostTensor>;
  /**
   * Run once with the given data inputs. Returns the outputs named in `fetch` (default: every output
   * that is not a `next.` update); then applies the `next.` updates to the resident inputs.
   */
  run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>>;
  /** Release device memory. */
  dispose(): void;
}

export interface Backend {
  readonly name: string;
  /**
   * What the backend runs: the Graph IR itself ('graph': the CPU reference interpreter) or the kernel
   * program the compiler makes of it ('kernels': the kernel-IR interpreter, WGSL, CUDA). Use
   * runtime/compile.ts's compileOn(backend, graph), which runs the compiler when it is needed.
   */
  readonly consumes: 'graph' | 'kernels';
  /**
   * The precision compileOn uses when none is asked for (runtime/compile.ts; without this hook: bf16
   * on 'cuda', f32 elsewhere). The WGSL backend answers 'f16' when its adapter has shader-f16 (after
   * creating its device, hence a promise).
   */
  defaultPrecision?(): 'f32' | 'bf16' | 'f16' | Promise<'f32' | 'bf16' | 'f16'>;
  /**
   * The device memory free now, in bytes (CUDA: cuMemGetInfo), for compileOn's `remat: 'auto'`
   * (more remat when the program would not fit: cheap, then whole blocks); without it auto stays 'fused'.
   */
  freeMemoryBytes?(): number | Promise<number>;
  /**
   * The device the compiler chooses matmul tiles for (compiler/schedule/tiling.ts), where it is not the
   * default (SM90): the WGSL backend's subgroup-matrix target when its adapter has them.
   */
  gemmTarget?(): GemmTarget | undefined | Promise<GemmTarget | undefined>;
  /** `info.cacheKey`: the program cache's key of `program` (runtime/programCache.ts), for a backend's own build cache. */
  compile(graph: Graph, program?: KernelProgram, info?: CompileInfo): Promise<Executable>;
}

export interface CompileInfo {
  readonly cacheKey?: string;
}

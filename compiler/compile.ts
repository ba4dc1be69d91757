/**
 * @file The compiler pipeline from a Graph to a KernelProgram:
 *   verify → graph passes (compiler/passes) → fusion + lowering (compiler/fuse, compiler/lower)
 *   → kernel merging → kernel order → memory plan (compiler/schedule).
 * Every stage's result is kept as text for `kiln compile --report` and KILN_DEBUG.
 */
import type { Graph } from '../ir/graph.ts';
import { printKernel, printProgram } from '../ir/kernel/print.ts';
import type { BufferDecl, Kernel, KernelProgram } from '../ir/kernel/types.ts';
import { printGraph } from '../ir/printer.ts';
import { verify } from '../ir/verify.ts';
import { debugOn } from './debug.ts';
import { type Fused, fuse } from './fuse/fuse.ts';
import { mergeKernels } from './fuse/merge.ts';
import { optimize } from './passes/pipeline.ts';
import { type MemoryPlan, planMemory } from './schedule/memoryPlan.ts';
import { scheduleKernels } from './schedule/order.ts';

export interface Stage {
  readonly name: string;
  readonly text: string;
}

export interface Compiled {
  readonly program: KernelProgram;
  readonly optimized: Graph;
  readonly fused: Fused;
  readonly plan: MemoryPlan;
  readonly stages: readonly Stage[];
}

export interface CompileOptions {
  /** Skip kernel merging (epilogue and horizontal fusion), for tests and debugging. */
  noMerge?: boolean;
}

export function compile(g: Graph, opts: CompileOptions = {}): Compiled {
  verify(g);
  const stages: Stage[] = [{ name: 'input', text: printGraph(g) }];
  const optimized = optimize(g);
  stages.push({ name: 'passes', text: printGraph(optimized) });
  const fused = fuse(optimized);
  stages.push({ name: 'fuse', text: fused.kernels.map(printKernel).join('\n') + '\n' });
  const merged = opts.noMerge ? fused.kernels : mergeKernels(fused.kernels, fused.buffers);
  stages.push({ name: 'merge', text: merged.map(printKernel).join('\n') + '\n' });
  const ordered = scheduleKernels(merged, fused.buffers).map((k, i) => ({ ...k, name: kernelName(i, k) }));
  const plan = planMemory(ordered, fused.buffers);
  const buffers: BufferDecl[] = fused.buffers.map((b) => (plan.offsets.has(b.id) ? { ...b, offset: plan.offsets.get(b.id)! } : { ...b }));
  const program: KernelProgram = {
    name: g.name, buffers, kernels: ordered, inputs: fused.inputs, outputs: fused.outputs, arenaBytes: plan.arenaBytes,
  };
  stages.push({ name: 'schedule', text: printProgram(program) });
  if (debugOn('kernels')) process.stderr.write(`// ---- KILN_DEBUG kernels: ${g.name} ----\n${printProgram(program)}`);
  return { program, optimized, fused, plan, stages };
}

/** k<position>_<op of its first graph node>[+<how many more nodes were fused in>]. */
function kernelName(i: number, k: Kernel): string {
  const base = k.name.split('+')[0]!;
  const extra = k.name.split('+').length - 1;
  return `k${i}_${base}${extra ? `+${extra}` : ''}`;
}

/**
 * @file The compiler pipeline from a Graph to a KernelProgram, one named stage after another:
 *   verify → graph passes (compiler/passes) → fuse: which values are materialized (compiler/fuse,
 *   a FusionPlan) → lower: the plan's kernels (compiler/lower) → merge: epilogue and horizontal
 *   fusion of kernels (compiler/fuse/merge.ts) → tile: each matmul's TileSchedule
 *   (compiler/schedule/tiling.ts) → order (compiler/schedule/order.ts) → memory plan
 *   (compiler/schedule/memoryPlan.ts).
 * Each stage is a function of the previous results; its result is logged with a printer, and the
 * text is made only when asked for (`kiln compile --stages`, `Compiled.stages`). A new kernel-IR
 * stage (kernels in, kernels out) is one more `stages.run(...)` line between merge and order.
 */
import type { Graph } from '../ir/graph.ts';
import { printKernel, printProgram } from '../ir/kernel/print.ts';
import type { BufferDecl, Kernel, KernelProgram } from '../ir/kernel/types.ts';
import { printGraph } from '../ir/printer.ts';
import { verify } from '../ir/verify.ts';
import { debugOn } from './debug.ts';
import { planFusion } from './fuse/fuse.ts';
import { mergeKernels } from './fuse/merge.ts';
import { type FusionPlan, printFusionPlan } from './fuse/plan.ts';
import { lowerPlan } from './lower/lower.ts';
import { optimize } from './passes/pipeline.ts';
import { withAttentionTile } from './schedule/attentionTiling.ts';
import { type MemoryPlan, planMemory } from './schedule/memoryPlan.ts';
import { scheduleKernels } from './schedule/order.ts';
import { type GemmTarget, tileKernels } from './schedule/tiling.ts';

/** One stage's result as text (printed on first read) and the wall milliseconds it took. */
export interface Stage {
  readonly name: string;
  readonly text: string;
  readonly ms: number;
}

export interface Compiled {
  readonly program: KernelProgram;
  readonly optimized: Graph;
  /** The fusion decisions: materialized values with their reasons, and the buffer table. */
  readonly fused: FusionPlan;
  readonly plan: MemoryPlan;
  /** Every stage's result, in pipeline order: input, passes, fuse, lower, merge, order, memory. */
  readonly stages: readonly Stage[];
}

export interface CompileOptions {
  /** Skip kernel merging (epilogue and horizontal fusion), for tests and debugging. */
  noMerge?: boolean;
  /** The device the matmul tiles are chosen for (compiler/schedule/tiling.ts; default SM90). */
  target?: GemmTarget;
}

export function compile(g: Graph, opts: CompileOptions = {}): Compiled {
  const stages = new StageLog();
  const input = stages.run('input', () => verified(g), printGraph);
  const optimized = stages.run('passes', () => optimize(input), printGraph);
  const fused = stages.run('fuse', () => planFusion(optimized), (p) => printFusionPlan(optimized, p));
  const lowered = stages.run('lower', () => lowerPlan(optimized, fused), printKernels);
  const merged = stages.run('merge', () => (opts.noMerge ? lowered : mergeKernels(lowered, fused.buffers)), printKernels);
  const tiled = stages.run('tile', () => tileKernels(merged, fused.buffers, opts.target), printKernels);
  const ordered = stages.run('order', () => orderKernels(tiled, fused.buffers), printKernels);
  const { program, plan } = stages.run('memory', () => layOut(g.name, ordered, fused), (r) => printProgram(r.program));
  if (debugOn('kernels')) process.stderr.write(`// ---- KILN_DEBUG kernels: ${g.name} ----\n${printProgram(program)}`);
  return { program, optimized, fused, plan, stages: stages.list };
}

/** Stage input: the graph, checked (verify throws a KilnError naming the bad node). */
function verified(g: Graph): Graph {
  verify(g);
  return g;
}

/** Stage order: a dependence order that keeps peak memory low; kernels are named by their position. */
function orderKernels(kernels: readonly Kernel[], buffers: readonly BufferDecl[]): Kernel[] {
  return scheduleKernels(kernels, buffers).map((k, i) => withAttentionTile({ ...k, name: kernelName(i, k) }));
}

/** Stage memory: temporaries placed in one arena, and the program that results. */
function layOut(name: string, kernels: Kernel[], fused: FusionPlan): { program: KernelProgram; plan: MemoryPlan } {
  const plan = planMemory(kernels, fused.buffers, fused);
  const inPlaceOf = new Map(plan.stateInPlace);
  const buffers: BufferDecl[] = fused.buffers.map((b) =>
    plan.offsets.has(b.id) ? { ...b, offset: plan.offsets.get(b.id)! } : inPlaceOf.has(b.id) ? { ...b, inPlaceOf: inPlaceOf.get(b.id)! } : { ...b });
  const program: KernelProgram = {
    name, buffers, kernels, inputs: new Map(fused.inputs), outputs: new Map(fused.outputs), arenaBytes: plan.arenaBytes,
  };
  return { program, plan };
}

function printKernels(ks: readonly Kernel[]): string {
  return ks.map(printKernel).join('\n') + '\n';
}

/** k<position>_<op of its first graph node>[+<how many more nodes were fused in>]. */
function kernelName(i: number, k: Kernel): string {
  const base = k.name.split('+')[0]!;
  const extra = k.name.split('+').length - 1;
  return `k${i}_${base}${extra ? `+${extra}` : ''}`;
}

/** The stages run so far, each with its result's printer (text made lazily, once). */
class StageLog {
  readonly list: Stage[] = [];
  run<T>(name: string, stage: () => T, print: (result: T) => string): T {
    const t0 = performance.now();
    const result = stage();
    const ms = performance.now() - t0;
    let text: string | undefined;
    this.list.push({ name, ms, get text() { return (text ??= print(result)); } });
    return result;
  }
}

/**
 * @file The compiler pipeline from a Graph to a KernelProgram, one named stage after another:
 *   verify → graph passes (compiler/passes) → remat: which forward values a training step keeps for
 *   its backward and which it recomputes (compiler/transforms/remat.ts) → fuse: which values are materialized (compiler/fuse,
 *   a FusionPlan) → lower: the plan's kernels (compiler/lower) → merge: epilogue and horizontal
 *   fusion of kernels (compiler/fuse/merge.ts, row loops included) → layout: temporaries that matmuls read
 *   through permuting views stored as they read them (compiler/schedule/layout.ts) → split: index-set
 *   splitting of large elementwise kernels (compiler/schedule/splitParts.ts) → tile: each matmul's TileSchedule
 *   (compiler/schedule/tiling.ts) → order (compiler/schedule/order.ts) → memory plan
 *   (compiler/schedule/memoryPlan.ts).
 * Each stage is a function of the previous results; its result is logged with a printer, and the
 * text is made only when asked for (`kiln compile --stages`, `Compiled.stages`). A new kernel-IR
 * stage (kernels in, kernels out) is one more `stages.run(...)` line between merge and order.
 */
import type { Graph } from '../ir/graph.ts';
import { kernelAccess } from '../ir/kernel/access.ts';
import { printKernel, printProgram } from '../ir/kernel/print.ts';
import type { BufferDecl, Kernel, KernelProgram } from '../ir/kernel/types.ts';
import { printGraph } from '../ir/printer.ts';
import { verify } from '../ir/verify.ts';
import { debugOn } from './debug.ts';
import { type FusionCostModel, deviceBytes } from './fuse/cost.ts';
import { planFusion } from './fuse/fuse.ts';
import { mergeKernels } from './fuse/merge.ts';
import { type FusionPlan, printFusionPlan } from './fuse/plan.ts';
import { lowerPlan } from './lower/lower.ts';
import { optimize } from './passes/pipeline.ts';
import { withAttentionTile } from './schedule/attentionTiling.ts';
import { relayoutForMatmuls } from './schedule/layout.ts';
import { splitParts } from './schedule/splitParts.ts';
import { type MemoryPlan, planMemory } from './schedule/memoryPlan.ts';
import { scheduleKernels } from './schedule/order.ts';
import { type GemmTarget, tileKernels } from './schedule/tiling.ts';
import { type RematMode, type RematResult, remat } from './transforms/remat.ts';

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
  /** What rematerialization did (mode, recomputed nodes, extra FLOPs, kept bytes) and, for `auto`, why. */
  readonly remat: RematSummary;
  /** Every stage's result, in pipeline order: input, passes, fuse, lower, merge, order, memory. */
  readonly stages: readonly Stage[];
}

export interface CompileOptions {
  /** Skip kernel merging (epilogue and horizontal fusion), for tests and debugging. */
  noMerge?: boolean;
  /** The device the matmul tiles are chosen for (compiler/schedule/tiling.ts; default SM90). */
  target?: GemmTarget;
  /**
   * Rematerialization (compiler/transforms/remat.ts): 'off', 'fused' (recompute the elementwise chains
   * that fold into the backward's loop kernels: never a matmul or attention operand), 'cheap' (every
   * elementwise chain), 'blocks' (also recompute each repeated block), or 'auto' (the default,
   * DEFAULT_REMAT): 'fused', then 'cheap', then 'blocks', each only when the program's device memory
   * (arena + inputs, outputs, constants) with the one before exceeds `deviceFreeBytes`.
   */
  remat?: RematMode | 'auto';
  /** The device's free memory in bytes, for `remat: 'auto'` (without it, auto is 'fused'). */
  deviceFreeBytes?: number;
  /** How fusion's cost rule counts memory traffic (compiler/fuse/cost.ts FusionCostModel; default 'per-kernel'). */
  fusionCost?: FusionCostModel;
  /**
   * Re-lay out temporaries that matmuls read through permuting views (attention's head layout) so
   * that they read plain matrices (compiler/schedule/layout.ts).
   */
  relayout?: boolean;
  /** Merge elementwise consumers of a reduction's results into it as row loops (compiler/fuse/merge.ts). */
  rowLoops?: boolean;
  /** Split elementwise kernels where their parts are selected along one grid axis (compiler/schedule/splitParts.ts; on by default). */
  splitParts?: boolean;
  /** Merge column reductions that read one activation along the reduced axis (compiler/fuse/merge.ts; on by default). */
  siblingReductions?: boolean;
}

/**
 * The remat mode when none is asked for: 'auto', the fastest step that fits the device (fused, else cheap,
 * else blocks; fused without a free-memory figure). Fused, not off, first: it keeps every value a backward
 * matmul or attention reads and recomputes only what folds into the backward's elementwise and row kernels
 * (a norm's scaled value from its normalized one, a bias add), so it stores less in the forward than off
 * and moves fewer bytes in all (LightningDiT-XL/1 batch 64: arena 26.6 → 19.5 GB, kernel bytes 244.2 →
 * 242.7 GB, 37 more small kernels; on an H200 30,054 MiB against torch.compile's 34,255 MiB peak, step 175.8 ms
 * against off's 171.6 ms in one call and 170.4 ms in another: bench/RESULTS.md). Not 'cheap' first:
 * measured on an H200 (bench/RESULTS.md, 2026-12-02) cheap halves the LightningDiT steps' device memory but
 * costs step time (XL/1 batch 64 +10.6%, B/1 batch 128 +20.7%: its recomputed matmul operands are kernels
 * of their own).
 */
/** The layout stage and row-loop merging run unless asked not to (measured: bench/RESULTS.md). */
export const DEFAULT_RELAYOUT = true;
export const DEFAULT_ROW_LOOPS = true;
/** Index-set splitting (compiler/schedule/splitParts.ts): B/1 batch 128 on an H200 72.01 → 67.87 ms (s4-step W2, bench/RESULTS.md). */
export const DEFAULT_SPLIT_PARTS = true;
/** Sibling reductions (compiler/fuse/merge.ts): the SwiGLU bias gradients' halves read their inputs once. */
export const DEFAULT_SIBLING_REDUCTIONS = true;

export const DEFAULT_REMAT: RematMode | 'auto' = 'auto';

export interface RematSummary extends Omit<RematResult, 'graph' | 'recomputed' | 'deferred' | 'forward'> {
  /** Nodes recomputed in the backward. */
  readonly recomputedNodes: number;
  /** Why this mode (auto): the plan's device bytes against the device's free bytes. */
  readonly reason?: string;
}

/** Device bytes of a compiled program: its arena plus every input, output (but those written in place into their input) and constant buffer. */
export function programDeviceBytes(p: KernelProgram): number {
  return p.arenaBytes + p.buffers.filter((b) => b.kind !== 'temp' && b.inPlaceOf === undefined).reduce((s, b) => s + b.numel * deviceBytes(b.dtype), 0);
}

export function compile(g: Graph, opts: CompileOptions = {}): Compiled {
  const stages = new StageLog();
  const input = stages.run('input', () => verified(g), printGraph);
  const passed = stages.run('passes', () => optimize(input), printGraph);
  const asked = opts.remat ?? DEFAULT_REMAT;
  if (asked !== 'auto') return compileFrom(g.name, passed, asked, stages, opts);
  // auto: the fastest step that fits: fused, then cheap, then blocks, each only when the one before exceeds the device's free memory.
  const free = opts.deviceFreeBytes;
  const fused = compileFrom(g.name, passed, 'fused', stages.fork(), opts);
  const fusedBytes = programDeviceBytes(fused.program);
  if (free === undefined || fusedBytes <= free) {
    const reason = free === undefined ? 'auto: no free-memory figure, fused' : `auto: the plan's ${gb(fusedBytes)} with fused remat fits the device's free ${gb(free)}`;
    return withStages({ ...fused, remat: { ...fused.remat, reason } }, stages, fused);
  }
  const cheap = compileFrom(g.name, passed, 'cheap', stages.fork(), opts);
  const need = programDeviceBytes(cheap.program);
  if (need <= free) {
    const reason = `auto: the plan's ${gb(fusedBytes)} with fused remat exceeds the device's free ${gb(free)}; with cheap remat ${gb(need)} fits`;
    return withStages({ ...cheap, remat: { ...cheap.remat, reason } }, stages, cheap);
  }
  const blocks = compileFrom(g.name, passed, 'blocks', stages.fork(), opts);
  const reason = `auto: the plan's ${gb(need)} with cheap remat exceeds the device's free ${gb(free)}; blocks: ${gb(programDeviceBytes(blocks.program))}`;
  return withStages({ ...blocks, remat: { ...blocks.remat, reason } }, stages, blocks);
}

const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;

/** `c` with the stage log `base` (input, passes) followed by the stages `c` ran itself. */
function withStages(c: Compiled, base: StageLog, from: Compiled): Compiled {
  return { ...c, stages: [...base.list, ...from.stages.slice(base.list.length)] };
}

/** The stages from remat on, after the graph passes. */
function compileFrom(name: string, passed: Graph, mode: RematMode, stages: StageLog, opts: CompileOptions): Compiled {
  const r = stages.run('remat', () => remat(passed, mode), (x) => printGraph(x.graph));
  const optimized = r.graph;
  const fused = stages.run('fuse', () => planFusion(optimized, opts.fusionCost ? { cost: opts.fusionCost } : {}), (p) => printFusionPlan(optimized, p));
  const lowered = stages.run('lower', () => lowerPlan(optimized, fused), printKernels);
  const phase = (k: Kernel) => (k.nodes.some((n) => r.deferred.has(n)) ? 1 : 0) | (k.nodes.some((n) => r.forward.has(n)) ? 2 : 0);
  // A kernel of recomputed copies joins no forward kernel, and joins another kernel only when one
  // consumes the other (merging on shared operands alone would pull recomputations of distant layers
  // into one kernel, run as early as the first of them is needed).
  const feeds = (x: Kernel, y: Kernel) => { const r = kernelAccess(y).reads; return [...kernelAccess(x).writes].some((b) => r.has(b)); };
  const apart = r.recomputed.size
    ? (x: Kernel, y: Kernel, how?: 'sibling') => { const p = phase(x) | phase(y); return p === 3 || (p === 1 && how !== 'sibling' && !feeds(x, y) && !feeds(y, x)); }
    : undefined;
  const merged = stages.run('merge', () => (opts.noMerge ? lowered : mergeKernels(lowered, fused.buffers, apart, { rowLoops: opts.rowLoops ?? DEFAULT_ROW_LOOPS, siblingReductions: opts.siblingReductions ?? DEFAULT_SIBLING_REDUCTIONS })), printKernels);
  const laid = stages.run('layout', () => ((opts.relayout ?? DEFAULT_RELAYOUT) ? relayoutForMatmuls(merged, fused.buffers).kernels : merged), printKernels);
  const split = (opts.splitParts ?? DEFAULT_SPLIT_PARTS) ? stages.run('split', () => splitParts(laid), printKernels) : laid;
  const tiled = stages.run('tile', () => tileKernels(split, fused.buffers, opts.target), printKernels);
  const ordered = stages.run('order', () => orderKernels(tiled, fused.buffers, r.deferred), printKernels);
  const { program, plan } = stages.run('memory', () => layOut(name, ordered, fused), (x) => printProgram(x.program));
  if (debugOn('kernels')) process.stderr.write(`// ---- KILN_DEBUG kernels: ${name} ----\n${printProgram(program)}`);
  const { graph: _g, recomputed, deferred: _d, forward: _f, ...summary } = r;
  return { program, optimized, fused, plan, remat: { ...summary, recomputedNodes: recomputed.size }, stages: stages.list };
}

/** Stage input: the graph, checked (verify throws a KilnError naming the bad node). */
function verified(g: Graph): Graph {
  verify(g);
  return g;
}

/** Stage order: a dependence order that keeps peak memory low; kernels are named by their position. */
function orderKernels(kernels: readonly Kernel[], buffers: readonly BufferDecl[], deferred: ReadonlySet<number>): Kernel[] {
  return scheduleKernels(kernels, buffers, deferred).map((k, i) => withAttentionTile({ ...k, name: kernelName(i, k) }));
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
  /** A log that starts with this one's stages (for alternatives compiled from the same point). */
  fork(): StageLog {
    const f = new StageLog();
    f.list.push(...this.list);
    return f;
  }
  run<T>(name: string, stage: () => T, print: (result: T) => string): T {
    const t0 = performance.now();
    const result = stage();
    const ms = performance.now() - t0;
    let text: string | undefined;
    this.list.push({ name, ms, get text() { return (text ??= print(result)); } });
    return result;
  }
}

/**
 * @file A compiled WGSL program as plain data ("WGSL plus a buffer plan"), for running where Kiln's
 * compiler is not: the browser bundles of `kiln export --target web`. `planWgsl` does at export time what
 * WgslExecutable's constructor does on a device (place the arena with its scratch, pack the inputs,
 * constants and outputs into GPU buffers of at most maxBufferSize, generate every dispatch for the
 * given limits and kernel variants), and records the result as JSON-ready data: GPU buffer sizes,
 * where each input and output lives, the constants' values, and the dispatches in launch order.
 * planExecutable.ts runs it on any GPUDevice. `next.<input>` outputs (e.g. TarFlow's KV caches) become
 * copies into the resident input after the dispatches, staged through a temporary buffer where the
 * source lives in the inputs or the arena (as WgslExecutable stages them).
 */
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { DType } from '../../ir/dtype.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { deviceByteSize } from './codec.ts';
import { type Placement, type WgslDispatch, type WgslLimits, type WgslOptions, generateWgsl, scratchOf } from './codegen.ts';

export const WGSL_PLAN_FORMAT = 'kiln-wgsl-plan/1';

/** The limits a plan is generated for; a device must offer at least these. */
export interface WgslPlanLimits extends WgslLimits {
  readonly maxBufferSize: number;
}

/** WebGPU's default limits (every conforming browser adapter offers them). */
export const WEBGPU_DEFAULT_LIMITS: WgslPlanLimits = {
  maxStorageBufferBindingSize: 134217728,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupsPerDimension: 65535,
  maxComputeInvocationsPerWorkgroup: 256,
  maxBufferSize: 268435456,
};

/** An input or output of the program and where its values live. */
export interface WgslPlanTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Graph input kind ('data' is fed per run; the others are written once); 'output' for outputs. */
  readonly kind: 'data' | 'param' | 'frozen' | 'state' | 'output';
  readonly gpu: number;
  readonly offset: number;
}

export interface WgslPlanConst {
  readonly dtype: DType;
  readonly gpu: number;
  readonly offset: number;
  readonly values: readonly number[];
}

/** One `next.` update: copy `bytes` from the output's place to the input's, through a staging buffer when `staged`. */
export interface WgslPlanUpdate {
  readonly output: string;
  readonly input: string;
  readonly src: Placement;
  readonly dst: Placement;
  readonly bytes: number;
  readonly staged: boolean;
}

export interface WgslPlan {
  readonly format: typeof WGSL_PLAN_FORMAT;
  readonly name: string;
  readonly limits: WgslPlanLimits;
  /** The kernel variants the dispatches were generated with (e.g. SwiftShader's serial reductions). */
  readonly kernels: { readonly reductions: 'workgroup' | 'serial'; readonly gemm: string };
  /** Byte size of each GPU buffer (0: the arena and scratch, then inputs and constants, then outputs). */
  readonly gpuBuffers: readonly number[];
  readonly inputs: readonly WgslPlanTensor[];
  readonly outputs: readonly WgslPlanTensor[];
  readonly consts: readonly WgslPlanConst[];
  readonly dispatches: readonly WgslDispatch[];
  readonly updates: readonly WgslPlanUpdate[];
}

const ALIGN = 256;
const align = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

/**
 * Buffers of one kind packed into GPU buffers of at most `max` bytes (each buffer 256-byte aligned): the
 * placement both WgslExecutable and a web plan use. `where` names the caller in the too-large error.
 */
export function packBuffers(ids: readonly number[], bytes: (id: number) => number, max: number, firstGpu: number, where: string): { place: Map<number, Placement>; sizes: number[] } {
  const place = new Map<number, Placement>();
  const sizes: number[] = [];
  let cur = 0;
  for (const id of ids) {
    const b = align(Math.max(4, bytes(id)));
    if (b > max) throw new KilnError(`${where}: buffer b${id} (${b} B) exceeds maxBufferSize (${max} B)`);
    if (sizes.length === 0 || cur + b > max) {
      sizes.push(0);
      cur = 0;
    }
    place.set(id, { gpu: firstGpu + sizes.length - 1, offset: cur });
    cur += b;
    sizes[sizes.length - 1] = cur;
  }
  return { place, sizes };
}

/** The plan of `program` (compiled from `graph`) for devices with at least `limits`. */
export function planWgsl(graph: Graph, program: KernelProgram, limits: WgslPlanLimits, opts: WgslOptions): WgslPlan {
  const p = program;
  const place = new Map<number, Placement>();
  const bytes = (id: number) => p.buffers[id]!.numel * deviceByteSize(p.buffers[id]!.dtype);
  let arenaBytes = align(Math.max(ALIGN, p.arenaBytes));
  for (const b of p.buffers) if (b.kind === 'temp' && b.offset !== undefined) place.set(b.id, { gpu: 0, offset: b.offset });
  for (const s of scratchOf(p)) {
    place.set(s.id, { gpu: 0, offset: arenaBytes });
    arenaBytes += align(s.bytes);
  }
  if (arenaBytes > limits.maxBufferSize) throw new KilnError(`wgsl plan: program ${p.name}: the arena (${arenaBytes} B) exceeds maxBufferSize (${limits.maxBufferSize} B)`);
  const inputs = packBuffers(p.buffers.filter((b) => b.kind === 'input' || b.kind === 'const').map((b) => b.id), bytes, limits.maxBufferSize, 1, 'wgsl plan');
  const outputs = packBuffers(p.buffers.filter((b) => b.kind === 'output').map((b) => b.id), bytes, limits.maxBufferSize, 1 + inputs.sizes.length, 'wgsl plan');
  for (const [id, pl] of [...inputs.place, ...outputs.place]) place.set(id, pl);
  const gpuBuffers = [arenaBytes, ...inputs.sizes, ...outputs.sizes].map((s) => align(s));
  const placeOf = (id: number) => {
    const pl = place.get(id);
    if (!pl) throw new KilnError(`wgsl plan: program ${p.name}: buffer b${id} has no place (a temporary without a planned offset?)`);
    return pl;
  };
  const dispatches = generateWgsl(p, { place: placeOf, gpuSize: (g) => gpuBuffers[g]! }, limits, opts).flat();
  const tensorIn = graph.inputs.flatMap((i): WgslPlanTensor[] => {
    const id = p.inputs.get(i.name);
    if (id === undefined) return []; // an input no kernel reads
    return [{ name: i.name, dtype: i.type.dtype, shape: [...i.type.shape], kind: i.kind, ...placeOf(id) }];
  });
  const tensorOut = graph.outputs.map((o): WgslPlanTensor => {
    const id = p.outputs.get(o.name);
    if (id === undefined) throw new KilnError(`wgsl plan: program ${p.name}: no buffer for output '${o.name}'`);
    const t = graph.typeOf(o.id);
    return { name: o.name, dtype: t.dtype, shape: [...t.shape], kind: 'output', ...placeOf(id) };
  });
  const consts = p.buffers.filter((b) => b.kind === 'const').map((b) => ({ dtype: b.dtype, ...placeOf(b.id), values: Array.from(b.data!, Number) }));
  const updates: WgslPlanUpdate[] = [];
  for (const o of graph.outputs) {
    if (!o.name.startsWith(NEXT_PREFIX)) continue;
    const input = o.name.slice(NEXT_PREFIX.length);
    const [src, dst] = [p.outputs.get(o.name), p.inputs.get(input)];
    if (src === undefined || dst === undefined) throw new KilnError(`wgsl plan: program ${p.name}: no buffer for the update ${o.name}`);
    if (src === dst) continue; // written in place
    const from = placeOf(src);
    updates.push({ output: o.name, input, src: from, dst: placeOf(dst), bytes: align(bytes(src), 4), staged: from.gpu === 0 || from.gpu <= inputs.sizes.length });
  }
  const gemm = opts.gemm === undefined ? 'default' : typeof opts.gemm === 'string' ? opts.gemm : typeof opts.gemm === 'function' ? 'measured' : `${opts.gemm.tm}x${opts.gemm.tn}/bk${opts.gemm.bk}`;
  return { format: WGSL_PLAN_FORMAT, name: p.name, limits, kernels: { reductions: opts.reductions ?? 'workgroup', gemm }, gpuBuffers, inputs: tensorIn, outputs: tensorOut, consts, dispatches, updates };
}

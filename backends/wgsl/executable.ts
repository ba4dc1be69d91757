/**
 * @file The WGSL backend: a KernelProgram becomes WGSL compute shaders (codegen.ts) run on a WebGPU
 * device (device.ts: Dawn in Node, navigator.gpu in a browser; nothing below it is Node-specific).
 * Memory is a few large GPU buffers: the arena (temporaries at their planned offsets, then scratch),
 * the inputs (parameters, state, data inputs and constants) and the outputs, each split into chunks
 * of at most maxBufferSize; a dispatch binds windows of them (codegen.ts). Pipelines are cached per
 * device by source. A run writes the data inputs, encodes every dispatch, the copies of the requested
 * outputs into one read-back buffer and the `next.` updates into one command buffer, submits it once
 * and maps the read-back buffer. Resident inputs stay on the GPU between runs.
 */
import { debugSource } from '../../compiler/debug.ts';
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { BufferDecl, KernelProgram } from '../../ir/kernel/types.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import type { Backend, Executable } from '../backend.ts';
import { checkFeeds, residentInput } from '../residency.ts';
import { decodeValues, deviceByteSize, encodeValues } from './codec.ts';
import { type Placement, measuredGemmTile, type WgslBinding, type WgslDispatch, type WgslLimits, type WgslOptions, generateWgsl, scratchOf } from './codegen.ts';
import { packBuffers } from './plan.ts';
import type { WgslSourceCache } from './sourceCache.ts';
import { type WgslDevice, type WgslDeviceOptions, wgslDevice } from './device.ts';
import { sgmGemmTarget } from './gemmSubgroupMatrix.ts';

const ALIGN = 256;
/** Dispatches per command buffer in a run (see WgslExecutable.submitEarly). */
const SUBMIT_CHUNK = 64;
const align = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

/** Called with every generated shader (besides compiler/debug.ts's KILN_DEBUG=source printer). */
export type SourceHook = (name: string, source: string) => void;

export interface WgslExecutableOptions extends WgslOptions {
  /** Generated shaders kept between runs (sourceCache.ts: the disk cache). */
  readonly sourceCache?: WgslSourceCache;
  /** Told each time one of the executable's pipelines is ready (progress of long compiles, for benchmarks). */
  readonly onPipeline?: (done: number, total: number) => void;
  /** Dispatches per command buffer of a run (default SUBMIT_CHUNK; tests use small ones). */
  readonly submitChunk?: number;
}

interface Pipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** Milliseconds from the shader module's creation to the pipeline's (0 for a pipeline the device already had). */
  readonly ms: number;
}

/** Where an executable's creation spent its time (benchmarks report it; nothing depends on it). */
export interface WgslCompileStats {
  /** WGSL generation (0 on a source-cache hit) and buffer setup, ms. */
  readonly codegenMs: number;
  /** From the first pipeline request to the last pipeline, ms (pipelines are created concurrently). */
  readonly pipelinesMs: number;
  /** Dispatches, distinct sources among them, and pipelines this executable created (not cached on the device). */
  readonly dispatches: number;
  readonly distinct: number;
  readonly created: number;
  /** The WGSL bytes of the distinct sources. */
  readonly sourceBytes: number;
  /**
   * The last pipelines to be ready: kernel name, ms from its request (all are requested at once, so
   * where the device compiles them one at a time this is the queue, not one shader's cost), source bytes.
   */
  readonly slowest: ReadonlyArray<{ name: string; ms: number; bytes: number }>;
  /** Every created pipeline's ms from request to ready, ascending (evenly spaced: compiled one at a time). */
  readonly readyAt: readonly number[];
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<Pipeline>>>();
const layoutCache = new WeakMap<GPUDevice, Map<string, GPUBindGroupLayout>>();

/** The bind group layout of `bindings` (storage, read-only where marked) and the offsets uniform after them. */
function bindGroupLayout(device: GPUDevice, bindings: readonly WgslBinding[]): GPUBindGroupLayout {
  let m = layoutCache.get(device);
  if (!m) layoutCache.set(device, (m = new Map()));
  const key = bindings.map((b) => (b.readOnly ? 'r' : 'w')).join('');
  let l = m.get(key);
  if (!l) {
    l = device.createBindGroupLayout({
      entries: [
        ...bindings.map((b, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.readOnly ? ('read-only-storage' as const) : ('storage' as const) } })),
        { binding: bindings.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' as const } },
      ],
    });
    m.set(key, l);
  }
  return l;
}

async function pipelineFor(device: GPUDevice, d: WgslDispatch, program: string): Promise<Pipeline> {
  let m = pipelineCache.get(device);
  if (!m) pipelineCache.set(device, (m = new Map()));
  const key = `${d.bindings.map((b) => (b.readOnly ? 'r' : 'w')).join('')}\n${d.source}`;
  let p = m.get(key);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      const module = device.createShaderModule({ code: d.source, label: `${program}:${d.name}` });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((x) => x.type === 'error');
      if (errors.length) {
        const lines = d.source.split('\n');
        const msg = errors.slice(0, 3).map((e) => `line ${e.lineNum}: ${e.message}\n    ${lines[e.lineNum - 1]?.trim() ?? ''}`).join('\n  ');
        throw new KilnError(`wgsl: program ${program}, kernel ${d.name}: WGSL does not compile:\n  ${msg}`);
      }
      const layout = bindGroupLayout(device, d.bindings);
      try {
        const pipeline = await device.createComputePipelineAsync({
          label: d.name,
          layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
          compute: { module, entryPoint: 'main' },
        });
        return { pipeline, layout, ms: performance.now() - t0 };
      } catch (e) {
        throw new KilnError(`wgsl: program ${program}, kernel ${d.name}: pipeline creation failed: ${(e as Error).message}`);
      }
    })();
    m.set(key, p);
    p.catch(() => m.delete(key));
    return p;
  }
  return p.then((q) => ({ ...q, ms: 0 }));
}

/**
 * What the generated dispatches of `p` depend on, as text for a source cache's key: the kernels and
 * buffer declarations (constants' values excluded: they are uploaded, not compiled in), every buffer's
 * place and the GPU buffer sizes, the limits and the kernel options (GEMM tile resolved per matmul).
 * Non-finite numbers and −0 are spelled out (JSON would write null and 0).
 */
export function keyMaterial(p: KernelProgram, place: ReadonlyMap<number, Placement>, gpuSizes: readonly number[], limits: WgslLimits, opts: WgslOptions): string {
  const gemm = p.kernels.map((k) => (k.kind !== 'matmul' ? null : typeof opts.gemm === 'function' ? opts.gemm(k.m, k.n, k.k, k.batch.reduce((a, b) => a * b, 1)) : (opts.gemm ?? null)));
  const lim = { s: limits.maxStorageBufferBindingSize, n: limits.maxStorageBuffersPerShaderStage, w: limits.maxComputeWorkgroupsPerDimension, i: limits.maxComputeInvocationsPerWorkgroup };
  return JSON.stringify(
    { kernels: p.kernels, buffers: p.buffers.map((b) => ({ ...b, data: undefined })), place: [...place].sort((a, b) => a[0] - b[0]), gpuSizes, lim, reductions: opts.reductions ?? null, ...(opts.rowMapping === 'block' ? { rowMapping: 'block' } : {}), ...(opts.elementwisePairs === false ? { pairs: false } : {}), attention: opts.attention ?? null, attentionTiles: opts.attentionTiles ?? null, ...(opts.attentionSubgroups ? { asg: opts.attentionSubgroups } : {}), gemm, ...(opts.subgroupMatrix ? { sgm: opts.sgm ?? true } : {}) },
    (_, v) => (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0)) ? `#${Object.is(v, -0) ? '-0' : String(v)}` : v),
  );
}

interface Step {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
}

export class WgslExecutable implements Executable {
  private readonly written = new Set<string>();
  private readonly gpuBuffers: GPUBuffer[] = [];
  private readonly place = new Map<number, Placement>();
  private steps: Step[] = [];
  private readback?: GPUBuffer;
  private updateTmp?: GPUBuffer;
  readonly dispatches: WgslDispatch[][];
  compileStats?: WgslCompileStats;

  private readonly chunk: number;

  private constructor(readonly graph: Graph, readonly program: KernelProgram, private readonly dev: WgslDevice, opts: WgslExecutableOptions) {
    this.chunk = Math.max(1, Math.floor(opts.submitChunk ?? SUBMIT_CHUNK));
    const p = program;
    const { device, limits } = dev;
    const bytes = (id: number) => p.buffers[id]!.numel * deviceByteSize(p.buffers[id]!.dtype);
    // GPU buffer 0: the arena, then scratch.
    const scratch = scratchOf(p);
    let arenaBytes = align(Math.max(ALIGN, p.arenaBytes));
    for (const b of p.buffers) if (b.kind === 'temp' && b.offset !== undefined) this.place.set(b.id, { gpu: 0, offset: b.offset });
    for (const s of scratch) {
      this.place.set(s.id, { gpu: 0, offset: arenaBytes });
      arenaBytes += align(s.bytes);
    }
    if (arenaBytes > limits.maxBufferSize) throw new KilnError(`wgsl: program ${p.name}: the arena (${arenaBytes} B) exceeds the device's maxBufferSize (${limits.maxBufferSize} B)`);
    const sizes = [arenaBytes];
    const inputs = packBuffers(p.buffers.filter((b) => b.kind === 'input' || b.kind === 'const').map((b) => b.id), bytes, limits.maxBufferSize, 1, 'wgsl');
    const outputs = packBuffers(p.buffers.filter((b) => b.kind === 'output').map((b) => b.id), bytes, limits.maxBufferSize, 1 + inputs.sizes.length, 'wgsl');
    for (const [id, pl] of [...inputs.place, ...outputs.place]) this.place.set(id, pl);
    sizes.push(...inputs.sizes, ...outputs.sizes);
    this.inputGpus = new Set(inputs.sizes.map((_, i) => 1 + i));
    for (const [i, s] of sizes.entries())
      this.gpuBuffers.push(device.createBuffer({ label: `${p.name}:${i === 0 ? 'arena' : i <= inputs.sizes.length ? 'inputs' : 'outputs'}`, size: align(s), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST }));
    for (const b of p.buffers) if (b.kind === 'const') this.upload(b, b.data!);
    const placeOf = (id: number) => {
      const pl = this.place.get(id);
      if (!pl) throw new KilnError(`wgsl: program ${p.name}: buffer b${id} has no place (a temporary without a planned offset?)`);
      return pl;
    };
    const layout = { place: placeOf, gpuSize: (g: number) => this.gpuBuffers[g]!.size };
    const cache = opts.sourceCache;
    const material = cache ? keyMaterial(p, this.place, this.gpuBuffers.map((b) => b.size), limits, opts) : '';
    const cached = cache?.get(material);
    this.dispatches = cached ?? generateWgsl(p, layout, limits, opts);
    if (cache && !cached) cache.put(material, this.dispatches);
  }
  private readonly inputGpus: Set<number>;

  static async create(graph: Graph, program: KernelProgram, dev: WgslDevice, opts: WgslExecutableOptions = {}, onSource?: SourceHook): Promise<WgslExecutable> {
    const t0 = performance.now();
    const e = new WgslExecutable(graph, program, dev, opts);
    const t1 = performance.now();
    const all = e.dispatches.flat();
    e.dispatches.forEach((ds, i) => {
      for (const d of ds) {
        debugSource('wgsl', d.name, program.kernels[i]!.nodes, d.source);
        onSource?.(d.name, d.source);
      }
    });
    let ready = 0;
    const pipes = await Promise.all(all.map((d) => pipelineFor(dev.device, d, program.name).then((q) => (opts.onPipeline?.(++ready, all.length), q))));
    const distinct = new Map<string, { name: string; ms: number; bytes: number }>();
    all.forEach((d, i) => {
      const had = distinct.get(d.source);
      if (!had || pipes[i]!.ms > had.ms) distinct.set(d.source, { name: d.name, ms: pipes[i]!.ms, bytes: d.source.length });
    });
    const made = [...distinct.values()].filter((x) => x.ms > 0).sort((a, b) => b.ms - a.ms);
    e.compileStats = {
      codegenMs: t1 - t0, pipelinesMs: performance.now() - t1, dispatches: all.length, distinct: distinct.size, created: made.length,
      sourceBytes: [...distinct.values()].reduce((t, x) => t + x.bytes, 0), slowest: made.slice(0, 8).map((x) => ({ ...x, ms: Math.round(x.ms) })),
      readyAt: made.map((x) => Math.round(x.ms)).reverse(),
    };
    // The offsets uniforms of all dispatches, one 256-byte-aligned slice each, in one buffer.
    const slice = (d: WgslDispatch) => align(16 * Math.max(1, Math.ceil(d.offsets.length / 4)));
    const uniformBytes = all.reduce((t, d) => t + slice(d), 0);
    const uniform = dev.device.createBuffer({ label: `${program.name}:offsets`, size: Math.max(ALIGN, uniformBytes), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    e.gpuBuffers.push(uniform);
    const table = new Int32Array(uniformBytes / 4);
    let at = 0;
    e.steps = all.map((d, i) => {
      table.set(d.offsets, at / 4);
      const entries: GPUBindGroupEntry[] = d.bindings.map((b, j) => ({ binding: j, resource: { buffer: e.gpuBuffers[b.gpu]!, offset: b.offset, size: b.size } }));
      entries.push({ binding: d.bindings.length, resource: { buffer: uniform, offset: at, size: slice(d) } });
      at += slice(d);
      return { pipeline: pipes[i]!.pipeline, workgroups: d.workgroups, bindGroup: dev.device.createBindGroup({ layout: pipes[i]!.layout, entries }) };
    });
    if (uniformBytes) dev.device.queue.writeBuffer(uniform, 0, table.buffer, 0, uniformBytes);
    return e;
  }

  private decl(name: string, map: ReadonlyMap<string, number>): BufferDecl {
    const id = map.get(name);
    if (id === undefined) throw new KilnError(`graph ${this.graph.name}: no buffer for '${name}'`);
    return this.program.buffers[id]!;
  }

  private upload(b: BufferDecl, values: ArrayLike<number>): void {
    if (values.length !== b.numel) throw new KilnError(`graph ${this.graph.name}: buffer b${b.id} expects ${b.numel} values, got ${values.length}`);
    const pl = this.place.get(b.id)!;
    const data = encodeValues(b.dtype, values);
    this.dev.device.queue.writeBuffer(this.gpuBuffers[pl.gpu]!, pl.offset, data.buffer, data.byteOffset, data.byteLength);
  }

  private bytesOf(b: BufferDecl): number {
    return align(b.numel * deviceByteSize(b.dtype), 4);
  }

  /** Copy the given buffers back to the host, after `encode` (if any) has recorded work into the same command buffer. */
  private async download(bufs: readonly BufferDecl[], encode?: (enc: GPUCommandEncoder) => void, after?: (enc: GPUCommandEncoder) => void): Promise<number[][]> {
    const device = this.dev.device;
    const offs: number[] = [];
    let total = 0;
    for (const b of bufs) {
      offs.push(total);
      total += align(this.bytesOf(b));
    }
    if (total > 0 && (!this.readback || this.readback.size < total)) {
      this.readback?.destroy();
      this.readback = device.createBuffer({ label: `${this.program.name}:readback`, size: align(total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
    device.pushErrorScope('validation');
    const enc = device.createCommandEncoder();
    encode?.(enc);
    bufs.forEach((b, i) => {
      const pl = this.place.get(b.id)!;
      const n = this.bytesOf(b);
      if (n > 0) enc.copyBufferToBuffer(this.gpuBuffers[pl.gpu]!, pl.offset, this.readback!, offs[i]!, n);
    });
    after?.(enc);
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err) throw new KilnError(`wgsl: program ${this.program.name}: ${err.message}`);
    if (total === 0) {
      await device.queue.onSubmittedWorkDone();
      return bufs.map(() => []);
    }
    await this.readback!.mapAsync(GPUMapMode.READ, 0, align(total));
    const raw = this.readback!.getMappedRange(0, align(total)).slice(0);
    this.readback!.unmap();
    return bufs.map((b, i) => decodeValues(b.dtype, raw, offs[i]!, b.numel));
  }

  async write(name: string, value: HostTensor): Promise<void> {
    residentInput(this.graph, name, value);
    this.upload(this.decl(name, this.program.inputs), value.data as ArrayLike<number>);
    this.written.add(name);
  }

  async read(name: string): Promise<HostTensor> {
    const i = residentInput(this.graph, name);
    if (!this.written.has(name)) throw new KilnError(`graph ${this.graph.name}: resident input '${name}' has not been written`);
    const [vals] = await this.download([this.decl(name, this.program.inputs)]);
    return hostTensor(i.type.dtype, i.type.shape, vals!);
  }

  /** Record every dispatch of the program into `enc` (one compute pass, with `timestampWrites` if given). */
  encodeDispatches(enc: GPUCommandEncoder, timestampWrites?: GPUComputePassTimestampWrites): void {
    this.encodeRange(enc, 0, this.steps.length, timestampWrites);
  }

  /** Record dispatches [from, to) into `enc` as one compute pass. */
  private encodeRange(enc: GPUCommandEncoder, from: number, to: number, timestampWrites?: GPUComputePassTimestampWrites): void {
    const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : {});
    for (let i = from; i < to; i++) {
      const s = this.steps[i]!;
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
    }
    pass.end();
  }

  /**
   * Encode and submit the program's dispatches but the last SUBMIT_CHUNK, one command buffer per chunk,
   * each submitted as soon as it is encoded (so the GPU runs the first while the CPU encodes the rest:
   * encoding a B/1 step's 690 dispatches takes tens of ms); returns where the last chunk starts (the
   * caller encodes it with what follows it). `begin`: timestamps at the start of the first chunk.
   */
  private submitEarly(begin?: { querySet: GPUQuerySet; index: number }): number {
    const n = this.steps.length;
    const last = Math.max(0, Math.ceil(n / this.chunk) - 1) * this.chunk;
    for (let from = 0; from < last; from += this.chunk) {
      const enc = this.dev.device.createCommandEncoder();
      this.encodeRange(enc, from, from + this.chunk, from === 0 && begin ? { querySet: begin.querySet, beginningOfPassWriteIndex: begin.index } : undefined);
      this.dev.device.queue.submit([enc.finish()]);
    }
    return last;
  }

  /**
   * GPU milliseconds of the last `time` call, from timestamps written at the start of its first pass and
   * the end of its last (undefined where the device has no 'timestamp-query').
   */
  gpuMs?: number;

  /** CPU milliseconds of the last `time` call spent encoding and submitting (before waiting for the GPU). */
  encodeMs?: number;

  /**
   * Run the program `n` times, each as `run` submits a step (command buffers of SUBMIT_CHUNK dispatches
   * submitted as encoded), and wait (for benchmarks); returns wall milliseconds (and sets gpuMs, encodeMs).
   */
  async time(n: number): Promise<number> {
    const device = this.dev.device;
    const stamps = device.features.has('timestamp-query') && n > 0;
    const qs = stamps ? device.createQuerySet({ type: 'timestamp', count: 2 }) : undefined;
    const res = stamps ? device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : undefined;
    const rd = stamps ? device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) : undefined;
    await device.queue.onSubmittedWorkDone();
    const t = performance.now();
    // Each run as a program step runs: its chunks submitted as they are encoded.
    for (let i = 0; i < n; i++) {
      const from = this.submitEarly(qs && i === 0 ? { querySet: qs, index: 0 } : undefined);
      const enc = device.createCommandEncoder();
      const ts: GPUComputePassTimestampWrites | undefined = qs && ((i === 0 && from === 0) || i === n - 1)
        ? { querySet: qs, ...(i === 0 && from === 0 ? { beginningOfPassWriteIndex: 0 } : {}), ...(i === n - 1 ? { endOfPassWriteIndex: 1 } : {}) }
        : undefined;
      this.encodeRange(enc, from, this.steps.length, ts);
      if (qs && i === n - 1) {
        enc.resolveQuerySet(qs, 0, 2, res!, 0);
        enc.copyBufferToBuffer(res!, 0, rd!, 0, 16);
      }
      device.queue.submit([enc.finish()]);
    }
    this.encodeMs = performance.now() - t;
    await device.queue.onSubmittedWorkDone();
    const wall = performance.now() - t;
    this.gpuMs = undefined;
    if (rd) {
      await rd.mapAsync(GPUMapMode.READ);
      const v = new BigUint64Array(rd.getMappedRange().slice(0));
      rd.unmap();
      this.gpuMs = Number(v[1]! - v[0]!) / 1e6;
      for (const b of [rd, res!]) b.destroy();
      qs!.destroy();
    }
    return wall;
  }

  /**
   * GPU milliseconds of every dispatch of one run (for benchmarks; the device needs 'timestamp-query'):
   * each dispatch in a compute pass of its own with timestamps at its start and end, in one submission.
   * Passes serialize the dispatches as the one-pass run does (each depends on the one before through
   * the arena); what a pass boundary adds is included. Program order; `kernel` indexes program.kernels.
   */
  async profile(): Promise<Array<{ kernel: number; name: string; workgroups: readonly [number, number, number]; ms: number }>> {
    const device = this.dev.device;
    if (!device.features.has('timestamp-query')) throw new KilnError(`wgsl: program ${this.program.name}: profile needs the device feature 'timestamp-query'`);
    const at: Array<{ kernel: number; d: WgslDispatch }> = [];
    this.dispatches.forEach((ds, kernel) => ds.forEach((d) => at.push({ kernel, d })));
    // At most 4096 queries per query set (WebGPU's limit): several sets for long programs.
    const per = 2048, sets: GPUQuerySet[] = [];
    for (let i = 0; i < at.length; i += per) sets.push(device.createQuerySet({ type: 'timestamp', count: 2 * Math.min(per, at.length - i) }));
    const bytes = 16 * at.length;
    const res = device.createBuffer({ size: align(bytes), usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const rd = device.createBuffer({ size: align(bytes), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    await device.queue.onSubmittedWorkDone();
    const enc = device.createCommandEncoder();
    this.steps.forEach((s, i) => {
      const q = sets[Math.floor(i / per)]!, j = 2 * (i % per);
      const pass = enc.beginComputePass({ timestampWrites: { querySet: q, beginningOfPassWriteIndex: j, endOfPassWriteIndex: j + 1 } });
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0], s.workgroups[1], s.workgroups[2]);
      pass.end();
    });
    sets.forEach((q, k) => enc.resolveQuerySet(q, 0, q.count, res, 16 * per * k));
    enc.copyBufferToBuffer(res, 0, rd, 0, align(bytes));
    device.queue.submit([enc.finish()]);
    await rd.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(rd.getMappedRange().slice(0, bytes));
    rd.unmap();
    for (const b of [rd, res]) b.destroy();
    for (const q of sets) q.destroy();
    return at.map((a, i) => ({ kernel: a.kernel, name: a.d.name, workgroups: a.d.workgroups, ms: Number(t[2 * i + 1]! - t[2 * i]!) / 1e6 }));
  }

  /** The `next.` updates: copies output → resident input, staged where the source is itself an input. */
  private encodeUpdates(enc: GPUCommandEncoder): void {
    const ups: Array<{ src: BufferDecl; dst: BufferDecl }> = [];
    for (const o of this.graph.outputs) {
      if (!o.name.startsWith(NEXT_PREFIX)) continue;
      const src = this.decl(o.name, this.program.outputs), dst = this.decl(o.name.slice(NEXT_PREFIX.length), this.program.inputs);
      if (src.id !== dst.id) ups.push({ src, dst });
    }
    const staged = ups.filter((u) => this.inputGpus.has(this.place.get(u.src.id)!.gpu) || this.place.get(u.src.id)!.gpu === 0);
    const tmpOff: number[] = [];
    let total = 0;
    for (const u of staged) {
      tmpOff.push(total);
      total += align(this.bytesOf(u.src));
    }
    if (total > 0 && (!this.updateTmp || this.updateTmp.size < total)) {
      this.updateTmp?.destroy();
      this.updateTmp = this.dev.device.createBuffer({ label: `${this.program.name}:updates`, size: align(total), usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    }
    const copy = (a: GPUBuffer, ao: number, b: GPUBuffer, bo: number, n: number) => n > 0 && enc.copyBufferToBuffer(a, ao, b, bo, n);
    const at = (b: BufferDecl) => this.place.get(b.id)!;
    staged.forEach((u, i) => copy(this.gpuBuffers[at(u.src).gpu]!, at(u.src).offset, this.updateTmp!, tmpOff[i]!, this.bytesOf(u.src)));
    for (const u of ups) if (!staged.includes(u)) copy(this.gpuBuffers[at(u.src).gpu]!, at(u.src).offset, this.gpuBuffers[at(u.dst).gpu]!, at(u.dst).offset, this.bytesOf(u.src));
    staged.forEach((u, i) => copy(this.updateTmp!, tmpOff[i]!, this.gpuBuffers[at(u.dst).gpu]!, at(u.dst).offset, this.bytesOf(u.src)));
  }

  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    for (const [i, x] of checkFeeds(this.graph, feeds, this.written)) this.upload(this.decl(i.name, this.program.inputs), x.data as ArrayLike<number>);
    const want = fetch ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(NEXT_PREFIX));
    for (const n of want) if (!this.graph.output(n)) throw new KilnError(`graph ${this.graph.name}: no output '${n}' to fetch`);
    // All chunks but the last are submitted first (their validation errors caught here); the last goes with the read-back copies and the updates.
    const device = this.dev.device;
    device.pushErrorScope('validation');
    const from = this.submitEarly();
    const early = device.popErrorScope();
    const vals = await this.download(want.map((n) => this.decl(n, this.program.outputs)), (enc) => this.encodeRange(enc, from, this.steps.length), (enc) => this.encodeUpdates(enc));
    const err = await early;
    if (err) throw new KilnError(`wgsl: program ${this.program.name}: ${err.message}`);
    const out: Record<string, HostTensor> = {};
    want.forEach((n, i) => {
      const t = this.graph.typeOf(this.graph.output(n)!.id);
      out[n] = hostTensor(t.dtype, t.shape, vals[i]!);
    });
    return out;
  }

  dispose(): void {
    for (const b of this.gpuBuffers.splice(0)) b.destroy();
    this.readback?.destroy();
    this.updateTmp?.destroy();
    this.readback = this.updateTmp = undefined;
  }
}

/**
 * Kernel variants by device: SwiftShader (a CPU Vulkan driver, used in CI) compiles every shader with
 * a workgroup barrier in about a second, so there row kernels reduce serially and matmuls run one
 * invocation per output; real GPUs get workgroup reductions, the tiled GEMM and the tiled attention.
 */
export function defaultKernels(dev: WgslDevice): WgslOptions {
  return /swiftshader/i.test(dev.adapterInfo)
    ? { reductions: 'serial', gemm: 'simple' }
    : { reductions: 'workgroup', gemm: measuredGemmTile, attention: 'tiled', ...(dev.subgroupMatrixF16 ? { subgroupMatrix: true } : {}), ...((dev.subgroupMinSize ?? 0) >= 16 ? { attentionSubgroups: 'native' as const } : {}) };
}

export interface WgslBackendOptions extends WgslDeviceOptions, Omit<WgslExecutableOptions, 'attentionSubgroups'> {
  readonly onSource?: SourceHook;
  /** The tiled attention's subgroup softmax: the device's default ('native' where it has 16-lane subgroups), off, or emulated (tests). */
  readonly attentionSubgroups?: false | 'emulated';
}

/** The f16 subgroup-matrix GEMM is used where the device can run it, unless `subgroupMatrix: false`. */
function useSubgroupMatrix(dev: WgslDevice, asked: boolean | undefined): boolean {
  return dev.subgroupMatrixF16 && asked !== false;
}

/** A WGSL backend on the shared device for `opts` (tests use lower limits than the adapter's). */
export function wgslBackendWith(opts: WgslBackendOptions = {}): Backend & { device(): Promise<WgslDevice> } {
  const { onSource, onPipeline, submitChunk, gemm, reductions, rowMapping, elementwisePairs, attention, attentionTiles, attentionSubgroups, sourceCache, subgroupMatrix, sgm, ...devOpts } = opts;
  return {
    name: 'wgsl',
    consumes: 'kernels',
    device: () => wgslDevice(devOpts),
    // f16 autocast where the adapter has shader-f16 (NVIDIA's Vulkan driver; SwiftShader has not).
    defaultPrecision: async () => ((await wgslDevice(devOpts)).features.has('shader-f16') ? 'f16' : 'f32'),
    // f16 matmuls get subgroup-matrix tiles in the kernel IR where the device runs them (compiler/schedule/subgroupMatrixTiling.ts).
    gemmTarget: async () => {
      const dev = await wgslDevice(devOpts);
      return useSubgroupMatrix(dev, subgroupMatrix) ? sgmGemmTarget(dev.limits.maxComputeWorkgroupStorageSize) : undefined;
    },
    compile: async (graph: Graph, program?: KernelProgram) => {
      if (!program) throw new KilnError('wgsl runs compiled kernel programs: use compileOn(backend, graph) from runtime/compile.ts');
      const dev = await wgslDevice(devOpts);
      const kernels = { ...defaultKernels(dev), ...(gemm ? { gemm } : {}), ...(reductions ? { reductions } : {}), ...(rowMapping ? { rowMapping } : {}), ...(elementwisePairs !== undefined ? { elementwisePairs } : {}), ...(attention ? { attention } : {}), ...(attentionTiles ? { attentionTiles } : {}), ...(sourceCache ? { sourceCache } : {}), ...(sgm ? { sgm } : {}) };
      // attentionSubgroups: false turns the subgroup softmax off, 'emulated' forces its workgroup-memory emulation (tests).
      const asg = attentionSubgroups === false ? undefined : attentionSubgroups === 'emulated' ? 'emulated' : kernels.attentionSubgroups;
      return WgslExecutable.create(graph, program, dev, { ...kernels, ...(asg ? { attentionSubgroups: asg } : {}), ...(onPipeline ? { onPipeline } : {}), ...(submitChunk ? { submitChunk } : {}), subgroupMatrix: Boolean(kernels.subgroupMatrix) && useSubgroupMatrix(dev, subgroupMatrix) }, onSource);
    },
  };
}

/** The WGSL backend with the adapter's limits and the kernel variants for its device. */
export const wgslBackend = wgslBackendWith();

/**
 * @file The CUDA backend: a KernelProgram becomes position-independent CUDA units (codegen.ts; built,
 * compiled to CUBIN in worker threads and cached by build.ts, or one module compiled here with NVRTC)
 * and one device allocation laid out by deviceMemory.ts (resident inputs, data inputs and outputs,
 * the arena with temporaries, the GEMM workspace (accumulators, staged operands, cuBLASLt workspace),
 * attention scratch and the cuBLAS workspace). Every kernel argument is a device address inside that
 * one allocation (a buffer's base pointer plus its planned offset), fixed for the executable's life,
 * so a captured graph stays valid. A run copies its data feeds from
 * pinned host memory with asynchronous copies on the executable's stream, then replays the step: the
 * first run launches every kernel from the host, the second captures the same launches (and the
 * copies of `next.` outputs not written in place) into a CUDA graph, and every run from then on is one
 * cuGraphLaunch. Only fetched outputs come back (asynchronous copies into pinned memory, waited for by
 * polling an event); a run that fetches nothing returns without synchronizing. `graphs: false`
 * (KILN_PROFILE, KILN_CUDA_NO_GRAPHS) launches every kernel from the host on every run.
 */
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, type DType } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { BufferDecl, KernelProgram } from '../../ir/kernel/types.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import type { Backend, CompileInfo, Executable } from '../backend.ts';
import { checkFeeds, residentInput } from '../residency.ts';
import { Cublas, CublasLt } from './blas.ts';
import { type BuiltCuda, buildCuda, codegenOptions, tunedProgram } from './build.ts';
import { type CudaModule, type KernelLaunch, type Launch, generateCuda } from './codegen.ts';
import { CUBLAS_WORKSPACE_ID, type DeviceMemoryPlan, planDeviceMemory } from './deviceMemory.ts';
import { type CapturedGraph, CudaDriver, type Module, type PinnedBuffer } from './driver.ts';
import { DeviceMemoryError, outOfMemory, withKernelNames } from './errors.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { debugOn } from '../../compiler/debug.ts';
import { autotuneGemms } from './gemmAutotune.ts';
import { type CudaOptions, defaultPtxCacheDir } from './options.ts';

const bytesPer = (d: DType) => (d === 'f16' || d === 'bf16' ? 2 : 4);

/** Host values → device storage bytes. */
export function encode(dtype: DType, values: ArrayLike<number>): ArrayBufferView {
  const n = values.length;
  switch (dtype) {
    case 'f32': return values instanceof Float32Array ? values : Float32Array.from(values); // (uploaded as it is: no copy of 10^9 values)
    case 'f16': { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = f32ToF16Bits(values[i]!); return a; }
    case 'bf16': { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = f32ToBf16Bits(values[i]!); return a; }
    case 'i32': return Int32Array.from(values);
    case 'u32': return Uint32Array.from(values);
    case 'bool': { const a = new Uint32Array(n); for (let i = 0; i < n; i++) a[i] = values[i] ? 1 : 0; return a; }
  }
}

/** Device storage bytes → host values. */
export function decode(dtype: DType, raw: ArrayBufferView, n: number): number[] {
  const out = new Array<number>(n);
  const u16 = new Uint16Array(raw.buffer, raw.byteOffset, (dtype === 'f16' || dtype === 'bf16') ? n : 0);
  const view = dtype === 'f32' ? new Float32Array(raw.buffer, raw.byteOffset, n) : dtype === 'i32' ? new Int32Array(raw.buffer, raw.byteOffset, n) : new Uint32Array(raw.buffer, raw.byteOffset, dtype === 'f16' || dtype === 'bf16' ? 0 : n);
  for (let i = 0; i < n; i++) out[i] = dtype === 'f16' ? f16BitsToF32(u16[i]!) : dtype === 'bf16' ? bf16BitsToF32(u16[i]!) : dtype === 'bool' ? (view[i] ? 1 : 0) : view[i]!;
  return out;
}

/** Names of the program's kernels that launch generated function `fn`. */
function kernelsCalling(program: KernelProgram, gen: CudaModule, fn: string): string[] {
  return program.kernels.flatMap((k, i) => (gen.launches[i]?.some((l) => l.kind === 'kernel' && l.fn === fn) ? [k.name] : []));
}

/** What a CudaExecutable is made from besides its program and options. */
export interface CudaExecutableParts {
  /** The generated code and its compiled units (build.ts buildCuda); without it, one module compiled here. */
  readonly built?: BuiltCuda;
  /** The driver (tests inject a fake one: test/support/fakeCuda.ts); default the process-wide one. */
  readonly driver?: CudaDriver;
  /**
   * Resident inputs that live in another executable's memory, by name: their device addresses (a
   * data-parallel update program reads and updates the gradients program's parameters in place,
   * backends/cuda/dataParallel.ts). They count as written; the space the plan gives them is unused.
   */
  readonly bind?: ReadonlyMap<string, bigint>;
  /** Run on this stream (another executable's, so that the two order without events) instead of one of its own. */
  readonly stream?: unknown;
}

export class CudaExecutable implements Executable {
  private readonly cuda: CudaDriver;
  private readonly ptr = new Map<number, bigint>();
  private readonly base: bigint;
  private readonly module: Module;
  private readonly gen: CudaModule;
  private readonly written = new Set<string>();
  /** The device memory plan: what was allocated, and the figures the report shows. */
  readonly memory: DeviceMemoryPlan;
  private readonly stream: unknown;
  /** Packed kernel arguments of every launch (null for cuBLAS calls), per kernel of the program. */
  private readonly packed: Array<Array<Buffer[] | null>>;
  private readonly cublas: Cublas | undefined;
  private readonly cublasLt: CublasLt | undefined;
  /** `next.` updates not written in place: (input buffer, output buffer) copied after the step. */
  private readonly copies: Array<[BufferDecl, BufferDecl]>;
  /** Two pinned staging areas for feeds, used in turn, each with the event of its last copy. */
  private readonly feedStaging: PinnedBuffer[] = [];
  private readonly feedOffset = new Map<string, number>();
  private readonly fetchStaging = new Map<string, PinnedBuffer>();
  private readonly feedDone: unknown[];
  private readonly fetchDone: unknown;
  private readonly feedPending = [false, false];
  private feedTurn = 0;
  private graph_: CapturedGraph | undefined;
  /** Work enqueued after kernel i of every step (captured with it), and at the step's end. */
  private readonly afterKernel = new Map<number, Array<() => void>>();
  private readonly atStepEnd: Array<() => void> = [];
  private readonly ownStream: boolean;
  private runs = 0;
  private disposed = false;
  /** Why the step could not be captured (then every run launches from the host). */
  captureError: string | undefined;

  constructor(readonly graph: Graph, readonly program: KernelProgram, readonly options: CudaOptions = {}, parts: CudaExecutableParts = {}) {
    this.cuda = parts.driver ?? CudaDriver.get(options.libDir);
    // Measured GEMM schedules for this device replace the tiling stage's defaults (build.ts tunedProgram).
    this.gen = parts.built?.gen ?? generateCuda(tunedProgram(this.cuda, program, options), codegenOptions(this.cuda, options));
    this.memory = planDeviceMemory(graph, program, this.gen);
    const { free, total } = this.cuda.memInfo();
    if (this.memory.total > free) throw outOfMemory(this.memory, this.cuda.name, free, total);
    if (parts.built) {
      const functions = new Map<string, unknown>();
      this.gen.units.forEach((u, i) => {
        for (const [f, h] of this.cuda.loadImage(parts.built!.images[i]!, u.functions, u.name).functions) functions.set(f, h);
      });
      this.module = { handle: null, functions };
    } else {
      const fns = this.gen.launches.flat().flatMap((l) => (l.kind === 'kernel' ? [l.fn] : []));
      try {
        this.module = this.cuda.compile(this.gen.source, fns, program.name, options.cacheDir ?? defaultPtxCacheDir());
      } catch (e) {
        throw withKernelNames(e, (fn) => kernelsCalling(program, this.gen, fn));
      }
    }
    try {
      this.base = this.cuda.alloc(this.memory.total);
    } catch (e) {
      if (e instanceof DeviceMemoryError) throw outOfMemory(this.memory, this.cuda.name, e.free, e.total);
      throw e;
    }
    for (const [id, o] of this.memory.offsets) this.ptr.set(id, this.base + BigInt(o));
    for (const [name, at] of parts.bind ?? []) {
      const id = this.buffer(name, program.inputs).id;
      residentInput(graph, name);
      for (const b of program.buffers) if (b.id === id || b.inPlaceOf === id) this.ptr.set(b.id, at);
      this.written.add(name);
    }
    this.cuda.zero(this.base, this.memory.total);
    for (const b of program.buffers) if (b.kind === 'const' && this.ptr.has(b.id)) this.cuda.upload(this.ptr.get(b.id)!, encode(b.dtype, b.data!));
    this.ownStream = parts.stream === undefined;
    this.stream = parts.stream ?? this.cuda.createStream();
    this.feedDone = [this.cuda.createEvent(), this.cuda.createEvent()];
    this.fetchDone = this.cuda.createEvent();
    this.packed = this.gen.launches.map((ls) => ls.map((l) => (l.kind === 'kernel' ? this.cuda.packArgs(this.launchArgs(l)) : null)));
    const gemms = this.gen.launches.flat().filter((l) => l.kind === 'gemm');
    this.cublas = gemms.some((l) => !l.lt) ? Cublas.get(options.libDir) : undefined;
    this.cublasLt = gemms.some((l) => l.lt) ? CublasLt.get(options.libDir) : undefined;
    this.copies = [];
    for (const o of graph.outputs) {
      if (!o.name.startsWith(NEXT_PREFIX)) continue;
      const src = this.buffer(o.name, program.outputs);
      const dst = this.buffer(o.name.slice(NEXT_PREFIX.length), program.inputs);
      if (src.inPlaceOf !== dst.id && src.id !== dst.id) this.copies.push([dst, src]);
    }
    let feedBytes = 0;
    for (const i of graph.inputs) {
      if (i.kind !== 'data' || !program.inputs.has(i.name)) continue;
      this.feedOffset.set(i.name, feedBytes);
      const b = this.buffer(i.name, program.inputs);
      feedBytes += Math.ceil((b.numel * bytesPer(b.dtype)) / 256) * 256;
    }
    if (feedBytes) this.feedStaging.push(this.cuda.hostAlloc(feedBytes), this.cuda.hostAlloc(feedBytes));
  }

  /**
   * The 64-bit arguments of a kernel launch, in the order of the generated function's parameters
   * (today: the device pointer of each buffer it touches). The one place launch arguments are made.
   */
  private launchArgs(l: KernelLaunch): bigint[] {
    return l.params.map((id) => this.ptr.get(id)!);
  }

  private buffer(name: string, map: ReadonlyMap<string, number>): BufferDecl {
    const id = map.get(name);
    if (id === undefined) throw new KilnError(`graph ${this.graph.name}: no buffer for '${name}'`);
    return this.program.buffers[id]!;
  }

  private downloadBuffer(b: BufferDecl): number[] {
    this.cuda.streamSynchronize(this.stream);
    const raw = new Uint8Array(b.numel * bytesPer(b.dtype));
    this.cuda.download(raw, this.ptr.get(b.id)!);
    return decode(b.dtype, raw, b.numel);
  }

  async write(name: string, value: HostTensor): Promise<void> {
    residentInput(this.graph, name, value);
    const b = this.buffer(name, this.program.inputs);
    this.cuda.streamSynchronize(this.stream);
    this.cuda.upload(this.ptr.get(b.id)!, encode(b.dtype, value.data as ArrayLike<number>));
    this.written.add(name);
  }

  async read(name: string): Promise<HostTensor> {
    const i = residentInput(this.graph, name);
    if (!this.written.has(name)) throw new KilnError(`graph ${this.graph.name}: resident input '${name}' has not been written`);
    return hostTensor(i.type.dtype, i.type.shape, this.downloadBuffer(this.buffer(name, this.program.inputs)));
  }

  private launch(l: Launch, packed: Buffer[] | null): void {
    if (l.kind === 'kernel') {
      this.cuda.launch(this.module.functions.get(l.fn), l.grid, l.block, packed!, l.fn, l.sharedBytes ?? 0, this.stream);
      return;
    }
    const at = (x: { buf: number; offset: number }, bytes: number) => this.ptr.get(x.buf)! + BigInt(x.offset * bytes);
    const ab = l.ab === 'bf16' ? 2 : 4;
    const C = at(l.c, l.cType === 'bf16' ? 2 : 4);
    if (l.lt) {
      const bias = l.lt.bias ? at(l.lt.bias, l.lt.bias.dtype === 'bf16' ? 2 : 4) : undefined;
      this.cublasLt!.gemm({
        ...l, A: at(l.a, ab), B: at(l.b, ab), D: C, ldd: l.ldc, sD: l.sC, d: l.cType, epilogue: l.lt.epilogue,
        ...(bias !== undefined ? { bias, biasType: l.lt.bias!.dtype } : {}), workspace: at(l.lt.workspace, 1), workspaceBytes: l.lt.workspaceBytes,
      }, `${l.m}x${l.n}x${l.k}`, this.stream);
      return;
    }
    this.cublas!.gemm({ ...l, A: at(l.a, ab), B: at(l.b, ab), C, c: l.cType }, `${l.m}x${l.n}x${l.k}`);
  }

  /** Point the (process-wide) cuBLAS handle at this executable's stream and workspace. */
  private bindCublas(): void {
    if (!this.cublas) return;
    this.cublas.setStream(this.stream);
    this.cublas.setWorkspace(this.ptr.get(CUBLAS_WORKSPACE_ID)!, this.memory.workspaceBytes);
  }

  /** Launch kernel i's launches on the stream. */
  private launchKernel(i: number): void {
    const ls = this.gen.launches[i]!, ps = this.packed[i]!;
    for (let j = 0; j < ls.length; j++) this.launch(ls[j]!, ps[j]!);
  }

  /** Launch every kernel once (inputs already on the device), from the host, on the stream. */
  launchAll(): void {
    this.bindCublas();
    for (let i = 0; i < this.gen.launches.length; i++) this.launchKernel(i);
  }

  /** The whole step on the stream: every kernel (each followed by its hooks), the copies of the updates not written in place, the end hooks. */
  private enqueueStep(): void {
    for (const f of this.afterKernel.get(-1) ?? []) f();
    for (let i = 0; i < this.gen.launches.length; i++) {
      this.launchKernel(i);
      for (const f of this.afterKernel.get(i) ?? []) f();
    }
    for (const [dst, src] of this.copies) this.cuda.copyAsync(this.ptr.get(dst.id)!, this.ptr.get(src.id)!, src.numel * bytesPer(src.dtype), this.stream);
    for (const f of this.atStepEnd) f();
  }

  /** The stream every step runs on (and hooks enqueue after). */
  get stepStream(): unknown {
    return this.stream;
  }

  /** Device address and bytes of a named input or output buffer. */
  address(name: string): { ptr: bigint; bytes: number; dtype: DType; numel: number } {
    const id = this.program.inputs.get(name) ?? this.program.outputs.get(name);
    if (id === undefined) throw new KilnError(`graph ${this.graph.name}: no input or output '${name}'`);
    const b = this.program.buffers[id]!;
    return { ptr: this.ptr.get(id)!, bytes: b.numel * bytesPer(b.dtype), dtype: b.dtype, numel: b.numel };
  }

  /**
   * The index of the last kernel (in launch order) that writes output `name`: from then on in the step
   * its value is final. -1 when no kernel writes it (a constant).
   */
  lastWriter(name: string): number {
    const id = this.buffer(name, this.program.outputs).id;
    for (let i = this.program.kernels.length - 1; i >= 0; i--) if (kernelAccess(this.program.kernels[i]!).writes.has(id)) return i;
    return -1;
  }

  /**
   * Enqueue `fn`'s work after kernel `i` of every step (-1: before the first), or at the step's end
   * (`'end'`); captured into the step's graph with it, so register hooks before the second run.
   */
  hook(at: number | 'end', fn: () => void): void {
    if (this.graph_) throw new KilnError(`graph ${this.graph.name}: hooks must be added before the step is captured`);
    if (at === 'end') this.atStepEnd.push(fn);
    else this.afterKernel.set(at, [...(this.afterKernel.get(at) ?? []), fn]);
  }

  /** Resident input `name` is written by device work of the caller's (an all-reduce), not by write(). */
  markWritten(name: string): void {
    residentInput(this.graph, name);
    this.written.add(name);
  }

  /** Run one step on the device: host launches, or the captured graph (captured on the second run). */
  private step(): void {
    this.bindCublas();
    if (this.options.graphs !== false && this.runs > 0 && !this.graph_ && this.captureError === undefined) {
      try {
        this.graph_ = this.cuda.capture(this.stream, () => this.enqueueStep());
      } catch (e) {
        // Nothing captured ran: the step runs from the host below, and so do all later ones.
        this.captureError = (e as Error).message;
        if (debugOn('kernels')) process.stderr.write(`kiln: cuda: ${this.program.name}: capture failed, launching from the host: ${this.captureError}\n`);
      }
    }
    if (this.graph_) this.cuda.replay(this.graph_, this.stream);
    else this.enqueueStep();
    this.runs++;
  }

  /** One step launched kernel by kernel from the host (feeds already on the device); returns at once. */
  launchStep(): void {
    this.bindCublas();
    this.enqueueStep();
  }

  /** Driver and cuBLAS calls of one uncaptured step (kernel launches, GEMMs, update copies). */
  get launchCount(): number {
    return this.gen.launches.reduce((s, ls) => s + ls.length, 0) + this.copies.length;
  }

  /** Bytes of device memory this executable allocated: its plan's total, in one allocation. */
  get allocatedBytes(): number {
    return this.memory.total;
  }

  /** Is the step a captured graph now, and of how many nodes? */
  get captured(): { nodes: number } | undefined {
    return this.graph_ ? { nodes: this.graph_.nodes } : undefined;
  }

  /** Wait for everything queued on the stream. */
  sync(): void {
    this.cuda.streamSynchronize(this.stream);
  }

  /**
   * Device milliseconds per step over `steps` steps run back to back (feeds already on the device):
   * the captured graph's replays, or host launches when graphs are off or `uncaptured`.
   */
  timeSteps(steps: number, uncaptured = false): number {
    const t0 = this.cuda.createEvent(true), t1 = this.cuda.createEvent(true);
    this.bindCublas();
    const run = () => (uncaptured ? this.enqueueStep() : this.step());
    run();
    this.sync();
    this.cuda.record(t0, this.stream);
    for (let i = 0; i < steps; i++) run();
    this.cuda.record(t1, this.stream);
    this.cuda.waitEvent(t1);
    const ms = this.cuda.elapsed(t0, t1) / steps;
    this.cuda.destroyEvent(t0);
    this.cuda.destroyEvent(t1);
    return ms;
  }

  /**
   * Device time of each kernel on its own: a CUDA graph of `repeats` launches of the kernel, replayed
   * and timed with events (no host launch gaps), divided by `repeats`. Milliseconds per kernel of the
   * program, in program order. Kernels that update state in place run `repeats` times, so the
   * resident state is not meaningful afterwards. Repeated launches find their operands in L2; with
   * `coldL2` (a device region of the caller's, larger than L2) each kernel instead runs once per
   * measurement, right after a copy across that region has evicted L2 (what a kernel meets inside a
   * step whose working set exceeds L2), and the time is the mean of `repeats` such measurements.
   */
  kernelTimes(repeats = 10, coldL2?: { ptr: bigint; bytes: number }): Array<{ name: string; kind: string; ms: number }> {
    this.bindCublas();
    const t0 = this.cuda.createEvent(true), t1 = this.cuda.createEvent(true);
    const times = this.gen.launches.map((_, i) => {
      if (this.gen.launches[i]!.length === 0) return 0;
      const g = this.cuda.capture(this.stream, () => {
        for (let r = 0; r < (coldL2 ? 1 : repeats); r++) this.launchKernel(i);
      });
      this.cuda.replay(g, this.stream);
      let ms = 0;
      if (coldL2) {
        const half = Math.floor(coldL2.bytes / 2 / 256) * 256;
        for (let r = 0; r < repeats; r++) {
          this.cuda.copyAsync(coldL2.ptr + BigInt(half), coldL2.ptr, half, this.stream);
          this.cuda.record(t0, this.stream);
          this.cuda.replay(g, this.stream);
          this.cuda.record(t1, this.stream);
          this.cuda.waitEvent(t1);
          ms += this.cuda.elapsed(t0, t1);
        }
      } else {
        this.cuda.record(t0, this.stream);
        this.cuda.replay(g, this.stream);
        this.cuda.record(t1, this.stream);
        this.cuda.waitEvent(t1);
        ms = this.cuda.elapsed(t0, t1);
      }
      this.cuda.destroyGraph(g);
      return ms / repeats;
    });
    this.cuda.destroyEvent(t0);
    this.cuda.destroyEvent(t1);
    return this.program.kernels.map((k, i) => ({ name: k.name, kind: k.kind, ms: times[i]! }));
  }

  /**
   * Time each kernel on its own (synchronizing after every launch; wall-clock, so it includes a
   * launch's latency): milliseconds per kernel of the program, in program order. Uncaptured.
   */
  profile(repeats = 3): Array<{ name: string; kind: string; ms: number }> {
    const times = this.gen.launches.map(() => 0);
    this.bindCublas();
    this.sync();
    for (let r = 0; r < repeats; r++)
      this.gen.launches.forEach((_, i) => {
        const t = performance.now();
        this.launchKernel(i);
        this.sync();
        times[i]! += performance.now() - t;
      });
    return this.program.kernels.map((k, i) => ({ name: k.name, kind: k.kind, ms: times[i]! / repeats }));
  }

  /** Launch kernel `i` of the program alone and return output `name` (for checking tuning candidates). */
  runKernel(i: number, name: string): number[] {
    this.bindCublas();
    this.launchKernel(i);
    return this.downloadBuffer(this.buffer(name, this.program.outputs));
  }

  /** Milliseconds per launch of each kernel, launched `reps` times back to back (for tuning). */
  timeKernels(reps: number): number[] {
    return this.gen.launches.map((_, i) => this.timeKernel(i, reps));
  }

  /** Milliseconds per launch of kernel `i` (its launches), launched `reps` times back to back from the host (autotune; uncaptured). */
  timeKernel(i: number, reps: number): number {
    this.bindCublas();
    this.launchKernel(i);
    this.sync();
    const t = performance.now();
    for (let r = 0; r < reps; r++) this.launchKernel(i);
    this.sync();
    return (performance.now() - t) / reps;
  }

  /**
   * One step's launches, as the device ran them, uncaptured (KILN_PROFILE): a GPU event after every
   * launch, no synchronization in between, so each launch's time is the gap between its event and the
   * previous one — its own GPU time when the GPU is the bottleneck, or the CPU's launch time when the
   * GPU waited for it. The times sum to the step's GPU timeline. Per launch: kernel index, what ran,
   * milliseconds.
   */
  timeline(): Array<{ kernel: number; launch: 'kernel' | 'gemm'; fn: string; ms: number }> {
    this.bindCublas();
    this.sync();
    const t = this.cuda.timeline(this.stream);
    const what: Array<{ kernel: number; launch: 'kernel' | 'gemm'; fn: string }> = [];
    t.mark();
    this.gen.launches.forEach((ls, i) => {
      const ps = this.packed[i]!;
      ls.forEach((l, j) => {
        this.launch(l, ps[j]!);
        t.mark();
        what.push({ kernel: i, launch: l.kind, fn: l.kind === 'kernel' ? l.fn : `${l.lt ? 'cublasLt' : 'cublas'} ${l.m}x${l.n}x${l.k}` });
      });
    });
    const ms = t.elapsed();
    return what.map((w, i) => ({ ...w, ms: ms[i]! }));
  }

  /** Copy the feeds into pinned memory and onto the device, asynchronously on the stream. */
  private feed(data: ReadonlyArray<readonly [{ name: string }, HostTensor]>): void {
    if (!data.length || !this.feedStaging.length) return;
    // The copies of two steps ago read this staging area: wait until they are done before refilling it
    // (the step before the last has finished its copies by then in all but GPU-bound runs far ahead).
    const turn = (this.feedTurn ^= 1);
    const staging = this.feedStaging[turn]!;
    if (this.feedPending[turn]) this.cuda.waitEvent(this.feedDone[turn]);
    for (const [i, x] of data) {
      const b = this.buffer(i.name, this.program.inputs);
      const v = encode(b.dtype, x.data as ArrayLike<number>);
      if (v.byteLength === 0) continue;
      const off = this.feedOffset.get(i.name)!;
      staging.bytes.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), off);
      this.cuda.uploadAsync(this.ptr.get(b.id)!, staging.address + BigInt(off), v.byteLength, this.stream);
    }
    this.cuda.record(this.feedDone[turn], this.stream);
    this.feedPending[turn] = true;
  }

  private staging(name: string, bytes: number): PinnedBuffer {
    let s = this.fetchStaging.get(name);
    if (!s) this.fetchStaging.set(name, (s = this.cuda.hostAlloc(bytes)));
    return s;
  }

  private outputsToFetch(want: readonly string[]) {
    return want.map((n) => {
      const o = this.graph.output(n);
      if (!o) throw new KilnError(`graph ${this.graph.name}: no output '${n}' to fetch`);
      const b = this.buffer(n, this.program.outputs);
      return { n, t: this.graph.typeOf(o.id), b, bytes: b.numel * bytesPer(b.dtype) };
    });
  }

  private download(o: { n: string; b: BufferDecl; bytes: number }): void {
    this.cuda.downloadAsync(this.staging(o.n, o.bytes).address, this.ptr.get(o.b.id)!, o.bytes, this.stream);
  }

  /**
   * Outputs of the last run, fetched after whatever the stream holds now (another executable on the
   * same stream may have run since: the data-parallel update program). Outputs that are resident
   * inputs are not offered (they have changed since).
   */
  async fetchLast(names: readonly string[]): Promise<Record<string, HostTensor>> {
    const outs = this.outputsToFetch(names);
    for (const o of outs) if (o.b.kind === 'input') throw new KilnError(`graph ${this.graph.name}: output '${o.n}' is a resident input: fetch it in run()`);
    return this.collect(outs);
  }

  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    const data = checkFeeds(this.graph, feeds, this.written);
    const want = fetch ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(NEXT_PREFIX));
    const outs = this.outputsToFetch(want);
    this.feed(data);
    // An output that is a resident input itself holds its value at the step's start: read it first.
    const early = outs.filter((o) => o.b.kind === 'input'), late = outs.filter((o) => o.b.kind !== 'input');
    early.forEach((o) => this.download(o));
    this.step();
    if (!outs.length) return {};
    return this.collect(late, outs);
  }

  /** Download `late` after the work on the stream, wait for it without blocking the event loop, decode `all`. */
  private async collect(late: ReturnType<CudaExecutable['outputsToFetch']>, all = late): Promise<Record<string, HostTensor>> {
    const outs = all;
    late.forEach((o) => this.download(o));
    this.cuda.record(this.fetchDone, this.stream);
    // Wait without blocking the event loop (data loaders keep running meanwhile).
    while (!this.cuda.done(this.fetchDone)) await new Promise((r) => setImmediate(r));
    const out: Record<string, HostTensor> = {};
    for (const o of outs) {
      const s = this.fetchStaging.get(o.n)!;
      out[o.n] = hostTensor(o.t.dtype, o.t.shape, decode(o.b.dtype, s.bytes, o.b.numel));
    }
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cuda.streamSynchronize(this.stream);
    if (this.graph_) this.cuda.destroyGraph(this.graph_);
    for (const s of this.fetchStaging.values()) this.cuda.hostFree(s);
    for (const s of this.feedStaging) this.cuda.hostFree(s);
    for (const e of this.feedDone) this.cuda.destroyEvent(e);
    this.cuda.destroyEvent(this.fetchDone);
    if (this.ownStream) this.cuda.destroyStream(this.stream);
    this.cuda.free(this.base);
  }
}

/**
 * The CUDA backend with the given options (runtime/backends.ts makes it from the environment).
 * `deps.driver`: the driver to use instead of the process-wide CudaDriver.get (tests inject a fake).
 * `freeMemoryBytes` is the device's free memory from cuMemGetInfo, for compileOn's `remat: 'auto'`.
 */
export function createCudaBackend(options: CudaOptions = {}, deps: { driver?: CudaDriver; parts?: Pick<CudaExecutableParts, 'bind' | 'stream'> } = {}): CudaBackend {
  const driver = () => deps.driver ?? CudaDriver.get(options.libDir);
  return {
    name: 'cuda',
    withParts: (parts) => createCudaBackend(options, { ...deps, parts: { ...deps.parts, ...parts } }),
    consumes: 'kernels',
    freeMemoryBytes: () => driver().memInfo().free,
    compile: async (graph: Graph, program?: KernelProgram, info?: CompileInfo) => {
      if (!program) throw new KilnError('cuda runs compiled kernel programs: use compileOn(backend, graph) from runtime/compile.ts');
      // Autotune measures candidates in an executable of their own, host-launched, before the step's
      // executable exists (so before anything is captured).
      if (options.autotune && options.gemmTuning !== false)
        autotuneGemms(program, driver().name, options.cacheDir ?? defaultPtxCacheDir(), (p) => new CudaExecutable(graph, p, { ...options, gemmTuning: false }, { driver: deps.driver }));
      let built: BuiltCuda | undefined;
      try {
        built = options.parallelNvrtc === false ? undefined : await buildCuda(driver(), program, options, info?.cacheKey);
      } catch (e) {
        throw withKernelNames(e, (fn) => kernelsCalling(program, generateCuda(tunedProgram(driver(), program, options), codegenOptions(driver(), options)), fn));
      }
      return new CudaExecutable(graph, program, options, { built, driver: deps.driver, ...deps.parts });
    },
  };
}

/** The CUDA backend; `withParts`: the same backend making executables bound to another's memory and stream. */
export interface CudaBackend extends Backend {
  withParts(parts: Pick<CudaExecutableParts, 'bind' | 'stream'>): CudaBackend;
}

/** The CUDA backend with default options (cuBLAS on, libraries and cache in their default places). */
export const cudaBackend: Backend = createCudaBackend();

/**
 * @file The CUDA backend: a KernelProgram becomes one CUDA module (codegen.ts, compiled with NVRTC),
 * its buffers device allocations (graph inputs, outputs and constants each their own; temporaries
 * at their planned offsets in one arena), and a run is the program's launches in order. Resident
 * inputs (parameters, optimizer state) stay on the GPU; `next.` outputs are copied onto their inputs
 * on the device after each run.
 */
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, type DType } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { BufferDecl, KernelProgram } from '../../ir/kernel/types.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import type { Backend, CompileInfo, Executable } from '../backend.ts';
import { checkFeeds, residentInput } from '../residency.ts';
import { Cublas, CublasLt } from './blas.ts';
import { type CudaModule, type Launch, generateCuda } from './codegen.ts';
import { CudaDriver, type Module } from './driver.ts';
import { autotuneGemms } from './gemmAutotune.ts';
import { type BuiltCuda, buildCuda, tunedProgram } from './build.ts';
import { type CudaOptions, defaultPtxCacheDir } from './options.ts';

const bytesPer = (d: DType) => (d === 'f16' || d === 'bf16' ? 2 : 4);

/** Host values → device storage bytes. */
export function encode(dtype: DType, values: ArrayLike<number>): ArrayBufferView {
  const n = values.length;
  switch (dtype) {
    case 'f32': return Float32Array.from(values);
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

export class CudaExecutable implements Executable {
  private readonly cuda: CudaDriver;
  private readonly ptr = new Map<number, bigint>();
  private readonly owned: bigint[] = [];
  private readonly module: Module;
  private readonly gen: CudaModule;
  private readonly written = new Set<string>();
  /** Bytes of device memory this executable allocated (arena, buffers, scratch). */
  allocatedBytes = 0;

  /** `built`: the generated code and its compiled units (buildCuda); without it, one module compiled here. */
  constructor(readonly graph: Graph, readonly program: KernelProgram, readonly options: CudaOptions = {}, built?: BuiltCuda) {
    this.cuda = CudaDriver.get(options.libDir);
    this.gen = built?.gen ?? generateCuda(tunedProgram(this.cuda, program, options), options);
    if (built) {
      const functions = new Map<string, unknown>();
      this.gen.units.forEach((u, i) => {
        for (const [f, h] of this.cuda.loadImage(built.images[i]!, u.functions, u.name).functions) functions.set(f, h);
      });
      this.module = { handle: null, functions };
    } else {
      const fns = this.gen.launches.flat().flatMap((l) => (l.kind === 'kernel' ? [l.fn] : []));
      this.module = this.cuda.compile(this.gen.source, fns, program.name, options.cacheDir ?? defaultPtxCacheDir());
    }
    const arena = this.own(this.cuda.alloc(Math.max(256, program.arenaBytes)), Math.max(256, program.arenaBytes));
    for (const b of program.buffers) {
      const bytes = b.numel * bytesPer(b.dtype);
      if (b.kind === 'temp') this.ptr.set(b.id, arena + BigInt(b.offset ?? 0));
      else {
        const p = this.own(this.cuda.alloc(bytes), bytes);
        this.ptr.set(b.id, p);
        if (b.kind === 'const') this.cuda.upload(p, encode(b.dtype, b.data!));
        else this.cuda.zero(p, bytes);
      }
    }
    for (const s of this.gen.scratch) this.ptr.set(s.id, this.own(this.cuda.alloc(s.bytes), s.bytes));
  }

  private own(p: bigint, bytes: number): bigint {
    this.owned.push(p);
    this.allocatedBytes += bytes;
    return p;
  }

  private buffer(name: string, map: ReadonlyMap<string, number>): BufferDecl {
    const id = map.get(name);
    if (id === undefined) throw new KilnError(`graph ${this.graph.name}: no buffer for '${name}'`);
    return this.program.buffers[id]!;
  }

  private upload(name: string, x: HostTensor): void {
    const b = this.buffer(name, this.program.inputs);
    this.cuda.upload(this.ptr.get(b.id)!, encode(b.dtype, x.data as ArrayLike<number>));
  }

  private downloadBuffer(b: BufferDecl): number[] {
    const raw = new Uint8Array(b.numel * bytesPer(b.dtype));
    this.cuda.download(raw, this.ptr.get(b.id)!);
    return decode(b.dtype, raw, b.numel);
  }

  async write(name: string, value: HostTensor): Promise<void> {
    residentInput(this.graph, name, value);
    this.upload(name, value);
    this.written.add(name);
  }

  async read(name: string): Promise<HostTensor> {
    const i = residentInput(this.graph, name);
    if (!this.written.has(name)) throw new KilnError(`graph ${this.graph.name}: resident input '${name}' has not been written`);
    return hostTensor(i.type.dtype, i.type.shape, this.downloadBuffer(this.buffer(name, this.program.inputs)));
  }

  private launch(l: Launch): void {
    if (l.kind === 'kernel') {
      this.cuda.launch(this.module.functions.get(l.fn), l.grid, l.block, l.params.map((id) => this.ptr.get(id)!), l.fn, l.sharedBytes ?? 0);
      return;
    }
    const at = (x: { buf: number; offset: number }, bytes: number) => this.ptr.get(x.buf)! + BigInt(x.offset * bytes);
    const ab = l.ab === 'bf16' ? 2 : 4;
    const C = at(l.c, l.cType === 'bf16' ? 2 : 4);
    if (l.lt) {
      const bias = l.lt.bias ? at(l.lt.bias, l.lt.bias.dtype === 'bf16' ? 2 : 4) : undefined;
      CublasLt.get(this.options.libDir).gemm({
        ...l, A: at(l.a, ab), B: at(l.b, ab), D: C, ldd: l.ldc, sD: l.sC, d: l.cType, epilogue: l.lt.epilogue,
        ...(bias !== undefined ? { bias, biasType: l.lt.bias!.dtype } : {}), workspace: at(l.lt.workspace, 1), workspaceBytes: l.lt.workspaceBytes,
      }, `${l.m}x${l.n}x${l.k}`);
      return;
    }
    Cublas.get(this.options.libDir).gemm({ ...l, A: at(l.a, ab), B: at(l.b, ab), C, c: l.cType }, `${l.m}x${l.n}x${l.k}`);
  }

  /** Launch every kernel once (inputs already on the device). */
  launchAll(): void {
    for (const ls of this.gen.launches) for (const l of ls) this.launch(l);
  }

  /**
   * Time each kernel on its own (synchronizing after every launch; wall-clock, so it includes a
   * launch's latency): milliseconds per kernel of the program, in program order.
   */
  profile(repeats = 3): Array<{ name: string; kind: string; ms: number }> {
    const times = this.gen.launches.map(() => 0);
    this.cuda.synchronize();
    for (let r = 0; r < repeats; r++)
      this.gen.launches.forEach((ls, i) => {
        const t = performance.now();
        for (const l of ls) this.launch(l);
        this.cuda.synchronize();
        times[i]! += performance.now() - t;
      });
    return this.program.kernels.map((k, i) => ({ name: k.name, kind: k.kind, ms: times[i]! / repeats }));
  }

  /**
   * One step's launches, as the device ran them: a GPU event after every launch, no synchronization
   * in between, so each launch's time is the gap between its event and the previous one — its own
   * GPU time when the GPU is the bottleneck, or the CPU's launch time when the GPU waited for it.
   * The times sum to the step's GPU timeline. Per launch: kernel index, what ran, milliseconds.
   */
  timeline(): Array<{ kernel: number; launch: 'kernel' | 'gemm'; fn: string; ms: number }> {
    this.cuda.synchronize();
    const t = this.cuda.timeline();
    const what: Array<{ kernel: number; launch: 'kernel' | 'gemm'; fn: string }> = [];
    t.mark();
    this.gen.launches.forEach((ls, i) => {
      for (const l of ls) {
        this.launch(l);
        t.mark();
        what.push({ kernel: i, launch: l.kind, fn: l.kind === 'kernel' ? l.fn : `cublas ${l.m}x${l.n}x${l.k}` });
      }
    });
    const ms = t.elapsed();
    return what.map((w, i) => ({ ...w, ms: ms[i]! }));
  }

  /** Launch kernel `i` of the program alone and return output `name` (for checking tuning candidates). */
  runKernel(i: number, name: string): number[] {
    for (const l of this.gen.launches[i]!) this.launch(l);
    this.cuda.synchronize();
    return this.downloadBuffer(this.buffer(name, this.program.outputs));
  }

  /** Milliseconds per launch of each kernel, launched `reps` times back to back (for tuning). */
  timeKernels(reps: number): number[] {
    return this.gen.launches.map((_, i) => this.timeKernel(i, reps));
  }

  /** Milliseconds per launch of kernel `i` (its launches), launched `reps` times back to back. */
  timeKernel(i: number, reps: number): number {
    const ls = this.gen.launches[i]!;
    for (const l of ls) this.launch(l);
    this.cuda.synchronize();
    const t = performance.now();
    for (let r = 0; r < reps; r++) for (const l of ls) this.launch(l);
    this.cuda.synchronize();
    return (performance.now() - t) / reps;
  }

  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    for (const [i, x] of checkFeeds(this.graph, feeds, this.written)) this.upload(i.name, x);
    this.launchAll();
    this.cuda.synchronize();
    const want = fetch ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(NEXT_PREFIX));
    const out: Record<string, HostTensor> = {};
    for (const n of want) {
      const o = this.graph.output(n);
      if (!o) throw new KilnError(`graph ${this.graph.name}: no output '${n}' to fetch`);
      const t = this.graph.typeOf(o.id);
      out[n] = hostTensor(t.dtype, t.shape, this.downloadBuffer(this.buffer(n, this.program.outputs)));
    }
    // State updates, on the device: next.<x> → x.
    for (const o of this.graph.outputs) {
      if (!o.name.startsWith(NEXT_PREFIX)) continue;
      const src = this.buffer(o.name, this.program.outputs);
      const dst = this.buffer(o.name.slice(NEXT_PREFIX.length), this.program.inputs);
      this.cuda.copy(this.ptr.get(dst.id)!, this.ptr.get(src.id)!, src.numel * bytesPer(src.dtype));
    }
    return out;
  }

  dispose(): void {
    for (const p of this.owned.splice(0)) this.cuda.free(p);
  }
}

/** The CUDA backend with the given options (runtime/backends.ts makes it from the environment). */
export function createCudaBackend(options: CudaOptions = {}): Backend {
  return {
    name: 'cuda',
    consumes: 'kernels',
    compile: async (graph: Graph, program?: KernelProgram, info?: CompileInfo) => {
      if (!program) throw new KilnError('cuda runs compiled kernel programs: use compileOn(backend, graph) from runtime/compile.ts');
      if (options.autotune && options.gemmTuning !== false)
        autotuneGemms(program, CudaDriver.get(options.libDir).name, options.cacheDir ?? defaultPtxCacheDir(), (p) => new CudaExecutable(graph, p, { ...options, gemmTuning: false }));
      const built = options.parallelNvrtc === false ? undefined : await buildCuda(CudaDriver.get(options.libDir), program, options, info?.cacheKey);
      return new CudaExecutable(graph, program, options, built);
    },
  };
}

/** The CUDA backend with default options (cuBLAS on, libraries and cache in their default places). */
export const cudaBackend: Backend = createCudaBackend();

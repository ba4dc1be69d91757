/**
 * @file The CUDA driver API and NVRTC, reached from Node through koffi: device memory, streams,
 * pinned host memory, asynchronous copies, events, stream capture into CUDA graphs, module
 * compilation (CUDA C++ → cubin with NVRTC, cached on disk by content hash; CUBIN images from
 * nvrtcPool.ts), kernel launches.
 * Failures are CudaErrors naming the call and CUDA's message (errors.ts words the ones a user meets:
 * no driver, no GPU, NVRTC failures, out of memory); koffi's own errors never reach the user.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as koffi from 'koffi';
import { CudaError, CUDA_ERROR_NOT_READY, CUDA_ERROR_OUT_OF_MEMORY, DeviceMemoryError, driverStartError, noDriverError, nvrtcFailure } from './errors.ts';
import { DEFAULT_CUDA_LIB_DIR, defaultPtxCacheDir } from './options.ts';

export { CudaError } from './errors.ts';

type Fn = (...args: unknown[]) => unknown;

/** The driver (cu*) and NVRTC functions a CudaDriver calls, by name: loaded through koffi, or fakes in tests. */
export type DriverApi = Readonly<Record<string, Fn>>;

function loadFirst(names: string[], what: string): koffi.LibraryHandle {
  const errors: string[] = [];
  for (const n of names) {
    try {
      return koffi.load(n);
    } catch (e) {
      errors.push(`${n}: ${(e as Error).message}`);
    }
  }
  throw new CudaError(`cannot load ${what} (tried ${names.join(', ')}): ${errors[errors.length - 1] ?? ''}`);
}

export const DRIVER_SIGNATURES: Record<string, string> = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *dev, int ordinal)',
  cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *v, int attr, int dev)',
  cuDeviceGetName: 'int cuDeviceGetName(_Out_ char *name, int len, int dev)',
  cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int dev)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuMemAlloc: 'int cuMemAlloc_v2(_Out_ uint64_t *ptr, size_t bytes)',
  cuMemFree: 'int cuMemFree_v2(uint64_t ptr)',
  cuMemGetInfo: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuMemHostAlloc: 'int cuMemHostAlloc(_Out_ void **ptr, size_t bytes, unsigned int flags)',
  cuMemFreeHost: 'int cuMemFreeHost(void *ptr)',
  cuMemcpyHtoD: 'int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)',
  cuMemcpyDtoH: 'int cuMemcpyDtoH_v2(_Out_ void *dst, uint64_t src, size_t bytes)',
  cuMemcpyDtoD: 'int cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t bytes)',
  cuMemcpyHtoDAsync: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoHAsync: 'int cuMemcpyDtoHAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoDAsync: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemsetD8: 'int cuMemsetD8_v2(uint64_t dst, uint8_t value, size_t n)',
  cuModuleLoadImage: 'int cuModuleLoadData(_Out_ void **module, const uint8_t *image)',
  cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)',
  cuModuleUnload: 'int cuModuleUnload(void *module)',
  cuLaunchKernel: 'int cuLaunchKernel(void *f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, void *stream, void **params, void **extra)',
  cuFuncSetAttribute: 'int cuFuncSetAttribute(void *f, int attrib, int value)',
  cuCtxSynchronize: 'int cuCtxSynchronize()',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
  cuStreamDestroy: 'int cuStreamDestroy_v2(void *stream)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
  cuStreamWaitEvent: 'int cuStreamWaitEvent(void *stream, void *event, unsigned int flags)',
  cuStreamBeginCapture: 'int cuStreamBeginCapture_v2(void *stream, int mode)',
  cuStreamEndCapture: 'int cuStreamEndCapture(void *stream, _Out_ void **graph)',
  cuGraphInstantiate: 'int cuGraphInstantiateWithFlags(_Out_ void **exec, void *graph, uint64_t flags)',
  cuGraphGetNodes: 'int cuGraphGetNodes(void *graph, void **nodes, _Inout_ size_t *count)',
  cuGraphLaunch: 'int cuGraphLaunch(void *exec, void *stream)',
  cuGraphExecDestroy: 'int cuGraphExecDestroy(void *exec)',
  cuGraphDestroy: 'int cuGraphDestroy(void *graph)',
  cuEventCreate: 'int cuEventCreate(_Out_ void **event, unsigned int flags)',
  cuEventRecord: 'int cuEventRecord(void *event, void *stream)',
  cuEventQuery: 'int cuEventQuery(void *event)',
  cuEventSynchronize: 'int cuEventSynchronize(void *event)',
  cuEventElapsedTime: 'int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)',
  cuEventDestroy: 'int cuEventDestroy_v2(void *event)',
  cuGetErrorString: 'int cuGetErrorString(int err, _Out_ const char **str)',
};

export const NVRTC_SIGNATURES: Record<string, string> = {
  create: 'int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int numHeaders, void *headers, void *names)',
  compile: 'int nvrtcCompileProgram(void *prog, int numOptions, const char **options)',
  logSize: 'int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)',
  log: 'int nvrtcGetProgramLog(void *prog, _Out_ uint8_t *log)',
  cubinSize: 'int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)',
  cubin: 'int nvrtcGetCUBIN(void *prog, _Out_ uint8_t *cubin)',
  destroy: 'int nvrtcDestroyProgram(_Inout_ void **prog)',
  errorString: 'const char *nvrtcGetErrorString(int result)',
};

/** Newer exported names tried first for some functions (same parameters). */
const NEWER: Record<string, string> = { cuEventElapsedTime: 'cuEventElapsedTime_v2' };

/** The C function name a koffi signature declares ('const char *nvrtcGetErrorString(int)' → nvrtcGetErrorString). */
export function signatureSymbol(sig: string): string {
  const m = /(\w+)\s*\(/.exec(sig);
  if (!m) throw new CudaError(`not a C function signature: ${sig}`);
  return m[1]!;
}

/** The functions of `sigs` in `lib`; one the library lacks fails with a CudaError when it is called. */
export function bind(lib: koffi.LibraryHandle, sigs: Record<string, string>): Record<string, Fn> {
  const out: Record<string, Fn> = {};
  for (const [k, sig] of Object.entries(sigs)) {
    const symbol = signatureSymbol(sig);
    const tries = NEWER[k] ? [sig.replace(`${symbol}(`, `${NEWER[k]}(`), sig] : [sig];
    for (const t of tries) {
      try {
        out[k] = lib.func(t) as unknown as Fn;
        break;
      } catch {
        // try the next name
      }
    }
    out[k] ??= () => {
      throw new CudaError(`this CUDA library has no ${symbol} (driver or CUDA too old for Kiln)`);
    };
  }
  return out;
}

export interface Module {
  readonly handle: unknown;
  readonly functions: Map<string, unknown>;
}

/** Pinned (page-locked) host memory: `bytes` viewed from JS, `address` for asynchronous copies. */
export interface PinnedBuffer {
  readonly handle: unknown;
  readonly address: bigint;
  readonly bytes: Uint8Array;
}

/** An instantiated CUDA graph (one captured step) and how many nodes it has. */
export interface CapturedGraph {
  readonly graph: unknown;
  readonly exec: unknown;
  readonly nodes: number;
}

/** Stream capture modes (CUstreamCaptureMode): thread-local, so other threads' CUDA calls are not affected. */
const CAPTURE_THREAD_LOCAL = 1;
/** nvrtcResult NVRTC_ERROR_INVALID_OPTION: an option this NVRTC does not know. */
const NVRTC_ERROR_INVALID_OPTION = 5;

export class CudaDriver {
  private static instance: CudaDriver | undefined;
  private readonly cu: DriverApi;
  private readonly rtc: DriverApi;
  readonly device: number;
  readonly arch: string;
  readonly name: string;

  /**
   * The process-wide driver (initializes CUDA and retains the primary context of device 0); NVRTC is
   * loaded from `libDir` on the first call. No driver, or a driver without a GPU: a CudaError saying so.
   */
  static get(libDir: string = DEFAULT_CUDA_LIB_DIR): CudaDriver {
    if (CudaDriver.instance) return CudaDriver.instance;
    let cuda: koffi.LibraryHandle;
    try {
      cuda = loadFirst(['libcuda.so.1', 'libcuda.so'], 'the CUDA driver (libcuda)');
    } catch (e) {
      throw noDriverError((e as Error).message);
    }
    const nvrtc = loadFirst(
      [join(libDir, 'libnvrtc.so'), join(libDir, 'libnvrtc.so.13'), join(libDir, 'libnvrtc.so.12'), 'libnvrtc.so', 'libnvrtc.so.13', 'libnvrtc.so.12'],
      `NVRTC (looked in ${libDir}; set CUDA_LIB_DIR to the folder holding libnvrtc.so)`,
    );
    return (CudaDriver.instance = new CudaDriver(bind(cuda, DRIVER_SIGNATURES), bind(nvrtc, NVRTC_SIGNATURES)));
  }

  /** A driver over the given function tables (tests inject fakes: no GPU, little free memory). */
  static fromApi(cu: DriverApi, rtc: DriverApi): CudaDriver {
    return new CudaDriver(cu, rtc);
  }

  /** How many CUDA GPUs this process sees (cuInit + cuDeviceGetCount, no context made); 0 without a driver. */
  static deviceCount(): number {
    try {
      const lib = koffi.load('libcuda.so.1');
      const init = lib.func('int cuInit(unsigned int flags)') as unknown as Fn;
      const count = lib.func('int cuDeviceGetCount(_Out_ int *count)') as unknown as Fn;
      if (init(0) !== 0) return 0;
      const n = [0];
      return count(n) === 0 ? Number(n[0]) : 0;
    } catch {
      return 0;
    }
  }

  /** Is a CUDA driver library present on this machine? */
  static available(): boolean {
    try {
      koffi.load('libcuda.so.1');
      return true;
    } catch {
      return false;
    }
  }

  private constructor(cu: DriverApi, rtc: DriverApi) {
    this.cu = cu;
    this.rtc = rtc;
    const rc = this.cu.cuInit!(0);
    if (rc !== 0) throw driverStartError('cuInit', Number(rc), this.errorString(rc));
    const dev = [0];
    this.check('cuDeviceGet', this.cu.cuDeviceGet!(dev, 0));
    this.device = dev[0]!;
    const major = [0], minor = [0];
    this.check('cuDeviceGetAttribute', this.cu.cuDeviceGetAttribute!(major, 75, this.device));
    this.check('cuDeviceGetAttribute', this.cu.cuDeviceGetAttribute!(minor, 76, this.device));
    this.arch = `compute_${major[0]}${minor[0]}`;
    const nameBuf = Buffer.alloc(256);
    this.check('cuDeviceGetName', this.cu.cuDeviceGetName!(nameBuf, 256, this.device));
    this.name = nameBuf.toString('utf8').replace(/\0.*$/s, '');
    const ctx = [null];
    this.check('cuDevicePrimaryCtxRetain', this.cu.cuDevicePrimaryCtxRetain!(ctx, this.device));
    this.check('cuCtxSetCurrent', this.cu.cuCtxSetCurrent!(ctx[0]));
  }

  private errorString(rc: unknown): string {
    const s = [null as unknown];
    try {
      this.cu.cuGetErrorString?.(rc, s);
    } catch {
      // no message: the code alone
    }
    return String(s[0] ?? `CUDA error ${String(rc)}`);
  }

  private check(call: string, rc: unknown): void {
    if (rc === 0) return;
    throw new CudaError(`${call} failed: ${this.errorString(rc)}`, Number(rc));
  }

  /** Device bytes free and in total (cuMemGetInfo). */
  memInfo(): { free: number; total: number } {
    const f = [0], t = [0];
    this.check('cuMemGetInfo', this.cu.cuMemGetInfo!(f, t));
    return { free: Number(f[0]), total: Number(t[0]) };
  }

  /** Device memory (rounded up to 256 B); out of memory is a DeviceMemoryError with the device's free bytes. */
  alloc(bytes: number): bigint {
    const p = [0n];
    const n = Math.max(256, Math.ceil(bytes / 256) * 256);
    const rc = this.cu.cuMemAlloc!(p, n);
    if (rc === CUDA_ERROR_OUT_OF_MEMORY) {
      let free = NaN, total = NaN;
      try {
        ({ free, total } = this.memInfo());
      } catch {
        // the figures stay unknown
      }
      throw new DeviceMemoryError(n, free, total);
    }
    this.check(`cuMemAlloc(${bytes} B)`, rc);
    return BigInt(p[0] as bigint | number);
  }
  free(ptr: bigint): void {
    this.check('cuMemFree', this.cu.cuMemFree!(ptr));
  }
  upload(dst: bigint, src: ArrayBufferView): void {
    if (src.byteLength) this.check('cuMemcpyHtoD', this.cu.cuMemcpyHtoD!(dst, src, src.byteLength));
  }
  download(dst: ArrayBufferView, src: bigint): void {
    if (dst.byteLength) this.check('cuMemcpyDtoH', this.cu.cuMemcpyDtoH!(dst, src, dst.byteLength));
  }
  copy(dst: bigint, src: bigint, bytes: number): void {
    if (bytes && dst !== src) this.check('cuMemcpyDtoD', this.cu.cuMemcpyDtoD!(dst, src, bytes));
  }
  zero(dst: bigint, bytes: number): void {
    if (bytes) this.check('cuMemsetD8', this.cu.cuMemsetD8!(dst, 0, bytes));
  }
  synchronize(): void {
    this.check('cuCtxSynchronize', this.cu.cuCtxSynchronize!());
  }

  /** Pinned host memory of `bytes` bytes (the staging area of asynchronous feeds and fetches). */
  hostAlloc(bytes: number): PinnedBuffer {
    const n = Math.max(256, bytes);
    const h = [null as unknown];
    this.check(`cuMemHostAlloc(${n} B)`, this.cu.cuMemHostAlloc!(h, n, 0));
    return { handle: h[0], address: koffi.address(h[0]), bytes: new Uint8Array(koffi.view(h[0], n)) };
  }
  hostFree(b: PinnedBuffer): void {
    this.check('cuMemFreeHost', this.cu.cuMemFreeHost!(b.handle));
  }

  /** A stream that synchronizes with the legacy default stream (so the blocking copies above order with it). */
  createStream(): unknown {
    const s = [null as unknown];
    this.check('cuStreamCreate', this.cu.cuStreamCreate!(s, 0));
    return s[0];
  }
  destroyStream(s: unknown): void {
    this.check('cuStreamDestroy', this.cu.cuStreamDestroy!(s));
  }
  streamSynchronize(s: unknown): void {
    this.check('cuStreamSynchronize', this.cu.cuStreamSynchronize!(s));
  }
  /** Work enqueued on `stream` from now on waits for `event` (a fork or join of streams; captured inside a capture). */
  streamWaitEvent(stream: unknown, event: unknown): void {
    this.check('cuStreamWaitEvent', this.cu.cuStreamWaitEvent!(stream, event, 0));
  }
  uploadAsync(dst: bigint, src: bigint, bytes: number, stream: unknown): void {
    if (bytes) this.check('cuMemcpyHtoDAsync', this.cu.cuMemcpyHtoDAsync!(dst, src, bytes, stream));
  }
  downloadAsync(dst: bigint, src: bigint, bytes: number, stream: unknown): void {
    if (bytes) this.check('cuMemcpyDtoHAsync', this.cu.cuMemcpyDtoHAsync!(dst, src, bytes, stream));
  }
  copyAsync(dst: bigint, src: bigint, bytes: number, stream: unknown): void {
    if (bytes && dst !== src) this.check('cuMemcpyDtoDAsync', this.cu.cuMemcpyDtoDAsync!(dst, src, bytes, stream));
  }

  /** An event; `timing` ones can be measured with elapsed(). */
  createEvent(timing = false): unknown {
    const e = [null as unknown];
    // CU_EVENT_DISABLE_TIMING = 2
    this.check('cuEventCreate', this.cu.cuEventCreate!(e, timing ? 0 : 2));
    return e[0];
  }
  destroyEvent(e: unknown): void {
    this.check('cuEventDestroy', this.cu.cuEventDestroy!(e));
  }
  record(e: unknown, stream: unknown): void {
    this.check('cuEventRecord', this.cu.cuEventRecord!(e, stream));
  }
  /** Has the work before the event finished? */
  done(e: unknown): boolean {
    const rc = this.cu.cuEventQuery!(e);
    if (rc === CUDA_ERROR_NOT_READY) return false;
    this.check('cuEventQuery', rc);
    return true;
  }
  waitEvent(e: unknown): void {
    this.check('cuEventSynchronize', this.cu.cuEventSynchronize!(e));
  }
  /** Milliseconds between two recorded timing events. */
  elapsed(start: unknown, end: unknown): number {
    const ms = [0];
    this.check('cuEventElapsedTime', this.cu.cuEventElapsedTime!(ms, start, end));
    return Number(ms[0]);
  }

  /**
   * Record what `enqueue` puts on `stream` as a CUDA graph (stream capture) and instantiate it. A
   * failure inside ends the capture first, so the stream is usable again.
   */
  capture(stream: unknown, enqueue: () => void): CapturedGraph {
    this.check('cuStreamBeginCapture', this.cu.cuStreamBeginCapture!(stream, CAPTURE_THREAD_LOCAL));
    try {
      enqueue();
    } catch (e) {
      const g = [null as unknown];
      this.cu.cuStreamEndCapture!(stream, g);
      if (g[0]) this.cu.cuGraphDestroy!(g[0]);
      throw e;
    }
    const g = [null as unknown];
    this.check('cuStreamEndCapture', this.cu.cuStreamEndCapture!(stream, g));
    try {
      const count = [0];
      this.check('cuGraphGetNodes', this.cu.cuGraphGetNodes!(g[0], null, count));
      const exec = [null as unknown];
      this.check('cuGraphInstantiate', this.cu.cuGraphInstantiate!(exec, g[0], 0));
      return { graph: g[0], exec: exec[0], nodes: Number(count[0]) };
    } catch (e) {
      this.cu.cuGraphDestroy!(g[0]);
      throw e;
    }
  }
  /** One driver call: replay a captured step on `stream`. */
  replay(g: CapturedGraph, stream: unknown): void {
    this.check('cuGraphLaunch', this.cu.cuGraphLaunch!(g.exec, stream));
  }
  destroyGraph(g: CapturedGraph): void {
    this.check('cuGraphExecDestroy', this.cu.cuGraphExecDestroy!(g.exec));
    this.check('cuGraphDestroy', this.cu.cuGraphDestroy!(g.graph));
  }

  /**
   * GPU timestamps on `stream` (default: the legacy default stream): `mark()` records an event after the work enqueued so far;
   * `elapsed()` waits for the last one and returns the milliseconds between consecutive marks.
   */
  timeline(stream: unknown = null): { mark(): void; elapsed(): number[] } {
    const events: unknown[] = [];
    return {
      mark: () => {
        const e = [null as unknown];
        this.check('cuEventCreate', this.cu.cuEventCreate!(e, 0));
        this.check('cuEventRecord', this.cu.cuEventRecord!(e[0], stream));
        events.push(e[0]);
      },
      elapsed: () => {
        if (events.length === 0) return [];
        this.check('cuEventSynchronize', this.cu.cuEventSynchronize!(events[events.length - 1]));
        const ms: number[] = [];
        for (let i = 1; i < events.length; i++) {
          const t = [0];
          this.check('cuEventElapsedTime', this.cu.cuEventElapsedTime!(t, events[i - 1], events[i]));
          ms.push(t[0]!);
        }
        for (const e of events.splice(0)) this.cu.cuEventDestroy!(e);
        return ms;
      },
    };
  }

  /**
   * CUDA C++ → a cubin for this device (NVRTC, which runs ptxas itself, both with split compilation on
   * every CPU; cached on disk in `cacheDir` by content hash) → a loaded module and its functions.
   * Compiling to the real architecture in NVRTC, not to PTX, keeps the driver's single-threaded PTX JIT
   * out of module loading (measured on a LightningDiT-B/1 step: ~60% of the cold compile was that JIT).
   */
  compile(source: string, functions: readonly string[], label = 'kiln', cacheDir: string = defaultPtxCacheDir()): Module {
    return this.loadImage(this.cubin(source, label, cacheDir), functions, label);
  }

  /** A compiled module image (CUBIN, e.g. from nvrtcPool.ts) → a loaded module and its functions. */
  loadImage(image: Uint8Array, functions: readonly string[], label: string): Module {
    const mod = [null as unknown];
    this.check(`cuModuleLoadData(${label})`, this.cu.cuModuleLoadImage!(mod, image));
    const fns = new Map<string, unknown>();
    for (const f of functions) {
      const h = [null as unknown];
      this.check(`cuModuleGetFunction(${f})`, this.cu.cuModuleGetFunction!(h, mod[0], f));
      fns.set(f, h[0]);
    }
    return { handle: mod[0], functions: fns };
  }

  /** The GPU's own architecture for CUBIN, e.g. sm_90. */
  get sm(): string {
    return this.arch.replace('compute_', 'sm_');
  }

  /** NVRTC's options for this device: the real architecture (sm_XY), so that NVRTC emits a cubin. */
  private nvrtcOptions(split: boolean): string[] {
    return [`--gpu-architecture=${this.arch.replace('compute_', 'sm_')}`, '--std=c++17', '-default-device', ...(split ? ['--split-compile=0'] : [])];
  }

  private cubin(source: string, label: string, dir: string): Buffer {
    const key = createHash('sha256').update(source).update(this.nvrtcOptions(false).join(' ')).digest('hex');
    const file = join(dir, `${key}.cubin`);
    if (existsSync(file)) return readFileSync(file);
    let image: Buffer;
    try {
      image = this.nvrtc(source, label, this.nvrtcOptions(true));
    } catch (e) {
      // NVRTC_ERROR_INVALID_OPTION (5): an NVRTC without split compilation.
      if (!(e instanceof CudaError && e.code === NVRTC_ERROR_INVALID_OPTION)) throw e;
      image = this.nvrtc(source, label, this.nvrtcOptions(false));
    }
    try {
      mkdirSync(dir, { recursive: true });
      const tmp = `${file}.tmp-${process.pid}`;
      writeFileSync(tmp, image);
      renameSync(tmp, file);
    } catch {
      // caching is best effort
    }
    return image;
  }

  private nvrtc(source: string, label: string, options: string[]): Buffer {
    const prog = [null as unknown];
    const rc = this.rtc.create!(prog, source, `${label}.cu`, 0, null, null);
    if (rc !== 0) throw new CudaError(`nvrtcCreateProgram failed: ${String(this.rtc.errorString!(rc))}`);
    try {
      const crc = this.rtc.compile!(prog[0], options.length, options);
      if (crc !== 0) {
        const n = [0];
        this.rtc.logSize!(prog[0], n);
        const log = Buffer.alloc(Number(n[0]));
        this.rtc.log!(prog[0], log);
        throw nvrtcFailure(label, source, String(this.rtc.errorString!(crc)), log.toString('utf8').replace(/\0+$/, ''), Number(crc));
      }
      const n = [0];
      this.rtc.cubinSize!(prog[0], n);
      const buf = Buffer.alloc(Number(n[0]));
      this.rtc.cubin!(prog[0], buf);
      return buf;
    } finally {
      this.rtc.destroy!(prog);
    }
  }

  /** Functions whose dynamic shared memory limit has been raised, and to how many bytes. */
  private readonly sharedLimit = new Map<unknown, number>();

  /** Kernel arguments (64-bit values: device pointers, offsets) as the parameter array cuLaunchKernel takes. */
  packArgs(args: readonly bigint[]): Buffer[] {
    return args.map((a) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(a);
      return b;
    });
  }

  /** Launch `fn` on `stream` (null: the legacy default stream) with arguments from packArgs (or raw 64-bit values). */
  launch(fn: unknown, grid: readonly number[], block: readonly number[], args: readonly bigint[] | readonly Buffer[], what: string, sharedBytes = 0, stream: unknown = null): void {
    if (sharedBytes > 48 * 1024 && (this.sharedLimit.get(fn) ?? 0) < sharedBytes) {
      // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
      this.check(`cuFuncSetAttribute(${what}, ${sharedBytes} B shared)`, this.cu.cuFuncSetAttribute!(fn, 8, sharedBytes));
      this.sharedLimit.set(fn, sharedBytes);
    }
    const params = args.length && typeof args[0] === 'bigint' ? this.packArgs(args as readonly bigint[]) : args;
    this.check(`cuLaunchKernel(${what})`, this.cu.cuLaunchKernel!(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes, stream, params, null));
  }
}

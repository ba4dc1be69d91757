/**
 * @file The CUDA driver API and NVRTC, reached from Node through koffi: device memory, module
 * compilation (CUDA C++ → cubin with NVRTC, cached on disk by content hash), kernel launches.
 * Errors name the call and CUDA's message.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as koffi from 'koffi';
import { KilnError } from '../../ir/errors.ts';
import { DEFAULT_CUDA_LIB_DIR, defaultPtxCacheDir } from './options.ts';

export class CudaError extends KilnError {
  override name = 'CudaError';
}

type Fn = (...args: unknown[]) => unknown;

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

export interface Module {
  readonly handle: unknown;
  readonly functions: Map<string, unknown>;
}

export class CudaDriver {
  private static instance: CudaDriver | undefined;
  private readonly cu: Record<string, Fn> = {};
  private readonly rtc: Record<string, Fn> = {};
  readonly device: number;
  readonly arch: string;
  readonly name: string;

  /**
   * The process-wide driver (initializes CUDA and retains the primary context of device 0); NVRTC is
   * loaded from `libDir` on the first call.
   */
  static get(libDir: string = DEFAULT_CUDA_LIB_DIR): CudaDriver {
    return (CudaDriver.instance ??= new CudaDriver(libDir));
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

  private constructor(libDir: string) {
    const cuda = loadFirst(['libcuda.so.1', 'libcuda.so'], 'the CUDA driver (libcuda)');
    const nvrtc = loadFirst(
      [join(libDir, 'libnvrtc.so'), join(libDir, 'libnvrtc.so.13'), join(libDir, 'libnvrtc.so.12'), 'libnvrtc.so', 'libnvrtc.so.13', 'libnvrtc.so.12'],
      `NVRTC (looked in ${libDir}; set CUDA_LIB_DIR to the folder holding libnvrtc.so)`,
    );
    const c = (sig: string) => {
      const f = cuda.func(sig);
      return f as unknown as Fn;
    };
    Object.assign(this.cu, {
      cuInit: c('int cuInit(unsigned int flags)'),
      cuDeviceGet: c('int cuDeviceGet(_Out_ int *dev, int ordinal)'),
      cuDeviceGetAttribute: c('int cuDeviceGetAttribute(_Out_ int *v, int attr, int dev)'),
      cuDeviceGetName: c('int cuDeviceGetName(_Out_ char *name, int len, int dev)'),
      cuDevicePrimaryCtxRetain: c('int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int dev)'),
      cuCtxSetCurrent: c('int cuCtxSetCurrent(void *ctx)'),
      cuMemAlloc: c('int cuMemAlloc_v2(_Out_ uint64_t *ptr, size_t bytes)'),
      cuMemFree: c('int cuMemFree_v2(uint64_t ptr)'),
      cuMemcpyHtoD: c('int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)'),
      cuMemcpyDtoH: c('int cuMemcpyDtoH_v2(_Out_ void *dst, uint64_t src, size_t bytes)'),
      cuMemcpyDtoD: c('int cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t bytes)'),
      cuMemsetD8: c('int cuMemsetD8_v2(uint64_t dst, uint8_t value, size_t n)'),
      cuModuleLoadImage: c('int cuModuleLoadData(_Out_ void **module, const uint8_t *image)'),
      cuModuleGetFunction: c('int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)'),
      cuModuleUnload: c('int cuModuleUnload(void *module)'),
      cuLaunchKernel: c('int cuLaunchKernel(void *f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, void *stream, void **params, void **extra)'),
      cuFuncSetAttribute: c('int cuFuncSetAttribute(void *f, int attrib, int value)'),
      cuCtxSynchronize: c('int cuCtxSynchronize()'),
      cuGetErrorString: c('int cuGetErrorString(int err, _Out_ const char **str)'),
      cuEventCreate: c('int cuEventCreate(_Out_ void **ev, unsigned int flags)'),
      cuEventRecord: c('int cuEventRecord(void *ev, void *stream)'),
      cuEventSynchronize: c('int cuEventSynchronize(void *ev)'),
      cuEventDestroy: c('int cuEventDestroy_v2(void *ev)'),
    });
    // CUDA 12.8+ exports cuEventElapsedTime_v2 (what cuda.h maps the name to); older drivers only the first.
    for (const name of ['cuEventElapsedTime_v2', 'cuEventElapsedTime']) {
      try {
        this.cu.cuEventElapsedTime = c(`int ${name}(_Out_ float *ms, void *start, void *end)`);
        break;
      } catch {
        // not exported by this driver
      }
    }
    const r = (sig: string) => nvrtc.func(sig) as unknown as Fn;
    Object.assign(this.rtc, {
      create: r('int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int numHeaders, void *headers, void *names)'),
      compile: r('int nvrtcCompileProgram(void *prog, int numOptions, const char **options)'),
      logSize: r('int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)'),
      log: r('int nvrtcGetProgramLog(void *prog, _Out_ uint8_t *log)'),
      cubinSize: r('int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)'),
      cubin: r('int nvrtcGetCUBIN(void *prog, _Out_ uint8_t *cubin)'),
      destroy: r('int nvrtcDestroyProgram(_Inout_ void **prog)'),
      errorString: r('const char *nvrtcGetErrorString(int result)'),
    });
    this.check('cuInit', this.cu.cuInit!(0));
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

  private check(call: string, rc: unknown): void {
    if (rc === 0) return;
    const s = [null as unknown];
    this.cu.cuGetErrorString?.(rc, s);
    throw new CudaError(`${call} failed: ${String(s[0] ?? `CUDA error ${rc}`)}`);
  }

  alloc(bytes: number): bigint {
    const p = [0n];
    this.check(`cuMemAlloc(${bytes} B)`, this.cu.cuMemAlloc!(p, Math.max(256, Math.ceil(bytes / 256) * 256)));
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

  /**
   * GPU timestamps on the default stream: `mark()` records an event after the work enqueued so far;
   * `elapsed()` waits for the last one and returns the milliseconds between consecutive marks.
   */
  timeline(): { mark(): void; elapsed(): number[] } {
    const events: unknown[] = [];
    return {
      mark: () => {
        const e = [null as unknown];
        this.check('cuEventCreate', this.cu.cuEventCreate!(e, 0));
        this.check('cuEventRecord', this.cu.cuEventRecord!(e[0], null));
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
      if (!(e instanceof CudaError && e.message.includes('(rc 5)'))) throw e;
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
        throw new CudaError(`NVRTC could not compile ${label}: ${String(this.rtc.errorString!(crc))} (rc ${crc})\n${log.toString('utf8').slice(0, 4000)}`);
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

  launch(fn: unknown, grid: readonly number[], block: readonly number[], args: readonly bigint[], what: string, sharedBytes = 0): void {
    if (sharedBytes > 48 * 1024 && (this.sharedLimit.get(fn) ?? 0) < sharedBytes) {
      // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
      this.check(`cuFuncSetAttribute(${what}, ${sharedBytes} B shared)`, this.cu.cuFuncSetAttribute!(fn, 8, sharedBytes));
      this.sharedLimit.set(fn, sharedBytes);
    }
    const params = args.map((a) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(a);
      return b;
    });
    this.check(`cuLaunchKernel(${what})`, this.cu.cuLaunchKernel!(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedBytes, null, params, null));
  }
}

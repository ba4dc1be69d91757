/**
 * @file A fake CUDA driver and NVRTC for tests without a GPU (backends/cuda/driver.ts CudaDriver.fromApi):
 * every call succeeds and is recorded by name; out-parameters get plausible values; device pointers
 * are counted up from a fake base; pinned host memory is real (libc posix_memalign, so koffi can view
 * it). Behaviour can be overridden per function (no GPU: cuInit returns 100; little free memory:
 * cuMemGetInfo; NVRTC failures: `compile` and `log`). Nothing is computed: the tests check which
 * driver calls an executable makes (launches per step, captures, synchronizations) and its errors.
 */
import * as koffi from 'koffi';
import { CudaDriver, type DriverApi } from '../../backends/cuda/driver.ts';

type Fn = (...args: unknown[]) => unknown;

let libc: { alloc: Fn; free: Fn } | undefined;
function hostMemory(): { alloc: Fn; free: Fn } {
  if (!libc) {
    const c = koffi.load('libc.so.6');
    libc = { alloc: c.func('int posix_memalign(_Out_ void **p, size_t align, size_t n)') as unknown as Fn, free: c.func('void free(void *p)') as unknown as Fn };
  }
  return libc;
}

export interface FakeCuda {
  readonly driver: CudaDriver;
  /** Every driver and NVRTC call, in order, by name. */
  readonly calls: string[];
  /** How many calls of `name` since `from` (an index into calls). */
  count(name: string, from?: number): number;
}

export interface FakeOptions {
  /** Device memory free and total (bytes); default 80 GiB of 80 GiB. */
  free?: number;
  total?: number;
  /** Overrides by function name (driver: cu*; NVRTC: create, compile, log, ...). */
  overrides?: Record<string, Fn>;
}

export function fakeCuda(o: FakeOptions = {}): FakeCuda {
  const calls: string[] = [];
  let next = 0x7f0000000000n;
  let captured = 0, capturing = false;
  const free = o.free ?? 80 * 2 ** 30, total = o.total ?? 80 * 2 ** 30;
  const behaviour: Record<string, Fn> = {
    cuInit: () => 0,
    cuDeviceGet: (d) => ((d as number[])[0] = 0, 0),
    cuDeviceGetAttribute: (v, attr) => ((v as number[])[0] = attr === 75 ? 9 : 0, 0),
    cuDeviceGetName: (buf) => ((buf as Buffer).write('Fake GPU\0'), 0),
    cuDevicePrimaryCtxRetain: (c) => ((c as unknown[])[0] = { ctx: 1 }, 0),
    cuMemAlloc: (p, n) => {
      (p as bigint[])[0] = next;
      next += BigInt(Math.ceil(Number(n) / 2 ** 21) * 2 ** 21);
      return 0;
    },
    cuMemGetInfo: (f, t) => (((f as number[])[0] = free), ((t as number[])[0] = total), 0),
    cuMemHostAlloc: (h, n) => hostMemory().alloc(h, 256, n),
    cuMemFreeHost: (h) => (hostMemory().free(h), 0),
    cuModuleLoadImage: (m) => ((m as unknown[])[0] = { module: 1 }, 0),
    cuModuleGetFunction: (h, _m, name) => ((h as unknown[])[0] = { fn: name }, 0),
    cuStreamCreate: (s) => ((s as unknown[])[0] = { stream: 1 }, 0),
    cuEventCreate: (e) => ((e as unknown[])[0] = { event: 1 }, 0),
    cuEventQuery: () => 0,
    cuEventElapsedTime: (ms) => ((ms as number[])[0] = 1, 0),
    cuStreamBeginCapture: () => ((capturing = true), (captured = 0), 0),
    cuStreamEndCapture: (_s, g) => ((capturing = false), ((g as unknown[])[0] = { graph: captured }), 0),
    cuGraphGetNodes: (g, _n, count) => (((count as number[])[0] = (g as { graph: number }).graph), 0),
    cuGraphInstantiate: (e) => ((e as unknown[])[0] = { exec: 1 }, 0),
    cuLaunchKernel: () => (capturing && captured++, 0),
    cuMemcpyDtoDAsync: () => (capturing && captured++, 0),
    cuGetErrorString: (rc, s) => ((s as unknown[])[0] = `fake error ${String(rc)}`, 0),
    // NVRTC
    create: (p) => ((p as unknown[])[0] = { prog: 1 }, 0),
    compile: () => 0,
    logSize: (_p, n) => ((n as number[])[0] = 1, 0),
    log: (_p, b) => ((b as Buffer).write('\0'), 0),
    cubinSize: (_p, n) => ((n as number[])[0] = 8, 0),
    cubin: (_p, b) => ((b as Buffer).write('cubin\0'), 0),
    destroy: () => 0,
    errorString: (rc) => `NVRTC_ERROR ${String(rc)}`,
    ...o.overrides,
  };
  const table = (): DriverApi => new Proxy({}, {
    get: (_t, name: string) => (...args: unknown[]) => {
      calls.push(name);
      const f = behaviour[name];
      return f ? f(...args) : 0;
    },
  }) as DriverApi;
  const driver = CudaDriver.fromApi(table(), table());
  return { driver, calls, count: (name, from = 0) => calls.slice(from).filter((c) => c === name).length };
}

/**
 * CUDA step execution without a GPU: the executable (backends/cuda/executable.ts) over a fake driver
 * (test/support/fakeCuda.ts) that records every driver call, and the errors a user meets.
 *  - one step = one cuGraphLaunch: the first run launches every kernel from the host, the second captures
 *    the same launches once, every later run makes exactly one cuGraphLaunch plus one cuMemcpyHtoDAsync
 *    per data feed and no synchronization at all when it fetches nothing; with graphs off, every run
 *    launches every kernel;
 *  - device memory: one cuMemAlloc of the plan's total, checked against cuMemGetInfo first;
 *  - built units (build.ts: position-independent kernels, one CUBIN per distinct source): each unit's
 *    image is loaded once, and every kernel argument is the address of its buffer in the one allocation
 *    (the allocation's base + the plan's offset), so kernels that share a function differ only in their
 *    arguments, and the captured graph replays them with the same addresses;
 *  - errors: no driver (a real one where libcuda is absent), a driver without a GPU (cuInit = 100), out
 *    of memory (a fake free-memory figure, and a failing cuMemAlloc), an NVRTC failure (kernel name and
 *    source lines); the CLI prints every line of an NVRTC error.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as koffi from 'koffi';
import { CudaDriver, DRIVER_SIGNATURES, NVRTC_SIGNATURES, bind, signatureSymbol } from '../../backends/cuda/driver.ts';
import { CudaExecutable, createCudaBackend } from '../../backends/cuda/executable.ts';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { nvrtcFailure } from '../../backends/cuda/errors.ts';
import { compile } from '../../compiler/compile.ts';
import { KilnError } from '../../ir/errors.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { compileOn } from '../../runtime/compile.ts';
import { defaultResident } from '../../runtime/session.ts';
import { LR, mlpData, mlpTrainStep } from '../support/compilerPrograms.ts';
import { fakeCuda } from '../support/fakeCuda.ts';

const config = { inputs: 12, hidden: [16, 8], classes: 5 };
const B = 8;
const { model, graph } = mlpTrainStep(config, B);
const program = compile(graph).program;
const cacheDir = mkdtempSync(join(tmpdir(), 'kiln-fake-cuda-'));
const options = { cublas: false, gemmTuning: false, cacheDir };
const feeds = () => ({ ...mlpData(config, B, 1), lr: hostTensor('f32', [], [LR]) });

async function open(fake: ReturnType<typeof fakeCuda>, graphs = true): Promise<CudaExecutable> {
  const exe = new CudaExecutable(graph, program, { ...options, graphs }, { driver: fake.driver });
  for (const [k, v] of defaultResident(graph, model.initState(1))) await exe.write(k, v);
  return exe;
}

describe('CUDA graphs: one driver call per step (fake driver)', () => {
  it('host launches once, one capture, then one cuGraphLaunch per run and no synchronization without fetches', async () => {
    const fake = fakeCuda();
    const exe = await open(fake);
    const kernels = exe.launchCount;
    expect(kernels).toBeGreaterThan(5);
    let at = fake.calls.length;
    await exe.run(feeds(), ['loss']);
    expect(fake.count('cuLaunchKernel', at)).toBe(kernels);
    expect(fake.count('cuStreamBeginCapture', at)).toBe(0);
    at = fake.calls.length;
    await exe.run(feeds(), []);
    expect(fake.count('cuStreamBeginCapture', at)).toBe(1);
    expect(fake.count('cuGraphInstantiate', at)).toBe(1);
    expect(exe.captured?.nodes).toBe(kernels);
    for (let r = 0; r < 3; r++) {
      at = fake.calls.length;
      await exe.run(feeds(), []);
      const made = fake.calls.slice(at);
      expect(fake.count('cuGraphLaunch', at)).toBe(1);
      expect(fake.count('cuLaunchKernel', at)).toBe(0);
      expect(fake.count('cuMemcpyHtoDAsync', at)).toBe(3); // x, y, lr
      expect(made.filter((c) => /Synchronize|cuEventQuery/.test(c) && c !== 'cuEventSynchronize')).toEqual([]);
    }
    // A fetch: asynchronous copy into pinned memory, then the event is polled (not a context sync).
    at = fake.calls.length;
    await exe.run(feeds(), ['loss']);
    expect(fake.count('cuMemcpyDtoHAsync', at)).toBe(1);
    expect(fake.count('cuCtxSynchronize', at) + fake.count('cuStreamSynchronize', at)).toBe(0);
    exe.dispose();
  });

  it('with graphs off (KILN_PROFILE, KILN_CUDA_NO_GRAPHS) every run launches every kernel', async () => {
    const fake = fakeCuda();
    const exe = await open(fake, false);
    for (let r = 0; r < 3; r++) {
      const at = fake.calls.length;
      await exe.run(feeds(), []);
      expect(fake.count('cuLaunchKernel', at)).toBe(exe.launchCount);
      expect(fake.count('cuGraphLaunch', at)).toBe(0);
    }
    expect(fake.count('cuStreamBeginCapture')).toBe(0);
    exe.dispose();
  });

  it('a capture the driver rejects falls back to host launches, once', async () => {
    const fake = fakeCuda({ overrides: { cuStreamEndCapture: () => 901 } });
    const exe = await open(fake);
    await exe.run(feeds(), []);
    for (let r = 0; r < 3; r++) {
      const at = fake.calls.length;
      await exe.run(feeds(), []);
      expect(fake.count('cuLaunchKernel', at)).toBe(exe.launchCount * (r === 0 ? 2 : 1)); // the failed capture's launches, then the real ones
      expect(fake.count('cuGraphLaunch', at)).toBe(0);
    }
    expect(fake.count('cuStreamBeginCapture')).toBe(1);
    expect(exe.captureError).toMatch(/cuStreamEndCapture failed: fake error 901/);
    exe.dispose();
  });

  it('all device memory is one allocation of the plan', async () => {
    const fake = fakeCuda();
    const exe = await open(fake);
    expect(fake.count('cuMemAlloc')).toBe(1);
    const m = exe.memory;
    expect(m.total).toBe(m.parameters + m.state + m.io + m.arena);
    expect(m.updatesCopied).toBe(0);
    expect(m.updatesInPlace).toBe(graph.outputs.filter((o) => o.name.startsWith('next.')).length);
    exe.dispose();
  });
});

describe('the backend\'s free memory (fake driver)', () => {
  it('freeMemoryBytes is cuMemGetInfo\'s free figure, and remat auto decides from it', async () => {
    const fake = fakeCuda({ free: 3 * 2 ** 30 + 12345, total: 80 * 2 ** 30 });
    const backend = createCudaBackend({ ...options, parallelNvrtc: false }, { driver: fake.driver }); // (NVRTC workers need the real library)
    const at = fake.calls.length;
    expect(await backend.freeMemoryBytes!()).toBe(3 * 2 ** 30 + 12345);
    expect(fake.count('cuMemGetInfo', at)).toBe(1);
    // Plenty free: auto keeps the fastest step (fused remat) and builds it on the (fake) device.
    const seen: string[] = [];
    const exe = await compileOn(backend, graph, { precision: 'f32', remat: 'auto', cacheDir: '', onRemat: (r) => seen.push(r.mode) });
    expect(seen).toEqual(['fused']);
    exe.dispose();
    // 1 KiB free: auto recompiles with cheap, then blocks, which still does not fit: the clear out-of-memory error.
    const tiny = createCudaBackend({ ...options, parallelNvrtc: false }, { driver: fakeCuda({ free: 1024 }).driver });
    seen.length = 0;
    await expect(compileOn(tiny, graph, { precision: 'f32', remat: 'auto', cacheDir: '', onRemat: (r) => seen.push(r.mode) })).rejects.toThrow(/out of device memory.*--remat/);
    expect(seen).toEqual(['fused', 'cheap', 'blocks']);
  });
});

describe('position-independent units on the one allocation (fake driver)', () => {
  it('each unit loaded once; every launch argument = base + the plan offset of its buffer; shared functions differ only in their arguments', async () => {
    // Three equal hidden layers: their forward and backward kernels have the same structure (one unit each).
    const cfg = { inputs: 16, hidden: [16, 16, 16], classes: 16 };
    const { model: m3, graph: g3 } = mlpTrainStep(cfg, B);
    const p3 = compile(g3).program;
    const opts = { ...options, graphs: true };
    const gen = generateCuda(p3, opts);
    const kernelLaunches = gen.launches.flat().filter((l) => l.kind === 'kernel');
    expect(gen.units.length).toBeLessThan(new Set(p3.kernels.map((k) => k.name)).size); // dedup happened
    const seen: Array<{ fn: unknown; args: bigint[] }> = [];
    const fake = fakeCuda({
      overrides: {
        cuLaunchKernel: (f, _gx, _gy, _gz, _bx, _by, _bz, _shmem, _stream, params) => {
          seen.push({ fn: (f as { fn: string }).fn, args: (params as Buffer[]).map((b) => b.readBigUInt64LE(0)) });
          return 0;
        },
      },
    });
    const exe = new CudaExecutable(g3, p3, opts, { built: { gen, images: gen.units.map(() => new Uint8Array(8)), compiled: gen.units.length }, driver: fake.driver });
    expect(fake.count('cuModuleLoadImage')).toBe(gen.units.length);
    expect(fake.count('cuMemAlloc')).toBe(1);
    for (const [k, v] of defaultResident(g3, m3.initState(1))) await exe.write(k, v);
    await exe.run({ ...mlpData(cfg, B, 1), lr: hostTensor('f32', [], [LR]) }, ['loss']);
    expect(seen.length).toBe(kernelLaunches.length);
    const base = 0x7f0000000000n; // the fake's first (and only) device allocation
    kernelLaunches.forEach((l, i) => {
      expect(seen[i]!.fn).toBe(l.fn);
      expect(seen[i]!.args).toEqual(l.params.map((id) => base + BigInt(exe.memory.offsets.get(id)!)));
      for (const a of seen[i]!.args) expect(a >= base && a < base + BigInt(exe.memory.total)).toBe(true);
    });
    // One function launched for different buffers (the shared layers).
    const byFn = new Map<unknown, Set<string>>();
    for (const x of seen) (byFn.get(x.fn) ?? byFn.set(x.fn, new Set()).get(x.fn)!).add(x.args.join(','));
    expect([...byFn.values()].some((a) => a.size > 1)).toBe(true);
    exe.dispose();
  });
});

describe('CUDA errors a user meets', () => {
  it('no NVIDIA driver: one clear sentence, no koffi message first', () => {
    if (CudaDriver.available()) return; // a machine with a driver cannot show this
    let err: unknown;
    try {
      CudaDriver.get();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KilnError);
    expect((err as Error).message).toMatch(/^no NVIDIA driver: the cuda backend needs an NVIDIA GPU and its driver \(libcuda\.so\.1\).*use --backend cpu, kernel-cpu or wgsl/);
  });

  it('a driver without a GPU (cuInit: CUDA_ERROR_NO_DEVICE)', () => {
    expect(() => fakeCuda({ overrides: { cuInit: () => 100 } })).toThrow(/^no CUDA GPU: the NVIDIA driver is installed but finds no device \(cuInit: fake error 100\); use --backend cpu/);
  });

  it('out of device memory before allocating: the plan, the free memory, lower the batch or --remat', () => {
    const fake = fakeCuda({ free: 2 * 2 ** 10, total: 80 * 2 ** 30 });
    let msg = '';
    try {
      new CudaExecutable(graph, program, options, { driver: fake.driver });
    } catch (e) {
      expect(e).toBeInstanceOf(KilnError);
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^out of device memory: program mlp_train needs [\d.]+ KiB on the device \(parameters [\d.]+ KiB, state [\d.]+ KiB, inputs\/outputs [\d.]+ KiB, arena [\d.]+ KiB at the plan's peak\) but Fake GPU has 2\.0 KiB free of 80\.00 GiB; lower the batch, or use --remat blocks/);
    expect(fake.count('cuMemAlloc')).toBe(0);
    expect(fake.count('create')).toBe(0); // nothing compiled either
  });

  it('out of device memory when the allocation itself fails', () => {
    const fake = fakeCuda({ overrides: { cuMemAlloc: () => 2 } });
    expect(() => new CudaExecutable(graph, program, options, { driver: fake.driver })).toThrow(/^out of device memory: program mlp_train needs .* but Fake GPU has 80\.00 GiB free of 80\.00 GiB; lower the batch, or use --remat blocks/);
  });

  it('NVRTC failure: the kernel, the line and the source around it', () => {
    const gen = generateCuda(program, { cublas: false });
    const source = gen.source;
    const lines = source.split('\n');
    const fn = (gen.launches[3]![0] as { fn: string }).fn; // kernel 3's function (named by a hash of its text)
    const callers = program.kernels.filter((_, i) => gen.launches[i]!.some((l) => l.kind === 'kernel' && l.fn === fn)).map((k) => k.name);
    const at = lines.findIndex((l) => l.includes(` ${fn}(`) && l.startsWith('extern "C" __global__')) + 3; // 1-based line of the 3rd line of its body
    const log = `kiln_mlp.cu(${at}): error: identifier "v_oops" is undefined\n\n1 error detected in the compilation of "mlp.cu".\n`;
    const fake = fakeCuda({
      overrides: { compile: () => 6, logSize: (_p, n) => (((n as number[])[0] = log.length + 1), 0), log: (_p, b) => ((b as Buffer).write(log + '\0'), 0) },
    });
    let e: unknown;
    try {
      new CudaExecutable(graph, program, { ...options, cacheDir: mkdtempSync(join(tmpdir(), 'kiln-fake-nvrtc-')) }, { driver: fake.driver });
    } catch (x) {
      e = x;
    }
    const msg = (e as Error).message;
    expect(callers).toContain(program.kernels[3]!.name);
    expect(msg.split('\n')[0]).toBe(`NVRTC could not compile function ${fn} (${callers.length > 1 ? 'kernels' : 'kernel'} ${callers.join(', ')}) of mlp_train: line ${at}: identifier "v_oops" is undefined (NVRTC_ERROR 6)`);
    expect(msg).toContain(`${String(at).padStart(6)} > ${lines[at - 1]}`);
    expect(msg).toContain(`${String(at - 1).padStart(6)}   ${lines[at - 2]}`);
    expect((e as { multiline?: boolean }).multiline).toBe(true);
  });

  it('nvrtcFailure on a log without a line number keeps the log', () => {
    expect(nvrtcFailure('p', 'src', 'NVRTC_ERROR_INVALID_OPTION', 'nvrtc: error: invalid value').message).toBe('NVRTC could not compile p: NVRTC_ERROR_INVALID_OPTION\nnvrtc: error: invalid value');
  });
});

describe('binding the driver through koffi', () => {
  it('every driver and NVRTC signature names its function', () => {
    const names = [...Object.values(DRIVER_SIGNATURES), ...Object.values(NVRTC_SIGNATURES)].map(signatureSymbol);
    expect(names).toContain('nvrtcGetErrorString');
    expect(names).toContain('cuGraphInstantiateWithFlags');
    expect(names.every((n) => /^(cu|nvrtc)[A-Z]\w+$/.test(n))).toBe(true);
    // koffi parses every signature (a bad type would otherwise surface as a missing function when called).
    let i = 0;
    for (const sig of [...Object.values(DRIVER_SIGNATURES), ...Object.values(NVRTC_SIGNATURES)])
      expect(() => koffi.proto(sig.replace(/(\w+)\s*\(/, `kiln_sig_check_${i++}_$1(`)), sig).not.toThrow();
  });

  it('binds real functions of a real library (libc), a missing one fails only when called', () => {
    const f = bind(koffi.load('libc.so.6'), { abs: 'int abs(int x)', strerror: 'const char *strerror(int e)', none: 'int kiln_no_such_function(int x)' });
    expect(f.abs!(-3)).toBe(3);
    expect(typeof f.strerror!(2)).toBe('string');
    expect(() => f.none!(1)).toThrow(/this CUDA library has no kiln_no_such_function/);
  });
});

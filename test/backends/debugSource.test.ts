/**
 * KILN_DEBUG=source: every generated kernel's source is printed with its kernel name and the graph
 * nodes it came from (compiler/debug.ts debugSource, called by the CUDA code generator; this machine
 * has no GPU, but code generation runs here). Also the CUDA backend's options, which the runtime reads
 * from the environment once (runtime/backends.ts) instead of the code generator reading it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { formatKernelSource } from '../../compiler/debug.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { cudaOptionsFromEnv } from '../../runtime/backends.ts';

/** Fresh modules with KILN_DEBUG=`topics` (the topics are read when compiler/debug.ts loads). */
async function withDebug(topics: string) {
  vi.resetModules();
  vi.stubEnv('KILN_DEBUG', topics);
  const [{ generateCuda }, { compile }, { buildProgram }] = await Promise.all([
    import('../../backends/cuda/codegen.ts'),
    import('../../compiler/compile.ts'),
    import('../../cli/programs.ts'),
  ]);
  return { generateCuda, program: (name: string, size?: string): KernelProgram => compile(buildProgram(name, { train: true, batch: 2, size })).program };
}

/** Run `fn` and return what it wrote to stderr. */
function stderrOf(fn: () => void): string {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (chunks.push(String(s)), true));
  try {
    fn();
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

const HEADER = /^\/\/ ---- KILN_DEBUG source: cuda kernel (\S+), from graph nodes (.*) ----$/;

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

describe('KILN_DEBUG=source', () => {
  it('prints each kernel under its name and graph nodes: its functions (as compiled, shared by identical kernels) and its launches', async () => {
    const { generateCuda, program } = await withDebug('source');
    const p = program('block', '64x4x16');
    let m: ReturnType<typeof generateCuda> | undefined;
    const text = stderrOf(() => (m = generateCuda(p)));
    const sections: Array<{ name: string; nodes: string; body: string[] }> = [];
    for (const line of text.split('\n')) {
      const h = HEADER.exec(line);
      if (h) sections.push({ name: h[1]!, nodes: h[2]!, body: [] });
      else if (line !== '') sections[sections.length - 1]!.body.push(line);
    }
    expect(sections.map((s) => s.name)).toEqual(p.kernels.map((k) => k.name));
    const printedFns = new Set<string>();
    p.kernels.forEach((k, i) => {
      const s = sections[i]!;
      expect(s.nodes).toBe(k.nodes.map((n) => `%${n}`).join(' '));
      // The functions printed for kernel i are the ones its launches call, each launch listed with its buffers.
      const called = new Set(m!.launches[i]!.flatMap((l) => (l.kind === 'kernel' ? [l.fn] : [])));
      for (const l of s.body) {
        const fn = /__global__ void (?:__launch_bounds__\([\d, ]+\) )?(\w+)\(/.exec(l)?.[1];
        if (fn) {
          expect(called.has(fn)).toBe(true);
          printedFns.add(fn);
        }
      }
      for (const fn of called) expect(s.body.some((l) => l.startsWith(`// launch: ${fn}(`))).toBe(true);
    });
    // Every function of the module is printed (under each kernel that uses it); the module holds each once.
    const moduleFns = [...m!.source.matchAll(/__global__ void (?:__launch_bounds__\([\d, ]+\) )?(\w+)\(/g)].map((x) => x[1]!);
    expect(new Set(moduleFns).size).toBe(moduleFns.length);
    expect([...printedFns].sort()).toEqual([...moduleFns].sort());
    // Matmuls planned as cuBLAS calls say so.
    const gemms = m!.launches.flat().filter((l) => l.kind === 'gemm').length;
    expect(gemms).toBeGreaterThan(0);
    expect((text.match(/\/\/ launch: cuBLAS SGEMM/g) ?? []).length).toBe(gemms);
  });

  it('prints nothing without the topic', async () => {
    const { generateCuda, program } = await withDebug('ir');
    const p = program('mlp');
    expect(stderrOf(() => generateCuda(p))).toBe('');
  });

  it('formats a kernel with no graph nodes and ends every section with a newline', () => {
    expect(formatKernelSource('wgsl', 'k0', [], 'fn main() {}')).toBe('// ---- KILN_DEBUG source: wgsl kernel k0, from graph nodes (none) ----\nfn main() {}\n');
    expect(formatKernelSource('cuda', 'k1_n3', [3, 7], 'x\n')).toBe('// ---- KILN_DEBUG source: cuda kernel k1_n3, from graph nodes %3 %7 ----\nx\n');
  });
});

describe('CUDA backend options', () => {
  it('come from the environment in the runtime: CUDA_LIB_DIR, KILN_CACHE_DIR, KILN_CUDA_NO_CUBLAS, KILN_CUDA_NO_TENSOR_CORES, KILN_GEMM_TUNING, KILN_GEMM_AUTOTUNE', () => {
    expect(cudaOptionsFromEnv({})).toEqual({ cublas: true, tensorCores: true, gemmTuning: true, autotune: false });
    expect(cudaOptionsFromEnv({ CUDA_LIB_DIR: '/opt/cuda/lib', KILN_CACHE_DIR: '/tmp/c', KILN_CUDA_NO_CUBLAS: '1', KILN_CUDA_NO_TENSOR_CORES: '1', KILN_GEMM_TUNING: 'off', KILN_GEMM_AUTOTUNE: '1' }))
      .toEqual({ libDir: '/opt/cuda/lib', cacheDir: '/tmp/c', cublas: false, tensorCores: false, gemmTuning: false, autotune: true });
    // KILN_PROFILE (per-launch timeline) and KILN_CUDA_NO_GRAPHS launch from the host: no captured graph.
    expect(cudaOptionsFromEnv({ KILN_PROFILE: '1' }).graphs).toBe(false);
    expect(cudaOptionsFromEnv({ KILN_CUDA_NO_GRAPHS: '1' }).graphs).toBe(false);
    expect(cudaOptionsFromEnv({ KILN_NVRTC_SERIAL: '1' }).parallelNvrtc).toBe(false);
  });

  it('cublas: false generates every matmul instead of planning cuBLAS SGEMMs', async () => {
    const { generateCuda, program } = await withDebug('');
    const p = program('block', '64x4x16');
    const matmuls = p.kernels.filter((k) => k.kind === 'matmul').length;
    const on = generateCuda(p).launches.flat();
    const off = generateCuda(p, { cublas: false }).launches.flat();
    expect(on.filter((l) => l.kind === 'gemm').length).toBeGreaterThan(0);
    expect(off.filter((l) => l.kind === 'gemm').length).toBe(0);
    expect(off.filter((l) => l.kind === 'kernel' && l.fn.endsWith('_matmul')).length).toBe(matmuls);
  });
});

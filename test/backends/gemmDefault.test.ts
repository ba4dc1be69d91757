/**
 * The untuned default GEMM provider on CUDA (backends/cuda/gemmDefault.ts): rule-chosen bf16
 * tensor-core schedules go to the library (cuBLASLt where its BIAS epilogue is the whole fused
 * epilogue, else cuBLAS), measured schedules and CudaOptions.gemmDefault 'generated' keep theirs; the
 * library program's generated code (operand staging, epilogue kernels) compiles with nvcc for sm_90.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tunedProgram } from '../../backends/cuda/build.ts';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import type { CudaDriver } from '../../backends/cuda/driver.ts';
import { withLibraryDefaults } from '../../backends/cuda/gemmDefault.ts';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import { autocast } from '../../compiler/transforms/autocast.ts';
import type { KernelProgram, MatmulKernel } from '../../ir/kernel/types.ts';
import { GEMM_CASES, gemmGraph } from '../support/gemmCases.ts';

const run = promisify(execFile);
const nvcc = await run('nvcc', ['--version']).then(() => true, () => false);

const block = (): KernelProgram => compile(autocast(buildProgram('block', { train: true, batch: 2, size: '64x4x16' }), { dtype: 'bf16' })).program;
const matmuls = (p: KernelProgram) => p.kernels.filter((k): k is MatmulKernel => k.kind === 'matmul');
const providers = (p: KernelProgram) => matmuls(p).map((k) => k.tile?.provider);
const fakeCuda = { name: 'test-device' } as CudaDriver;

describe('default GEMM provider', () => {
  it('untuned bf16 matmuls run on the library: cuBLASLt for accumulator + bias stores, cuBLAS for the rest', () => {
    const p = block();
    expect(new Set(providers(p))).toEqual(new Set(['tensor-core']));
    const lib = withLibraryDefaults(p);
    const got = providers(lib);
    expect(got.every((x) => x === 'cublas' || x === 'cublaslt')).toBe(true);
    // Under autocast a linear layer's bias is added to bf16(acc), which cuBLASLt's BIAS epilogue does not round: cuBLAS + epilogue kernel.
    expect(new Set(got)).toEqual(new Set(['cublas']));
    // A plain acc + bias store (f32 or bf16 output, batched too) goes to cuBLASLt.
    for (const name of ['bias_f32', 'bias_bf16_batched']) {
      const c = GEMM_CASES.find((x) => x.name === name)!;
      expect(providers(withLibraryDefaults(compile(gemmGraph(c)).program))).toEqual(['cublaslt']);
    }
    // The rule's choice stays 'default' (not measured), tile and staging untouched.
    for (const [a, b] of matmuls(p).map((k, i) => [k, matmuls(lib)[i]!] as const)) expect({ ...b.tile, provider: a.tile!.provider }).toEqual(a.tile);
    // Rendered: every matmul is a library call (no generated tensor-core GEMM function).
    const m = generateCuda(lib);
    const launches = lib.kernels.flatMap((k, i) => (k.kind === 'matmul' ? m.launches[i]! : []));
    expect(launches.filter((l) => l.kind === 'gemm').length).toBe(matmuls(lib).length);
  });

  it('measured schedules keep their provider; gemmDefault "generated" and cuBLAS off keep the generated kernels', () => {
    const p = block();
    const measured: KernelProgram = { ...p, kernels: p.kernels.map((k) => (k.kind === 'matmul' ? { ...k, tile: { ...k.tile!, source: 'measured' as const } } : k)) };
    expect(new Set(providers(withLibraryDefaults(measured)))).toEqual(new Set(['tensor-core']));
    expect(new Set(providers(tunedProgram(fakeCuda, p, { gemmTuning: false, gemmDefault: 'generated' })))).toEqual(new Set(['tensor-core']));
    expect(new Set(providers(tunedProgram(fakeCuda, p, { gemmTuning: false, cublas: false })))).toEqual(new Set(['tensor-core']));
    expect(providers(tunedProgram(fakeCuda, p, { gemmTuning: false }))).toEqual(providers(withLibraryDefaults(p)));
  });

  it.skipIf(!nvcc)('the library program (operand staging, epilogue kernels) compiles with nvcc for sm_90', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-gemm-default-'));
    const file = join(dir, 'lib.cu');
    writeFileSync(file, generateCuda(withLibraryDefaults(block())).source);
    await run('nvcc', ['-arch=sm_90', '-cubin', '-o', join(dir, 'lib.cubin'), file]);
  }, 120_000);
});

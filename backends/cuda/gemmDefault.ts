/**
 * @file The untuned default GEMM provider on CUDA. The tiling stage gives every bf16 matmul a
 * tensor-core schedule (compiler/schedule/tiling.ts), but Kiln's generated mma.sync kernels measured
 * 33–46% of cuBLAS on an H200 (2026-12-02: the LightningDiT-B/1 step at batch 128 took 564.6 ms with
 * them, 142.9 ms with the measured library providers; bench/RESULTS.md). So on CUDA the library is the
 * default wherever no measurement says otherwise: a tensor-core schedule that comes from the rule
 * (`source: 'default'`) with bf16 operands becomes
 *  - 'cublaslt' when its epilogue is one store of accumulator + bias[j] (cuBLASLt's BIAS epilogue
 *    writes the output itself: no epilogue kernel, gemmLibrary.ts ltBias);
 *  - 'cublas' otherwise (GemmEx bf16; operands that are not plain views staged, fused epilogues run
 *    over C in the GEMM workspace).
 * Measured schedules (the tuning cache: bench/gemmTune.ts, KILN_GEMM_AUTOTUNE=1; gemmTuning.ts) keep
 * their provider, the generated kernel included where it measured faster. `CudaOptions.gemmDefault:
 * 'generated'` (KILN_GEMM_DEFAULT=generated) keeps the generated kernel as the untuned default (the GPU
 * GEMM tests of the generated kernels, bench/gemm.sh's "generated alone" column).
 */
import type { BufferDecl, Kernel, KernelProgram, MatmulKernel } from '../../ir/kernel/types.ts';
import { ltBias, singleStore } from './gemmLibrary.ts';

/** The library provider a bf16 matmul gets by default: cuBLASLt where its BIAS epilogue is the whole fused epilogue. */
export function defaultLibraryProvider(k: MatmulKernel, buffers: readonly BufferDecl[]): 'cublas' | 'cublaslt' {
  const only = singleStore(k.epilogue);
  if (!only || only.mode !== 'set') return 'cublas';
  const out = buffers[only.buf]!.dtype;
  return (out === 'f32' || out === 'bf16') && ltBias(only.value, out, buffers) ? 'cublaslt' : 'cublas';
}

/** The program with every rule-chosen (untuned) bf16 tensor-core schedule moved to its library provider. */
export function withLibraryDefaults(p: KernelProgram): KernelProgram {
  let changed = false;
  const kernels = p.kernels.map((k): Kernel => {
    if (k.kind !== 'matmul' || k.tile?.provider !== 'tensor-core' || k.tile.source !== 'default' || k.a.dtype !== 'bf16' || k.b.dtype !== 'bf16' || k.accDType !== 'f32') return k;
    changed = true;
    return { ...k, tile: { ...k.tile, provider: defaultLibraryProvider(k, p.buffers) } };
  });
  return changed ? { ...p, kernels } : p;
}

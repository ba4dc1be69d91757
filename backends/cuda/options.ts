/**
 * @file Configuration of the CUDA backend, given by its caller: the backend reads no environment
 * (the runtime reads CUDA_LIB_DIR, KILN_CACHE_DIR, KILN_CUDA_NO_CUBLAS, KILN_CUDA_NO_TENSOR_CORES,
 * KILN_GEMM_TUNING, KILN_GEMM_AUTOTUNE, KILN_GEMM_DEFAULT, KILN_CUDA_ELEMENTWISE_POINTS, KILN_NVRTC_SERIAL,
 * KILN_CUDA_NO_GRAPHS and KILN_PROFILE once, in
 * runtime/backends.ts, and passes them down as these options).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface CudaOptions {
  /** Folder holding libnvrtc.so and libcublas.so (used when they are first loaded in the process). */
  readonly libDir?: string;
  /** Folder of the on-disk PTX cache (and of the GEMM tuning cache, gemm-tuning.json). */
  readonly cacheDir?: string;
  /** Plan plain strided f32 matmuls as cuBLAS SGEMMs (default true); false generates every matmul. */
  readonly cublas?: boolean;
  /** Render tensor-core schedules as mma.sync GEMMs (default true); false: the SIMT GEMM for every matmul. */
  readonly tensorCores?: boolean;
  /**
   * Who computes a bf16 matmul that no measurement covers: 'library' (default: cuBLASLt with its bias
   * epilogue, else cuBLAS; the generated kernels measured 33–46% of cuBLAS) or 'generated' (the
   * tiling stage's tensor-core kernel). gemmDefault.ts.
   */
  readonly gemmDefault?: 'library' | 'generated';
  /**
   * Grid points per thread of elementwise kernels and cuBLAS epilogues, consecutive along the last grid
   * axis, their contiguous aligned loads and stores as 16-byte (or narrower) vectors (codegen.ts
   * genPoints; 1, 2, 4 or 8; default DEFAULT_ELEMENTWISE_POINTS; KILN_CUDA_ELEMENTWISE_POINTS).
   */
  readonly elementwisePoints?: number;
  /**
   * Hopper wgmma flash attention where the tiling data asks for it (flashAttentionWgmma.ts; sm_90 only;
   * default true there). false: the mma.sync kernels everywhere. KILN_CUDA_FLASH_WGMMA=0 / 1.
   */
  readonly flashWgmma?: boolean;
  /**
   * A cuBLAS GEMM whose epilogue stores C itself beside other outputs writes C into that output, and the
   * epilogue kernel reads it from there (codegen.ts accIdentityStore; default true). false: C always goes
   * to the workspace first. KILN_CUDA_GEMM_OUTPUT_C=0.
   */
  readonly gemmOutputC?: boolean;
  /**
   * Two grid points per thread in split column kernels over 2-byte data (codegen.ts columnPairs; default
   * false: an experiment, KILN_CUDA_COLUMN_PAIRS=1).
   */
  readonly columnPairs?: boolean;
  /** Use the measured GEMM schedules of the tuning cache in cacheDir (default true; gemmTuning.ts). */
  readonly gemmTuning?: boolean;
  /**
   * Capture each step as a CUDA graph and replay it with one driver call (default true); false launches
   * every kernel from the host each run (what KILN_PROFILE and KILN_CUDA_NO_GRAPHS ask for).
   */
  readonly graphs?: boolean;
  /**
   * Before compiling a program, measure the providers (generated kernel, cuBLAS) of its matmuls that
   * the tuning cache does not know yet, and record the fastest (gemmAutotune.ts; default false).
   */
  readonly autotune?: boolean;
  /** Compile each distinct kernel source to CUBIN in worker threads (default true; nvrtcPool.ts); false: one module, NVRTC on this thread. */
  readonly parallelNvrtc?: boolean;
}

export const DEFAULT_CUDA_LIB_DIR = '/usr/local/cuda/targets/x86_64-linux/lib';

export function defaultPtxCacheDir(): string {
  return join(homedir(), '.cache', 'kiln', 'ptx');
}

/**
 * Elementwise points per thread by default: 4 (H200, 2026-12-02, LightningDiT-B/1 batch 128 bf16 step,
 * same call: elementwise kernels 26.6 → 17.9 ms and cuBLAS epilogues 10.3 → 6.2 ms against 1 point).
 */
export const DEFAULT_ELEMENTWISE_POINTS = 4;

/**
 * @file The backends by name: 'cpu' (the Graph IR reference interpreter), 'kernel-cpu' (the compiled
 * kernel program, interpreted on the CPU), 'cuda' (the compiled program on an NVIDIA GPU), 'wgsl' (the
 * compiled program as WGSL on WebGPU: Dawn in Node, navigator.gpu in a browser). The CUDA
 * backend's configuration is read from the environment here, once, and passed down as options, as is
 * the WGSL backend's shader cache folder.
 */
import type { Backend } from '../backends/backend.ts';
import { cpuBackend } from '../backends/cpu/executable.ts';
import { createCudaBackend } from '../backends/cuda/executable.ts';
import type { CudaOptions } from '../backends/cuda/options.ts';
import { kernelCpuBackend } from '../backends/kernel/executable.ts';
import { join } from 'node:path';
import { wgslBackendWith } from '../backends/wgsl/executable.ts';
import { DiskSourceCache, defaultWgslCacheDir } from '../backends/wgsl/sourceCache.ts';
import { KilnError } from '../ir/errors.ts';

/**
 * CUDA options from the environment: CUDA_LIB_DIR (folder of libnvrtc/libcublas), KILN_CACHE_DIR
 * (the PTX and GEMM tuning caches), KILN_CUDA_NO_CUBLAS (any non-empty value: generate every matmul, no
 * cuBLAS), KILN_CUDA_NO_TENSOR_CORES (any non-empty value: SIMT GEMMs only), KILN_GEMM_TUNING=off (the
 * tiling stage's default schedules, ignoring measured ones), KILN_CUDA_NO_GRAPHS or KILN_PROFILE (any
 * non-empty value: launch every kernel from the host instead of replaying a captured CUDA graph),
 * KILN_GEMM_DEFAULT=generated|library (who computes an untuned bf16 matmul: the generated tensor-core
 * kernel, or the library, the default), KILN_CUDA_FLASH_WGMMA=0|1 (Hopper wgmma flash attention where the
 * tiling asks for it; default on, on sm_90), KILN_CUDA_ELEMENTWISE_POINTS=1|2|4|8 (grid points per thread of
 * elementwise kernels and cuBLAS epilogues, with vector loads and stores; default 4), KILN_GEMM_AUTOTUNE=1 (measure the providers of a program's untuned
 * matmuls when it is compiled, and cache the choice), KILN_NVRTC_SERIAL
 * (any non-empty value: one module compiled on the main thread instead of each distinct kernel in
 * worker threads), KILN_CUDA_GEMM_OUTPUT_C=0 (a GEMM's C always goes to the workspace first, even where an
 * epilogue stores it as one of its outputs), KILN_CUDA_COLUMN_PAIRS=1 (two grid points per thread in split column
 * kernels over bf16/f16 data; an experiment, off by default).
 */
export function cudaOptionsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): CudaOptions {
  return {
    ...(env.CUDA_LIB_DIR ? { libDir: env.CUDA_LIB_DIR } : {}),
    ...(env.KILN_CACHE_DIR ? { cacheDir: env.KILN_CACHE_DIR } : {}),
    cublas: !env.KILN_CUDA_NO_CUBLAS,
    tensorCores: !env.KILN_CUDA_NO_TENSOR_CORES,
    gemmTuning: env.KILN_GEMM_TUNING !== 'off',
    ...(env.KILN_CUDA_NO_GRAPHS || env.KILN_PROFILE ? { graphs: false } : {}),
    ...(env.KILN_GEMM_DEFAULT === 'generated' || env.KILN_GEMM_DEFAULT === 'library' ? { gemmDefault: env.KILN_GEMM_DEFAULT } : {}),
    ...(/^[1248]$/.test(env.KILN_CUDA_ELEMENTWISE_POINTS ?? '') ? { elementwisePoints: Number(env.KILN_CUDA_ELEMENTWISE_POINTS) } : {}),
    autotune: env.KILN_GEMM_AUTOTUNE === '1',
    ...(env.KILN_CUDA_FLASH_WGMMA === '0' || env.KILN_CUDA_FLASH_WGMMA === '1' ? { flashWgmma: env.KILN_CUDA_FLASH_WGMMA === '1' } : {}),
    ...(env.KILN_NVRTC_SERIAL ? { parallelNvrtc: false } : {}),
    ...(env.KILN_CUDA_GEMM_OUTPUT_C === '0' ? { gemmOutputC: false } : {}),
    ...(env.KILN_CUDA_COLUMN_PAIRS === '1' ? { columnPairs: true } : {}),
  };
}

/** The environment variable that turns the WGSL backend's Dawn robustness on or off (backends/wgsl/device.ts). */
export const WGSL_ROBUSTNESS_ENV = 'KILN_WGSL_ROBUSTNESS';

/** KILN_WGSL_ROBUSTNESS's value as the device option: 'on' true, 'off' false, unset or empty the device's default. */
export function wgslRobustnessFromEnv(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'on' || value === 'off') return value === 'on';
  throw new KilnError(`${WGSL_ROBUSTNESS_ENV}=${JSON.stringify(value)}: want 'on' or 'off'`);
}

/** The WGSL backend the CLI and benches get: the source cache on disk, robustness from the environment. */
function wgslFromEnv(env: NodeJS.ProcessEnv = process.env): Backend {
  const robustness = wgslRobustnessFromEnv(env[WGSL_ROBUSTNESS_ENV]);
  // Generated WGSL is kept on disk (KILN_CACHE_DIR/wgsl, else ~/.cache/kiln/wgsl; backends/wgsl/sourceCache.ts).
  return wgslBackendWith({ sourceCache: new DiskSourceCache(env.KILN_CACHE_DIR ? join(env.KILN_CACHE_DIR, 'wgsl') : defaultWgslCacheDir()), ...(robustness !== undefined ? { robustness } : {}) });
}

let wgslMemo: Backend | undefined;

export const BACKENDS: Readonly<Record<string, Backend>> = {
  cpu: cpuBackend,
  'kernel-cpu': kernelCpuBackend,
  cuda: createCudaBackend(cudaOptionsFromEnv()),
  // Made on first use, so that a bad KILN_WGSL_ROBUSTNESS is an error of the wgsl backend only.
  get wgsl() { return (wgslMemo ??= wgslFromEnv()); },
};

export function backendByName(name: string): Backend {
  const b = BACKENDS[name];
  if (!b) throw new KilnError(`unknown backend '${name}' (available: ${Object.keys(BACKENDS).join(', ')})`);
  return b;
}

/**
 * @file Configuration of the CUDA backend, given by its caller: the backend reads no environment
 * (the runtime reads CUDA_LIB_DIR, KILN_CACHE_DIR and KILN_CUDA_NO_CUBLAS once, in
 * runtime/backends.ts, and passes them down as these options).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface CudaOptions {
  /** Folder holding libnvrtc.so and libcublas.so (used when they are first loaded in the process). */
  readonly libDir?: string;
  /** Folder of the on-disk PTX cache. */
  readonly cacheDir?: string;
  /** Plan plain strided f32 matmuls as cuBLAS SGEMMs (default true); false generates every matmul. */
  readonly cublas?: boolean;
}

export const DEFAULT_CUDA_LIB_DIR = '/usr/local/cuda/targets/x86_64-linux/lib';

export function defaultPtxCacheDir(): string {
  return join(homedir(), '.cache', 'kiln', 'ptx');
}

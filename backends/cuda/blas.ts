/**
 * @file cuBLAS through koffi: strided-batched SGEMM for matmul kernels whose operands are plain
 * strided views of f32 buffers (the common case: activations times weights, with or without
 * transposes). Default math mode (no TF32), so results are f32 like the generated kernels. bf16
 * operands (the 'cublas' provider of a measured tile schedule): GemmEx, f32 compute.
 */
import * as koffi from 'koffi';
import { join } from 'node:path';
import { CudaError } from './driver.ts';
import { DEFAULT_CUDA_LIB_DIR } from './options.ts';

type Fn = (...args: unknown[]) => unknown;

export class Cublas {
  private static instance: Cublas | undefined;
  private readonly sgemm: Fn;
  private readonly gemmEx: Fn;
  private readonly handle: unknown;
  private readonly setStreamFn: Fn;
  private readonly setWorkspaceFn: Fn;
  private boundStream: unknown = undefined;
  private boundWorkspace: bigint | undefined;

  /** The process-wide cuBLAS handle; the library is loaded from `dir` on the first call. */
  static get(dir: string = DEFAULT_CUDA_LIB_DIR): Cublas {
    return (Cublas.instance ??= new Cublas(dir));
  }

  private constructor(dir: string) {
    let lib: koffi.LibraryHandle | undefined;
    const tried: string[] = [];
    for (const n of [join(dir, 'libcublas.so'), join(dir, 'libcublas.so.13'), join(dir, 'libcublas.so.12'), 'libcublas.so.13', 'libcublas.so.12', 'libcublas.so']) {
      try {
        lib = koffi.load(n);
        break;
      } catch (e) {
        tried.push(`${n}: ${(e as Error).message}`);
      }
    }
    if (!lib) throw new CudaError(`cannot load cuBLAS: ${tried.join('; ')}`);
    const create = lib.func('int cublasCreate_v2(_Out_ void **handle)') as unknown as Fn;
    this.sgemm = lib.func(
      'int cublasSgemmStridedBatched(void *h, int ta, int tb, int m, int n, int k, const float *alpha, uint64_t A, int lda, int64_t sA, uint64_t B, int ldb, int64_t sB, const float *beta, uint64_t C, int ldc, int64_t sC, int batch)',
    ) as unknown as Fn;
    this.gemmEx = lib.func(
      'int cublasGemmStridedBatchedEx(void *h, int ta, int tb, int m, int n, int k, const float *alpha, uint64_t A, int Atype, int lda, int64_t sA, uint64_t B, int Btype, int ldb, int64_t sB, const float *beta, uint64_t C, int Ctype, int ldc, int64_t sC, int batch, int computeType, int algo)',
    ) as unknown as Fn;
    this.setStreamFn = lib.func('int cublasSetStream_v2(void *h, void *stream)') as unknown as Fn;
    this.setWorkspaceFn = lib.func('int cublasSetWorkspace_v2(void *h, uint64_t workspace, size_t bytes)') as unknown as Fn;
    const h = [null as unknown];
    const rc = create(h);
    if (rc !== 0) throw new CudaError(`cublasCreate failed with status ${rc}`);
    this.handle = h[0];
  }

  /** Issue the following GEMMs on `stream` (a CUDA graph captures them there). */
  setStream(stream: unknown): void {
    if (this.boundStream === stream) return;
    const rc = this.setStreamFn(this.handle, stream);
    if (rc !== 0) throw new CudaError(`cublasSetStream failed with status ${rc}`);
    this.boundStream = stream;
    this.boundWorkspace = undefined; // setting the stream resets the workspace to cuBLAS's default
  }

  /** Use `bytes` of device memory at `ptr` (part of the caller's memory plan) as the GEMMs' workspace. */
  setWorkspace(ptr: bigint, bytes: number): void {
    if (this.boundWorkspace === ptr) return;
    const rc = this.setWorkspaceFn(this.handle, ptr, bytes);
    if (rc !== 0) throw new CudaError(`cublasSetWorkspace failed with status ${rc}`);
    this.boundWorkspace = ptr;
  }

  private readonly one = new Float32Array([1]);
  private readonly zero = new Float32Array([0]);

  /**
   * Column-major C (m×n, ldc) = op(A)·op(B), `batch` times with the given strides (elements). f32
   * operands: SGEMM; bf16 operands: GemmEx with f32 compute (C in bf16 or f32).
   */
  gemm(o: { ta: 0 | 1; tb: 0 | 1; m: number; n: number; k: number; A: bigint; lda: number; sA: number; B: bigint; ldb: number; sB: number; C: bigint; ldc: number; sC: number; batch: number; ab?: 'f32' | 'bf16'; c?: 'f32' | 'bf16' }, what: string): void {
    if (o.ab === 'bf16') {
      const CUDA_R_32F = 0, CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1;
      const ct = o.c === 'bf16' ? CUDA_R_16BF : CUDA_R_32F;
      const rc = this.gemmEx(this.handle, o.ta, o.tb, o.m, o.n, o.k, this.one, o.A, CUDA_R_16BF, o.lda, o.sA, o.B, CUDA_R_16BF, o.ldb, o.sB, this.zero, o.C, ct, o.ldc, o.sC, o.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      if (rc !== 0) throw new CudaError(`cublasGemmStridedBatchedEx (${what}) failed with status ${rc}`);
      return;
    }
    const rc = this.sgemm(this.handle, o.ta, o.tb, o.m, o.n, o.k, this.one, o.A, o.lda, o.sA, o.B, o.ldb, o.sB, this.zero, o.C, o.ldc, o.sC, o.batch);
    if (rc !== 0) throw new CudaError(`cublasSgemmStridedBatched (${what}) failed with status ${rc}`);
  }
}

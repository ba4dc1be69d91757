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

/** cuBLASLt's fused epilogues that Kiln uses (cublasLtEpilogue_t). */
export type LtEpilogue = 'default' | 'bias';

/** One cuBLASLt matmul, column-major like Cublas.gemm, with device addresses resolved. */
export interface LtGemm {
  readonly ta: 0 | 1; readonly tb: 0 | 1; readonly m: number; readonly n: number; readonly k: number;
  readonly A: bigint; readonly lda: number; readonly sA: number;
  readonly B: bigint; readonly ldb: number; readonly sB: number;
  readonly D: bigint; readonly ldd: number; readonly sD: number; readonly batch: number;
  readonly d: 'f32' | 'bf16';
  readonly epilogue: LtEpilogue;
  /** Bias vector (length m of the column-major D: one value per row of D), epilogue 'bias'. */
  readonly bias?: bigint;
  readonly biasType?: 'f32' | 'bf16';
  readonly workspace: bigint;
  readonly workspaceBytes: number;
}

const CUDA_R_32F = 0, CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68;
const DESC_TRANSA = 3, DESC_TRANSB = 4, DESC_EPILOGUE = 7, DESC_BIAS_POINTER = 8, DESC_BIAS_DATA_TYPE = 26;
const LAYOUT_BATCH_COUNT = 5, LAYOUT_STRIDED_BATCH_OFFSET = 6, PREF_MAX_WORKSPACE_BYTES = 1;
const EPILOGUE: Record<LtEpilogue, number> = { default: 1, bias: 4 };
/** sizeof(cublasLtMatmulHeuristicResult_t): algo (8 × uint64), workspaceSize, state, wavesCount, reserved[4]. */
const HEURISTIC_BYTES = 96;

/**
 * cuBLASLt through koffi: bf16 GEMMs with f32 compute whose fused epilogue cuBLASLt can express
 * (the 'cublaslt' provider; bias added in f32 before the one rounding to D's type). Each launch's
 * descriptors and the heuristic's algorithm are made once, on its first call, and reused.
 */
export class CublasLt {
  private static instance: CublasLt | undefined;
  private readonly f: Record<string, Fn> = {};
  private readonly handle: unknown;
  private readonly plans = new Map<string, { desc: unknown; a: unknown; b: unknown; d: unknown; algo: Buffer }>();

  static get(dir: string = DEFAULT_CUDA_LIB_DIR): CublasLt {
    return (CublasLt.instance ??= new CublasLt(dir));
  }

  private constructor(dir: string) {
    let lib: koffi.LibraryHandle | undefined;
    const tried: string[] = [];
    for (const n of [join(dir, 'libcublasLt.so'), join(dir, 'libcublasLt.so.13'), join(dir, 'libcublasLt.so.12'), 'libcublasLt.so.13', 'libcublasLt.so.12', 'libcublasLt.so']) {
      try {
        lib = koffi.load(n);
        break;
      } catch (e) {
        tried.push(`${n}: ${(e as Error).message}`);
      }
    }
    if (!lib) throw new CudaError(`cannot load cuBLASLt: ${tried.join('; ')}`);
    const fn = (sig: string) => lib!.func(sig) as unknown as Fn;
    Object.assign(this.f, {
      create: fn('int cublasLtCreate(_Out_ void **h)'),
      descCreate: fn('int cublasLtMatmulDescCreate(_Out_ void **desc, int computeType, int scaleType)'),
      descSet: fn('int cublasLtMatmulDescSetAttribute(void *desc, int attr, const uint8_t *buf, size_t size)'),
      layoutCreate: fn('int cublasLtMatrixLayoutCreate(_Out_ void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld)'),
      layoutSet: fn('int cublasLtMatrixLayoutSetAttribute(void *layout, int attr, const uint8_t *buf, size_t size)'),
      prefCreate: fn('int cublasLtMatmulPreferenceCreate(_Out_ void **pref)'),
      prefSet: fn('int cublasLtMatmulPreferenceSetAttribute(void *pref, int attr, const uint8_t *buf, size_t size)'),
      heuristic: fn('int cublasLtMatmulAlgoGetHeuristic(void *h, void *desc, void *a, void *b, void *c, void *d, void *pref, int requested, _Out_ uint8_t *results, _Out_ int *returned)'),
      matmul: fn('int cublasLtMatmul(void *h, void *desc, const float *alpha, uint64_t A, void *Adesc, uint64_t B, void *Bdesc, const float *beta, uint64_t C, void *Cdesc, uint64_t D, void *Ddesc, const uint8_t *algo, uint64_t ws, size_t wsBytes, void *stream)'),
    });
    const h = [null as unknown];
    this.check('cublasLtCreate', this.f.create!(h));
    this.handle = h[0];
  }

  private check(what: string, rc: unknown): void {
    if (rc !== 0) throw new CudaError(`${what} failed with status ${String(rc)}`);
  }

  private static i32(v: number): Buffer {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return b;
  }

  private static i64(v: number | bigint): Buffer {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    return b;
  }

  private layout(type: number, rows: number, cols: number, ld: number, batch: number, stride: number): unknown {
    const l = [null as unknown];
    this.check('cublasLtMatrixLayoutCreate', this.f.layoutCreate!(l, type, rows, cols, ld));
    if (batch > 1) {
      this.check('cublasLtMatrixLayoutSetAttribute(batch)', this.f.layoutSet!(l[0], LAYOUT_BATCH_COUNT, CublasLt.i32(batch), 4));
      this.check('cublasLtMatrixLayoutSetAttribute(stride)', this.f.layoutSet!(l[0], LAYOUT_STRIDED_BATCH_OFFSET, CublasLt.i64(stride), 8));
    }
    return l[0];
  }

  private plan(o: LtGemm, what: string) {
    const key = [o.ta, o.tb, o.m, o.n, o.k, o.lda, o.sA, o.ldb, o.sB, o.ldd, o.sD, o.batch, o.d, o.epilogue, o.bias ?? 0n, o.biasType ?? '', o.workspaceBytes].join(',');
    let p = this.plans.get(key);
    if (p) return p;
    const desc = [null as unknown];
    this.check('cublasLtMatmulDescCreate', this.f.descCreate!(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    this.check('cublasLtMatmulDescSetAttribute(transa)', this.f.descSet!(desc[0], DESC_TRANSA, CublasLt.i32(o.ta), 4));
    this.check('cublasLtMatmulDescSetAttribute(transb)', this.f.descSet!(desc[0], DESC_TRANSB, CublasLt.i32(o.tb), 4));
    this.check('cublasLtMatmulDescSetAttribute(epilogue)', this.f.descSet!(desc[0], DESC_EPILOGUE, CublasLt.i32(EPILOGUE[o.epilogue]), 4));
    if (o.epilogue === 'bias') {
      this.check('cublasLtMatmulDescSetAttribute(bias)', this.f.descSet!(desc[0], DESC_BIAS_POINTER, CublasLt.i64(o.bias!), 8));
      this.check('cublasLtMatmulDescSetAttribute(bias type)', this.f.descSet!(desc[0], DESC_BIAS_DATA_TYPE, CublasLt.i32(o.biasType === 'bf16' ? CUDA_R_16BF : CUDA_R_32F), 4));
    }
    // op(A) is m×k, op(B) k×n: stored A is (ta ? k×m : m×k), B (tb ? n×k : k×n), column-major.
    const a = this.layout(CUDA_R_16BF, o.ta ? o.k : o.m, o.ta ? o.m : o.k, o.lda, o.batch, o.sA);
    const b = this.layout(CUDA_R_16BF, o.tb ? o.n : o.k, o.tb ? o.k : o.n, o.ldb, o.batch, o.sB);
    const d = this.layout(o.d === 'bf16' ? CUDA_R_16BF : CUDA_R_32F, o.m, o.n, o.ldd, o.batch, o.sD);
    const pref = [null as unknown];
    this.check('cublasLtMatmulPreferenceCreate', this.f.prefCreate!(pref));
    this.check('cublasLtMatmulPreferenceSetAttribute', this.f.prefSet!(pref[0], PREF_MAX_WORKSPACE_BYTES, CublasLt.i64(o.workspaceBytes), 8));
    const results = Buffer.alloc(HEURISTIC_BYTES);
    const n = [0];
    this.check(`cublasLtMatmulAlgoGetHeuristic (${what})`, this.f.heuristic!(this.handle, desc[0], a, b, d, d, pref[0], 1, results, n));
    if (n[0] === 0) throw new CudaError(`cuBLASLt has no algorithm for ${what} (epilogue ${o.epilogue})`);
    p = { desc: desc[0], a, b, d, algo: results.subarray(0, 64) };
    this.plans.set(key, p);
    return p;
  }

  private readonly one = new Float32Array([1]);
  private readonly zero = new Float32Array([0]);

  /** D = op(A)·op(B) (+ bias) on `stream` (default the legacy default stream; a CUDA graph captures it there). */
  gemm(o: LtGemm, what: string, stream: unknown = null): void {
    const p = this.plan(o, what);
    const rc = this.f.matmul!(this.handle, p.desc, this.one, o.A, p.a, o.B, p.b, this.zero, o.D, p.d, o.D, p.d, p.algo, o.workspace, o.workspaceBytes, stream);
    if (rc !== 0) throw new CudaError(`cublasLtMatmul (${what}) failed with status ${String(rc)}`);
  }
}

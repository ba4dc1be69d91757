/**
 * @file Warp-level tensor-core PTX for generated CUDA: mma.sync m16n8k16 (bf16/f16 in, f32
 * accumulate), ldmatrix (plain and transposing), cp.async 16-byte copies with zero fill, and the
 * fragment layouts they imply, as CUDA C++ device functions (inline PTX; no headers, so NVRTC needs
 * no include paths). Appended to a module that uses them (sm_80 and newer). The GEMM kernels
 * (gemmTensorCore.ts) and the attention kernels share these.
 *
 * Fragment layouts of mma.m16n8k16 (lane l, g = l / 4, t = l % 4), two 16-bit elements per register:
 *   A (16×16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
 *   B (16×8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
 *   C (16×8, f32):        c0, c1 = (g, 2t), (g, 2t+1); c2, c3 = (g+8, 2t), (g+8, 2t+1)
 * ldmatrix.x4: lanes 8q..8q+7 give the row addresses of 8×8 matrix q; register q receives matrix q
 * with lane l holding row l/4, columns 2(l%4)..+1 (.trans: of the transposed matrix).
 */

/** The CUDA source of the wrappers (all `k_`-prefixed, like the prelude's helpers). */
export const MMA_PTX = String.raw`
__device__ __forceinline__ u32 k_smem_addr(const void* p) {
  u32 a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
/** 16 bytes global → shared, asynchronously; zero-filled when !pred (src is not read then). */
__device__ __forceinline__ void k_cp_async16(u32 dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void k_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/** Wait until at most N committed groups are still in flight. */
template <int N> __device__ __forceinline__ void k_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }
__device__ __forceinline__ void k_ldmatrix_x4(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void k_ldmatrix_x4_trans(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
/** c[0..3] += A(16×16, a[0..3]) · B(16×8, b[0..1]), bf16 operands, f32 accumulators. */
__device__ __forceinline__ void k_mma_bf16_16816(float* c, const u32* a, const u32* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
/** As k_mma_bf16_16816 with f16 operands. */
__device__ __forceinline__ void k_mma_f16_16816(float* c, const u32* a, const u32* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
`;

/** Name of the mma wrapper for an operand dtype. */
export function mmaFunction(ab: 'bf16' | 'f16'): string {
  return ab === 'bf16' ? 'k_mma_bf16_16816' : 'k_mma_f16_16816';
}

/**
 * The flash-attention kernels' helpers (flashAttention.ts), `fa_`-prefixed: shared-memory address, ldmatrix
 * (plain / transposing), mma.sync m16n8k16 bf16 with the B fragment as two registers, cp.async 16-byte
 * copies, ex2.approx, 8-byte vector reductions (sm_90) and bf16x2 packing. Emitted once per module.
 */
export const FLASH_ATTENTION_PTX = String.raw`
// ---- flash attention helpers (mma.sync m16n8k16 bf16, ldmatrix, cp.async) ----
__device__ __forceinline__ u32 fa_saddr(const void* p) {
  u32 r; asm("{ .reg .u64 a_; cvta.to.shared.u64 a_, %1; cvt.u32.u64 %0, a_; }" : "=r"(r) : "l"(p)); return r;
}
/**
 * ldmatrix.x4 at shared address base + 2·off. 32-bit shared addresses (no generic → shared conversion per
 * load: 8-18% fewer SASS instructions); the address add is volatile so that the compiler computes it where
 * it is used instead of hoisting every unrolled load's address into a register (which spilled).
 */
__device__ __forceinline__ void fa_ldsm(u32* r, u32 base, int off) {
  u32 ad_; asm volatile("mad.lo.u32 %0, %1, 2, %2;" : "=r"(ad_) : "r"(off), "r"(base));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(ad_));
}
__device__ __forceinline__ void fa_ldsm_t(u32* r, u32 base, int off) {
  u32 ad_; asm volatile("mad.lo.u32 %0, %1, 2, %2;" : "=r"(ad_) : "r"(off), "r"(base));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(ad_));
}
__device__ __forceinline__ void fa_mma(float* c, const u32* a, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/** 16 bytes global → shared address dst, asynchronously; zero-filled when !ok. */
__device__ __forceinline__ void fa_cp16(u32 dst, const u16* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void fa_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void fa_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }
/** 2^x on the special-function unit (ex2.approx.ftz: relative error ~2^-22, far below bf16's 2^-9; 2^-∞ = 0). */
__device__ __forceinline__ float fa_exp2(float x) { float r; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
/** dst[0..1] += (a, b) in global memory (one 8-byte vector reduction, sm_90). */
__device__ __forceinline__ void fa_red2(float* dst, float a, float b) {
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" :: "l"(dst), "f"(a), "f"(b) : "memory");
}
/** dst[0..3] += (a, b, c, d) in global memory (one 16-byte vector reduction, sm_90; dst 16-byte aligned). */
__device__ __forceinline__ void fa_red4(float* dst, float a, float b, float c, float d) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(dst), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
}
/**
 * The C fragment pair (rows g, g + 8; columns 2·c4, 2·c4 + 1 of an n8 tile) as 4 consecutive columns of
 * one row: lanes with even c4 get row g, columns 2·c4..2·c4 + 3; odd ones row g + 8, 2·c4 − 2..2·c4 + 1
 * (one exchange with the neighbouring lane; every lane of the warp must call it). Returns the row half (0, 1).
 */
__device__ __forceinline__ int fa_quad(const float* c, float* v) {
  const bool odd = threadIdx.x & 1;
  const float r0 = __shfl_xor_sync(0xffffffffu, odd ? c[0] : c[2], 1), r1 = __shfl_xor_sync(0xffffffffu, odd ? c[1] : c[3], 1);
  v[0] = odd ? r0 : c[0]; v[1] = odd ? r1 : c[1]; v[2] = odd ? c[2] : r0; v[3] = odd ? c[3] : r1;
  return odd ? 1 : 0;
}
/** Two floats → bf16x2 (round to nearest even), lo in the low half. */
__device__ __forceinline__ u32 fa_pack(float lo, float hi) {
  u32 r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
`;

/**
 * @file The CUDA C++ prelude every generated module starts with: storage conversions for narrow
 * floats (bit-exact, round to nearest even, without cuda_fp16.h so NVRTC needs no include paths),
 * the IR's scalar semantics where C++ differs (NaN-propagating max/min, saturating float→int casts,
 * integer division by zero, wrapping integer arithmetic), and Philox4x32-10 with the exact
 * uniform/normal recipe of ir/philox.ts.
 */
export const PRELUDE = String.raw`
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
#define K_NAN __int_as_float(0x7fc00000)
#define K_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float k_bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 k_f32_to_bf16(float x) {
  if (x != x) return (u16)0x7fc0;
  u32 b = __float_as_uint(x);
  b += 0x7fffu + ((b >> 16) & 1u);
  return (u16)(b >> 16);
}
__device__ __forceinline__ float k_f16_to_f32(u16 h) {
  u32 s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) { float v = (float)m * 5.9604644775390625e-8f; return s ? -v : v; }
  if (e == 31) return __uint_as_float(s | 0x7f800000u | (m << 13));
  return __uint_as_float(s | ((e + 112u) << 23) | (m << 13));
}
__device__ __forceinline__ u16 k_f32_to_f16(float x) {
  u32 b = __float_as_uint(x);
  u32 s = (b >> 16) & 0x8000u;
  if (x != x) return (u16)0x7e00;
  float a = fabsf(x);
  if (a >= 65520.0f) return (u16)(s | 0x7c00u);
  if (a < 2.98023223876953125e-8f) return (u16)s;
  if (a < 6.103515625e-5f) { float q = a * 16777216.0f; float r = rintf(q); return (u16)(s | (u32)r); }
  u32 ab = __float_as_uint(a);
  u32 e = (ab >> 23) - 112u, m = ab & 0x7fffffu;
  u32 mh = m >> 13, rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (mh & 1u))) { mh++; if (mh == 0x400u) { mh = 0; e++; } }
  if (e >= 31u) return (u16)(s | 0x7c00u);
  return (u16)(s | (e << 10) | mh);
}
__device__ __forceinline__ float k_round_bf16(float x) { return k_bf16_to_f32(k_f32_to_bf16(x)); }
__device__ __forceinline__ float k_round_f16(float x) { return k_f16_to_f32(k_f32_to_f16(x)); }

/** buf[i] += v for 16-bit float storage, by compare-and-swap on the aligned 32-bit word holding it. */
__device__ void k_atomic_add_u16(u16* addr, float v, bool bf16) {
  u32* base = (u32*)((u64)addr & ~(u64)3);
  const u32 shift = ((u64)addr & 2) ? 16u : 0u;
  u32 old = *base, assumed;
  do {
    assumed = old;
    const u16 h = (u16)((assumed >> shift) & 0xffffu);
    const float f = (bf16 ? k_bf16_to_f32(h) : k_f16_to_f32(h)) + v;
    const u32 nh = bf16 ? (u32)k_f32_to_bf16(f) : (u32)k_f32_to_f16(f);
    old = atomicCAS(base, assumed, (assumed & ~(0xffffu << shift)) | (nh << shift));
  } while (assumed != old);
}

__device__ __forceinline__ float k_max(float a, float b) { return (a != a || b != b) ? K_NAN : (a > b ? a : b); }
__device__ __forceinline__ float k_min(float a, float b) { return (a != a || b != b) ? K_NAN : (a < b ? a : b); }
__device__ __forceinline__ int k_maxi(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ int k_mini(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ u32 k_maxu(u32 a, u32 b) { return a > b ? a : b; }
__device__ __forceinline__ u32 k_minu(u32 a, u32 b) { return a < b ? a : b; }
__device__ __forceinline__ float k_sign(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : x); }
__device__ __forceinline__ float k_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ int k_signi(int x) { return (x > 0) - (x < 0); }
__device__ __forceinline__ int k_addi(int a, int b) { return (int)((u32)a + (u32)b); }
__device__ __forceinline__ int k_subi(int a, int b) { return (int)((u32)a - (u32)b); }
__device__ __forceinline__ int k_muli(int a, int b) { return (int)((u32)a * (u32)b); }
__device__ __forceinline__ int k_negi(int a) { return (int)(0u - (u32)a); }
__device__ __forceinline__ int k_absi(int a) { return a < 0 ? k_negi(a) : a; }
__device__ __forceinline__ int k_divi(int a, int b) { return b == 0 ? 0 : (b == -1 ? k_negi(a) : a / b); }
__device__ __forceinline__ int k_modi(int a, int b) { return (b == 0 || b == -1) ? 0 : a % b; }
__device__ __forceinline__ u32 k_divu(u32 a, u32 b) { return b == 0u ? 0u : a / b; }
__device__ __forceinline__ u32 k_modu(u32 a, u32 b) { return b == 0u ? 0u : a % b; }
__device__ __forceinline__ float k_pow(float a, float b) { return a == 1.f ? 1.f : powf(a, b); }
__device__ __forceinline__ int k_f2i(float x) {
  if (x != x) return 0;
  if (x >= 2147483647.f) return 2147483647;
  if (x <= -2147483648.f) return (-2147483647 - 1);
  return (int)x;
}
__device__ __forceinline__ u32 k_f2u(float x) {
  if (x != x || x <= 0.f) return 0u;
  if (x >= 4294967295.f) return 4294967295u;
  return (u32)x;
}

__device__ __forceinline__ u32 k_mulhi(u32 a, u32 b) { return __umulhi(a, b); }
__device__ void k_philox(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1, u32* w) {
  for (int r = 0; r < 10; r++) {
    if (r > 0) { k0 += 0x9e3779b9u; k1 += 0xbb67ae85u; }
    u32 hi0 = k_mulhi(0xd2511f53u, c0), lo0 = 0xd2511f53u * c0;
    u32 hi1 = k_mulhi(0xcd9e8d57u, c2), lo1 = 0xcd9e8d57u * c2;
    u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  w[0] = c0; w[1] = c1; w[2] = c2; w[3] = c3;
}
__device__ float k_uniform(u32 s0, u32 s1, u32 stream, u32 i, int bits) {
  u32 w[4];
  k_philox(i >> 2, stream, 0u, 0u, s0, s1, w);
  return (float)(w[i & 3u] >> (32 - bits)) * exp2f((float)-bits);
}
__device__ float k_normal(u32 s0, u32 s1, u32 stream, u32 i) {
  u32 w[4];
  k_philox(i >> 2, stream, 0u, 0u, s0, s1, w);
  u32 k = i & 3u, p = k >> 1;
  float u1 = (float)((w[2 * p] >> 8) + 1u) * 5.9604644775390625e-8f;
  float u2 = (float)(w[2 * p + 1] >> 8) * 5.9604644775390625e-8f;
  float r = sqrtf(-2.f * logf(u1));
  return r * ((k & 1u) ? sinf(6.283185307179586f * u2) : cosf(6.283185307179586f * u2));
}
`;

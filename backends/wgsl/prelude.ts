/**
 * @file The WGSL prelude every generated shader starts with: the IR's scalar semantics where WGSL (or
 * the Vulkan/Metal/D3D precision rules under it) differs from the kernel-IR interpreter:
 *  - NaN tests on the bits (compilers may fold `x != x`), NaN-propagating max/min;
 *  - opaque literals `kf/ki/ku` (a user function call is never a const-expression, so all-constant
 *    subtrees such as `exp(100.0)` or `2147483647 + 1` are evaluated at run time, as the interpreter
 *    does, instead of being shader-creation errors);
 *  - log/sqrt/pow/tanh/sin/cos/erf with the IEEE/C special cases (GLSL.std.450 leaves log(x ≤ 0),
 *    sqrt(x < 0) and pow(x < 0, y) undefined, sin/cos are only 2^-11 accurate in [-π, π], WGSL has no
 *    erf): range-reduced polynomials accurate to a few f32 ulps;
 *  - C fmod (exact, by long division), saturating float→int casts, integer division by zero = 0;
 *  - f16/bf16 as 16-bit words: bit-exact conversions with round-to-nearest-even;
 *  - Philox4x32-10 with u32 arithmetic only (mulhi from 16-bit halves: WGSL has no 64-bit integers)
 *    and the exact uniform/normal recipe of ir/philox.ts.
 */
export const WGSL_PRELUDE = String.raw`
fn kf(b: u32) -> f32 { return bitcast<f32>(b); }
fn ki(v: i32) -> i32 { return v; }
fn ku(v: u32) -> u32 { return v; }
fn k_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn k_isinf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
fn k_nan() -> f32 { return kf(0x7fc00000u); }
fn k_inf() -> f32 { return kf(0x7f800000u); }
fn k_signbit(x: f32) -> bool { return (bitcast<u32>(x) & 0x80000000u) != 0u; }

fn k_max(a: f32, b: f32) -> f32 { if (k_isnan(a) || k_isnan(b)) { return k_nan(); } return select(b, a, a > b); }
fn k_min(a: f32, b: f32) -> f32 { if (k_isnan(a) || k_isnan(b)) { return k_nan(); } return select(b, a, a < b); }
fn k_sign(x: f32) -> f32 { if (x > 0.0f) { return 1.0f; } if (x < 0.0f) { return -1.0f; } return x; }

fn k_exp(x: f32) -> f32 {
  if (k_isnan(x)) { return x; }
  if (x > 88.7228394f) { return k_inf(); }
  if (x < -104.0f) { return 0.0f; }
  return exp(x);
}
fn k_log(x: f32) -> f32 {
  if (k_isnan(x) || x < 0.0f) { return k_nan(); }
  if (x == 0.0f) { return -k_inf(); }
  if (k_isinf(x)) { return x; }
  return log(x);
}
fn k_log2(x: f32) -> f32 {
  if (x == 0.0f) { return -k_inf(); }
  if (k_isinf(x)) { return x; }
  return log2(x);
}
fn k_sqrt(x: f32) -> f32 {
  if (k_isnan(x) || x < 0.0f) { return k_nan(); }
  if (k_isinf(x)) { return x; }
  return sqrt(x);
}
fn k_sigmoid(x: f32) -> f32 { return 1.0f / (1.0f + k_exp(-x)); }
fn k_tanh(x: f32) -> f32 {
  if (k_isnan(x)) { return x; }
  let a = abs(x);
  var r: f32;
  if (a < 0.1f) {
    let z = x * x;
    return x + x * z * (-0.333333333f + z * (0.133333333f + z * (-0.053968254f + z * 0.0218694885f)));
  }
  if (a > 9.1f) { r = 1.0f; } else { let e = exp(2.0f * a); r = 1.0f - 2.0f / (e + 1.0f); }
  return select(r, -r, x < 0.0f);
}
fn k_sin_poly(r: f32) -> f32 { let z = r * r; return r + r * z * (-1.6666654611e-1f + z * (8.3321608736e-3f + z * -1.9515295891e-4f)); }
fn k_cos_poly(r: f32) -> f32 { let z = r * r; return 1.0f - 0.5f * z + z * z * (4.166664568298827e-2f + z * (-1.388731625493765e-3f + z * 2.443315711809948e-5f)); }
/** sin (which = 0) or cos (which = 1): Cody–Waite reduction by π/2 (exact for |x| < 2^16·π/2), quadrant polynomials. */
fn k_sincos(x: f32, which: u32) -> f32 {
  if (k_isnan(x) || k_isinf(x)) { return k_nan(); }
  if (abs(x) > 65536.0f) { return select(sin(x), cos(x), which == 1u); }
  let q = round(x * 0.636619772f);
  let r = ((x - q * 1.5703125f) - q * 4.837512969970703125e-4f) - q * 7.549789954891882e-8f;
  let n = (bitcast<u32>(i32(q)) + which) & 3u;
  let s = k_sin_poly(r);
  let c = k_cos_poly(r);
  if (n == 0u) { return s; }
  if (n == 1u) { return c; }
  if (n == 2u) { return -s; }
  return -c;
}
fn k_sin(x: f32) -> f32 { return k_sincos(x, 0u); }
fn k_cos(x: f32) -> f32 { return k_sincos(x, 1u); }
fn k_erf(x: f32) -> f32 {
  if (k_isnan(x)) { return x; }
  let z = abs(x);
  if (z < 0.5f) {
    let t = x * x;
    return x * (1.12837917f + t * (-0.376126389f + t * (0.112837917f + t * (-0.0268661706f + t * (0.00522397763f + t * (-0.000854832702f + t * 0.00012055333f))))));
  }
  let t = 1.0f / (1.0f + 0.5f * z);
  let y = t * exp(-z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f)))))))));
  let r = 1.0f - y;
  return select(r, -r, x < 0.0f);
}
/** C pow: pow(1, y) = pow(x, 0) = 1, pow(-1, ±inf) = 1, negative bases with integer exponents. */
fn k_pow(a: f32, b: f32) -> f32 {
  if (a == 1.0f || b == 0.0f) { return 1.0f; }
  if (k_isnan(a) || k_isnan(b)) { return k_nan(); }
  if (b == 2.0f) { return a * a; }
  if (b == 1.0f) { return a; }
  let ab = abs(a);
  let neg = k_signbit(a);
  let bint = !k_isinf(b) && floor(b) == b;
  if (neg && !bint && !k_isinf(b) && ab != 0.0f && !k_isinf(a)) { return k_nan(); }
  var m: f32;
  if (k_isinf(b)) {
    if (ab == 1.0f) { return 1.0f; }
    m = select(select(k_inf(), 0.0f, b > 0.0f), select(0.0f, k_inf(), b > 0.0f), ab > 1.0f);
  } else if (ab == 0.0f) {
    m = select(k_inf(), 0.0f, b > 0.0f);
  } else if (k_isinf(ab)) {
    m = select(0.0f, k_inf(), b > 0.0f);
  } else {
    m = exp2(b * log2(ab));
  }
  let odd = bint && abs(b) < 16777216.0f && fract(b * 0.5f) != 0.0f;
  return select(m, -m, neg && odd);
}
/** C fmod, exact: long division of |a| by |b| in powers of two (each subtraction is exact by Sterbenz). */
fn k_fmod(a: f32, b: f32) -> f32 {
  if (k_isnan(a) || k_isnan(b) || k_isinf(a) || b == 0.0f) { return k_nan(); }
  if (k_isinf(b)) { return a; }
  var x = abs(a);
  let y = abs(b);
  if (x < y) { return a; }
  var t = y;
  for (var i = 0; i < 300; i++) { if (t > x * 0.5f) { break; } t = t * 2.0f; }
  for (var i = 0; i < 300; i++) { if (t < y) { break; } if (x >= t) { x = x - t; } t = t * 0.5f; }
  return select(x, -x, k_signbit(a));
}

fn k_divi(a: i32, b: i32) -> i32 { if (b == 0i) { return 0i; } if (b == -1i) { return bitcast<i32>(0u - bitcast<u32>(a)); } return a / b; }
fn k_modi(a: i32, b: i32) -> i32 { if (b == 0i || b == -1i) { return 0i; } return a % b; }
fn k_divu(a: u32, b: u32) -> u32 { if (b == 0u) { return 0u; } return a / b; }
fn k_modu(a: u32, b: u32) -> u32 { if (b == 0u) { return 0u; } return a % b; }
fn k_f2i(x: f32) -> i32 {
  if (k_isnan(x)) { return 0i; }
  if (x >= 2147483647.0f) { return 2147483647i; }
  if (x <= -2147483648.0f) { return bitcast<i32>(0x80000000u); }
  return i32(x);
}
fn k_f2u(x: f32) -> u32 {
  if (k_isnan(x) || x <= 0.0f) { return 0u; }
  if (x >= 4294967295.0f) { return 4294967295u; }
  return u32(x);
}

fn k_bf16_to_f32(h: u32) -> f32 { return bitcast<f32>(h << 16u); }
fn k_f32_to_bf16(x: f32) -> u32 {
  if (k_isnan(x)) { return 0x7fc0u; }
  var b = bitcast<u32>(x);
  b = b + 0x7fffu + ((b >> 16u) & 1u);
  return b >> 16u;
}
fn k_f16_to_f32(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { let v = f32(m) * 5.9604644775390625e-8f; return select(v, -v, s != 0u); }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}
fn k_f32_to_f16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let s = (b >> 16u) & 0x8000u;
  if (k_isnan(x)) { return 0x7e00u; }
  let a = abs(x);
  if (a >= 65520.0f) { return s | 0x7c00u; }
  if (a < 2.98023223876953125e-8f) { return s; }
  if (a < 6.103515625e-5f) { return s | u32(round(a * 16777216.0f)); }
  let ab = bitcast<u32>(a);
  var e = (ab >> 23u) - 112u;
  let m = ab & 0x7fffffu;
  var mh = m >> 13u;
  let rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (mh & 1u) != 0u)) { mh = mh + 1u; if (mh == 0x400u) { mh = 0u; e = e + 1u; } }
  if (e >= 31u) { return s | 0x7c00u; }
  return s | (e << 10u) | mh;
}
fn k_round_bf16(x: f32) -> f32 { return k_bf16_to_f32(k_f32_to_bf16(x)); }
fn k_round_f16(x: f32) -> f32 { return k_f16_to_f32(k_f32_to_f16(x)); }

fn k_mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}
fn k_philox(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c0 = ctr.x; var c1 = ctr.y; var c2 = ctr.z; var c3 = ctr.w;
  var k0 = key.x; var k1 = key.y;
  for (var r = 0; r < 10; r++) {
    if (r > 0) { k0 = k0 + 0x9e3779b9u; k1 = k1 + 0xbb67ae85u; }
    let hi0 = k_mulhi(0xd2511f53u, c0); let lo0 = 0xd2511f53u * c0;
    let hi1 = k_mulhi(0xcd9e8d57u, c2); let lo1 = 0xcd9e8d57u * c2;
    let n0 = hi1 ^ c1 ^ k0; let n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  return vec4<u32>(c0, c1, c2, c3);
}
fn k_uniform(s0: u32, s1: u32, stream: u32, i: u32, bits: u32) -> f32 {
  let w = k_philox(vec4<u32>(i >> 2u, stream, 0u, 0u), vec2<u32>(s0, s1));
  return ldexp(f32(w[i & 3u] >> (32u - bits)), -i32(bits));
}
fn k_normal(s0: u32, s1: u32, stream: u32, i: u32) -> f32 {
  let w = k_philox(vec4<u32>(i >> 2u, stream, 0u, 0u), vec2<u32>(s0, s1));
  let k = i & 3u;
  let p = k >> 1u;
  let u1 = f32((w[2u * p] >> 8u) + 1u) * 5.9604644775390625e-8f;
  let u2 = f32(w[2u * p + 1u] >> 8u) * 5.9604644775390625e-8f;
  let r = sqrt(-2.0f * k_log(u1));
  let a = 6.28318530717958647f * u2;
  return r * select(k_cos(a), k_sin(a), (k & 1u) != 0u);
}
`;

/**
 * @file Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11; Random123) and the exact
 * recipe every backend uses to turn its words into uniform and normal floats, so that the same seed
 * gives the same numbers on cpu, wgsl and cuda.
 *
 * For a random op with seed (s0, s1) and stream id `stream`, element i (row-major) uses the Philox
 * block j = floor(i / 4) with counter (j, stream, 0, 0) and key (s0, s1), giving words w0..w3:
 *   uniform: u = (w[i mod 4] >>> (32 − m)) · 2^−m ∈ [0, 1), m = the significand bits of the dtype
 *            (24 for f32, 11 for f16, 8 for bf16), so u is exact in the dtype and never rounds to 1
 *   normal:  k = i mod 4, p = floor(k / 2),
 *            u1 = ((w[2p] >>> 8) + 1) · 2^-24 ∈ (0, 1],  u2 = (w[2p+1] >>> 8) · 2^-24,
 *            z = sqrt(-2 ln u1) · (k even ? cos(2π u2) : sin(2π u2))     (Box–Muller)
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two u32. */
export function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32 with `rounds` rounds (10 is the standard); returns the four output words. */
export function philox4x32(ctr: readonly number[], key: readonly number[], rounds = 10, out = new Uint32Array(4)): Uint32Array {
  let c0 = ctr[0]! >>> 0, c1 = ctr[1]! >>> 0, c2 = ctr[2]! >>> 0, c3 = ctr[3]! >>> 0;
  let k0 = key[0]! >>> 0, k1 = key[1]! >>> 0;
  for (let r = 0; r < rounds; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi32(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  return out;
}

const TWO_M24 = 2 ** -24;

/** Significand bits used for uniform floats of each dtype. */
export const UNIFORM_BITS = { f32: 24, f16: 11, bf16: 8 } as const;

/** Fill `out` with the uniform stream of (seed, stream), elements 0..out.length-1, with `bits` bits each. */
export function fillUniform(out: { length: number; [i: number]: number }, s0: number, s1: number, stream: number, bits = 24): void {
  const w = new Uint32Array(4);
  const key = [s0, s1];
  const scale = 2 ** -bits;
  for (let j = 0; j * 4 < out.length; j++) {
    philox4x32([j, stream, 0, 0], key, 10, w);
    for (let k = 0; k < 4 && j * 4 + k < out.length; k++) out[j * 4 + k] = (w[k]! >>> (32 - bits)) * scale;
  }
}

/** Fill `out` with the normal stream of (seed, stream). */
export function fillNormal(out: { length: number; [i: number]: number }, s0: number, s1: number, stream: number): void {
  const w = new Uint32Array(4);
  const key = [s0, s1];
  for (let j = 0; j * 4 < out.length; j++) {
    philox4x32([j, stream, 0, 0], key, 10, w);
    for (let k = 0; k < 4 && j * 4 + k < out.length; k++) {
      const p = k >> 1;
      const u1 = ((w[2 * p]! >>> 8) + 1) * TWO_M24;
      const u2 = (w[2 * p + 1]! >>> 8) * TWO_M24;
      const r = Math.sqrt(-2 * Math.log(u1));
      out[j * 4 + k] = r * (k & 1 ? Math.sin(2 * Math.PI * u2) : Math.cos(2 * Math.PI * u2));
    }
  }
}

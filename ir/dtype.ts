/**
 * @file Element types of Kiln tensors, their sizes, and exact rounding to the narrow float formats.
 */

export const DTYPES = ['f32', 'f16', 'bf16', 'i32', 'u32', 'bool'] as const;
export type DType = (typeof DTYPES)[number];
export type FloatDType = 'f32' | 'f16' | 'bf16';

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}
export function isFloat(d: DType): d is FloatDType {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}
export function isInt(d: DType): boolean {
  return d === 'i32' || d === 'u32';
}
/** Bytes per element in device memory (bool is stored as one byte on the host, four on GPUs). */
export function byteSize(d: DType): number {
  switch (d) {
    case 'f16':
    case 'bf16':
      return 2;
    case 'bool':
      return 1;
    default:
      return 4;
  }
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** f32 bits of x (after rounding x to f32). */
export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0]!;
}
export function f32FromBits(bits: number): number {
  u32buf[0] = bits >>> 0;
  return f32buf[0]!;
}

/** Round a double to the nearest bfloat16 (ties to even, one rounding), returned as a number. */
export function roundBf16(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}
export function f32ToBf16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  let b = f32Bits(x);
  // Round the double to f32 *to odd* first (24 >= 8 + 2 bits), so that rounding that to bf16 to
  // nearest-even is a single correct rounding of the double (no double-rounding error).
  const r = f32FromBits(b);
  if (r !== x && Number.isFinite(x)) {
    if (Math.abs(r) > Math.abs(x)) b -= 1;
    b |= 1;
  }
  // Round to nearest even on the 16 dropped bits.
  const rounded = b + 0x7fff + ((b >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}
export function bf16BitsToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

/** Round an f64 to the nearest IEEE half (ties to even), returned as a number. */
export function roundF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}
export function f32ToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // overflow (65520 rounds up to inf)
  if (a < 2 ** -24 * 0.5) return sign; // underflow to zero (half of the smallest subnormal, ties to even -> 0)
  if (a < 2 ** -14) {
    // subnormal: value = m * 2^-24
    const m = roundHalfEven(a / 2 ** -24);
    return sign | m; // m may reach 1024, which is the smallest normal: correct encoding
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Round a float to what dtype `d` can hold (identity for f32 storage and integer types handled elsewhere). */
export function roundTo(d: FloatDType, x: number): number {
  switch (d) {
    case 'f32':
      return Math.fround(x);
    case 'f16':
      return roundF16(x);
    case 'bf16':
      return roundBf16(x);
  }
}

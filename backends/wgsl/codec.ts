/**
 * @file Host values ↔ the device layout of the WGSL backend: f32/i32/u32 as 32-bit words, bool as a
 * 32-bit 0/1 word, f16/bf16 as 16-bit words (round to nearest even), padded to whole 32-bit words.
 */
import { type DType, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../ir/dtype.ts';

export const deviceByteSize = (d: DType) => (d === 'f16' || d === 'bf16' ? 2 : 4);

const F32_ = new Float32Array(1), U32_ = new Uint32Array(F32_.buffer);
/**
 * f32ToF16Bits for a value that is an f32 (round to nearest even from its bits, no Math.log2: about 7×
 * faster, for uploads of large f16 tensors; test/backends/wgslCodec.test.ts checks it against f32ToF16Bits).
 */
export function f16BitsOfF32(x: number): number {
  F32_[0] = x;
  const b = U32_[0]!;
  const s = (b >>> 16) & 0x8000, e = (b >>> 23) & 0xff, m = b & 0x7fffff;
  if (e === 0xff) return m ? 0x7e00 : s | 0x7c00;
  const ee = e - 112; // the f16 exponent field
  if (ee >= 31) return s | 0x7c00;
  if (ee <= 0) {
    // f16 subnormal: value / 2^-24 = (m | 2^23) >> (14 - ee), rounded to nearest even.
    if (ee < -10) return s;
    const mm = m | 0x800000, shift = 14 - ee;
    let r = mm >>> shift;
    const rem = mm & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return s | r;
  }
  let r = (ee << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++; // a carry into the exponent is right (up to inf)
  return s | r;
}

/** Device bytes of `values` (length a multiple of 4). */
export function encodeValues(dtype: DType, values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  const words = Math.ceil((n * deviceByteSize(dtype)) / 4);
  const buf = new ArrayBuffer(words * 4);
  switch (dtype) {
    case 'f32': new Float32Array(buf).set(values); break;
    case 'i32': { const a = new Int32Array(buf); for (let i = 0; i < n; i++) a[i] = values[i]!; break; }
    case 'u32': { const a = new Uint32Array(buf); for (let i = 0; i < n; i++) a[i] = values[i]!; break; }
    case 'bool': { const a = new Uint32Array(buf); for (let i = 0; i < n; i++) a[i] = values[i] ? 1 : 0; break; }
    case 'f16': {
      const a = new Uint16Array(buf);
      // Host f16 tensors hold f32 arrays: their values are f32s, converted from their bits.
      if (values instanceof Float32Array) for (let i = 0; i < n; i++) a[i] = f16BitsOfF32(values[i]!);
      else for (let i = 0; i < n; i++) a[i] = f32ToF16Bits(values[i]!);
      break;
    }
    case 'bf16': { const a = new Uint16Array(buf); for (let i = 0; i < n; i++) a[i] = f32ToBf16Bits(values[i]!); break; }
  }
  return new Uint8Array(buf);
}

/** `n` host values from device bytes at `byteOffset` of `buf`. */
export function decodeValues(dtype: DType, buf: ArrayBuffer, byteOffset: number, n: number): number[] {
  const out = new Array<number>(n);
  switch (dtype) {
    case 'f32': { const a = new Float32Array(buf, byteOffset, n); for (let i = 0; i < n; i++) out[i] = a[i]!; break; }
    case 'i32': { const a = new Int32Array(buf, byteOffset, n); for (let i = 0; i < n; i++) out[i] = a[i]!; break; }
    case 'u32': { const a = new Uint32Array(buf, byteOffset, n); for (let i = 0; i < n; i++) out[i] = a[i]!; break; }
    case 'bool': { const a = new Uint32Array(buf, byteOffset, n); for (let i = 0; i < n; i++) out[i] = a[i] ? 1 : 0; break; }
    case 'f16': { const a = new Uint16Array(buf, byteOffset, n); for (let i = 0; i < n; i++) out[i] = f16BitsToF32(a[i]!); break; }
    case 'bf16': { const a = new Uint16Array(buf, byteOffset, n); for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(a[i]!); break; }
  }
  return out;
}

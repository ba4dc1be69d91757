/**
 * @file Host values ↔ the device layout of the WGSL backend: f32/i32/u32 as 32-bit words, bool as a
 * 32-bit 0/1 word, f16/bf16 as 16-bit words (round to nearest even), padded to whole 32-bit words.
 */
import { type DType, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../ir/dtype.ts';

export const deviceByteSize = (d: DType) => (d === 'f16' || d === 'bf16' ? 2 : 4);

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
    case 'f16': { const a = new Uint16Array(buf); for (let i = 0; i < n; i++) a[i] = f32ToF16Bits(values[i]!); break; }
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

/**
 * The WGSL backend's fast f16 encoding (backends/wgsl/codec.ts f16BitsOfF32, used for f32-array
 * uploads) equals ir/dtype.ts f32ToF16Bits bit for bit: on the edge cases (±0, ±inf, NaN, the f16 max
 * and its rounding boundary 65520, subnormals and the half-way points around them, f32 subnormals), on
 * every 997th f32 bit pattern and on 10^6 random ones.
 */
import { describe, expect, it } from 'vitest';
import { encodeValues, f16BitsOfF32 } from '../../backends/wgsl/codec.ts';
import { f32ToF16Bits } from '../../ir/dtype.ts';
import { mulberry32 } from '../../runtime/prng.ts';

describe('f16BitsOfF32', () => {
  it('equals f32ToF16Bits on f32 values', () => {
    const edge = [0, -0, 1, -1, 65504, 65519, 65520, 65536, 1e9, -1e9, Infinity, -Infinity, NaN, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -26,
      2 ** -14, 2 ** -14 * (1 - 2 ** -11), 3 * 2 ** -26, 5 * 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -149, 1e-40, -3 * 2 ** -25];
    const bad: string[] = [];
    const check = (x: number) => {
      const f = Math.fround(x);
      if (f16BitsOfF32(f) !== f32ToF16Bits(f) && bad.length < 5) bad.push(`${f}: ${f16BitsOfF32(f).toString(16)} vs ${f32ToF16Bits(f).toString(16)}`);
    };
    edge.forEach(check);
    const u = new Uint32Array(1), f = new Float32Array(u.buffer);
    for (let b = 0; b < 2 ** 32; b += 997) { u[0] = b; check(f[0]!); }
    const rnd = mulberry32(1);
    for (let i = 0; i < 1e6; i++) { u[0] = (rnd() * 2 ** 32) >>> 0; check(f[0]!); }
    expect(bad).toEqual([]);
  }, 60_000);

  it('encodeValues gives the same bytes for an f32 array and a number array', () => {
    const v = Array.from({ length: 1001 }, (_, i) => Math.fround(Math.sin(i) * 70000 * 2 ** -((i % 40))));
    expect(encodeValues('f16', Float32Array.from(v))).toEqual(encodeValues('f16', v));
  });
});

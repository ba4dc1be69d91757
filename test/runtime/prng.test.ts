/**
 * The host PRNG (runtime/prng.ts). Seeded test data everywhere (random graphs, gradient checks, MLP
 * data) and the Fashion-MNIST shuffle depend on its exact sequence, so the first outputs are pinned:
 * the values were computed by an independent Python transcription of mulberry32 (32-bit unsigned
 * arithmetic), not by this code.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../runtime/prng.ts';

const draw = (seed: number, n: number) => {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => r());
};

describe('mulberry32', () => {
  it('produces the reference sequence (outputs × 2^32)', () => {
    expect(draw(0, 4).map((v) => v * 2 ** 32)).toEqual([1144304738, 1416247, 958946056, 627933444]);
    expect(draw(1, 4).map((v) => v * 2 ** 32)).toEqual([2693262067, 11749833, 2265367787, 4213581821]);
    expect(draw(0xdeadbeef, 4).map((v) => v * 2 ** 32)).toEqual([4043151706, 1147597007, 3315858022, 1538288752]);
  });

  it('is deterministic, reads the seed as uint32, and stays in [0, 1)', () => {
    expect(draw(5, 100)).toEqual(draw(5, 100));
    expect(draw(-1, 8)).toEqual(draw(0xffffffff, 8));
    const xs = draw(7, 10_000);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    // Uniform: mean 1/2 with standard error 1/sqrt(12·10⁴) ≈ 0.0029; 5 standard errors.
    expect(Math.abs(xs.reduce((a, b) => a + b, 0) / xs.length - 0.5)).toBeLessThan(0.015);
  });
});

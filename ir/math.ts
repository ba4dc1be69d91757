/**
 * @file Scalar math the IR's ops need and JavaScript lacks, accurate to double precision
 * (the CPU backend's f64 mode is used for gradient checks): erf, and sign.
 */

const TWO_OVER_SQRT_PI = 1.1283791670955126;

/**
 * Error function. For |x| < 6 it sums erf(x) = 2/√π · e^(−x²) · Σₙ (2x²)ⁿ · x / (1·3·…·(2n+1)),
 * whose terms are all positive (no cancellation); beyond, erf(x) = ±1 to double precision.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  const x2 = a * a;
  let term = a;
  let sum = a;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

/**
 * @file Scalar math the IR's ops need and JavaScript lacks, accurate to double precision
 * (the CPU backend's f64 mode is used for gradient checks): erf and erfc.
 */

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const INV_SQRT_PI = 0.5641895835477563;

/**
 * erfc(x) for x >= 2 by the continued fraction
 *   erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
 * evaluated bottom-up (120 levels: converged to double precision for x >= 2).
 */
function erfcLarge(x: number): number {
  let f = x;
  for (let n = 120; n >= 1; n--) f = x + n / 2 / f;
  return (Math.exp(-x * x) * INV_SQRT_PI) / f;
}

/**
 * Error function. For |x| < 2 the series erf(x) = 2/√π · e^(−x²) · Σₙ (2x²)ⁿ · x / (1·3·…·(2n+1))
 * (all terms positive, no cancellation); for |x| >= 2, 1 − erfc(|x|) with erfc from its continued
 * fraction. Odd (erf(−0) = −0), monotone, and within an ulp or two of the true value.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  let r: number;
  if (a >= 2) {
    r = a >= 6.5 ? 1 : 1 - erfcLarge(a);
  } else {
    const x2 = a * a;
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (2 * x2) / (2 * n + 1);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    r = TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
  }
  return x < 0 || Object.is(x, -0) ? -r : r;
}

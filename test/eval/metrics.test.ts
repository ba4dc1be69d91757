/**
 * Evaluation metrics (runtime/eval/*): the symmetric eigen-decomposition (spectrum, eigenvectors, orthogonality, the eigenvalues-only mode), the Fréchet distance against
 * closed forms (1-D, diagonal, commuting and a hand-computed 2×2 case) and an independent f64
 * Denman–Beavers square root on a non-commuting case, and PSNR / SSIM against known values.
 */
import { describe, expect, it } from 'vitest';
import { hostTensor } from '../../ir/tensor.ts';
import { gaussianNoise } from '../../models/flowMatching.ts';
import { featureStats, frechetDistance, pivotedCholesky, traceSqrtProduct } from '../../runtime/eval/frechet.ts';
import { psnr, ssim } from '../../runtime/eval/imageMetrics.ts';
import { symmetricEigen, symmetricFunction } from '../../runtime/eval/symmetricEigen.ts';

const matmul = (a: Float64Array, b: Float64Array, n: number) => {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j]! += a[i * n + k]! * b[k * n + j]!;
  return c;
};
const transpose = (a: Float64Array, n: number) => Float64Array.from(a, (_, idx) => a[(idx % n) * n + Math.floor(idx / n)]!);
/** A random orthogonal matrix (Gram–Schmidt of seeded noise). */
function orthogonal(n: number, seed: number): Float64Array {
  const q = Float64Array.from(gaussianNoise([n, n], seed).data as Float32Array);
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += q[i * n + j]! * q[i * n + k]!;
      for (let i = 0; i < n; i++) q[i * n + j]! -= d * q[i * n + k]!;
    }
    let s = 0;
    for (let i = 0; i < n; i++) s += q[i * n + j]! ** 2;
    for (let i = 0; i < n; i++) q[i * n + j]! /= Math.sqrt(s);
  }
  return q;
}
/** Q·diag(d)·Qᵀ */
const spectral = (q: Float64Array, d: number[], n: number) => matmul(matmul(q, Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? d[i / (n + 1)]! : 0)), n), transpose(q, n), n);
const stats = (mean: number[], cov: Float64Array) => ({ dim: mean.length, mean: Float64Array.from(mean), cov });

describe('symmetric eigen-decomposition', () => {
  it('recovers the spectrum and A·v = λ·v of a random symmetric matrix (f64 accuracy)', () => {
    const n = 12, q = orthogonal(n, 1), d = Array.from({ length: n }, (_, i) => (i - 4) * 0.7 + 1e-3 * i);
    const a = spectral(q, d, n);
    const { values, vectors } = symmetricEigen(a, n);
    const sorted = [...d].sort((x, y) => x - y);
    for (let i = 0; i < n; i++) expect(Math.abs(values[i]! - sorted[i]!)).toBeLessThan(1e-12);
    const av = matmul(a, vectors, n);
    for (let i = 0; i < n * n; i++) expect(Math.abs(av[i]! - vectors[i]! * values[i % n]!)).toBeLessThan(1e-12);
  });
});

describe('symmetric eigen-decomposition (Householder + QL)', () => {
  it('n = 80 with a repeated eigenvalue and a null space: spectrum, A·V = V·Λ, VᵀV = I; eigenvalues alone agree', () => {
    const n = 80, q = orthogonal(n, 3);
    const d = Array.from({ length: n }, (_, i) => (i < 20 ? 0 : i < 30 ? 2.5 : Math.sin(i) * 3));
    const a = spectral(q, d, n);
    const { values, vectors } = symmetricEigen(a, n);
    const sorted = [...d].sort((x, y) => x - y);
    for (let i = 0; i < n; i++) expect(Math.abs(values[i]! - sorted[i]!), `λ${i}`).toBeLessThan(1e-12);
    const av = matmul(a, vectors, n), vtv = matmul(transpose(vectors, n), vectors, n);
    for (let i = 0; i < n * n; i++) {
      expect(Math.abs(av[i]! - vectors[i]! * values[i % n]!)).toBeLessThan(1e-12);
      expect(Math.abs(vtv[i]! - (i % (n + 1) === 0 ? 1 : 0))).toBeLessThan(1e-12);
    }
    const only = symmetricEigen(a, n, { vectors: false });
    expect(only.vectors.length).toBe(0);
    for (let i = 0; i < n; i++) expect(Math.abs(only.values[i]! - values[i]!), `λ${i} without vectors`).toBeLessThan(1e-12);
  });
  it('1×1, diagonal, and an asymmetric matrix is refused', () => {
    expect(Array.from(symmetricEigen([3], 1).values)).toEqual([3]);
    expect(Array.from(symmetricEigen([2, 0, 0, 0, -1, 0, 0, 0, 5], 3).values)).toEqual([-1, 2, 5]);
    expect(() => symmetricEigen([1, 2, 3, 4], 2)).toThrow(/not symmetric at \(0, 1\)/);
  });
});

describe('Fréchet distance', () => {
  it('1-D: (μ₁ − μ₂)² + (σ₁ − σ₂)²', () => {
    expect(frechetDistance(stats([1], Float64Array.of(4)), stats([-2], Float64Array.of(9)))).toBeCloseTo(9 + 1, 12);
  });
  it('diagonal and commuting covariances: ‖Δμ‖² + Σ (√a − √b)²', () => {
    const n = 6, a = [1, 2, 3, 0.5, 4, 0.1], b = [2, 2, 1, 0.2, 9, 0.4], mu1 = [0, 1, 2, 3, 4, 5], mu2 = [1, 1, 1, 1, 1, 1];
    const want = mu1.reduce((s, m, i) => s + (m - mu2[i]!) ** 2, 0) + a.reduce((s, x, i) => s + (Math.sqrt(x) - Math.sqrt(b[i]!)) ** 2, 0);
    const diag = (d: number[]) => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? d[i / (n + 1)]! : 0));
    expect(Math.abs(frechetDistance(stats(mu1, diag(a)), stats(mu2, diag(b))) - want)).toBeLessThan(1e-12 * want);
    const q = orthogonal(n, 2); // same eigenvectors: commuting
    expect(Math.abs(frechetDistance(stats(mu1, spectral(q, a, n)), stats(mu2, spectral(q, b, n))) - want)).toBeLessThan(1e-11 * want);
  });
  it('by hand: Σ₁ = I, Σ₂ = [[2, 1], [1, 2]] (eigenvalues 3, 1): 2 + 4 − 2(√3 + 1) = 4 − 2√3', () => {
    expect(frechetDistance(stats([0, 0], Float64Array.of(1, 0, 0, 1)), stats([0, 0], Float64Array.of(2, 1, 1, 2)))).toBeCloseTo(4 - 2 * Math.sqrt(3), 13);
  });
  it('non-commuting covariances: tr(Σ₁Σ₂)^{1/2} agrees with a Denman–Beavers square root of Σ₁Σ₂', () => {
    const n = 5;
    const c1 = spectral(orthogonal(n, 3), [0.2, 1, 2, 3, 5], n), c2 = spectral(orthogonal(n, 4), [0.5, 0.7, 1, 4, 6], n);
    // Denman–Beavers: Y → (Y + Z⁻¹)/2, Z → (Z + Y⁻¹)/2 from Y = A, Z = I converges to A^{1/2}.
    const inv = (m: Float64Array) => {
      const a = Float64Array.from(m), r = Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));
      for (let c = 0; c < n; c++) {
        let p = c;
        for (let i = c + 1; i < n; i++) if (Math.abs(a[i * n + c]!) > Math.abs(a[p * n + c]!)) p = i;
        for (let j = 0; j < n; j++) {
          [a[c * n + j], a[p * n + j]] = [a[p * n + j]!, a[c * n + j]!];
          [r[c * n + j], r[p * n + j]] = [r[p * n + j]!, r[c * n + j]!];
        }
        const d = a[c * n + c]!;
        for (let j = 0; j < n; j++) { a[c * n + j]! /= d; r[c * n + j]! /= d; }
        for (let i = 0; i < n; i++) {
          if (i === c) continue;
          const f = a[i * n + c]!;
          for (let j = 0; j < n; j++) { a[i * n + j]! -= f * a[c * n + j]!; r[i * n + j]! -= f * r[c * n + j]!; }
        }
      }
      return r;
    };
    let y = matmul(c1, c2, n), z = Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));
    for (let it = 0; it < 60; it++) {
      const [yi, zi] = [inv(y), inv(z)];
      [y, z] = [y.map((v, i) => 0.5 * (v + zi[i]!)), z.map((v, i) => 0.5 * (v + yi[i]!))];
    }
    let trSqrt = 0, tr = 0;
    for (let i = 0; i < n; i++) { trSqrt += y[i * (n + 1)]!; tr += c1[i * (n + 1)]! + c2[i * (n + 1)]!; }
    const want = tr - 2 * trSqrt;
    const got = frechetDistance(stats([0, 0, 0, 0, 0], c1), stats([0, 0, 0, 0, 0], c2));
    expect(want).toBeGreaterThan(1);
    expect(Math.abs(got - want)).toBeLessThan(1e-10 * want);
  });
  it('rank-deficient covariances (fewer samples than features): pivoted Cholesky PΣPᵀ = LpᵀLp at the rank (Lp upper trapezoidal), and tr(Σ₁Σ₂)^{1/2} equals the eigenvector route', () => {
    const n = 40, count = 13; // rank 12
    const s1 = featureStats(gaussianNoise([count, n], 7).data, count, n), s2 = featureStats((gaussianNoise([count, n], 8).data as Float32Array).map((v, i) => v * (1 + (i % n) / 10)), count, n);
    const { lp, rank, perm } = pivotedCholesky(s1.cov, n);
    expect(rank).toBe(count - 1);
    expect([...perm].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i));
    for (let k = 0; k < rank; k++) for (let j = 0; j < k; j++) expect(lp[k * n + j]).toBe(0);
    let err = 0, max = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let v = 0;
        for (let k = 0; k < rank; k++) v += lp[k * n + i]! * lp[k * n + j]!;
        err = Math.max(err, Math.abs(v - s1.cov[perm[i]! * n + perm[j]!]!));
        max = Math.max(max, Math.abs(s1.cov[i * n + j]!));
      }
    expect(err).toBeLessThan(1e-13 * max);
    // reference: S = Σ₁^{1/2} by eigenvectors, then the eigenvalues of S·Σ₂·S
    const sq = symmetricFunction(s1.cov, n, (l) => Math.sqrt(Math.max(l, 0)));
    const m = matmul(matmul(sq, s2.cov, n), sq, n);
    const sym = Float64Array.from(m, (v, idx) => 0.5 * (v + m[(idx % n) * n + Math.floor(idx / n)]!));
    const want = symmetricEigen(sym, n, { vectors: false }).values.reduce((t, l) => t + Math.sqrt(Math.max(l, 0)), 0);
    const got = traceSqrtProduct(s1.cov, s2.cov, n);
    expect(want).toBeGreaterThan(1);
    // the reference's own error: its n − 12 null eigenvalues come out at ~1e-15 and their square roots add ~1e-8 each
    expect(Math.abs(got - want)).toBeLessThan(1e-6 * want);
    expect(Math.abs(traceSqrtProduct(s1.cov, s1.cov, n) - s1.cov.reduce((t, v, i) => (i % (n + 1) === 0 ? t + v : t), 0))).toBeLessThan(1e-12 * want);
  });
  it('feature statistics: unbiased covariance; a set against itself is 0 (up to rounding)', () => {
    const st = featureStats([1, 2, 3, 6, 5, 10], 3, 2); // columns (1,3,5) and (2,6,10)
    expect(Array.from(st.mean)).toEqual([3, 6]);
    expect(Array.from(st.cov)).toEqual([4, 8, 8, 16]);
    // against the textbook two-pass sum, 13 samples (not a multiple of 4) of 70 values (over two row tiles)
    const g = gaussianNoise([13, 70], 6).data as Float32Array, big = featureStats(g, 13, 70);
    let worst = 0;
    for (let i = 0; i < 70; i++)
      for (let j = 0; j < 70; j++) {
        let v = 0;
        for (let r = 0; r < 13; r++) v += (g[r * 70 + i]! - big.mean[i]!) * (g[r * 70 + j]! - big.mean[j]!);
        worst = Math.max(worst, Math.abs(v / 12 - big.cov[i * 70 + j]!));
      }
    expect(worst).toBeLessThan(1e-14); // f64 sums of 13 terms of size ~1: rounding only
    const f = gaussianNoise([200, 8], 5).data;
    const s = featureStats(f, 200, 8);
    expect(Math.abs(frechetDistance(s, s))).toBeLessThan(1e-10);
  });
});

describe('PSNR and SSIM', () => {
  const img = (seed: number, shape = [1, 1, 16, 16]) => hostTensor('f32', shape, (gaussianNoise(shape, seed).data as Float32Array).map((v) => 0.5 + 0.1 * v));
  it('PSNR: a constant error e gives 10·log10(L²/e²)', () => {
    const a = img(1), b = hostTensor('f32', a.shape, (a.data as Float32Array).map((v) => v + 0.1));
    expect(psnr(a, b, 1)[0]).toBeCloseTo(20, 4); // f32 data: e = 0.1 ± 1e-7
    expect(psnr(a, a, 1)[0]).toBe(Infinity);
  });
  it('SSIM: identical images give 1; a constant shift c gives the luminance term alone', () => {
    const a = img(2);
    expect(ssim(a, a, { dataRange: 1 })[0]).toBeCloseTo(1, 12);
    // b = a + c: σ_b = σ_a, σ_ab = σ_a², so the contrast-structure term is 1 and
    // SSIM = mean over windows of (2μ(μ + c) + C1) / (μ² + (μ + c)² + C1).
    const c = 0.2, b = hostTensor('f32', a.shape, (a.data as Float32Array).map((v) => v + c));
    const s = ssim(a, b, { dataRange: 1 })[0]!;
    expect(s).toBeLessThan(1);
    const c1 = 1e-4, mu = 0.5; // local means stay near 0.5 (±0.03): the term is ~ flat there
    const near = (2 * mu * (mu + c) + c1) / (mu * mu + (mu + c) ** 2 + c1);
    expect(Math.abs(s - near)).toBeLessThan(3e-3);
  });
  it('SSIM by hand: 2×2 images with a 2×2 window (σ → ∞ is a box window: plain means)', () => {
    // x = [0, 1, 0, 1], y = [0, 1, 1, 1] (L = 1): μx = 0.5, μy = 0.75, σx² = 0.25, σy² = 0.1875, σxy = 0.125.
    const x = hostTensor('f32', [1, 1, 2, 2], [0, 1, 0, 1]), y = hostTensor('f32', [1, 1, 2, 2], [0, 1, 1, 1]);
    const c1 = 1e-4, c2 = 9e-4;
    const want = ((2 * 0.5 * 0.75 + c1) * (2 * 0.125 + c2)) / ((0.25 + 0.5625 + c1) * (0.25 + 0.1875 + c2));
    expect(ssim(x, y, { dataRange: 1, sigma: 1e6 })[0]).toBeCloseTo(want, 10);
  });
});

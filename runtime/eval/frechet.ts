/**
 * @file The Fréchet distance between two Gaussians fitted to feature sets (FID's statistic, as
 * pytorch-fid computes it: mean, unbiased covariance over N − 1):
 *   d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}
 * The last trace equals tr (Σ₁Σ₂)^{1/2}; writing it through the symmetric PSD matrix Σ₁^{1/2}Σ₂Σ₁^{1/2}
 * needs only symmetric eigen-decompositions (symmetricEigen.ts, f64), no general matrix square root;
 * eigenvalues below zero (rounding of a singular covariance) count as 0.
 */
import { KilnError } from '../../ir/errors.ts';
import { symmetricEigen, symmetricFunction } from './symmetricEigen.ts';

export interface GaussianStats {
  dim: number;
  count: number;
  mean: Float64Array;
  /** dim × dim, row-major. */
  cov: Float64Array;
}

/** Mean and unbiased covariance of `count` feature rows of `dim` values (row-major). */
export function featureStats(features: ArrayLike<number>, count: number, dim: number): GaussianStats {
  if (features.length !== count * dim) throw new KilnError(`featureStats: ${features.length} values are not ${count} rows of ${dim}`);
  if (count < 2) throw new KilnError(`featureStats: need at least 2 samples, got ${count}`);
  const mean = new Float64Array(dim);
  for (let r = 0; r < count; r++) for (let i = 0; i < dim; i++) mean[i]! += Number(features[r * dim + i]);
  for (let i = 0; i < dim; i++) mean[i]! /= count;
  const cov = new Float64Array(dim * dim);
  const d = new Float64Array(dim);
  for (let r = 0; r < count; r++) {
    for (let i = 0; i < dim; i++) d[i] = Number(features[r * dim + i]) - mean[i]!;
    for (let i = 0; i < dim; i++) {
      const di = d[i]!;
      if (di === 0) continue;
      for (let j = i; j < dim; j++) cov[i * dim + j]! += di * d[j]!;
    }
  }
  for (let i = 0; i < dim; i++)
    for (let j = i; j < dim; j++) {
      const v = cov[i * dim + j]! / (count - 1);
      cov[i * dim + j] = v;
      cov[j * dim + i] = v;
    }
  return { dim, count, mean, cov };
}

/** d² between two Gaussians (the FID value). */
export function frechetDistance(a: Pick<GaussianStats, 'dim' | 'mean' | 'cov'>, b: Pick<GaussianStats, 'dim' | 'mean' | 'cov'>): number {
  const n = a.dim;
  if (b.dim !== n) throw new KilnError(`frechetDistance: feature sizes differ (${a.dim} vs ${b.dim})`);
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (a.mean[i]! - b.mean[i]!) ** 2;
  let tr = 0;
  for (let i = 0; i < n; i++) tr += a.cov[i * n + i]! + b.cov[i * n + i]!;
  const s = symmetricFunction(a.cov, n, (l) => Math.sqrt(Math.max(l, 0)));
  // M = S·Σ₂·S (symmetric up to rounding: symmetrize)
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const sik = s[i * n + k]!;
      if (sik === 0) continue;
      for (let j = 0; j < n; j++) t[i * n + j]! += sik * b.cov[k * n + j]!;
    }
  // M = T·S with S symmetric: M[i][j] = Σ_k T[i][k]·S[j][k] (row-contiguous).
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let v = 0;
      const ti = i * n, sj = j * n;
      for (let k = 0; k < n; k++) v += t[ti + k]! * s[sj + k]!;
      m[i * n + j] = v;
    }
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (m[i * n + j]! + m[j * n + i]!);
      m[i * n + j] = v;
      m[j * n + i] = v;
    }
  let trSqrt = 0;
  for (const l of symmetricEigen(m, n, { vectors: false }).values) trSqrt += Math.sqrt(Math.max(l, 0));
  return d2 + tr - 2 * trSqrt;
}

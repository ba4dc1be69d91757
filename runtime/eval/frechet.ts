/**
 * @file The Fréchet distance between two Gaussians fitted to feature sets (FID's statistic, as
 * pytorch-fid computes it: mean, unbiased covariance over N − 1):
 *   d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁Σ₂)^{1/2}
 * tr (Σ₁Σ₂)^{1/2} is the sum of the square roots of the eigenvalues of Σ₁Σ₂, which are those of the
 * symmetric PSD matrix Lᵀ Σ₂ L for any factor Σ₁ = L Lᵀ. L comes from a Cholesky factorization with
 * diagonal pivoting that stops at pivots below n·ε·max diag Σ₁, so a singular covariance (fewer samples
 * than features) gives an n×r factor of its rank r, with no jitter added; then only the eigenvalues of an
 * r×r matrix are needed (symmetricEigen.ts without eigenvectors, f64): about ⅓n³ + 1½n³ + 1⅓n³
 * multiply-adds instead of a full eigen-decomposition with vectors and a matrix square root. Negative
 * eigenvalues (rounding) count as 0. The factor of Σ₁ is kept per stats object, so FID and its
 * real-vs-real floor (same real statistics) factor it once.
 */
import { KilnError } from '../../ir/errors.ts';
import { symmetricEigen } from './symmetricEigen.ts';

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
  // Upper triangle of Σ (x − μ)(x − μ)ᵀ, by tiles of TILE covariance rows (a tile stays in cache while
  // every sample passes over it), four samples at a time (a quarter of the loads and stores of the tile).
  const cov = new Float64Array(dim * dim);
  const centered = new Float64Array(4 * dim);
  const TILE = 32;
  for (let i0 = 0; i0 < dim; i0 += TILE) {
    const i1 = Math.min(dim, i0 + TILE);
    let r = 0;
    for (; r < count; r += 4) {
      const rows = Math.min(4, count - r);
      for (let q = 0; q < 4; q++)
        for (let j = i0; j < dim; j++) centered[q * dim + j] = q < rows ? Number(features[(r + q) * dim + j]) - mean[j]! : 0;
      for (let i = i0; i < i1; i++) {
        const a0 = centered[i]!, a1 = centered[dim + i]!, a2 = centered[2 * dim + i]!, a3 = centered[3 * dim + i]!, row = i * dim;
        for (let j = i; j < dim; j++) cov[row + j]! += a0 * centered[j]! + a1 * centered[dim + j]! + a2 * centered[2 * dim + j]! + a3 * centered[3 * dim + j]!;
      }
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

/** Σ = L Lᵀ with diagonal pivoting, L stored transposed (rank × n, row k = column k of L). */
interface CovFactor {
  readonly lt: Float64Array;
  readonly rank: number;
}

/**
 * Pivoted Cholesky of a symmetric PSD n×n matrix: at each step the largest remaining diagonal of the
 * Schur complement is the pivot; it stops when that is at most n·ε·max diag (the rank at rounding level).
 * Rows of Lᵀ keep the matrix's own index order (no permutation is applied).
 */
export function pivotedCholesky(a: Float64Array, n: number): CovFactor {
  const rest = new Float64Array(n), used = new Uint8Array(n);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) {
    rest[i] = a[i * n + i]!;
    maxDiag = Math.max(maxDiag, rest[i]!);
  }
  const tol = n * 2 ** -52 * maxDiag;
  const lt = new Float64Array(n * n);
  let k = 0;
  for (; k < n; k++) {
    let p = -1, best = tol;
    for (let i = 0; i < n; i++) if (!used[i] && rest[i]! > best) { best = rest[i]!; p = i; }
    if (p < 0) break;
    const row = k * n, piv = Math.sqrt(best);
    // column k of L: (A[p, :] − Σ_j L[p, j]·L[:, j]) / L[p, k], zero on the rows already pivoted
    for (let i = 0; i < n; i++) lt[row + i] = a[p * n + i]!;
    for (let j = 0; j < k; j++) {
      const c = lt[j * n + p]!;
      if (c === 0) continue;
      const rj = j * n;
      for (let i = 0; i < n; i++) lt[row + i]! -= c * lt[rj + i]!;
    }
    used[p] = 1;
    for (let i = 0; i < n; i++) {
      if (used[i]) { lt[row + i] = 0; continue; }
      const v = lt[row + i]! / piv;
      lt[row + i] = v;
      rest[i]! -= v * v;
    }
    lt[row + p] = piv;
  }
  return { lt: k === n ? lt : lt.slice(0, k * n), rank: k };
}

const factors = new WeakMap<Float64Array, CovFactor>();
function factorOf(cov: Float64Array, n: number): CovFactor {
  let f = factors.get(cov);
  if (!f) factors.set(cov, (f = pivotedCholesky(cov, n)));
  return f;
}

/** tr (Σ₁Σ₂)^{1/2} = Σ √λ(Lᵀ Σ₂ L) for Σ₁ = L Lᵀ. */
export function traceSqrtProduct(cov1: Float64Array, cov2: Float64Array, n: number): number {
  const { lt, rank: r } = factorOf(cov1, n);
  if (r === 0) return 0;
  // C = Lᵀ Σ₂ (r × n), row-contiguous: C[k, :] += L[i, k]·Σ₂[i, :]
  const c = new Float64Array(r * n);
  for (let k = 0; k < r; k++) {
    const ck = k * n;
    for (let i = 0; i < n; i++) {
      const l = lt[ck + i]!;
      if (l === 0) continue;
      const si = i * n;
      for (let j = 0; j < n; j++) c[ck + j]! += l * cov2[si + j]!;
    }
  }
  // M = C L (r × r, symmetric): M[k, l] = C[k, :]·Lᵀ[l, :]; the two triangles are averaged
  const m = new Float64Array(r * r);
  for (let k = 0; k < r; k++)
    for (let l = 0; l < r; l++) {
      let v = 0;
      const ck = k * n, ll = l * n;
      for (let j = 0; j < n; j++) v += c[ck + j]! * lt[ll + j]!;
      m[k * r + l] = v;
    }
  for (let k = 0; k < r; k++)
    for (let l = k + 1; l < r; l++) {
      const v = 0.5 * (m[k * r + l]! + m[l * r + k]!);
      m[k * r + l] = v;
      m[l * r + k] = v;
    }
  let t = 0;
  for (const l of symmetricEigen(m, r, { vectors: false }).values) t += Math.sqrt(Math.max(l, 0));
  return t;
}

/** d² between two Gaussians (the FID value). */
export function frechetDistance(a: Pick<GaussianStats, 'dim' | 'mean' | 'cov'>, b: Pick<GaussianStats, 'dim' | 'mean' | 'cov'>): number {
  const n = a.dim;
  if (b.dim !== n) throw new KilnError(`frechetDistance: feature sizes differ (${a.dim} vs ${b.dim})`);
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (a.mean[i]! - b.mean[i]!) ** 2;
  let tr = 0;
  for (let i = 0; i < n; i++) tr += a.cov[i * n + i]! + b.cov[i * n + i]!;
  const trSqrt = traceSqrtProduct(a.cov, b.cov, n);
  return d2 + tr - 2 * trSqrt;
}

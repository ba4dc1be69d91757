/**
 * @file The Fréchet distance between two Gaussians fitted to feature sets (FID's statistic, as
 * pytorch-fid computes it: mean, unbiased covariance over N − 1):
 *   d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁Σ₂)^{1/2}
 * tr (Σ₁Σ₂)^{1/2} is the sum of the square roots of the eigenvalues of Σ₁Σ₂, which are those of the
 * symmetric PSD matrix Lᵀ Σ₂ L for any factor Σ₁ = L Lᵀ. L comes from a Cholesky factorization with
 * diagonal pivoting that stops at pivots below n·ε·max diag Σ₁, so a singular covariance (fewer samples
 * than features) gives an n×r factor of its rank r, with no jitter added; then only the eigenvalues of an
 * r×r matrix are needed (symmetricEigen.ts without eigenvectors, f64): about ⅙n³ + ½n³ + ⅙n³ + ⅔n³
 * multiply-adds (factor, the two products, the tridiagonal reduction) instead of a full
 * eigen-decomposition with vectors and a matrix square root. Negative
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

/**
 * Σ = L Lᵀ with diagonal pivoting, in pivot order: P Σ Pᵀ = Lpᵀ Lp with Lp (rank × n) upper trapezoidal,
 * where index i of the permuted order is perm[i] of the matrix (the pivots first, then the rest).
 */
interface CovFactor {
  readonly lp: Float64Array;
  readonly rank: number;
  readonly perm: Int32Array;
}

/**
 * Pivoted Cholesky of a symmetric PSD n×n matrix (as LAPACK's pstrf): at each step the largest remaining
 * diagonal of the Schur complement is the pivot, swapped to the front; it stops when that is at most
 * n·ε·max diag (the rank at rounding level). Row k of Lp is computed left-looking over the indices not
 * yet pivoted only (⅙n³ multiply-adds at full rank, contiguous).
 */
export function pivotedCholesky(a: Float64Array, n: number): CovFactor {
  const rest = new Float64Array(n), perm = Int32Array.from({ length: n }, (_, i) => i);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) {
    rest[i] = a[i * n + i]!;
    maxDiag = Math.max(maxDiag, rest[i]!);
  }
  const tol = n * 2 ** -52 * maxDiag;
  const lp = new Float64Array(n * n);
  let k = 0;
  for (; k < n; k++) {
    let q = -1, best = tol;
    for (let i = k; i < n; i++) if (rest[perm[i]!]! > best) { best = rest[perm[i]!]!; q = i; }
    if (q < 0) break;
    if (q !== k) {
      [perm[k], perm[q]] = [perm[q]!, perm[k]!];
      for (let j = 0; j < k; j++) {
        const rj = j * n, t = lp[rj + k]!;
        lp[rj + k] = lp[rj + q]!;
        lp[rj + q] = t;
      }
    }
    const row = k * n, ap = perm[k]! * n;
    // Lp[k, i] = (Σ[p, perm[i]] − Σ_{j<k} Lp[j, k]·Lp[j, i]) / Lp[k, k] for i ≥ k
    for (let i = k; i < n; i++) lp[row + i] = a[ap + perm[i]!]!;
    for (let j = 0; j < k; j++) {
      const rj = j * n, c = lp[rj + k]!;
      if (c === 0) continue;
      for (let i = k; i < n; i++) lp[row + i]! -= c * lp[rj + i]!;
    }
    const piv = Math.sqrt(best);
    lp[row + k] = piv;
    for (let i = k + 1; i < n; i++) {
      const v = lp[row + i]! / piv;
      lp[row + i] = v;
      rest[perm[i]!]! -= v * v;
    }
  }
  return { lp: k === n ? lp : lp.slice(0, k * n), rank: k, perm };
}

const factors = new WeakMap<Float64Array, CovFactor>();
function factorOf(cov: Float64Array, n: number): CovFactor {
  let f = factors.get(cov);
  if (!f) factors.set(cov, (f = pivotedCholesky(cov, n)));
  return f;
}

/**
 * tr (Σ₁Σ₂)^{1/2} = Σ √λ(Lᵀ Σ₂ L) for Σ₁ = L Lᵀ. In pivot order Lᵀ is upper trapezoidal (Lp), so
 * C = Lp (PΣ₂Pᵀ) and M = C Lpᵀ need only the nonzero parts
 * (½n³ and ⅙n³ multiply-adds at full rank) and M's upper triangle (it is symmetric).
 */
export function traceSqrtProduct(cov1: Float64Array, cov2: Float64Array, n: number): number {
  const { lp, rank: r, perm } = factorOf(cov1, n);
  if (r === 0) return 0;
  // S = Σ₂ in pivot order
  const sp = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const src = perm[i]! * n, dst = i * n;
    for (let j = 0; j < n; j++) sp[dst + j] = cov2[src + perm[j]!]!;
  }
  // C = Lp S (r × n): C[k, :] = Σ_{i ≥ k} Lp[k, i]·S[i, :]
  const c = new Float64Array(r * n);
  for (let k = 0; k < r; k++) {
    const ck = k * n;
    for (let i = k; i < n; i++) {
      const l = lp[ck + i]!;
      if (l === 0) continue;
      const si = i * n;
      for (let j = 0; j < n; j++) c[ck + j]! += l * sp[si + j]!;
    }
  }
  // M = C Lpᵀ (r × r, symmetric): M[k, l] = Σ_{j ≥ l} C[k, j]·Lp[l, j], for l ≥ k
  const m = new Float64Array(r * r);
  for (let k = 0; k < r; k++)
    for (let l = k; l < r; l++) {
      let v = 0;
      const ck = k * n, ll = l * n;
      for (let j = l; j < n; j++) v += c[ck + j]! * lp[ll + j]!;
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

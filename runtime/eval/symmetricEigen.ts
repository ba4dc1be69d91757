/**
 * @file Eigen-decomposition of a real symmetric matrix in f64: Householder reduction to tridiagonal
 * form, then the implicit QL method with Wilkinson-style shifts (the EISPACK tred2/tql2 algorithms as
 * JAMA states them), O(n³) with row-contiguous inner loops (the transformations are kept transposed),
 * so a 2048-d covariance (FID) takes tens of seconds, not hours (the cyclic Jacobi method it replaces
 * needed ~140 s at n = 512 and scales worse). Backward stable: eigenvalues within ~n·ε·‖A‖.
 * `vectors: false` skips accumulating the eigenvectors (eigenvalues only: ~3x faster). Used by frechet.ts.
 */
import { KilnError } from '../../ir/errors.ts';

export interface SymmetricEigen {
  /** Eigenvalues, ascending. */
  values: Float64Array;
  /** Eigenvectors as columns of an n×n row-major matrix, in the order of `values` (empty without vectors). */
  vectors: Float64Array;
}

export function symmetricEigen(a: ArrayLike<number>, n: number, opts: { vectors?: boolean } = {}): SymmetricEigen {
  if (a.length !== n * n) throw new KilnError(`symmetricEigen: ${a.length} values are not a ${n}×${n} matrix`);
  const wantVectors = opts.vectors ?? true;
  // W = Vᵀ in JAMA's notation: W[j·n + k] = V[k][j] (A is symmetric, so W starts as A).
  const W = Float64Array.from(a);
  let norm = 0;
  for (let i = 0; i < n * n; i++) norm += W[i]! * W[i]!;
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++)
      if (Math.abs(W[i * n + j]! - W[j * n + i]!) > 1e-9 * Math.sqrt(norm) + 1e-300) throw new KilnError(`symmetricEigen: the matrix is not symmetric at (${i}, ${j})`);
  if (n === 0) return { values: new Float64Array(0), vectors: new Float64Array(0) };
  const d = new Float64Array(n), e = new Float64Array(n);
  tridiagonalize(W, n, d, e, wantVectors);
  diagonalize(W, n, d, e, wantVectors);
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => d[i]! - d[j]!);
  const values = Float64Array.from(order, (i) => d[i]!);
  const vectors = new Float64Array(wantVectors ? n * n : 0);
  if (wantVectors) order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = W[src * n + k]!;
  });
  return { values, vectors };
}

/** Householder reduction (tred2): diagonal in d, sub-diagonal in e[1..n−1]; W holds the transformation (transposed). */
function tridiagonalize(W: Float64Array, n: number, d: Float64Array, e: Float64Array, accumulate: boolean): void {
  const V = (k: number, j: number) => W[j * n + k]!;
  const setV = (k: number, j: number, v: number) => { W[j * n + k] = v; };
  for (let j = 0; j < n; j++) d[j] = V(n - 1, j);
  for (let i = n - 1; i > 0; i--) {
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V(i - 1, j);
        setV(i, j, 0);
        setV(j, i, 0);
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k]! /= scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        setV(j, i, f);
        const row = j * n; // W row j = column j of V
        g = e[j]! + W[row + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          const vkj = W[row + k]!;
          g += vkj * d[k]!;
          e[k]! += vkj * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j]! /= h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j]! -= hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        const row = j * n;
        for (let k = j; k <= i - 1; k++) W[row + k]! -= f * e[k]! + g * d[k]!;
        d[j] = V(i - 1, j);
        setV(i, j, 0);
      }
    }
    d[i] = h;
  }
  if (!accumulate) {
    // The tridiagonal's diagonal is left on W's diagonal (JAMA copies it out while accumulating).
    for (let j = 0; j < n; j++) d[j] = W[j * n + j]!;
    e[0] = 0;
    return;
  }
  for (let i = 0; i < n - 1; i++) {
    setV(n - 1, i, V(i, i));
    setV(i, i, 1);
    const h = d[i + 1]!;
    const col = (i + 1) * n; // W row i+1 = column i+1 of V
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = W[col + k]! / h;
      for (let j = 0; j <= i; j++) {
        const row = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += W[col + k]! * W[row + k]!;
        for (let k = 0; k <= i; k++) W[row + k]! -= g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) W[col + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V(n - 1, j);
    setV(n - 1, j, 0);
  }
  setV(n - 1, n - 1, 1);
  e[0] = 0;
}

/** Implicit QL on the tridiagonal (tql2): eigenvalues in d; with `accumulate`, W's rows become the eigenvectors. */
function diagonalize(W: Float64Array, n: number, d: Float64Array, e: Float64Array, accumulate: boolean): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0, tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n && Math.abs(e[m]!) > eps * tst1) m++;
    if (m === n) m = n - 1; // e[n−1] is 0, so this only guards rounding
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) throw new KilnError(`symmetricEigen: the QL iteration did not converge (eigenvalue ${l} of ${n})`);
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i]! -= h;
        f += h;
        p = d[m]!;
        let c = 1, c2 = c, c3 = c, s = 0, s2 = 0;
        const el1 = e[l + 1]!;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          if (accumulate) {
            const ri = i * n, ri1 = (i + 1) * n;
            for (let k = 0; k < n; k++) {
              const hk = W[ri1 + k]!;
              W[ri1 + k] = s * W[ri + k]! + c * hk;
              W[ri + k] = c * W[ri + k]! - s * hk;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}

/** f(A) = V·diag(f(λ))·Vᵀ of a symmetric matrix. */
export function symmetricFunction(a: ArrayLike<number>, n: number, f: (lambda: number) => number): Float64Array {
  const { values, vectors: V } = symmetricEigen(a, n);
  const fl = values.map(f);
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += V[i * n + k]! * fl[k]! * V[j * n + k]!;
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  return out;
}

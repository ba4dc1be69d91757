/**
 * @file Comparing arrays of numbers in tests: the largest magnitude, the largest difference, and the
 * normwise relative error max|a − b| / max(max|b|, floor) used by every golden comparison.
 */

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** max|a − b| / max(max|b|, floor): `floor` keeps gradients that are zero in exact arithmetic from dividing by noise. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  if (a.length !== b.length) throw new Error(`relErr: ${a.length} values compared with ${b.length}`);
  return maxAbsDiff(a, b) / Math.max(maxAbs(b), floor, 1e-30);
}

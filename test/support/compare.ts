/**
 * @file Comparing arrays of numbers in tests (the one place for it): the largest magnitude, the
 * largest difference, the normwise relative error max|a − b| / max(max|b|, floor) used by every
 * golden comparison, the per-element check of compiled against op-by-op results, and bit-for-bit equality.
 */
import type { HostTensor } from '../../ir/tensor.ts';

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

/**
 * First element where fused `got` and op-by-op `want` differ by more than f32 reordering explains:
 * |got − want| ≤ tol·(1 + |want|); equal values (infinities included) and two NaNs count as equal.
 */
export function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): string | undefined {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!, b = want[i]!;
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) continue;
    if (Math.abs(a - b) <= tol * (1 + Math.abs(b))) continue;
    return `[${i}] got ${a}, want ${b}`;
  }
  return undefined;
}

/** Elements outside a per-element bound: how many, the first few (compactly), and the worst |got − want| / bound. */
export interface BoundReport {
  readonly bad: number;
  readonly first: readonly string[];
  readonly worst: number;
}

/**
 * Check |got[i] − want[i]| ≤ bound(i) for every element (equal values and two NaNs always pass; a bound
 * of 0 asks for equality). Reports at most `show` mismatches as `[i] got a want b (|d| > bound)`.
 */
export function boundMismatches(got: ArrayLike<number>, want: ArrayLike<number>, bound: (i: number) => number, show = 4): BoundReport {
  if (got.length !== want.length) return { bad: 1, first: [`length ${got.length} vs ${want.length}`], worst: Infinity };
  let bad = 0, worst = 0;
  const first: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!, b = want[i]!;
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) continue;
    const d = Math.abs(a - b), t = bound(i);
    const r = t > 0 ? d / t : Infinity;
    worst = Math.max(worst, Number.isNaN(r) ? Infinity : r);
    if (d <= t) continue;
    bad++;
    if (first.length < show) first.push(`[${i}] got ${a} want ${b} (|d| ${d.toPrecision(3)} > ${t.toPrecision(3)})`);
  }
  return { bad, first, worst };
}

/** Bit-for-bit equality of two runs' outputs `a` against `b` (NaN equals NaN): the first differing element of each, as lines. */
export function sameBits(a: Readonly<Record<string, HostTensor>>, b: Readonly<Record<string, HostTensor>>): string[] {
  const bad: string[] = [];
  for (const [k, x] of Object.entries(b)) {
    const y = a[k];
    if (!y) {
      bad.push(`${k}: missing`);
      continue;
    }
    for (let i = 0; i < x.data.length; i++) {
      const p = x.data[i]!, q = y.data[i]!;
      if (!(p === q || (Number.isNaN(p) && Number.isNaN(q)))) {
        bad.push(`${k}[${i}]: ${q} vs ${p}`);
        break;
      }
    }
  }
  return bad;
}

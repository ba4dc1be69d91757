/**
 * @file Strides of index expressions measured at points: index(v + 1) − index(v) with the other
 * variables fixed. Unlike `affine` (expr.ts) this sees through div/mod, so a head-split layout such
 * as [3, B, H, S, D] read by channel (i/64 and i%64) still counts as contiguous along i where i%64
 * runs. Used by the tiling stage (which operand dim is contiguous, compiler/schedule/tiling.ts) and
 * the row-kernel mapping (compiler/schedule/rowMapping.ts).
 */
import type { Expr } from './types.ts';

/** An i32 index expression's value (truncating div/mod, as the kernel IR defines them), or undefined (a load: a gather). */
export function evalIndex(e: Expr, value: (name: string) => number): number | undefined {
  switch (e.k) {
    case 'const': return e.dtype === 'i32' ? e.v : undefined;
    case 'var': return value(e.name);
    case 'bin': {
      const a = evalIndex(e.a, value), b = evalIndex(e.b, value);
      if (a === undefined || b === undefined) return undefined;
      switch (e.op) {
        case 'add': return a + b;
        case 'sub': return a - b;
        case 'mul': return a * b;
        case 'div': return b === 0 ? undefined : Math.trunc(a / b);
        case 'mod': return b === 0 ? undefined : a % b;
        // The clamps of a concatenation's parts (max(i − n, 0), min(i, n − 1)).
        case 'max': return Math.max(a, b);
        case 'min': return Math.min(a, b);
        default: return undefined;
      }
    }
    default: return undefined;
  }
}

/** index(env with v + 1) − index(env) (unset variables are 0); undefined when the index is not an integer function of the variables. */
export function strideAt(e: Expr, v: string, env: ReadonlyMap<string, number>): number | undefined {
  const at = (x: number) => evalIndex(e, (n) => (n === v ? x : env.get(n) ?? 0));
  const a = at(env.get(v) ?? 0), b = at((env.get(v) ?? 0) + 1);
  return a === undefined || b === undefined ? undefined : b - a;
}

/**
 * Sample points for stride probes: every variable at 0, and every variable at the middle of its
 * extent (rounded down to a multiple of `align` and kept below extent − 1, so that v + 1 is in range).
 */
export function samplePoints(extents: ReadonlyMap<string, number>, align = 32): Array<Map<string, number>> {
  const zero = new Map<string, number>(), mid = new Map<string, number>();
  for (const [v, n] of extents) {
    zero.set(v, 0);
    const m = Math.floor(n / 2);
    mid.set(v, Math.max(0, Math.min(m - (m % align), n - 2)));
  }
  return [zero, mid];
}

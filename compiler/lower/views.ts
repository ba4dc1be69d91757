/**
 * @file Index maps of movement ops: given the index of an element of a view's result (one i32
 * expression per axis), the index into its operand. Chains of views compose by applying these maps
 * one after another; the index simplifier then collapses the div/mod arithmetic.
 * pad and concat also give validity conditions, with operand indices clamped into range so that
 * no load ever reads out of bounds (GPU-safe), and the value selected by the condition.
 */
import { I, bin, iadd, idiv, imod, imul, isub, linearIndex } from '../../ir/kernel/expr.ts';
import type { Expr } from '../../ir/kernel/types.ts';
import type { Shape } from '../../ir/shape.ts';
import { stridesOf } from '../../ir/shape.ts';

/** Index into an operand of shape `from` that is broadcast (numpy rules) to `to`, given `idx` over `to`. */
export function broadcastIndex(idx: readonly Expr[], from: Shape, to: Shape): Expr[] {
  const off = to.length - from.length;
  return from.map((d, i) => (d === 1 && to[off + i] !== 1 ? I.c(0) : idx[off + i]!));
}

/** reshape: linearize over the result shape, then unravel over the operand shape. */
export function reshapeIndex(idx: readonly Expr[], from: Shape, to: Shape): Expr[] {
  const lin = linearIndex(idx, stridesOf(to));
  const st = stridesOf(from);
  return from.map((d, i) => (d === 1 ? I.c(0) : imod(idx.length === 0 ? I.c(0) : idiv(lin, st[i]!), d)));
}

export function permuteIndex(idx: readonly Expr[], perm: readonly number[]): Expr[] {
  const out = new Array<Expr>(perm.length);
  perm.forEach((p, i) => (out[p] = idx[i]!));
  return out;
}

export function sliceIndex(idx: readonly Expr[], starts: readonly number[], steps: readonly number[]): Expr[] {
  return idx.map((x, i) => iadd(I.c(starts[i]!), imul(x, I.c(steps[i]!))));
}

export function clampIndex(x: Expr, n: number): Expr {
  return bin('min', bin('max', x, I.c(0)), I.c(Math.max(0, n - 1)));
}

/** pad: the operand index (clamped) and the condition that the element comes from the operand. */
export function padIndex(
  idx: readonly Expr[], before: readonly number[], after: readonly number[], from: Shape,
): { idx: Expr[]; valid: Expr | undefined } {
  let valid: Expr | undefined;
  const out = idx.map((x, i) => {
    const b = before[i]!;
    const y = isub(x, I.c(b));
    if (b === 0 && after[i] === 0) return y;
    const cond = bin('and', bin('ge', y, I.c(0)), bin('lt', y, I.c(from[i]!)));
    valid = valid ? bin('and', valid, cond) : cond;
    return clampIndex(y, from[i]!);
  });
  return { idx: out, valid };
}

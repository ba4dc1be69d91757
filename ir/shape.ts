/**
 * @file Static shapes: element counts, strides, numpy broadcasting, axis normalization.
 */
import { ShapeError } from './errors.ts';

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C-contiguous) strides in elements. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function shapeStr(s: Shape): string {
  return `[${s.join(',')}]`;
}

/** Numpy broadcasting of several shapes; returns undefined when they are incompatible. */
export function tryBroadcastShapes(...shapes: Shape[]): number[] | undefined {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    const off = rank - s.length;
    for (let i = 0; i < s.length; i++) {
      const d = s[i]!;
      const o = out[off + i]!;
      if (d === o || d === 1) continue;
      if (o === 1) out[off + i] = d;
      else return undefined;
    }
  }
  return out;
}

/** Can `from` be broadcast to `to` by numpy rules (right-aligned, 1 → n)? */
export function canBroadcastTo(from: Shape, to: Shape): boolean {
  if (from.length > to.length) return false;
  const off = to.length - from.length;
  return from.every((d, i) => d === 1 || d === to[off + i]);
}

/** Turn a possibly negative axis into 0..rank-1, or throw a ShapeError naming `op`. */
export function normAxis(op: string, axis: number, rank: number, operands: string[] = []): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank)
    throw new ShapeError(op, operands, `axis ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

export function isValidShape(s: unknown): s is number[] {
  return Array.isArray(s) && s.every((d) => Number.isInteger(d) && d >= 0);
}

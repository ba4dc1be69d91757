/**
 * @file Index arithmetic shared by the CPU kernels: for every element of a shape in row-major
 * order, the offset Σ index[d]·strides[d] into another buffer (strides may be 0 to broadcast).
 */
import { type Shape, numel, stridesOf } from '../../../ir/shape.ts';

/** Offsets Σ idx[d]·strides[d] + base for all multi-indices of `shape`, row-major. */
export function indexMap(shape: Shape, strides: readonly number[], base = 0): Int32Array {
  const n = numel(shape);
  const out = new Int32Array(n);
  const r = shape.length;
  if (n === 0) return out;
  if (r === 0) {
    out[0] = base;
    return out;
  }
  // Inner loop over the last axis, odometer over the rest.
  const last = shape[r - 1]!;
  const ls = strides[r - 1]!;
  const idx = new Array<number>(r).fill(0);
  let off = base;
  let p = 0;
  while (p < n) {
    for (let j = 0, o = off; j < last; j++, o += ls) out[p++] = o;
    let d = r - 2;
    while (d >= 0) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
      d--;
    }
    if (d < 0) break;
  }
  return out;
}

/** Strides for reading an input of shape `from` broadcast (numpy rules) to shape `to`. */
export function broadcastStrides(from: Shape, to: Shape): number[] {
  const s = stridesOf(from);
  const off = to.length - from.length;
  return to.map((d, i) => (i < off || from[i - off] === 1 ? 0 : s[i - off]!));
}

/** Source offset of each output element when reading `from` broadcast to `to`; undefined if identical shapes. */
export function broadcastMap(from: Shape, to: Shape): Int32Array | undefined {
  if (from.length === to.length && from.every((d, i) => d === to[i])) return undefined;
  return indexMap(to, broadcastStrides(from, to));
}

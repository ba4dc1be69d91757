/**
 * @file CPU kernels for reductions (sum, mean, max, min over axes) and argmax.
 * Sums accumulate in double precision (over trailing axes without an offset map: same order, same bits); max/min propagate NaN; argmax returns the first maximum
 * (a NaN counts as the maximum, as in PyTorch).
 */
import type { ReduceOp } from '../../../ir/ops.ts';
import { type Shape, numel, stridesOf } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import type { Store } from './elementwise.ts';
import { indexMap } from './indexing.ts';

/** Output offset of every input element when `axes` are reduced away. */
function reducedOffsets(shape: Shape, axes: readonly number[]): { map: Int32Array; outN: number } {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const ks = stridesOf(kept);
  const strides = shape.map((_, i) => (axes.includes(i) ? 0 : ks[i]!));
  return { map: indexMap(shape, strides), outN: numel(kept) };
}

export function reduce(op: ReduceOp, x: TensorData, shape: Shape, axes: readonly number[], out: TensorData, store: Store): void {
  const r = shape.length;
  if ((op === 'reduce_sum' || op === 'reduce_mean') && axes.length > 0 && axes.every((a) => a >= r - axes.length)) {
    sumTrailing(op === 'reduce_mean', x, numel(shape.slice(0, r - axes.length)), numel(shape.slice(r - axes.length)), out, store);
    return;
  }
  const { map, outN } = reducedOffsets(shape, axes);
  const acc = new Float64Array(outN);
  const n = numel(shape);
  if (op === 'reduce_sum' || op === 'reduce_mean') {
    for (let i = 0; i < n; i++) acc[map[i]!]! += x[i]!;
    if (op === 'reduce_mean') {
      const count = axes.reduce((c, a) => c * shape[a]!, 1);
      for (let j = 0; j < outN; j++) acc[j]! /= count;
    }
  } else {
    const isMax = op === 'reduce_max';
    acc.fill(isMax ? -Infinity : Infinity);
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      const j = map[i]!;
      const a = acc[j]!;
      if (v !== v || (isMax ? v > a : v < a)) acc[j] = v;
      else if (a !== a) acc[j] = a;
    }
  }
  for (let j = 0; j < outN; j++) store(out, j, acc[j]!);
}

/**
 * Sum (or mean) over the trailing axes: each output sums its `len` contiguous inputs in ascending
 * order from 0, in double, as the general loop does (the same bits, without the offset map).
 */
function sumTrailing(mean: boolean, x: TensorData, outer: number, len: number, out: TensorData, store: Store): void {
  for (let o = 0, base = 0; o < outer; o++, base += len) {
    let acc = 0;
    for (let j = 0; j < len; j++) acc += x[base + j]!;
    store(out, o, mean ? acc / len : acc);
  }
}

export function argmax(x: TensorData, shape: Shape, axis: number, out: TensorData): void {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const len = shape[axis]!;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let best = 0;
      let bv = x[o * len * inner + i]!;
      for (let k = 1; k < len && bv === bv; k++) {
        const v = x[(o * len + k) * inner + i]!;
        if (v > bv || v !== v) {
          bv = v;
          best = k;
        }
      }
      out[o * inner + i] = best;
    }
}

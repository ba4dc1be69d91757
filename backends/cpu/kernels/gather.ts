/**
 * @file CPU kernels for gather (numpy.take along an axis) and scatter_add (its transpose).
 * Indices out of range are an error here: the CPU backend is the oracle and says so loudly.
 */
import { KilnError } from '../../../ir/errors.ts';
import { type Shape, numel } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import type { Store } from './elementwise.ts';

function split(shape: Shape, axis: number): [number, number, number] {
  return [numel(shape.slice(0, axis)), shape[axis]!, numel(shape.slice(axis + 1))];
}
function checkIndex(op: string, v: number, len: number): void {
  if (!(v >= 0 && v < len)) throw new KilnError(`${op}: index ${v} is out of range for an axis of size ${len}`);
}

export function gather(x: TensorData, shape: Shape, idx: TensorData, axis: number, out: TensorData): void {
  const [outer, len, inner] = split(shape, axis);
  const m = idx.length;
  for (let j = 0; j < m; j++) checkIndex('gather', idx[j]!, len);
  let p = 0;
  for (let o = 0; o < outer; o++)
    for (let j = 0; j < m; j++) {
      const src = (o * len + idx[j]!) * inner;
      for (let i = 0; i < inner; i++) out[p++] = x[src + i]!;
    }
}

export function scatterAdd(
  base: TensorData, shape: Shape, idx: TensorData, upd: TensorData, axis: number, out: TensorData, store: Store,
): void {
  const [outer, len, inner] = split(shape, axis);
  const m = idx.length;
  for (let j = 0; j < m; j++) checkIndex('scatter_add', idx[j]!, len);
  // Accumulate in double precision, then store once (so f32 results do not depend on update order).
  const acc = Float64Array.from(base as ArrayLike<number>);
  let p = 0;
  for (let o = 0; o < outer; o++)
    for (let j = 0; j < m; j++) {
      const dst = (o * len + idx[j]!) * inner;
      for (let i = 0; i < inner; i++) acc[dst + i]! += upd[p++]!;
    }
  for (let i = 0; i < acc.length; i++) store(out, i, acc[i]!);
}

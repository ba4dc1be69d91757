/**
 * @file CPU kernels for movement ops: permute, broadcast, slice, pad, concat (reshape is a copy).
 */
import { type Shape, numel, stridesOf } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import { broadcastStrides, indexMap } from './indexing.ts';

function gatherCopy(x: TensorData, map: Int32Array, out: TensorData): void {
  for (let i = 0; i < map.length; i++) out[i] = x[map[i]!]!;
}

export function permute(x: TensorData, shape: Shape, perm: readonly number[], out: TensorData): void {
  const s = stridesOf(shape);
  gatherCopy(x, indexMap(perm.map((p) => shape[p]!), perm.map((p) => s[p]!)), out);
}

export function broadcast(x: TensorData, shape: Shape, to: Shape, out: TensorData): void {
  gatherCopy(x, indexMap(to, broadcastStrides(shape, to)), out);
}

export function slice(
  x: TensorData, shape: Shape, starts: readonly number[], steps: readonly number[], outShape: Shape, out: TensorData,
): void {
  const s = stridesOf(shape);
  const base = starts.reduce((acc, st, i) => acc + st * s[i]!, 0);
  gatherCopy(x, indexMap(outShape, s.map((st, i) => st * steps[i]!), base), out);
}

export function pad(
  x: TensorData, shape: Shape, before: readonly number[], value: number, outShape: Shape, out: TensorData,
): void {
  out.fill(value as never);
  const os = stridesOf(outShape);
  const base = before.reduce((acc, b, i) => acc + b * os[i]!, 0);
  const map = indexMap(shape, os, base);
  for (let i = 0; i < map.length; i++) out[map[i]!] = x[i]!;
}

export function concat(parts: { data: TensorData; shape: Shape }[], axis: number, outShape: Shape, out: TensorData): void {
  const os = stridesOf(outShape);
  let offset = 0;
  for (const p of parts) {
    if (numel(p.shape) > 0) {
      const map = indexMap(p.shape, os, offset * os[axis]!);
      for (let i = 0; i < map.length; i++) out[map[i]!] = p.data[i]!;
    }
    offset += p.shape[axis]!;
  }
}

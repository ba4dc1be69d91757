/**
 * @file CPU matmul with batch broadcasting: [..., m, k] x [..., k, n], accumulated in double precision.
 */
import { type Shape, numel, stridesOf } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import type { Store } from './elementwise.ts';
import { indexMap } from './indexing.ts';

export function matmul(
  a: TensorData, aShape: Shape, b: TensorData, bShape: Shape, outShape: Shape, out: TensorData, store: Store, intMath: boolean,
): void {
  const r = outShape.length;
  const [m, n] = [outShape[r - 2]!, outShape[r - 1]!];
  const k = aShape[aShape.length - 1]!;
  const batch = outShape.slice(0, -2);
  const batchStrides = (s: Shape, mat: number): number[] => {
    const bs = s.slice(0, -2);
    const st = stridesOf(bs).map((x) => x * mat);
    const off = batch.length - bs.length;
    return batch.map((d, i) => (i < off || bs[i - off] === 1 ? 0 : st[i - off]!));
  };
  const aOff = indexMap(batch, batchStrides(aShape, m * k));
  const bOff = indexMap(batch, batchStrides(bShape, k * n));
  const acc = new Float64Array(n);
  for (let t = 0; t < numel(batch); t++) {
    const ab = aOff[t]!, bb = bOff[t]!, ob = t * m * n;
    for (let i = 0; i < m; i++) {
      acc.fill(0);
      for (let p = 0; p < k; p++) {
        const av = a[ab + i * k + p]!;
        const row = bb + p * n;
        if (intMath) for (let j = 0; j < n; j++) acc[j] = (acc[j]! + Math.imul(av, b[row + j]!)) | 0;
        else for (let j = 0; j < n; j++) acc[j]! += av * b[row + j]!;
      }
      for (let j = 0; j < n; j++) store(out, ob + i * n + j, acc[j]!);
    }
  }
}

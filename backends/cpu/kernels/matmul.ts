/**
 * @file CPU matmul with batch broadcasting: [..., m, k] x [..., k, n], accumulated in double precision.
 * Every output element is Σ_p a[i,p]·b[p,j] summed in double in ascending p, then stored once. Float
 * outputs stored as they are (`plain`: f32 storage, or f64 precision) take a faster path that updates
 * four rows of the output per pass over a row of b: the same sums in the same order, so the same bits.
 */
import { type Shape, numel, stridesOf } from '../../../ir/shape.ts';
import type { TensorData } from '../../../ir/tensor.ts';
import type { Store } from './elementwise.ts';
import { indexMap } from './indexing.ts';

export function matmul(
  a: TensorData, aShape: Shape, b: TensorData, bShape: Shape, outShape: Shape, out: TensorData, store: Store, intMath: boolean, plain = false,
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
  if (plain && !intMath) {
    const acc4 = new Float64Array(4 * n);
    for (let t = 0; t < numel(batch); t++) matmulPlain(a, b, out, m, k, n, aOff[t]!, bOff[t]!, t * m * n, acc4);
    return;
  }
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

/** One [m, k] x [k, n] product into `out` at `ob`, four rows at a time (`acc` holds 4·n doubles). */
function matmulPlain(a: TensorData, b: TensorData, out: TensorData, m: number, k: number, n: number, ab: number, bb: number, ob: number, acc: Float64Array): void {
  const n2 = 2 * n, n3 = 3 * n;
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    acc.fill(0);
    const r0 = ab + i * k, r1 = r0 + k, r2 = r1 + k, r3 = r2 + k;
    for (let p = 0; p < k; p++) {
      const v0 = a[r0 + p]!, v1 = a[r1 + p]!, v2 = a[r2 + p]!, v3 = a[r3 + p]!;
      const row = bb + p * n;
      for (let j = 0; j < n; j++) {
        const bv = b[row + j]!;
        acc[j]! += v0 * bv;
        acc[n + j]! += v1 * bv;
        acc[n2 + j]! += v2 * bv;
        acc[n3 + j]! += v3 * bv;
      }
    }
    out.set(acc, ob + i * n);
  }
  for (; i < m; i++) {
    acc.fill(0, 0, n);
    const r0 = ab + i * k;
    for (let p = 0; p < k; p++) {
      const v0 = a[r0 + p]!;
      const row = bb + p * n;
      for (let j = 0; j < n; j++) acc[j]! += v0 * b[row + j]!;
    }
    out.set(acc.subarray(0, n), ob + i * n);
  }
}

/**
 * @file Host tensors: a dtype, a static shape, and a row-major typed array.
 *
 * Float tensors (f32, f16, bf16) are held as Float32Array whose values are representable in their
 * dtype, or as Float64Array when the CPU backend runs in f64 mode (gradient checks). i32 → Int32Array,
 * u32 → Uint32Array, bool → Uint8Array (0 or 1).
 */
import { type DType, isFloat, roundTo } from './dtype.ts';
import { type Shape, numel, shapeStr } from './shape.ts';

export type TensorData = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

export interface HostTensor {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly data: TensorData;
}

export function allocData(dtype: DType, n: number, f64 = false): TensorData {
  switch (dtype) {
    case 'i32':
      return new Int32Array(n);
    case 'u32':
      return new Uint32Array(n);
    case 'bool':
      return new Uint8Array(n);
    default:
      return f64 ? new Float64Array(n) : new Float32Array(n);
  }
}

/** Make a host tensor; `values` (flat, row-major) is copied and rounded to the dtype. */
export function hostTensor(dtype: DType, shape: Shape, values?: ArrayLike<number>, f64 = false): HostTensor {
  const n = numel(shape);
  const data = allocData(dtype, n, f64);
  if (values) {
    if (values.length !== n) throw new Error(`hostTensor: ${values.length} values for shape ${shapeStr(shape)}`);
    if (isFloat(dtype) && !f64 && dtype !== 'f32') for (let i = 0; i < n; i++) data[i] = roundTo(dtype, values[i]!);
    else if (dtype === 'bool') for (let i = 0; i < n; i++) data[i] = values[i] ? 1 : 0;
    else for (let i = 0; i < n; i++) data[i] = values[i]!;
  }
  return { dtype, shape: [...shape], data };
}

export function scalarTensor(dtype: DType, v: number): HostTensor {
  return hostTensor(dtype, [], [v]);
}

export function toArray(t: HostTensor): number[] {
  return Array.from(t.data as ArrayLike<number>);
}

export function describeTensor(t: HostTensor): string {
  return `${t.dtype}${shapeStr(t.shape)}`;
}

/**
 * @file Parameter initializers (PyTorch's nn.init equivalents), evaluated on the host with
 * Philox so that a seed fully determines a model's initial weights.
 */
import type { DType } from '../../ir/dtype.ts';
import { fillNormal, fillUniform } from '../../ir/philox.ts';
import type { Shape } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { numel } from '../../ir/shape.ts';

export type Init =
  | { readonly kind: 'zeros' }
  | { readonly kind: 'ones' }
  | { readonly kind: 'constant'; readonly value: number }
  | { readonly kind: 'normal'; readonly mean?: number; readonly std: number }
  /** Normal truncated to [a, b] (absolute bounds, as torch.nn.init.trunc_normal_), by resampling. */
  | { readonly kind: 'trunc_normal'; readonly mean?: number; readonly std: number; readonly a?: number; readonly b?: number }
  | { readonly kind: 'uniform'; readonly low: number; readonly high: number }
  /** Xavier/Glorot uniform: U(±gain·sqrt(6 / (fan_in + fan_out))). */
  | { readonly kind: 'xavier_uniform'; readonly gain?: number };

export const zeros: Init = { kind: 'zeros' };
export const ones: Init = { kind: 'ones' };

/** fan_in, fan_out as PyTorch computes them ([out, in, *receptive]). */
export function fans(shape: Shape): [number, number] {
  if (shape.length < 2) return [shape[0] ?? 1, shape[0] ?? 1];
  const rf = numel(shape.slice(2));
  return [shape[1]! * rf, shape[0]! * rf];
}

/** Initial values of one parameter; `stream` separates parameters sharing one seed. */
export function initValues(init: Init, shape: Shape, dtype: DType, seed: number, stream: number): HostTensor {
  const n = numel(shape);
  const v = new Float64Array(n);
  const [s0, s1] = [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
  switch (init.kind) {
    case 'zeros':
      break;
    case 'ones':
      v.fill(1);
      break;
    case 'constant':
      v.fill(init.value);
      break;
    case 'normal':
      fillNormal(v, s0, s1, stream);
      for (let i = 0; i < n; i++) v[i] = (init.mean ?? 0) + init.std * v[i]!;
      break;
    case 'trunc_normal': {
      const [mean, std, a, b] = [init.mean ?? 0, init.std, init.a ?? -2, init.b ?? 2];
      const buf = new Float64Array(Math.max(4, n));
      let filled = 0;
      for (let round = 0; filled < n; round++) {
        // Each round draws a fresh block of the stream (stream id + round·2^20 keeps rounds apart).
        fillNormal(buf, s0, s1, (stream + round * 0x100000) >>> 0);
        for (let i = 0; i < buf.length && filled < n; i++) {
          const x = mean + std * buf[i]!;
          if (x >= a && x <= b) v[filled++] = x;
        }
        if (round > 1000) throw new Error(`trunc_normal: bounds [${a}, ${b}] reject almost every sample of N(${mean}, ${std}²)`);
      }
      break;
    }
    case 'uniform':
      fillUniform(v, s0, s1, stream);
      for (let i = 0; i < n; i++) v[i] = init.low + (init.high - init.low) * v[i]!;
      break;
    case 'xavier_uniform': {
      const [fi, fo] = fans(shape);
      const bound = (init.gain ?? 1) * Math.sqrt(6 / (fi + fo));
      fillUniform(v, s0, s1, stream);
      for (let i = 0; i < n; i++) v[i] = -bound + 2 * bound * v[i]!;
      break;
    }
  }
  return hostTensor(dtype, shape, v);
}

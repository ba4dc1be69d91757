/**
 * @file The flow samplers' time grids and initial noise, as plain host math with no compiler imports, so
 * that the browser runtime (web/runtime) shares them with the Node samplers (models/flowMatching.ts
 * re-exports them): linspace in f32 as torch.linspace splits it, the timestep shift, the ODE grid, and
 * the Philox standard-normal noise.
 */
import { KilnError } from '../../ir/errors.ts';
import { fillNormal } from '../../ir/philox.ts';
import { numel } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

/** The timestep shift t' = s·t / (1 + (s − 1)·t). */
export function shiftTime(t: number, shift: number): number {
  return (shift * t) / (1 + (shift - 1) * t);
}

/** torch.linspace(start, end, n) in f32 (same split of the index range as PyTorch's kernel). */
export function linspace(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) out[0] = start;
  const step = (end - start) / (n - 1);
  for (let i = 0; i < n && n > 1; i++) out[i] = i < n / 2 ? start + step * i : end - step * (n - 1 - i);
  return out;
}

/** The ODE grid: linspace(0, 1, n), shifted when shift > 0 (the reference's rule; 0 = no shift). */
export function samplingGrid(numSteps: number, shift = 0): Float32Array {
  if (!Number.isInteger(numSteps) || numSteps < 2) throw new KilnError(`samplingGrid: numSteps ${numSteps} must be an integer >= 2`);
  const t = linspace(0, 1, numSteps);
  return shift > 0 ? t.map((v) => shiftTime(v, shift)) : t;
}

/** Standard normal host tensor from Philox (seed, stream), e.g. the sampler's initial noise. */
export function gaussianNoise(shape: readonly number[], seed: number, stream = 0): HostTensor {
  const v = new Float32Array(numel(shape));
  fillNormal(v, seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0, stream);
  return hostTensor('f32', shape, v);
}

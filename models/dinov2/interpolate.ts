/**
 * @file Bicubic resampling of DINOv2's position-embedding grid as exact linear maps, computed on
 * the host in float64 and applied in the graph as two small matmuls (rows, then columns).
 *
 * `F.interpolate(x, size=..., mode='bicubic', align_corners=False[, antialias])` is linear in x and
 * separable: out = M_h · X · M_wᵀ per channel. Because the position embeddings are a Parameter, the
 * interpolation has to be a graph computation, so Kiln precomputes M_h [H, h] and M_w [W, w] here,
 * replicating PyTorch's CPU kernels (aten/src/ATen/native/cpu/UpSampleKernel.cpp, UpSample.h):
 *
 * - Coordinate scale: `scale = in / out` when the size is given (what HF transformers 5.x does for
 *   both models), or `1 / scale_factor` when a scale factor is given (facebookresearch/dinov2 passes
 *   `scale_factor = (out + 0.1) / in`, its `interpolate_offset`; use `scaleFactor` to replicate it).
 * - antialias=False (HF `Dinov2Model`): Keys cubic convolution with A = −0.75; source coordinate
 *   `scale·(i + 0.5) − 0.5` (not clamped at 0 for cubic); base index floor(·) (at most in − 1),
 *   t = coordinate − base clamped to [0, 1]; taps base−1 … base+2 with weights
 *   [k₂(t+1), k₁(t), k₁(1−t), k₂(2−t)]; out-of-range taps are clamped onto the border pixel
 *   (replicate), so their weights accumulate there.
 * - antialias=True (HF `Dinov2WithRegistersModel`): PIL-style filter with A = −0.5 (PyTorch's aa
 *   bicubic uses Keys' −0.5, not −0.75); support 2·max(scale, 1); center `scale·(i + 0.5)`; taps
 *   [trunc(center − support + 0.5) ∨ 0, trunc(center + support + 0.5) ∧ in) with weight
 *   filter((j − center + 0.5) / max(scale, 1)); out-of-range taps are dropped and the weights
 *   renormalized to sum 1 (no border replication). For upsampling this still differs from the plain
 *   kernel (A and the border rule), so the two variants are never interchangeable.
 *
 * `bicubicResample` applies the two factors to a channels-last grid inside a trace.
 *
 * PyTorch computes the weights in float32; these are float64, so results agree to f32 rounding
 * (measured ≤ 1e-6 relative against PyTorch's f32 output; exact to f32 rounding against float64
 * PyTorch, see test/models/dinov2.test.ts).
 */
import { constant } from '../../compiler/dsl/index.ts';
import type { Tensor } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';

export interface BicubicOptions {
  /** PyTorch's antialias flag. Default false. */
  antialias?: boolean;
  /**
   * The `scale_factor` passed to F.interpolate instead of a size (the caller still gives the output
   * size, floor(in · scaleFactor)). Default: none, i.e. `size=` semantics, scale = in / out.
   */
  scaleFactor?: number;
}

/** Keys' cubic convolution kernel for |x| ≤ 1. */
function cubic1(x: number, a: number): number {
  return ((a + 2) * x - (a + 3)) * x * x + 1;
}
/** Keys' cubic convolution kernel for 1 < |x| < 2. */
function cubic2(x: number, a: number): number {
  return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
}
/** PyTorch's antialiasing bicubic filter (A = −0.5). */
function aaFilter(x: number): number {
  const a = -0.5;
  const ax = Math.abs(x);
  if (ax < 1) return cubic1(ax, a);
  if (ax < 2) return cubic2(ax, a);
  return 0;
}

function checkSizes(inSize: number, outSize: number): void {
  for (const [n, v] of [['input size', inSize], ['output size', outSize]] as const)
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`bicubic interpolation: ${n} must be a positive integer, got ${v}`);
}

/**
 * The 1-D bicubic resampling matrix M [outSize, inSize] (row-major, float64): out = M · in along one
 * axis, exactly as F.interpolate(mode='bicubic', align_corners=False) computes it.
 */
export function bicubicMatrix1d(inSize: number, outSize: number, opts: BicubicOptions = {}): Float64Array {
  checkSizes(inSize, outSize);
  if (opts.scaleFactor !== undefined && !(opts.scaleFactor > 0))
    throw new RangeError(`bicubic interpolation: scaleFactor must be positive, got ${opts.scaleFactor}`);
  const scale = opts.scaleFactor !== undefined ? 1 / opts.scaleFactor : inSize / outSize;
  const m = new Float64Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    const row = i * inSize;
    if (!opts.antialias) {
      const A = -0.75;
      const real = scale * (i + 0.5) - 0.5;
      const base = Math.min(Math.floor(real), inSize - 1);
      const t = Math.min(Math.max(real - base, 0), 1);
      const w = [cubic2(t + 1, A), cubic1(t, A), cubic1(1 - t, A), cubic2(2 - t, A)];
      for (let j = 0; j < 4; j++) {
        const k = Math.min(Math.max(base - 1 + j, 0), inSize - 1);
        m[row + k]! += w[j]!;
      }
    } else {
      const support = scale >= 1 ? 2 * scale : 2;
      const invScale = scale >= 1 ? 1 / scale : 1;
      const maxTaps = Math.ceil(support) * 2 + 1;
      const center = scale * (i + 0.5);
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xsize = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), maxTaps);
      let total = 0;
      for (let j = 0; j < xsize; j++) total += aaFilter((j + xmin - center + 0.5) * invScale);
      for (let j = 0; j < xsize; j++) {
        const w = aaFilter((j + xmin - center + 0.5) * invScale);
        m[row + xmin + j] = total !== 0 ? w / total : w;
      }
    }
  }
  return m;
}

/** Options of the 2-D resampling functions. */
export interface Bicubic2dOptions {
  antialias?: boolean;
  /** F.interpolate's scale_factor (rows, columns) instead of `size=` semantics; see BicubicOptions. */
  scaleFactors?: readonly [number, number];
}

function factors(opts: Bicubic2dOptions): [BicubicOptions, BicubicOptions] {
  const [sh, sw] = opts.scaleFactors ?? [undefined, undefined];
  return [
    { antialias: opts.antialias, scaleFactor: sh },
    { antialias: opts.antialias, scaleFactor: sw },
  ];
}

/**
 * The full 2-D matrix [outH·outW, inH·inW] (row-major grids, float64) = M_h ⊗ M_w. For tests and
 * inspection; the model applies the two 1-D factors instead (far smaller constants).
 */
export function bicubicMatrix2d(inH: number, inW: number, outH: number, outW: number, opts: Bicubic2dOptions = {}): Float64Array {
  const [oh, ow] = factors(opts);
  const mh = bicubicMatrix1d(inH, outH, oh);
  const mw = bicubicMatrix1d(inW, outW, ow);
  const s = inH * inW;
  const m = new Float64Array(outH * outW * s);
  for (let i = 0; i < outH; i++)
    for (let j = 0; j < outW; j++)
      for (let p = 0; p < inH; p++) {
        const a = mh[i * inH + p]!;
        if (a === 0) continue;
        for (let q = 0; q < inW; q++) m[(i * outW + j) * s + p * inW + q] = a * mw[j * inW + q]!;
      }
  return m;
}

/** True when M [n, n] is exactly the identity (so resampling can be skipped). */
export function isIdentity(m: Float64Array, n: number): boolean {
  if (m.length !== n * n) return false;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (m[i * n + j] !== (i === j ? 1 : 0)) return false;
  return true;
}

/**
 * Resample a channels-last grid x [h, w, D] to [outH, outW, D] in the graph, as
 * F.interpolate(x.permute(2, 0, 1)[None], size=(outH, outW), mode='bicubic', align_corners=False,
 * antialias) would: rows first ([outH, h] · [h, w·D]), then columns ([outW, w] · [outH, w, D]); an
 * axis whose matrix is exactly the identity is left alone.
 */
export function bicubicResample(x: Tensor, outH: number, outW: number, opts: Bicubic2dOptions = {}): Tensor {
  if (x.rank !== 3) throw dslError('bicubicResample', [x], 'expects a channels-last grid [h, w, D]');
  const [h, w, d] = x.shape as [number, number, number];
  const [oh, ow] = factors(opts);
  const mh = bicubicMatrix1d(h, outH, oh);
  const mw = bicubicMatrix1d(w, outW, ow);
  let y = x;
  if (!(outH === h && isIdentity(mh, h))) y = constant(mh, [outH, h]).matmul(y.reshape(h, w * d)).reshape(outH, w, d);
  if (!(outW === w && isIdentity(mw, w))) y = constant(mw, [outW, w]).matmul(y);
  return y;
}

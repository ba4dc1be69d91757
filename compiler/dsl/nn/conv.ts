/**
 * @file 2-D convolution, batch norm (eval mode), max / average pooling and bilinear resizing with
 * PyTorch's semantics (NCHW), composed from existing Graph-IR primitives: no new ops.
 *
 * - `Conv2d` (nn.Conv2d: weight [out, in, kh, kw], optional bias, stride, zero padding; no dilation or
 *   groups): a 1×1 stride-1 convolution is one matmul W[out, in] · x[B, in, H·W]; any other is im2col by
 *   strided slices of the padded input — for each tap (i, j) the slice
 *   xp[:, :, i : i + s_h·(H_o − 1) + 1 : s_h, j : j + s_w·(W_o − 1) + 1 : s_w] — stacked on a new axis
 *   after the channels ([B, C, kh·kw, H_o, W_o], features ordered (c, i, j) like the flattened weight),
 *   then W[out, C·kh·kw] · cols. H_o = ⌊(H + 2p_h − k_h) / s_h⌋ + 1 (PyTorch's floor mode). The slices,
 *   pad, concat and matmul have VJPs, so this convolution is differentiable too.
 * - `BatchNorm2d` in eval mode (weight, bias, running_mean, running_var; `num_batches_tracked` is not a
 *   parameter): y = x·a + (bias − running_mean·a), a = weight / √(running_var + eps), per channel — the
 *   order PyTorch's CPU kernel uses. The running statistics are frozen parameters.
 * - `maxPool2d` pads with the lowest finite f32 (PyTorch pads with −∞; every window of a legal pooling
 *   holds at least one real element, so the result is the same) and reduces the stacked taps with max;
 *   `avgPool2d` sums the taps of the zero-padded input and divides by k_h·k_w, or with
 *   `countIncludePad: false` by the number of real elements in each window (a constant [H_o, W_o] map).
 * - `resizeBilinear` is F.interpolate(mode='bilinear', align_corners=False, antialias=False) to a
 *   given size: separable, so it is R_h · x · R_wᵀ with constant interpolation matrices
 *   (source coordinate (d + ½)·in/out − ½, clamped at 0; the two neighbours floor and floor + 1, the
 *   upper one clamped to in − 1).
 */
import type { DType } from '../../../ir/dtype.ts';
import { constant, stack } from '../functional.ts';
import { type Init, ones, zeros } from '../init.ts';
import { Module, Parameter } from '../module.ts';
import { type Tensor, dslError } from '../tensor.ts';

export type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** Output side of a window op: ⌊(n + 2p − k) / s⌋ + 1 (PyTorch, ceil_mode False). */
export function windowOutput(n: number, k: number, s: number, p: number): number {
  return Math.floor((n + 2 * p - k) / s) + 1;
}

function checkNchw(op: string, x: Tensor, k: [number, number], s: [number, number], p: [number, number]): [number, number, number, number, number, number] {
  if (x.rank !== 4) throw dslError(op, [x], 'expects x [B, C, H, W]');
  const [b, c, h, w] = x.shape as [number, number, number, number];
  if ([...k, ...s].some((v) => !Number.isInteger(v) || v < 1) || p.some((v) => !Number.isInteger(v) || v < 0))
    throw dslError(op, [x], `kernel ${k.join('x')}, stride ${s.join('x')}, padding ${p.join('x')}: kernel and stride must be positive integers, padding non-negative`);
  const [ho, wo] = [windowOutput(h, k[0], s[0], p[0]), windowOutput(w, k[1], s[1], p[1])];
  if (ho < 1 || wo < 1) throw dslError(op, [x], `a ${k.join('x')} window (padding ${p.join('x')}) does not fit a ${h}x${w} input`);
  return [b, c, h, w, ho, wo];
}

/** The kh·kw taps of the (already padded) input: [B, C, kh·kw, H_o, W_o]. */
function taps(xp: Tensor, k: [number, number], s: [number, number], ho: number, wo: number): Tensor {
  const t: Tensor[] = [];
  for (let i = 0; i < k[0]; i++)
    for (let j = 0; j < k[1]; j++) t.push(xp.slice(2, i, i + s[0] * (ho - 1) + 1, s[0]).slice(3, j, j + s[1] * (wo - 1) + 1, s[1]));
  return t.length === 1 ? t[0]!.unsqueeze(2) : stack(t, 2);
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  bias?: boolean;
  weightInit?: Init;
  dtype?: DType;
}

/** nn.Conv2d (groups = 1, dilation = 1, zero padding). */
export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  readonly kernel: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  constructor(readonly inChannels: number, readonly outChannels: number, kernel: Pair, opts: Conv2dOptions = {}) {
    super();
    this.kernel = pair(kernel);
    this.stride = pair(opts.stride ?? 1);
    this.padding = pair(opts.padding ?? 0);
    const bound = 1 / Math.sqrt(inChannels * this.kernel[0] * this.kernel[1]);
    const u: Init = { kind: 'uniform', low: -bound, high: bound };
    this.weight = new Parameter([outChannels, inChannels, ...this.kernel], opts.weightInit ?? u, opts.dtype);
    this.bias = opts.bias === false ? undefined : new Parameter([outChannels], u, opts.dtype);
  }

  forward(x: Tensor): Tensor {
    const [k, s, p] = [this.kernel, this.stride, this.padding];
    const [b, c, h, w, ho, wo] = checkNchw('Conv2d', x, k, s, p);
    if (c !== this.inChannels) throw dslError('Conv2d', [x], `expects ${this.inChannels} input channels, got ${c}`);
    let cols: Tensor;
    if (k[0] === 1 && k[1] === 1 && s[0] === 1 && s[1] === 1 && p[0] === 0 && p[1] === 0) cols = x.reshape(b, c, h * w);
    else {
      const xp = p[0] || p[1] ? x.pad([p[0], p[1]], [p[0], p[1]]) : x;
      cols = taps(xp, k, s, ho, wo).reshape(b, c * k[0] * k[1], ho * wo);
    }
    let y = this.weight.reshape(this.outChannels, c * k[0] * k[1]).matmul(cols);
    if (this.bias) y = y.add(this.bias.reshape(this.outChannels, 1));
    return y.reshape(b, this.outChannels, ho, wo);
  }
}

/** nn.BatchNorm2d in eval mode (running statistics; affine). */
export class BatchNorm2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  readonly running_mean: Parameter;
  readonly running_var: Parameter;
  constructor(readonly channels: number, readonly eps = 1e-5) {
    super();
    this.weight = new Parameter([channels], ones);
    this.bias = new Parameter([channels], zeros);
    this.running_mean = new Parameter([channels], zeros, 'f32', false);
    this.running_var = new Parameter([channels], ones, 'f32', false);
  }
  forward(x: Tensor): Tensor {
    if (x.rank !== 4 || x.size(1) !== this.channels) throw dslError('BatchNorm2d', [x], `expects x [B, ${this.channels}, H, W]`);
    const a = this.weight.div(this.running_var.add(this.eps).sqrt());
    const shift = this.bias.sub(this.running_mean.mul(a));
    const c = this.channels;
    return x.mul(a.reshape(c, 1, 1)).add(shift.reshape(c, 1, 1));
  }
}

const LOWEST_F32 = -3.4028234663852886e38;

/** F.max_pool2d(x, kernel, stride (default: kernel), padding). */
export function maxPool2d(x: Tensor, kernel: Pair, stride?: Pair, padding: Pair = 0): Tensor {
  const [k, s, p] = [pair(kernel), pair(stride ?? kernel), pair(padding)];
  const [, , , , ho, wo] = checkNchw('maxPool2d', x, k, s, p);
  if (p[0] * 2 > k[0] || p[1] * 2 > k[1]) throw dslError('maxPool2d', [x], `padding ${p.join('x')} must be at most half the kernel ${k.join('x')}`);
  const xp = p[0] || p[1] ? x.pad([p[0], p[1]], [p[0], p[1]], LOWEST_F32) : x;
  return taps(xp, k, s, ho, wo).max(2);
}

export interface AvgPoolOptions {
  /** Count the zero padding in each window's divisor (PyTorch's default true). */
  countIncludePad?: boolean;
}

/** F.avg_pool2d(x, kernel, stride (default: kernel), padding, count_include_pad). */
export function avgPool2d(x: Tensor, kernel: Pair, stride?: Pair, padding: Pair = 0, opts: AvgPoolOptions = {}): Tensor {
  const [k, s, p] = [pair(kernel), pair(stride ?? kernel), pair(padding)];
  const [, , h, w, ho, wo] = checkNchw('avgPool2d', x, k, s, p);
  if (p[0] * 2 > k[0] || p[1] * 2 > k[1]) throw dslError('avgPool2d', [x], `padding ${p.join('x')} must be at most half the kernel ${k.join('x')}`);
  const xp = p[0] || p[1] ? x.pad([p[0], p[1]], [p[0], p[1]]) : x;
  const sum = taps(xp, k, s, ho, wo).sum(2);
  if (opts.countIncludePad ?? true) return sum.div(k[0] * k[1]);
  // Real elements per window: the overlap of [o·s − p, o·s − p + k) with [0, n) on each axis.
  const real = (n: number, kk: number, ss: number, pp: number, o: number) => Math.min(o * ss - pp + kk, n) - Math.max(o * ss - pp, 0);
  const counts = new Float32Array(ho * wo);
  for (let i = 0; i < ho; i++) for (let j = 0; j < wo; j++) counts[i * wo + j] = real(h, k[0], s[0], p[0], i) * real(w, k[1], s[1], p[1], j);
  return sum.div(constant(counts, [ho, wo], x.dtype));
}

/** The [out, in] matrix of 1-D bilinear interpolation (align_corners=False, no antialias). */
export function bilinearMatrix(inSize: number, outSize: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  // In f32 arithmetic, as PyTorch's CPU kernel computes the source coordinate and the weights (at 299 px
  // an f64 coordinate differs from PyTorch's by up to ~1e-5).
  const f = Math.fround;
  const scale = f(inSize / outSize);
  for (let d = 0; d < outSize; d++) {
    const src = Math.max(f(f(scale * f(d + 0.5)) - 0.5), 0);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l1 = f(src - i0);
    m[d * inSize + i0]! += f(1 - l1);
    m[d * inSize + i1]! += l1;
  }
  return m;
}

/** F.interpolate(x, size=(height, width), mode='bilinear', align_corners=False) for x [B, C, H, W]. */
export function resizeBilinear(x: Tensor, height: number, width: number): Tensor {
  if (x.rank !== 4) throw dslError('resizeBilinear', [x], 'expects x [B, C, H, W]');
  const [h, w] = [x.size(2), x.size(3)];
  if (h === height && w === width) return x;
  const rh = constant(bilinearMatrix(h, height), [height, h], x.dtype);
  const rw = constant(bilinearMatrix(w, width), [width, w], x.dtype);
  return rh.matmul(x).matmul(rw.mT);
}

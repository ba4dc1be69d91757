/**
 * @file nn.LayerNorm and RMSNorm over the last axis, with optional elementwise affine parameters
 * (`weight`, and `bias` for LayerNorm), named as in PyTorch.
 *
 * RMSNorm follows LightningDiT's RMSNorm (models/rmsnorm.py, from Llama):
 * `(x.float() * rsqrt(mean(x.float()², -1) + eps)).type_as(x) * weight`, eps 1e-6, weight init 1.
 * The `rms_norm` op already computes narrow floats (f16/bf16) in f32 and rounds back to x's dtype
 * (ir/decompose.ts), which is exactly `_norm(x.float()).type_as(x)`. The product with `weight` then
 * follows PyTorch's promotion: equal dtypes stay, mixed float dtypes (e.g. bf16 · f32) give f32.
 */
import type { DType } from '../../../ir/dtype.ts';
import { ones, zeros } from '../init.ts';
import { Module, Parameter } from '../module.ts';
import type { Tensor } from '../tensor.ts';

export interface NormOptions {
  eps?: number;
  /** Learnable per-channel scale (and bias for LayerNorm). Default true. */
  affine?: boolean;
  /** LayerNorm only: learnable bias (default true when affine). */
  bias?: boolean;
  dtype?: DType;
}

/** a · w and a + b with PyTorch's float promotion (equal dtypes stay; mixed float dtypes → f32). */
function mulPromoted(a: Tensor, w: Tensor): Tensor {
  return a.dtype === w.dtype ? a.mul(w) : a.cast('f32').mul(w.cast('f32'));
}
function addPromoted(a: Tensor, b: Tensor): Tensor {
  return a.dtype === b.dtype ? a.add(b) : a.cast('f32').add(b.cast('f32'));
}

export class LayerNorm extends Module {
  readonly weight: Parameter | undefined;
  readonly bias: Parameter | undefined;
  readonly eps: number;
  constructor(readonly dim: number, opts: NormOptions = {}) {
    super();
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.affine ?? true;
    this.weight = affine ? new Parameter([dim], ones, opts.dtype) : undefined;
    this.bias = affine && opts.bias !== false ? new Parameter([dim], zeros, opts.dtype) : undefined;
  }
  forward(x: Tensor): Tensor {
    let y = x.layerNorm(this.eps);
    if (this.weight) y = mulPromoted(y, this.weight);
    if (this.bias) y = addPromoted(y, this.bias);
    return y;
  }
}

export class RMSNorm extends Module {
  readonly weight: Parameter | undefined;
  readonly eps: number;
  constructor(readonly dim: number, opts: NormOptions = {}) {
    super();
    this.eps = opts.eps ?? 1e-6;
    this.weight = (opts.affine ?? true) ? new Parameter([dim], ones, opts.dtype) : undefined;
  }
  forward(x: Tensor): Tensor {
    const y = x.rmsNorm(this.eps); // computed in f32, result in x's dtype
    return this.weight ? mulPromoted(y, this.weight) : y;
  }
}

/**
 * @file nn.LayerNorm and RMSNorm over the last axis, with optional elementwise affine parameters
 * (`weight`, and `bias` for LayerNorm), named as in PyTorch.
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
    if (this.weight) y = y.mul(this.weight);
    if (this.bias) y = y.add(this.bias);
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
    const y = x.rmsNorm(this.eps);
    return this.weight ? y.mul(this.weight) : y;
  }
}

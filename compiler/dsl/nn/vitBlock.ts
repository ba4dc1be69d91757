/**
 * @file The pre-LN ViT block (timm's Block without layer scale or drop-path):
 * x + attn(norm1(x)), then h + mlp(norm2(h)); parameters norm1, attn, norm2, mlp as in timm.
 */
import type { Tensor } from '../tensor.ts';
import { Module } from '../module.ts';
import { Attention } from './attention.ts';
import { Mlp, type MlpActivation } from './mlp.ts';
import { LayerNorm } from './norm.ts';

export interface ViTBlockOptions {
  /** MLP hidden width (default 4·dim). */
  hidden?: number;
  /** LayerNorm eps (default 1e-6). */
  eps?: number;
  act?: MlpActivation;
}

export class ViTBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  constructor(dim: number, heads: number, opts: ViTBlockOptions = {}) {
    super();
    const eps = opts.eps ?? 1e-6;
    this.norm1 = new LayerNorm(dim, { eps });
    this.attn = new Attention(dim, { numHeads: heads, qkvBias: true });
    this.norm2 = new LayerNorm(dim, { eps });
    this.mlp = new Mlp(dim, { hidden: opts.hidden ?? 4 * dim, act: opts.act ?? 'gelu' });
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.norm1.forward(x)));
    return h.add(this.mlp.forward(this.norm2.forward(h)));
  }
}

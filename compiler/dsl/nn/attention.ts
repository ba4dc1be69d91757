/**
 * @file Multi-head self-attention, timm-style as DiT and LightningDiT use it.
 *
 * Reference followed: hustvl/LightningDiT models/lightningdit.py `Attention` (timm's
 * vision_transformer.Attention plus RoPE): parameters `qkv` = Linear(dim, 3·dim, bias=qkv_bias),
 * optional `q_norm` / `k_norm` over the head dim, `proj` = Linear(dim, dim) (always with bias).
 *
 *   qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4) → q, k, v  [B, H, N, hd]
 *   q, k = q_norm(q), k_norm(k);  q, k = rope(q), rope(k)   (RoPE after the norms)
 *   SDPA (scale 1/√hd) → transpose(1, 2).reshape(B, N, C) → proj
 *
 * qk-norm choice: 'layernorm' is nn.LayerNorm(hd) (eps 1e-5, weight and bias: timm's and
 * LightningDiT's default norm_layer); 'rmsnorm' is LightningDiT's RMSNorm(hd) (eps 1e-6, weight),
 * which LightningDiT picks with use_rmsnorm. `causal` (top-left mask, as SDPA is_causal) is a Kiln
 * option with no counterpart in those references. Dropout is not implemented (the references use 0).
 */
import { attention } from '../functional.ts';
import { Module } from '../module.ts';
import { type Tensor, dslError } from '../tensor.ts';
import { Linear, type LinearInitOptions } from './linear.ts';
import { LayerNorm, RMSNorm } from './norm.ts';
import type { VisionRotaryEmbeddingFast } from './rope.ts';

export type QKNorm = 'none' | 'layernorm' | 'rmsnorm';

/** Options of the Attention layer (not to be confused with functional `attention()`'s AttentionOptions). */
export interface AttentionLayerOptions {
  numHeads: number;
  /** Bias of `qkv` (timm default false; DiT and LightningDiT pass true). */
  qkvBias?: boolean;
  /** Normalization of q and k over the head dim. Default 'none'. */
  qkNorm?: QKNorm;
  /** Overrides the qk-norm eps (LayerNorm 1e-5, RMSNorm 1e-6 by default). */
  qkNormEps?: number;
  /** Top-left causal mask. Default false. */
  causal?: boolean;
  linear?: LinearInitOptions;
}

export class Attention extends Module {
  readonly qkv: Linear;
  readonly q_norm: LayerNorm | RMSNorm | undefined;
  readonly k_norm: LayerNorm | RMSNorm | undefined;
  readonly proj: Linear;
  readonly numHeads: number;
  readonly headDim: number;
  readonly causal: boolean;

  constructor(readonly dim: number, opts: AttentionLayerOptions) {
    super();
    const h = opts.numHeads;
    if (!Number.isInteger(h) || h < 1 || dim % h !== 0)
      throw dslError('Attention', [], `dim ${dim} must be divisible by num_heads ${h}`);
    this.numHeads = h;
    this.headDim = dim / h;
    this.causal = opts.causal ?? false;
    this.qkv = new Linear(dim, 3 * dim, { ...opts.linear, bias: opts.qkvBias ?? false });
    const qk = opts.qkNorm ?? 'none';
    const makeNorm = () => {
      const o = { eps: opts.qkNormEps, dtype: opts.linear?.dtype };
      if (qk === 'layernorm') return new LayerNorm(this.headDim, { ...o, eps: o.eps ?? 1e-5 });
      if (qk === 'rmsnorm') return new RMSNorm(this.headDim, { ...o, eps: o.eps ?? 1e-6 });
      return undefined;
    };
    this.q_norm = makeNorm();
    this.k_norm = makeNorm();
    this.proj = new Linear(dim, dim, { ...opts.linear, bias: true });
  }

  /** x [B, N, dim] → [B, N, dim]; `rope` (tables for N tokens of the head dim) rotates q and k. */
  forward(x: Tensor, rope?: VisionRotaryEmbeddingFast): Tensor {
    if (x.rank !== 3 || x.size(-1) !== this.dim) throw dslError('Attention', [x], `expects x [B, N, ${this.dim}]`);
    const [b, n] = x.shape as [number, number, number];
    const qkv = this.qkv.forward(x).reshape(b, n, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
    let q = qkv.select(0, 0);
    let k = qkv.select(0, 1);
    const v = qkv.select(0, 2);
    if (this.q_norm) q = this.q_norm.forward(q);
    if (this.k_norm) k = this.k_norm.forward(k);
    if (rope) {
      q = rope.forward(q);
      k = rope.forward(k);
    }
    const o = attention(q, k, v, { causal: this.causal, scale: 1 / Math.sqrt(this.headDim) });
    return this.proj.forward(o.transpose(1, 2).reshape(b, n, this.dim));
  }
}

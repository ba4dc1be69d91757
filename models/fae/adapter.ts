/**
 * @file The FAE encoder ("adapter"): one self-attention layer over the frozen encoder's patch
 * tokens, then a projection to the mean and log-variance of a diagonal Gaussian latent.
 *
 * Structure (Kiln's decision; the paper gives only "one attention layer, 24 heads × 256 head dim,
 * consecutive linears merged", and has no code):
 *
 *   h      = x + attn(norm(x))                      x: encoder tokens [B, N, D] (frozen, unnormalized residual)
 *   attn   = proj ∘ SDPA ∘ qkv                       qkv: Linear(D, 3·H·hd, bias) → q, k, v [B, H, N, hd]
 *                                                     proj: Linear(H·hd, D, bias); no RoPE (the encoder's
 *                                                     tokens already carry positions)
 *   y      = head(act(h))                            act: GELU (exact) or SiLU; head: Linear(D, 2C, bias)
 *   mean, logvar = y[..., :C], y[..., C:]           logvar clamped to [-30, 20] (LDM)
 *
 * - `norm` is a pre-norm RMSNorm(D) (eps 1e-6) with a learned scale, as in the decoders' blocks.
 * - "Consecutive linears merged": q, k and v are one Linear (`qkv`, timm layout: output rows ordered
 *   [q | k | v], each head-major [H, hd]); the attention inner width H·hd (6144 in the paper) is
 *   independent of D (1536), so `proj` maps it back to D. There is no MLP: after the residual, one
 *   activation and one Linear produce both Gaussian parameters (a single merged head for mean and
 *   log-variance, instead of two separate linears).
 * - Sampling: z = mean + exp(0.5·logvar)·ε with ε ~ N(0, I) from `randn` (Philox, deterministic given
 *   the trace's seed) or an explicit ε (goldens); `mode` (evaluation) returns z = mean.
 *
 * Latent layout: z is tokens [B, N, C] with N = grid², token n = row·grid + col (the encoder's patch
 * order, row-major over the image), channels last. `latentTokensToGrid` views it as [B, grid, grid, C]
 * (a reshape, no data movement); `latentTokensToNCHW` gives [B, C, grid, grid] for the latent
 * generators (DiT-style [B, C, H, W] inputs).
 */
import { Module, type Tensor, nn, randn } from '../../compiler/dsl/index.ts';
import { attention } from '../../compiler/dsl/functional.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import type { AdapterConfig } from './config.ts';

/**
 * Multi-head self-attention whose inner width heads·headDim may differ from the model width
 * (`qkv`: dim → 3·heads·headDim, `proj`: heads·headDim → dim). Same arithmetic as nn.Attention.
 */
export class WideAttention extends Module {
  readonly qkv: nn.Linear;
  readonly proj: nn.Linear;
  constructor(
    readonly dim: number,
    readonly heads: number,
    readonly headDim: number,
    opts: { qkvBias?: boolean } = {},
  ) {
    super();
    this.qkv = new nn.Linear(dim, 3 * heads * headDim, { bias: opts.qkvBias ?? true });
    this.proj = new nn.Linear(heads * headDim, dim);
  }
  /** x [B, N, dim] → [B, N, dim]. */
  forward(x: Tensor): Tensor {
    if (x.rank !== 3 || x.size(-1) !== this.dim) throw dslError('WideAttention', [x], `expects x [B, N, ${this.dim}]`);
    const [b, n] = x.shape as [number, number, number];
    const [h, hd] = [this.heads, this.headDim];
    const qkv = this.qkv.forward(x).reshape(b, n, 3, h, hd).permute(2, 0, 3, 1, 4);
    const o = attention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2), { scale: 1 / Math.sqrt(hd) });
    return this.proj.forward(o.transpose(1, 2).reshape(b, n, h * hd));
  }
}

export interface Posterior {
  /** [B, N, C] */
  mean: Tensor;
  /** [B, N, C], clamped */
  logvar: Tensor;
}

export class FaeAdapter extends Module {
  readonly norm: nn.RMSNorm;
  readonly attn: WideAttention;
  readonly head: nn.Linear;

  constructor(readonly dim: number, readonly config: AdapterConfig) {
    super();
    this.norm = new nn.RMSNorm(dim, { eps: config.normEps });
    this.attn = new WideAttention(dim, config.heads, config.headDim);
    this.head = new nn.Linear(dim, 2 * config.latentChannels);
  }

  get latentChannels(): number {
    return this.config.latentChannels;
  }

  /** Encoder tokens [B, N, D] → the posterior's mean and (clamped) log-variance, each [B, N, C]. */
  forward(x: Tensor): Posterior {
    if (x.rank !== 3 || x.size(-1) !== this.dim) throw dslError('FaeAdapter', [x], `expects encoder tokens [B, N, ${this.dim}]`);
    const h = x.add(this.attn.forward(this.norm.forward(x)));
    const a = this.config.activation === 'silu' ? h.silu() : h.gelu();
    const [mean, logvar] = this.head.forward(a).chunk(2, -1) as [Tensor, Tensor];
    const [lo, hi] = this.config.logvarClamp;
    return { mean, logvar: logvar.clamp(lo, hi) };
  }
}

/** z = mean + exp(0.5·logvar)·ε, ε explicit or N(0, I) from the trace's Philox seed. */
export function reparameterize(p: Posterior, eps?: Tensor): Tensor {
  const e = eps ?? randn([...p.mean.shape], p.mean.dtype);
  if (e.rank !== p.mean.rank || e.shape.some((d, i) => d !== p.mean.shape[i]))
    throw dslError('reparameterize', [p.mean, e], 'the noise must have the shape of the mean');
  return p.mean.add(p.logvar.mul(0.5).exp().mul(e));
}

/** Latent tokens [B, grid², C] → the latent image [B, grid, grid, C] (channels last; a reshape). */
export function latentTokensToGrid(z: Tensor, grid: number): Tensor {
  if (z.rank !== 3 || z.size(1) !== grid * grid) throw dslError('latentTokensToGrid', [z], `expects [B, ${grid * grid}, C]`);
  return z.reshape(z.size(0), grid, grid, z.size(2));
}
/** [B, grid, grid, C] → tokens [B, grid², C]. */
export function latentGridToTokens(z: Tensor): Tensor {
  if (z.rank !== 4 || z.size(1) !== z.size(2)) throw dslError('latentGridToTokens', [z], 'expects [B, grid, grid, C]');
  return z.reshape(z.size(0), z.size(1) * z.size(2), z.size(3));
}
/** Latent tokens [B, grid², C] → [B, C, grid, grid] (channels first, for DiT/SiT-style generators). */
export function latentTokensToNCHW(z: Tensor, grid: number): Tensor {
  return latentTokensToGrid(z, grid).permute(0, 3, 1, 2);
}
/** [B, C, grid, grid] → latent tokens [B, grid², C]. */
export function latentNCHWToTokens(z: Tensor): Tensor {
  if (z.rank !== 4) throw dslError('latentNCHWToTokens', [z], 'expects [B, C, grid, grid]');
  return latentGridToTokens(z.permute(0, 2, 3, 1));
}

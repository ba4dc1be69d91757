/**
 * @file The FAE feature decoder: a transformer at the encoder's width that maps the latent z back to
 * the frozen encoder's features (stage Ia target).
 *
 *   x = input_proj(z)                                 Linear(C, D)
 *   x = x + attn(norm1(x), rope);  x = x + mlp(norm2(x))   per block (pre-norm)
 *   y = output_proj(norm(x))                          RMSNorm(D), Linear(D, D)
 *
 * Blocks are LightningDiT's without adaLN: RMSNorm (eps 1e-6), timm-style attention (`qkv` with bias,
 * `proj`) with 2D RoPE on q and k (EVA / LightningDiT VisionRotaryEmbeddingFast, half the head dim
 * for rows and half for columns, pt_seq_len = the token grid side), SwiGLU FFN (`w12`, `w3`, biases).
 * There is no absolute position embedding: RoPE alone carries positions (z has no positional input
 * of its own beyond what the adapter kept).
 */
import { Module, type Tensor, nn } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import type { FeatureDecoderConfig } from './config.ts';

export class RopeBlock extends Module {
  readonly norm1: nn.RMSNorm;
  readonly attn: nn.Attention;
  readonly norm2: nn.RMSNorm;
  readonly mlp: nn.SwiGLUFFN;
  constructor(dim: number, heads: number, mlpHidden: number, eps: number) {
    super();
    this.norm1 = new nn.RMSNorm(dim, { eps });
    this.attn = new nn.Attention(dim, { numHeads: heads, qkvBias: true });
    this.norm2 = new nn.RMSNorm(dim, { eps });
    this.mlp = new nn.SwiGLUFFN(dim, mlpHidden);
  }
  forward(x: Tensor, rope: nn.VisionRotaryEmbeddingFast): Tensor {
    const h = x.add(this.attn.forward(this.norm1.forward(x), rope));
    return h.add(this.mlp.forward(this.norm2.forward(h)));
  }
}

export class FeatureDecoder extends Module {
  readonly input_proj: nn.Linear;
  readonly blocks: RopeBlock[];
  readonly norm: nn.RMSNorm;
  readonly output_proj: nn.Linear;
  readonly rope: nn.VisionRotaryEmbeddingFast;

  constructor(
    readonly latentChannels: number,
    readonly dim: number,
    readonly grid: number,
    readonly config: FeatureDecoderConfig,
  ) {
    super();
    const c = config;
    this.input_proj = new nn.Linear(latentChannels, dim);
    this.blocks = Array.from({ length: c.depth }, () => new RopeBlock(dim, c.heads, c.mlpHidden, c.normEps));
    this.norm = new nn.RMSNorm(dim, { eps: c.normEps });
    this.output_proj = new nn.Linear(dim, dim);
    this.rope = nn.VisionRotaryEmbeddingFast.forHeadDim(dim / c.heads, grid, { theta: c.ropeTheta });
  }

  /** z [B, grid², C] → features [B, grid², D]. */
  forward(z: Tensor): Tensor {
    if (z.rank !== 3 || z.size(1) !== this.grid * this.grid || z.size(2) !== this.latentChannels)
      throw dslError('FeatureDecoder', [z], `expects latent tokens [B, ${this.grid * this.grid}, ${this.latentChannels}]`);
    let x = this.input_proj.forward(z);
    for (const b of this.blocks) x = b.forward(x, this.rope);
    return this.output_proj.forward(this.norm.forward(x));
  }
}

/**
 * @file The FAE pixel decoder: a ViT from encoder features [B, N, D] to an image [B, c, H, W]
 * (paper: ViT-L, 1024 wide, 24 layers, 16×16 tokens of DINOv2-g → 256×256 with patch 16).
 *
 *   x = input_proj(features) + pos                  Linear(D, W); pos = fixed 2D sin-cos [N, W] (MAE/DiT
 *                                                   table, columns in the first half of the channels)
 *   x = x + attn(norm1(x));  x = x + mlp(norm2(x))  per block: LayerNorm (eps 1e-6), timm Attention
 *                                                   (qkv bias), Mlp with exact GELU (timm ViT block)
 *   y = output_proj(norm(x))                        LayerNorm, Linear(W, p·p·c) — the "last layer" whose
 *                                                   weight the adaptive GAN weight differentiates
 *   image = unpatchify(y, p, c)                     DiT's 'nhwpqc → nchpwq' ([B, c, grid·p, grid·p])
 *
 * This is the MAE-decoder-style ViT that RAE uses for its pixel decoder (no CLS token). Stage Ib
 * trains it on noisy encoder features (see losses.ts).
 */
import { Module, type Tensor, nn } from '../../compiler/dsl/index.ts';
import { sincos2dConstant } from '../../compiler/dsl/nn/posEmbed.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import type { PixelDecoderConfig } from './config.ts';

export class PixelDecoder extends Module {
  readonly input_proj: nn.Linear;
  readonly blocks: nn.ViTBlock[];
  readonly norm: nn.LayerNorm;
  readonly output_proj: nn.Linear;

  constructor(
    readonly featureDim: number,
    readonly grid: number,
    readonly config: PixelDecoderConfig,
  ) {
    super();
    const c = config;
    this.input_proj = new nn.Linear(featureDim, c.dim);
    this.blocks = Array.from({ length: c.depth }, () => new nn.ViTBlock(c.dim, c.heads, { hidden: c.mlpHidden, eps: c.normEps }));
    this.norm = new nn.LayerNorm(c.dim, { eps: c.normEps });
    this.output_proj = new nn.Linear(c.dim, c.patchSize * c.patchSize * c.channels);
  }

  /** Output image side (grid · patchSize). */
  get imageSize(): number {
    return this.grid * this.config.patchSize;
  }
  /** features [B, grid², D] → image [B, channels, grid·p, grid·p]. */
  forward(features: Tensor): Tensor {
    const n = this.grid * this.grid;
    if (features.rank !== 3 || features.size(1) !== n || features.size(2) !== this.featureDim)
      throw dslError('PixelDecoder', [features], `expects features [B, ${n}, ${this.featureDim}]`);
    let x = this.input_proj.forward(features).add(sincos2dConstant(this.config.dim, this.grid));
    for (const b of this.blocks) x = b.forward(x);
    const y = this.output_proj.forward(this.norm.forward(x));
    return nn.unpatchify(y, this.config.patchSize, this.config.channels);
  }
}

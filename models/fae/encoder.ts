/**
 * @file The frozen representation encoder as FAE sees it, and a small ViT that stands in for it.
 *
 * `FeatureEncoder` is what the FAE needs from DINOv2 (or SigLIP2, or an encoder trained in-project
 * for Fashion-MNIST): a Module whose `forward(images [B, channels, H, W])` returns the final,
 * normalized patch tokens [B, grid², dim] in row-major patch order (token n = row·grid + col). The
 * encoder does its own input normalization (DINOv2: ImageNet mean/std) and any resizing from the
 * pixel decoder's resolution to its own (256 → 224 px for the paper's setup), so the perceptual loss
 * can feed it reconstructions directly. It is frozen (Parameter.trainable = false, so its parameters
 * trace as 'frozen' inputs and are never in a training step's `params`), but gradients flow through
 * it to the reconstruction (perceptual term).
 *
 * `ViTFeatureEncoder` is a plain pre-norm ViT without a CLS token (timm names, in state_dict order: `pos_embed` [1, N, D],
 * `patch_embed.proj`, `blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`;
 * LayerNorm eps 1e-6, exact GELU, qkv bias), used by the goldens and tests, and sized for the
 * Fashion-MNIST encoder the project trains itself.
 */
import { Module, Parameter, type Tensor, nn } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';

/** What FAE needs from its frozen encoder. */
export interface FeatureEncoder {
  /** Token width D. */
  readonly dim: number;
  /** Side of the patch grid: forward returns grid² tokens. */
  readonly grid: number;
  /** Image channels it takes. */
  readonly channels: number;
  /** Image side it takes (the pixel decoder's output side). */
  readonly imageSize: number;
  /** images [B, channels, imageSize, imageSize] → normalized patch tokens [B, grid², dim]. */
  forward(images: Tensor): Tensor;
}
export type FeatureEncoderModule = Module & FeatureEncoder;

export interface ViTFeatureEncoderConfig {
  dim: number;
  depth: number;
  heads: number;
  mlpHidden: number;
  patchSize: number;
  imageSize: number;
  channels: number;
  /** Default 1e-6. */
  normEps?: number;
}

/** A small frozen ViT encoder (stand-in for DINOv2 in tests; the Fashion-MNIST encoder). */
export class ViTFeatureEncoder extends Module implements FeatureEncoder {
  // A module's own parameters come before its sub-modules' in a PyTorch state_dict: pos_embed first.
  readonly pos_embed: Parameter;
  readonly patch_embed: nn.PatchEmbed;
  readonly blocks: nn.ViTBlock[];
  readonly norm: nn.LayerNorm;
  readonly dim: number;
  readonly grid: number;
  readonly channels: number;
  readonly imageSize: number;

  constructor(readonly config: ViTFeatureEncoderConfig, opts: { trainable?: boolean } = {}) {
    super();
    const c = config;
    if (c.imageSize % c.patchSize !== 0) throw dslError('ViTFeatureEncoder', [], `image size ${c.imageSize} is not a multiple of the patch size ${c.patchSize}`);
    const eps = c.normEps ?? 1e-6;
    this.grid = c.imageSize / c.patchSize;
    this.pos_embed = new Parameter([1, this.grid * this.grid, c.dim], { kind: 'trunc_normal', std: 0.02, a: -0.04, b: 0.04 });
    this.patch_embed = new nn.PatchEmbed(c.channels, c.dim, c.patchSize);
    this.blocks = Array.from({ length: c.depth }, () => new nn.ViTBlock(c.dim, c.heads, { hidden: c.mlpHidden, eps }));
    this.norm = new nn.LayerNorm(c.dim, { eps });
    this.dim = c.dim;
    this.channels = c.channels;
    this.imageSize = c.imageSize;
    this.requiresGrad(opts.trainable ?? false);
  }

  forward(images: Tensor): Tensor {
    const s = this.imageSize;
    if (images.rank !== 4 || images.size(1) !== this.channels || images.size(2) !== s || images.size(3) !== s)
      throw dslError('ViTFeatureEncoder', [images], `expects images [B, ${this.channels}, ${s}, ${s}]`);
    let x = this.patch_embed.forward(images).add(this.pos_embed);
    for (const b of this.blocks) x = b.forward(x);
    return this.norm.forward(x);
  }
}

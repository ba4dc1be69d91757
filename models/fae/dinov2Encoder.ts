/**
 * @file DINOv2 (models/dinov2) as FAE's frozen FeatureEncoder, for the encoder features and the
 * perceptual loss.
 *
 * FAE's images (the pixel decoder's output and the dataset images it is compared with) are
 * [B, 3, S, S] in [-1, 1] (or [0, 1] with range 'zero_one'). The wrapper maps them to [0, 1], resizes
 * them to DINOv2's input side when it differs (the paper: 256 px images, DINOv2 at 224 px → 16×16
 * patches of 14 px) with PyTorch's bicubic interpolation (align_corners=False, and antialias=False by
 * default: RAE's `encode` calls F.interpolate(x, size, mode='bicubic', align_corners=False)) as two
 * matmuls, normalizes with ImageNet mean/std, and
 * returns the final-LayerNorm patch tokens (registers and CLS dropped) [B, grid², D].
 *
 * The wrapper holds the DINOv2 model's own children (`embeddings`, `encoder`, `layernorm`), so under
 * FAE the keys are `encoder.` + the HF checkpoint keys (e.g. `encoder.embeddings.cls_token`), and a
 * checkpoint loaded with models/dinov2/checkpoint.ts can be fed with that prefix added.
 */
import { Module, type Tensor } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import { type Dinov2Model, imagenetNormalize } from '../dinov2/model.ts';
import { bicubicResample } from '../dinov2/interpolate.ts';
import type { FeatureEncoder } from './encoder.ts';

export interface Dinov2FeatureEncoderOptions {
  /** Side of FAE's images (the pixel decoder's output). */
  imageSize: number;
  /** Side DINOv2 sees (default imageSize; the paper: 224). Must be a multiple of the patch size. */
  encoderImageSize?: number;
  /** Value range of FAE's images. Default 'minus_one_one'. */
  range?: 'minus_one_one' | 'zero_one';
  /** Antialiased bicubic resize (torchvision Resize's default). Default false (RAE). */
  antialias?: boolean;
}

/** Bicubic resize of images [B, C, H, W] to [B, C, out, out] (F.interpolate, align_corners=False). */
export function resizeImages(x: Tensor, out: number, antialias = false): Tensor {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  if (h === out && w === out) return x;
  const grid = x.permute(2, 3, 0, 1).reshape(h, w, b * c);
  return bicubicResample(grid, out, out, { antialias }).reshape(out, out, b, c).permute(2, 3, 0, 1);
}

export class Dinov2FeatureEncoder extends Module implements FeatureEncoder {
  readonly embeddings: Dinov2Model['embeddings'];
  readonly encoder: Dinov2Model['encoder'];
  readonly layernorm: Dinov2Model['layernorm'];
  readonly dim: number;
  readonly grid: number;
  readonly channels: number;
  readonly imageSize: number;
  readonly encoderImageSize: number;
  readonly range: 'minus_one_one' | 'zero_one';
  readonly antialias: boolean;
  readonly #model: Dinov2Model;

  constructor(model: Dinov2Model, opts: Dinov2FeatureEncoderOptions) {
    super();
    const c = model.config;
    this.embeddings = model.embeddings;
    this.encoder = model.encoder;
    this.layernorm = model.layernorm;
    this.#model = model;
    this.imageSize = opts.imageSize;
    this.encoderImageSize = opts.encoderImageSize ?? opts.imageSize;
    if (this.encoderImageSize % c.patchSize !== 0)
      throw dslError('Dinov2FeatureEncoder', [], `encoder image size ${this.encoderImageSize} is not a multiple of the patch size ${c.patchSize}`);
    this.dim = c.hiddenSize;
    this.grid = this.encoderImageSize / c.patchSize;
    this.channels = c.numChannels;
    this.range = opts.range ?? 'minus_one_one';
    this.antialias = opts.antialias ?? false;
  }

  forward(images: Tensor): Tensor {
    const s = this.imageSize;
    if (images.rank !== 4 || images.size(1) !== this.channels || images.size(2) !== s || images.size(3) !== s)
      throw dslError('Dinov2FeatureEncoder', [images], `expects images [B, ${this.channels}, ${s}, ${s}]`);
    let x = this.range === 'minus_one_one' ? images.add(1).mul(0.5) : images;
    x = resizeImages(x, this.encoderImageSize, this.antialias);
    return this.#model.forward(imagenetNormalize(x)).patchTokens;
  }
}

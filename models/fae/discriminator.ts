/**
 * @file A small patch discriminator for the stage-Ib GAN term, and the hinge losses.
 *
 * Design (Kiln's; taming-transformers uses a PatchGAN of overlapping 4×4 stride-2 convolutions with
 * BatchNorm): a stack of non-overlapping strided convolutions — kernel = stride = k_i, which Kiln
 * computes exactly as patchify + matmul (nn.PatchConv2d) — so every logit sees one image patch of
 * side Π k_i and the logits tile the image:
 *
 *   x = images [B, c, H, W]
 *   layer i: t = conv_i(x) as tokens [B, n_i, ch_i]  (Conv2d(ch_{i-1}, ch_i, k_i, stride k_i, bias))
 *            t = norm_i(t)        for i ≥ 1: LayerNorm over channels at each position (eps 1e-5,
 *                                 affine; a per-sample stand-in for PatchGAN's BatchNorm)
 *            t = LeakyReLU(t, 0.2);  x = t back to [B, ch_i, H_i, W_i]
 *   logits = head(t)              Linear(ch_L, 1) per position (a 1×1 conv) → [B, n_L]
 *
 * Parameter names: `layers.i.conv.{weight [ch_i, ch_{i-1}, k_i, k_i], bias}`, `layers.i.norm.{weight,
 * bias}` (i ≥ 1), `head.{weight, bias}`. Paper config: channels [128, 256, 512], patches [4, 2, 2]
 * → a 16×16 logit map over a 256 px image, each logit judging a 16×16 patch.
 *
 * Losses (taming-transformers, losses/vqperceptual.py): hinge
 * d_loss = 0.5·(mean(relu(1 − D(x))) + mean(relu(1 + D(x̂)))) for the discriminator's own step,
 * and g_loss = −mean(D(x̂)) for the generator.
 */
import { Module, type Tensor, nn, where } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import type { DiscriminatorConfig } from './config.ts';

export class DiscriminatorLayer extends Module {
  readonly conv: nn.PatchConv2d;
  readonly norm: nn.LayerNorm | undefined;
  constructor(inCh: number, outCh: number, k: number, withNorm: boolean) {
    super();
    this.conv = new nn.PatchConv2d(inCh, outCh, k);
    this.norm = withNorm ? new nn.LayerNorm(outCh) : undefined;
  }
}

export function leakyRelu(x: Tensor, slope: number): Tensor {
  return where(x.gt(0), x, x.mul(slope));
}

export class PatchDiscriminator extends Module {
  readonly layers: DiscriminatorLayer[];
  readonly head: nn.Linear;

  constructor(readonly inChannels: number, readonly config: DiscriminatorConfig) {
    super();
    const ch = [inChannels, ...config.channels];
    this.layers = config.patchSizes.map((k, i) => new DiscriminatorLayer(ch[i]!, ch[i + 1]!, k, i > 0));
    this.head = new nn.Linear(ch[ch.length - 1]!, 1);
  }

  /** images [B, c, H, W] → logits [B, (H/P)·(W/P)], P = Π patchSizes (row-major over the logit grid). */
  forward(images: Tensor): Tensor {
    if (images.rank !== 4 || images.size(1) !== this.inChannels)
      throw dslError('PatchDiscriminator', [images], `expects images [B, ${this.inChannels}, H, W]`);
    let x = images;
    let t: Tensor | undefined;
    this.layers.forEach((l, i) => {
      const [b, , hh, ww] = x.shape as [number, number, number, number];
      const k = l.conv.patchSize;
      t = l.conv.tokens(x);
      if (l.norm) t = l.norm.forward(t);
      t = leakyRelu(t, this.config.leakySlope);
      if (i < this.layers.length - 1) x = t.transpose(1, 2).reshape(b, l.conv.outChannels, hh / k, ww / k);
    });
    return this.head.forward(t!).squeeze(-1);
  }
}

/** Hinge loss of the discriminator: 0.5·(mean(relu(1 − real)) + mean(relu(1 + fake))). */
export function hingeDLoss(logitsReal: Tensor, logitsFake: Tensor): Tensor {
  return logitsReal.rsub(1).relu().mean().add(logitsFake.add(1).relu().mean()).mul(0.5);
}

/** Generator adversarial loss: −mean(D(x̂)). */
export function generatorGanLoss(logitsFake: Tensor): Tensor {
  return logitsFake.mean().neg();
}

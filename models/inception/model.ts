/**
 * @file Inception-v3 as a feature extractor for FID: torchvision's `Inception3` layer for layer (its
 * state_dict names, see blocks.ts), run as pytorch-fid's `InceptionV3` runs it for the default 2048-d
 * features ("pool3"): images [B, 3, H, W] with values in [0, 1] → bilinear resize to 299×299
 * (F.interpolate, align_corners=False) → 2x − 1 → the stem and Mixed_5b..7c → global average pool →
 * [B, 2048]. No fc layer, no aux head, no dropout: the features are the input of torchvision's fc.
 *
 * Variants (`InceptionConfig.variant`):
 *   'fid'          pytorch-fid's `fid_inception_v3()`: the TensorFlow FID network (pt_inception-2015-12-05
 *                  weights): FIDInceptionA/C/E_1 average-pool without the padding, FIDInceptionE_2
 *                  (Mixed_7c) max-pools; its file also holds fc (1008 classes), which is not used.
 *   'torchvision'  torchvision's `inception_v3`: every branch pool averages with count_include_pad=True.
 * `width` divides every channel count (1: the real network; 8: the golden tests' reduced network).
 */
import { Module, type Tensor, trace } from '../../compiler/dsl/index.ts';
import { maxPool2d, resizeBilinear } from '../../compiler/dsl/nn/conv.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, scaled } from './blocks.ts';

export type InceptionVariant = 'fid' | 'torchvision';

export interface InceptionConfig {
  variant: InceptionVariant;
  /** Channel divisor (1 = Inception-v3). */
  width: number;
  /** Side the input is resized to (pytorch-fid: 299); null: no resize. */
  resize: number | null;
  /** Map [0, 1] inputs to [−1, 1] (pytorch-fid's normalize_input). */
  normalizeInput: boolean;
}

export const INCEPTION_FID: InceptionConfig = { variant: 'fid', width: 1, resize: 299, normalizeInput: true };

/** The smallest side the network takes (torchvision's min_size 75). */
export const INCEPTION_MIN_SIDE = 75;

export class InceptionV3 extends Module {
  readonly Conv2d_1a_3x3: BasicConv2d;
  readonly Conv2d_2a_3x3: BasicConv2d;
  readonly Conv2d_2b_3x3: BasicConv2d;
  readonly Conv2d_3b_1x1: BasicConv2d;
  readonly Conv2d_4a_3x3: BasicConv2d;
  readonly Mixed_5b: InceptionA;
  readonly Mixed_5c: InceptionA;
  readonly Mixed_5d: InceptionA;
  readonly Mixed_6a: InceptionB;
  readonly Mixed_6b: InceptionC;
  readonly Mixed_6c: InceptionC;
  readonly Mixed_6d: InceptionC;
  readonly Mixed_6e: InceptionC;
  readonly Mixed_7a: InceptionD;
  readonly Mixed_7b: InceptionE;
  readonly Mixed_7c: InceptionE;
  /** Feature size: 2048 / width. */
  readonly dim: number;

  constructor(readonly config: InceptionConfig = INCEPTION_FID) {
    super();
    const w = config.width;
    const c = (n: number) => scaled(n, w);
    const fid = config.variant === 'fid';
    const avg = fid ? 'avg_exclude_pad' : 'avg';
    this.Conv2d_1a_3x3 = new BasicConv2d(3, c(32), 3, { stride: 2 });
    this.Conv2d_2a_3x3 = new BasicConv2d(c(32), c(32), 3);
    this.Conv2d_2b_3x3 = new BasicConv2d(c(32), c(64), 3, { padding: 1 });
    this.Conv2d_3b_1x1 = new BasicConv2d(c(64), c(80), 1);
    this.Conv2d_4a_3x3 = new BasicConv2d(c(80), c(192), 3);
    this.Mixed_5b = new InceptionA(c(192), 32, avg, w);
    this.Mixed_5c = new InceptionA(this.Mixed_5b.outChannels, 64, avg, w);
    this.Mixed_5d = new InceptionA(this.Mixed_5c.outChannels, 64, avg, w);
    this.Mixed_6a = new InceptionB(this.Mixed_5d.outChannels, w);
    this.Mixed_6b = new InceptionC(this.Mixed_6a.outChannels, 128, avg, w);
    this.Mixed_6c = new InceptionC(this.Mixed_6b.outChannels, 160, avg, w);
    this.Mixed_6d = new InceptionC(this.Mixed_6c.outChannels, 160, avg, w);
    this.Mixed_6e = new InceptionC(this.Mixed_6d.outChannels, 192, avg, w);
    this.Mixed_7a = new InceptionD(this.Mixed_6e.outChannels, w);
    this.Mixed_7b = new InceptionE(this.Mixed_7a.outChannels, avg, w);
    this.Mixed_7c = new InceptionE(this.Mixed_7b.outChannels, fid ? 'max' : 'avg', w);
    this.dim = this.Mixed_7c.outChannels;
  }

  /** images [B, 3, H, W] in [0, 1] → pool3 features [B, dim]. */
  forward(images: Tensor): Tensor {
    const { resize, normalizeInput } = this.config;
    if (images.rank !== 4 || images.size(1) !== 3) throw new KilnError(`InceptionV3: expects images [B, 3, H, W], got [${images.shape.join(', ')}]`);
    let x = resize ? resizeBilinear(images, resize, resize) : images;
    if (Math.min(x.size(2), x.size(3)) < INCEPTION_MIN_SIDE)
      throw new KilnError(`InceptionV3: ${x.size(2)}x${x.size(3)} inputs are smaller than the network's minimum ${INCEPTION_MIN_SIDE}x${INCEPTION_MIN_SIDE} (resize them)`);
    if (normalizeInput) x = x.mul(2).sub(1);
    x = this.Conv2d_2b_3x3.forward(this.Conv2d_2a_3x3.forward(this.Conv2d_1a_3x3.forward(x)));
    x = maxPool2d(x, 3, 2);
    x = this.Conv2d_4a_3x3.forward(this.Conv2d_3b_1x1.forward(x));
    x = maxPool2d(x, 3, 2);
    for (const m of [this.Mixed_5b, this.Mixed_5c, this.Mixed_5d, this.Mixed_6a, this.Mixed_6b, this.Mixed_6c, this.Mixed_6d, this.Mixed_6e, this.Mixed_7a, this.Mixed_7b, this.Mixed_7c])
      x = m.forward(x);
    return x.mean([2, 3]);
  }
}

/** The feature graph: input `images` [batch, 3, height, width] → output `features` [batch, dim]. */
export function traceInceptionFeatures(model: InceptionV3, o: { batch: number; height: number; width: number }): Graph {
  return trace('inception_v3_features', (t) => ({ features: model.forward(t.input('images', [o.batch, 3, o.height, o.width])) }), { params: model });
}

/**
 * @file Multi-crop augmentation as a BatchSource (runs in the data pipeline, so the prefetcher
 * overlaps it with the device step): each image of a batch [B, C, H, W] of the wrapped source becomes
 * `global + local` views of the same size H×W, stacked view-major ([V·B, C, H, W], view v at rows
 * v·B … v·B + B − 1). Each view is a random resized crop (area share drawn from the view kind's
 * scale range, aspect ratio log-uniform in [3/4, 4/3], bilinear resampling, as torchvision's
 * RandomResizedCrop), a horizontal flip with probability 1/2, and optionally an intensity jitter
 * (x·c + b, c ∈ [1 − j, 1 + j], b ∈ [−j, j], in the normalized units of the source).
 * Every random choice is a function of (seed, epoch, batch, view, image): a resumed run sees the
 * same views as an uninterrupted one.
 *
 * `cropParams` draws the same choices as numbers only (crop box, flip, contrast, offset per view), for
 * programs that cut the views on the device (models/ssl/cropViews.ts): then the host does no pixel work
 * and nothing blocks the step; `resizedCrop` stays the reference those views are tested against.
 */
import { KilnError } from '../../ir/errors.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { mulberry32 } from '../prng.ts';
import { type BatchSource, type SourceBatch, hashInts } from './source.ts';

export interface MultiCropOptions {
  globalViews: number;
  localViews: number;
  /** Area share of a global crop (default [0.4, 1]). */
  globalScale?: readonly [number, number];
  /** Area share of a local crop (default [0.1, 0.4]). */
  localScale?: readonly [number, number];
  /** Intensity jitter strength j (default 0: none). */
  jitter?: number;
  seed: number;
}

/**
 * One random resized crop of `src` (C×H×W, channel-major) into `dst` (C×outH×outW; default the same
 * size), bilinear.
 */
export function resizedCrop(src: Float32Array, dst: Float32Array, C: number, H: number, W: number, box: { top: number; left: number; h: number; w: number }, flip: boolean, outH = H, outW = W): void {
  for (let y = 0; y < outH; y++) {
    // pixel centers: output pixel y samples the crop at (y + 0.5)/outH of its height (align_corners=False)
    const sy = Math.min(Math.max(box.top + ((y + 0.5) * box.h) / outH - 0.5, 0), H - 1);
    const y0 = Math.floor(sy), y1 = Math.min(y0 + 1, H - 1), fy = sy - y0;
    for (let x = 0; x < outW; x++) {
      const xo = flip ? outW - 1 - x : x;
      const sx = Math.min(Math.max(box.left + ((x + 0.5) * box.w) / outW - 0.5, 0), W - 1);
      const x0 = Math.floor(sx), x1 = Math.min(x0 + 1, W - 1), fx = sx - x0;
      for (let c = 0; c < C; c++) {
        const o = c * H * W;
        const top = src[o + y0 * W + x0]! * (1 - fx) + src[o + y0 * W + x1]! * fx;
        const bot = src[o + y1 * W + x0]! * (1 - fx) + src[o + y1 * W + x1]! * fx;
        dst[c * outH * outW + y * outW + xo] = top * (1 - fy) + bot * fy;
      }
    }
  }
}

/** Numbers per view in `cropParams`: top, left, height, width (source pixels), flip (0/1), contrast c, offset b. */
export const CROP_PARAMS = 7;

/** One view's random choices, in MultiCropSource's order of draws. */
function drawView(o: MultiCropOptions, H: number, W: number, epoch: number, batch: number, v: number, i: number): { box: { top: number; left: number; h: number; w: number }; flip: boolean; c: number; b: number } {
  const rand = mulberry32(hashInts(o.seed, epoch, batch, v, i));
  const scale = v < o.globalViews ? (o.globalScale ?? [0.4, 1]) : (o.localScale ?? [0.1, 0.4]);
  const box = cropBox(rand, H, W, scale);
  const flip = rand() < 0.5;
  const j = o.jitter ?? 0;
  if (j <= 0) return { box, flip, c: 1, b: 0 };
  const c = 1 - j + 2 * j * rand(), b = (2 * rand() - 1) * j;
  return { box, flip, c, b };
}

/**
 * The random choices of every view of batch `batch` of epoch `epoch` (B images of H×W), view-major
 * ([V·B, CROP_PARAMS]: row v·B + i is view v of image i): exactly the crops, flips and jitters that
 * MultiCropSource applies on the host, as numbers for a program that cuts the views itself.
 */
export function cropParams(o: MultiCropOptions, H: number, W: number, epoch: number, batch: number, B: number): Float32Array {
  const V = o.globalViews + o.localViews;
  const out = new Float32Array(V * B * CROP_PARAMS);
  for (let v = 0; v < V; v++)
    for (let i = 0; i < B; i++) {
      const d = drawView(o, H, W, epoch, batch, v, i);
      out.set([d.box.top, d.box.left, d.box.h, d.box.w, d.flip ? 1 : 0, d.c, d.b], (v * B + i) * CROP_PARAMS);
    }
  return out;
}

/** A crop box of area share in `scale` and aspect ratio in [3/4, 4/3] (torchvision's 10 tries, then the whole image). */
export function cropBox(rand: () => number, H: number, W: number, scale: readonly [number, number]): { top: number; left: number; h: number; w: number } {
  const area = H * W;
  for (let i = 0; i < 10; i++) {
    const a = area * (scale[0] + rand() * (scale[1] - scale[0]));
    const r = Math.exp(Math.log(3 / 4) + rand() * (Math.log(4 / 3) - Math.log(3 / 4)));
    const w = Math.sqrt(a * r), h = Math.sqrt(a / r);
    if (w <= W && h <= H && w >= 1 && h >= 1) return { top: rand() * (H - h), left: rand() * (W - w), h, w };
  }
  return { top: 0, left: 0, h: H, w: W };
}

export class MultiCropSource implements BatchSource {
  readonly batchesPerEpoch: number;
  readonly batchSize: number;
  readonly imageShape: readonly [number, number, number];
  readonly classes: readonly string[];
  readonly views: number;

  constructor(private readonly inner: BatchSource, private readonly o: MultiCropOptions) {
    if (o.globalViews < 1) throw new KilnError(`multi-crop: globalViews must be >= 1 (got ${o.globalViews})`);
    this.batchesPerEpoch = inner.batchesPerEpoch;
    this.batchSize = inner.batchSize;
    this.imageShape = inner.imageShape;
    this.classes = inner.classes;
    this.views = o.globalViews + o.localViews;
  }

  async load(epoch: number, batch: number): Promise<SourceBatch> {
    const b = await this.inner.load(epoch, batch);
    const [C, H, W] = this.imageShape;
    const B = b.x.shape[0]!, per = C * H * W;
    if (b.x.data.length !== B * per) throw new KilnError(`multi-crop: the source gives ${b.x.shape.join('x')}, not [B, ${C}, ${H}, ${W}] images`);
    const src = b.x.data as Float32Array;
    const out = new Float32Array(this.views * B * per);
    for (let v = 0; v < this.views; v++) {
      for (let i = 0; i < B; i++) {
        const d = drawView(this.o, H, W, epoch, batch, v, i);
        const dst = out.subarray((v * B + i) * per, (v * B + i + 1) * per);
        resizedCrop(src.subarray(i * per, (i + 1) * per), dst, C, H, W, d.box, d.flip);
        if (d.c !== 1 || d.b !== 0) for (let k = 0; k < per; k++) dst[k] = dst[k]! * d.c + d.b;
      }
    }
    return { x: hostTensor('f32', [this.views * B, C, H, W], out), y: b.y, epoch, batch };
  }
}

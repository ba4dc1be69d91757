/**
 * @file Multi-crop augmentation (runtime/data/multiCrop.ts): the resampler against exact cases
 * (the whole image unflipped is the identity, flipped is the mirror, a half crop is a 2x bilinear
 * upsampling of that half), the crop boxes' area and aspect ranges, the view-major layout, and
 * determinism (a function of seed, epoch, batch, view and image only).
 */
import { describe, expect, it } from 'vitest';
import { hostTensor } from '../../ir/tensor.ts';
import { MultiCropSource, cropBox, resizedCrop } from '../../runtime/data/multiCrop.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import type { BatchSource, SourceBatch } from '../../runtime/data/source.ts';

const H = 6, W = 6;
const img = Float32Array.from({ length: 2 * H * W }, (_, i) => Math.sin(i * 1.3) + i * 0.01);

class Fixed implements BatchSource {
  readonly batchesPerEpoch = 3;
  readonly batchSize = 2;
  readonly imageShape = [1, H, W] as const;
  readonly classes = ['a', 'b'];
  async load(epoch: number, batch: number): Promise<SourceBatch> {
    return { x: hostTensor('f32', [2, 1, H, W], img), y: hostTensor('i32', [2], [0, 1]), epoch, batch };
  }
}

describe('resizedCrop', () => {
  it('the whole image unflipped is the identity; flipped, the mirror image', () => {
    const out = new Float32Array(H * W);
    resizedCrop(img, out, 1, H, W, { top: 0, left: 0, h: H, w: W }, false);
    expect(Array.from(out)).toEqual(Array.from(img.subarray(0, H * W)));
    resizedCrop(img, out, 1, H, W, { top: 0, left: 0, h: H, w: W }, true);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) expect(out[y * W + x]).toBe(img[y * W + (W - 1 - x)]);
  });

  it('a crop of the left half is its bilinear 2x upsampling in x (align_corners=False)', () => {
    const out = new Float32Array(H * W);
    resizedCrop(img, out, 1, H, W, { top: 0, left: 0, h: H, w: W / 2 }, false);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const sx = Math.min(Math.max((x + 0.5) / 2 - 0.5, 0), W - 1), x0 = Math.floor(sx), f = sx - x0;
        const want = img[y * W + x0]! * (1 - f) + img[y * W + Math.min(x0 + 1, W - 1)]! * f;
        expect(out[y * W + x]).toBeCloseTo(want, 6);
      }
  });
});

describe('cropBox', () => {
  it('draws areas within the scale range and aspect ratios within [3/4, 4/3], inside the image', () => {
    const rand = mulberry32(7);
    for (let i = 0; i < 200; i++) {
      const b = cropBox(rand, 28, 28, [0.1, 0.4]);
      const share = (b.h * b.w) / (28 * 28);
      expect(share).toBeGreaterThanOrEqual(0.1 - 1e-9);
      expect(share).toBeLessThanOrEqual(0.4 + 1e-9);
      expect(b.w / b.h).toBeGreaterThanOrEqual(3 / 4 - 1e-9);
      expect(b.w / b.h).toBeLessThanOrEqual(4 / 3 + 1e-9);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.top + b.h).toBeLessThanOrEqual(28 + 1e-9);
      expect(b.left + b.w).toBeLessThanOrEqual(28 + 1e-9);
    }
  });
});

describe('MultiCropSource', () => {
  it('stacks V views view-major, keeps labels, and is a pure function of (seed, epoch, batch)', async () => {
    const src = new MultiCropSource(new Fixed(), { globalViews: 2, localViews: 3, seed: 1, jitter: 0.2 });
    const a = await src.load(0, 1), b = await src.load(0, 1), c = await src.load(0, 2), d = await new MultiCropSource(new Fixed(), { globalViews: 2, localViews: 3, seed: 2, jitter: 0.2 }).load(0, 1);
    expect(a.x.shape).toEqual([10, 1, H, W]);
    expect(Array.from(a.y.data)).toEqual([0, 1]);
    expect(Array.from(a.x.data)).toEqual(Array.from(b.x.data));
    expect(Array.from(a.x.data)).not.toEqual(Array.from(c.x.data));
    expect(Array.from(a.x.data)).not.toEqual(Array.from(d.x.data));
    // views of one image differ from each other (independent crops)
    const per = H * W;
    expect(Array.from(a.x.data.slice(0, per))).not.toEqual(Array.from(a.x.data.slice(2 * per, 3 * per)));
  });

  it('global views with scale [1, 1] and no jitter are the image or its mirror', async () => {
    const src = new MultiCropSource(new Fixed(), { globalViews: 4, localViews: 0, globalScale: [1, 1], seed: 3 });
    const a = await src.load(1, 0);
    const per = H * W;
    let flips = 0;
    for (let v = 0; v < 4; v++)
      for (let i = 0; i < 2; i++) {
        const view = Array.from(a.x.data.slice((v * 2 + i) * per, (v * 2 + i + 1) * per));
        const orig = Array.from(img.subarray(i * per, (i + 1) * per));
        const mirror = orig.map((_, k) => orig[Math.floor(k / W) * W + (W - 1 - (k % W))]!);
        // the whole-image box up to the 4:3 aspect draw: square crops of area 1 only
        expect(view.every((x, k) => Math.abs(x - orig[k]!) < 1e-5) || view.every((x, k) => Math.abs(x - mirror[k]!) < 1e-5)).toBe(true);
        if (view.some((x, k) => Math.abs(x - orig[k]!) > 1e-5)) flips++;
      }
    expect(flips).toBeGreaterThan(0);
    expect(flips).toBeLessThan(8);
  });
});

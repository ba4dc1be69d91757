/**
 * Data sources on real files: an ImageNet-style image folder the test writes with sharp (PNG and
 * JPEG, odd sizes, a corrupt file and a truncated one), Fashion-MNIST padded and resized, and the
 * prefetching loader (same batches as direct loads, in order).
 */
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFashionMnist } from '../../runtime/data/fashionMnist.ts';
import { FashionSource } from '../../runtime/data/fashionSource.ts';
import { ImageFolderSource } from '../../runtime/data/imageFolder.ts';
import { Prefetcher } from '../../runtime/data/prefetch.ts';

let root = '';
/** An image whose left half is `left` and right half `right` (RGB), of size w×h. */
async function halves(path: string, w: number, h: number, left: number[], right: number[], format: 'png' | 'jpeg'): Promise<void> {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set(x < w / 2 ? left : right, (y * w + x) * 3);
  const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
  await (format === 'png' ? img.png() : img.jpeg({ quality: 95 })).toFile(path);
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'kiln-images-'));
  for (const cls of ['cat', 'dog']) mkdirSync(join(root, cls));
  // cat: red|blue, 40x20 (landscape: the center crop keeps the middle 20x20 columns 10..29)
  for (let i = 0; i < 3; i++) await halves(join(root, 'cat', `c${i}.png`), 40, 20, [255, 0, 0], [0, 0, 255], 'png');
  // dog: green|white, 30x60 portrait, JPEG
  for (let i = 0; i < 3; i++) await halves(join(root, 'dog', `d${i}.jpg`), 30, 60, [0, 255, 0], [255, 255, 255], 'jpeg');
  writeFileSync(join(root, 'dog', 'broken.jpg'), 'this is not a JPEG');
  const good = readFileSync(join(root, 'cat', 'c0.png'));
  writeFileSync(join(root, 'cat', 'truncated.png'), good.subarray(0, good.length >> 1));
  writeFileSync(join(root, 'cat', 'notes.txt'), 'ignored: not an image');
});

describe('image folder', () => {
  it('labels by sorted class folder; resize + center crop + normalize; NCHW f32', async () => {
    const src = new ImageFolderSource({ root, batchSize: 8, seed: 0, size: 10, shuffle: false, onError: 'skip', normalize: { mean: 0.5, std: 0.5 }, warn: () => {} });
    expect(src.classes).toEqual(['cat', 'dog']);
    expect(src.files).toHaveLength(8); // 4 cat (incl. truncated) + 4 dog (incl. broken)
    const b = await src.load(0, 0);
    expect(b.x.shape).toEqual([8, 3, 10, 10]);
    const x = b.x.data as Float32Array;
    const at = (i: number, c: number, y: number, xx: number) => x[((i * 3 + c) * 10 + y) * 10 + xx]!;
    // first image: cat c0 → left half red (R = +1, B = −1 after (v − 0.5)/0.5), right half blue
    expect(b.y.data[0]).toBe(0);
    expect(at(0, 0, 5, 1)).toBeCloseTo(1, 5);
    expect(at(0, 2, 5, 1)).toBeCloseTo(-1, 5);
    expect(at(0, 2, 5, 8)).toBeCloseTo(1, 5);
    // a dog image (portrait, green|white; JPEG, so a few levels of error)
    const d = Array.from(b.y.data).indexOf(1);
    expect(at(d, 1, 5, 1)).toBeGreaterThan(0.95);
    expect(at(d, 0, 5, 1)).toBeLessThan(-0.9);
    expect(at(d, 0, 5, 8)).toBeGreaterThan(0.95);
  });

  it('skip: unreadable images are reported by path and replaced; fail: the load throws naming the path', async () => {
    const warnings: string[] = [];
    const src = new ImageFolderSource({ root, batchSize: 8, seed: 0, size: 8, shuffle: false, onError: 'skip', warn: (s) => warnings.push(s) });
    const b = await src.load(0, 0);
    expect(warnings.sort()).toEqual([expect.stringMatching(/skipping unreadable image .*cat\/truncated\.png: /), expect.stringMatching(/skipping unreadable image .*dog\/broken\.jpg: /)]);
    expect(b.x.shape).toEqual([8, 3, 8, 8]); // still a full batch
    expect(Array.from(b.x.data).every(Number.isFinite)).toBe(true);
    const strict = new ImageFolderSource({ root, batchSize: 8, seed: 0, size: 8, shuffle: false, onError: 'fail' });
    await expect(strict.load(0, 0)).rejects.toThrow(/(truncated\.png|broken\.jpg): unreadable image/);
  });

  it('random flips depend only on seed, epoch and image: the same batch twice is identical; flips happen', async () => {
    const mk = () => new ImageFolderSource({ root, batchSize: 4, seed: 5, size: 10, flip: true, onError: 'skip', warn: () => {} });
    const [a, b] = [await mk().load(2, 1), await mk().load(2, 1)];
    expect(Buffer.from((a.x.data as Float32Array).buffer).equals(Buffer.from((b.x.data as Float32Array).buffer))).toBe(true);
    // over a few epochs some cat image comes out mirrored (blue on the left)
    let flipped = 0, plain = 0;
    for (let e = 0; e < 6; e++) {
      const batch = await mk().load(e, 0);
      for (let i = 0; i < 4; i++) {
        if (batch.y.data[i] !== 0) continue;
        const red = batch.x.data[((i * 3 + 0) * 10 + 5) * 10 + 1]!;
        if (red > 0.9) plain++; else flipped++;
      }
    }
    expect(flipped).toBeGreaterThan(0);
    expect(plain).toBeGreaterThan(0);
  });

  it('shuffles deterministically by seed and epoch', () => {
    const src = new ImageFolderSource({ root, batchSize: 2, seed: 1, size: 8 });
    expect(Array.from(src.order(3))).toEqual(Array.from(new ImageFolderSource({ root, batchSize: 2, seed: 1, size: 8 }).order(3)));
    expect(Array.from(src.order(3))).not.toEqual(Array.from(src.order(4)));
    // computed once per epoch, not per batch (a permutation of a large folder costs milliseconds of the main thread)
    expect(src.order(4)).toBe(src.order(4));
  });
});

describe('Fashion-MNIST source', () => {
  const data = loadFashionMnist('train');
  it('pads 28 → 32 with the normalized value of black and keeps the pixels; resizes 28 → 14', async () => {
    const norm = { mean: 0.5, std: 0.5 };
    const plain = await new FashionSource(data, { batchSize: 4, seed: 0, normalize: norm, limit: 64 }).load(0, 0);
    const padded = await new FashionSource(data, { batchSize: 4, seed: 0, normalize: norm, size: 32, limit: 64 }).load(0, 0);
    expect(padded.x.shape).toEqual([4, 1, 32, 32]);
    expect(Array.from(padded.y.data)).toEqual(Array.from(plain.y.data));
    expect(padded.x.data[0]).toBe(-1); // border: (0 − 0.5)/0.5
    for (const [r, c] of [[0, 0], [13, 17], [27, 27]]) expect(padded.x.data[(r! + 2) * 32 + c! + 2]).toBe(plain.x.data[r! * 28 + c!]);
    const small = await new FashionSource(data, { batchSize: 4, seed: 0, normalize: norm, size: 14, limit: 64 }).load(0, 0);
    expect(small.x.shape).toEqual([4, 1, 14, 14]);
    // a 2x downscale keeps the mean brightness (within a few grey levels)
    const mean = (a: ArrayLike<number>, n: number) => Array.from(a).slice(0, n).reduce((s, v) => s + v, 0) / n;
    expect(Math.abs(mean(small.x.data, 196) - mean(plain.x.data, 784))).toBeLessThan(0.03);
  });

  it('the prefetcher yields the same batches in order, across the epoch boundary, and reports its wait', async () => {
    const src = new FashionSource(data, { batchSize: 16, seed: 3, limit: 64 }); // 4 batches per epoch
    const pf = new Prefetcher(src, { epoch: 0, batch: 2 }, 3);
    for (const [e, b] of [[0, 2], [0, 3], [1, 0], [1, 1]]) {
      const { batch, waitMs } = await pf.next();
      expect([batch.epoch, batch.batch]).toEqual([e, b]);
      expect(waitMs).toBeGreaterThanOrEqual(0);
      const direct = await src.load(e!, b!);
      expect(Array.from(batch.y.data)).toEqual(Array.from(direct.y.data));
    }
  });
});

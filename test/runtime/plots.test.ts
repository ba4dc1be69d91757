/**
 * Loss curves and sample grids as PNG files (drawn as SVG / raw pixels, encoded by sharp), read back
 * with sharp: size, and pixels where the drawing puts them.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { hostTensor } from '../../ir/tensor.ts';
import { tileImages, writeImageGrid } from '../../runtime/train/imageGrid.ts';
import { lossPlotSvg, writeLossPlot } from '../../runtime/train/lossPlot.ts';

const dir = mkdtempSync(join(tmpdir(), 'kiln-plots-'));

describe('loss plot', () => {
  it('writes an 800x480 PNG with the curve drawn in the series colour; log scale past a decade', async () => {
    const points = Array.from({ length: 100 }, (_, i) => [i + 1, 2.3 * Math.exp(-i / 20)] as const);
    const svg = lossPlotSvg([{ name: 'loss', points }], { title: 'training' });
    expect(svg).toContain('(log scale)');
    const file = join(dir, 'loss.png');
    await writeLossPlot(file, [{ name: 'loss', points }], { title: 'training' });
    const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.format]).toEqual([800, 480, 'raw']);
    let blue = 0;
    for (let i = 0; i < data.length; i += info.channels) if (data[i]! < 80 && data[i + 2]! > 150) blue++;
    expect(blue).toBeGreaterThan(500); // the polyline (#1f77b4)
  });
});

describe('image grid', () => {
  it('tiles [B, C, H, W] with padding; values mapped from [−1, 1]', async () => {
    const B = 6, H = 4, W = 5;
    const v = new Float32Array(B * H * W);
    for (let b = 0; b < B; b++) v.fill(b % 2 ? 1 : -1, b * H * W, (b + 1) * H * W); // black, white, black...
    const images = hostTensor('f32', [B, 1, H, W], v);
    const g = tileImages(images, { columns: 3, padding: 1 });
    expect([g.width, g.height]).toEqual([3 * W + 4, 2 * H + 3]);
    const file = join(dir, 'grid.png');
    await writeImageGrid(file, images, { columns: 3, padding: 1, labels: ['a', 'b', 'c', 'd', 'e', 'f'] });
    const meta = await sharp(file).metadata();
    expect([meta.width, meta.height]).toEqual([3 * W + 4, 2 * (H + 16) + 3]);
    const { data, info } = await sharp(join(dir, 'grid.png')).raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => data[(y * info.width + x) * info.channels]!;
    expect(px(1, 1)).toBe(0); // image 0: black
    expect(px(1 + W + 1, 1)).toBe(255); // image 1: white
  });
});

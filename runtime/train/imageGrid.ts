/**
 * @file Sample grids as PNG: a batch of images [B, C, H, W] (C = 1 or 3) tiled into rows of `columns`,
 * values mapped from `range` to 0..255, optional class labels drawn under each tile (an SVG overlay
 * composited by sharp). For training-time sample previews and `kiln sample`.
 */
import sharp from 'sharp';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

export interface GridOptions {
  columns?: number;
  /** Value range mapped to black..white (default [−1, 1]). */
  range?: readonly [number, number];
  /** One label per image, drawn under its tile. */
  labels?: readonly string[];
  /** Pixel scale factor (nearest neighbour), default 1. */
  scale?: number;
  padding?: number;
}

/** Tile a batch into an RGB byte image; returns its bytes and size. */
export function tileImages(images: HostTensor, o: GridOptions = {}): { data: Uint8Array; width: number; height: number; tile: [number, number] } {
  if (images.shape.length !== 4) throw new KilnError(`image grid: expected images [B, C, H, W], got [${images.shape.join(', ')}]`);
  const [B, C, H, W] = images.shape as [number, number, number, number];
  if (C !== 1 && C !== 3) throw new KilnError(`image grid: images need 1 or 3 channels, got ${C}`);
  const s = o.scale ?? 1, pad = o.padding ?? 2, cols = Math.min(o.columns ?? Math.ceil(Math.sqrt(B)), B), rows = Math.ceil(B / cols);
  const labelH = o.labels ? 16 : 0;
  const th = H * s + labelH, tw = W * s;
  const width = cols * tw + (cols + 1) * pad, height = rows * th + (rows + 1) * pad;
  const out = new Uint8Array(width * height * 3).fill(255);
  const [lo, hi] = o.range ?? [-1, 1];
  const v = images.data;
  for (let b = 0; b < B; b++) {
    const gx = pad + (b % cols) * (tw + pad), gy = pad + Math.floor(b / cols) * (th + pad);
    for (let y = 0; y < H * s; y++)
      for (let x = 0; x < W * s; x++)
        for (let c = 0; c < 3; c++) {
          const val = Number(v[((b * C + (C === 1 ? 0 : c)) * H + Math.floor(y / s)) * W + Math.floor(x / s)]);
          out[((gy + y) * width + gx + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(((val - lo) / (hi - lo)) * 255)));
        }
  }
  return { data: out, width, height, tile: [tw, th] };
}

/** Images of 1 or 3 channels as they are; others (e.g. latents) as their first 3 channels (1 if fewer than 3). */
export function firstChannels(images: HostTensor): HostTensor {
  const [B, C, H, W] = images.shape as [number, number, number, number];
  if (C === 1 || C === 3) return images;
  const keep = C >= 3 ? 3 : 1;
  const d = new Float32Array(B * keep * H * W);
  for (let b = 0; b < B; b++) d.set(Float32Array.from(images.data.subarray(b * C * H * W, (b * C + keep) * H * W) as ArrayLike<number>), b * keep * H * W);
  return hostTensor('f32', [B, keep, H, W], d);
}

export async function writeImageGrid(path: string, images: HostTensor, o: GridOptions = {}): Promise<void> {
  const g = tileImages(images, o);
  let img = sharp(g.data, { raw: { width: g.width, height: g.height, channels: 3 } });
  if (o.labels) {
    const pad = o.padding ?? 2, cols = Math.min(o.columns ?? Math.ceil(Math.sqrt(images.shape[0]!)), images.shape[0]!);
    const texts = o.labels.map((l, b) => {
      const x = pad + (b % cols) * (g.tile[0] + pad) + g.tile[0] / 2, y = pad + Math.floor(b / cols) * (g.tile[1] + pad) + g.tile[1] - 4;
      return `<text x="${x}" y="${y}" text-anchor="middle">${l.replace(/[<>&]/g, '')}</text>`;
    });
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${g.width}" height="${g.height}" font-family="sans-serif" font-size="10">${texts.join('')}</svg>`;
    img = sharp(await img.png().toBuffer()).composite([{ input: Buffer.from(svg), top: 0, left: 0 }]);
  }
  await img.png().toFile(path);
}

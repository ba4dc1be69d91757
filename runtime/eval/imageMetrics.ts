/**
 * @file Reconstruction metrics on image batches [B, C, H, W] in f64:
 * - PSNR = 10·log10(L² / MSE) per image (MSE over C·H·W), L the data range; averaged over the batch
 *   (identical images: +∞).
 * - SSIM (Wang, Bovik, Sheikh, Simoncelli 2004): 11×11 Gaussian window, σ = 1.5, normalized; K1 = 0.01,
 *   K2 = 0.03, C1 = (K1·L)², C2 = (K2·L)²; local statistics over the window positions that fit in the
 *   image ('valid', as the reference MATLAB ssim and pytorch-msssim), population (biased) variances;
 *   SSIM map mean per channel, then over channels and images. The window shrinks to the image when
 *   the image is smaller than 11 (keeping σ).
 */
import { KilnError } from '../../ir/errors.ts';
import type { HostTensor } from '../../ir/tensor.ts';

function dims(a: HostTensor, b: HostTensor, what: string): [number, number, number, number] {
  if (a.shape.length !== 4 || a.shape.join() !== b.shape.join())
    throw new KilnError(`${what}: expected two image batches [B, C, H, W] of one shape, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  return a.shape as [number, number, number, number];
}

/** PSNR of each image (dB). */
export function psnr(a: HostTensor, b: HostTensor, dataRange: number): number[] {
  const [B, C, H, W] = dims(a, b, 'psnr');
  const per = C * H * W;
  const out: number[] = [];
  for (let i = 0; i < B; i++) {
    let se = 0;
    for (let k = i * per; k < (i + 1) * per; k++) se += (Number(a.data[k]) - Number(b.data[k])) ** 2;
    out.push(10 * Math.log10((dataRange * dataRange) / (se / per)));
  }
  return out;
}

/** The normalized 1-D Gaussian of `size` taps. */
export function gaussianWindow(size: number, sigma: number): Float64Array {
  const g = Float64Array.from({ length: size }, (_, i) => Math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma * sigma)));
  const s = g.reduce((x, y) => x + y, 0);
  return g.map((v) => v / s);
}

export interface SsimOptions {
  dataRange: number;
  windowSize?: number;
  sigma?: number;
  k1?: number;
  k2?: number;
}

/** SSIM of each image. */
export function ssim(a: HostTensor, b: HostTensor, o: SsimOptions): number[] {
  const [B, C, H, W] = dims(a, b, 'ssim');
  const win = Math.min(o.windowSize ?? 11, H, W);
  const g = gaussianWindow(win, o.sigma ?? 1.5);
  const c1 = ((o.k1 ?? 0.01) * o.dataRange) ** 2, c2 = ((o.k2 ?? 0.03) * o.dataRange) ** 2;
  const oh = H - win + 1, ow = W - win + 1;
  const out: number[] = [];
  for (let n = 0; n < B; n++) {
    let total = 0;
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * H * W;
      let sum = 0;
      for (let y = 0; y < oh; y++)
        for (let x = 0; x < ow; x++) {
          let mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
          for (let i = 0; i < win; i++)
            for (let j = 0; j < win; j++) {
              const w = g[i]! * g[j]!;
              const u = Number(a.data[base + (y + i) * W + x + j]), v = Number(b.data[base + (y + i) * W + x + j]);
              mx += w * u;
              my += w * v;
              sxx += w * u * u;
              syy += w * v * v;
              sxy += w * u * v;
            }
          const vx = sxx - mx * mx, vy = syy - my * my, cxy = sxy - mx * my;
          sum += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
      total += sum / (oh * ow);
    }
    out.push(total / C);
  }
  return out;
}

export function mean(v: readonly number[]): number {
  return v.reduce((x, y) => x + y, 0) / v.length;
}

/**
 * @file Fashion-MNIST as a BatchSource: the seeded per-epoch order of runtime/data/fashionMnist.ts,
 * each 28×28 image zero-padded (centered) or resized (sharp, bilinear) to the job's size, normalized
 * as the job asks, as [B, 1, S, S] or flattened [B, S·S].
 */
import sharp from 'sharp';
import { KilnError } from '../../ir/errors.ts';
import { Batcher, type FashionMnist } from './fashionMnist.ts';
import { type BatchSource, type Normalization, type SourceBatch, channelStats } from './source.ts';

export interface FashionSourceOptions {
  batchSize: number;
  seed: number;
  /** Output side (default 28). */
  size?: number;
  /** How to reach `size`: centered zero padding (size ≥ 28) or resizing (default 'pad' when size ≥ 28). */
  fit?: 'pad' | 'resize';
  normalize?: Normalization;
  layout?: 'flat' | 'image';
  shuffle?: boolean;
  /** Use only the first N examples (quick runs and tests). */
  limit?: number;
}

export class FashionSource implements BatchSource {
  readonly batchesPerEpoch: number;
  readonly imageShape: readonly [number, number, number];
  readonly classes: readonly string[];
  readonly batchSize: number;
  private readonly batcher: Batcher;
  private readonly size: number;
  private readonly fit: 'pad' | 'resize';
  private readonly mean: number;
  private readonly std: number;
  private readonly layout: 'flat' | 'image';

  constructor(data: FashionMnist, o: FashionSourceOptions) {
    const count = Math.min(o.limit ?? data.count, data.count);
    const ds = { images: data.images.subarray(0, count * 784), labels: data.labels.subarray(0, count), count, rows: 28, cols: 28 };
    this.batcher = new Batcher(ds, { batchSize: o.batchSize, seed: o.seed, dropLast: true, shuffle: o.shuffle ?? true });
    this.batchSize = o.batchSize;
    this.batchesPerEpoch = this.batcher.numBatches;
    if (this.batchesPerEpoch < 1) throw new KilnError(`Fashion-MNIST: ${count} examples make no batch of ${o.batchSize}`);
    this.size = o.size ?? 28;
    this.fit = o.fit ?? (this.size >= 28 ? 'pad' : 'resize');
    if (this.fit === 'pad' && this.size < 28) throw new KilnError(`Fashion-MNIST: cannot pad 28 px images to ${this.size} px (use fit 'resize')`);
    const { mean, std } = channelStats(o.normalize, 1);
    this.mean = mean[0]!;
    this.std = std[0]!;
    this.layout = o.layout ?? 'image';
    this.imageShape = [1, this.size, this.size];
    this.classes = data.classes;
  }

  /** The last two epochs' orders (every batch of an epoch asks; the prefetcher reaches into the next epoch). */
  private orders: Array<{ epoch: number; order: Uint32Array }> = [];

  async load(epoch: number, batch: number): Promise<SourceBatch> {
    let order = this.orders.find((o) => o.epoch === epoch)?.order;
    if (!order) {
      order = this.batcher.order(epoch);
      this.orders = [...this.orders.slice(-1), { epoch, order }];
    }
    const idx = order.subarray(batch * this.batchSize, (batch + 1) * this.batchSize);
    const raw = this.batcher.makeBatch(idx, epoch, batch); // x/255, [B, 784]
    const B = idx.length, S = this.size;
    const src = raw.x.data as Float32Array;
    const x = new Float32Array(B * S * S);
    const norm = (v: number) => (v - this.mean) / this.std;
    if (S === 28) for (let i = 0; i < x.length; i++) x[i] = norm(src[i]!);
    else if (this.fit === 'pad') {
      const p = (S - 28) >> 1;
      x.fill(norm(0));
      for (let b = 0; b < B; b++)
        for (let r = 0; r < 28; r++)
          for (let c = 0; c < 28; c++) x[b * S * S + (r + p) * S + c + p] = norm(src[b * 784 + r * 28 + c]!);
    } else {
      await Promise.all(Array.from({ length: B }, async (_, b) => {
        const bytes = Uint8Array.from(src.subarray(b * 784, (b + 1) * 784), (v) => Math.round(v * 255));
        const { data: out, info } = await sharp(bytes, { raw: { width: 28, height: 28, channels: 1 } })
          .resize(S, S, { kernel: 'linear', fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
        const ch = info.channels; // libvips may widen a one-band image to sRGB: take the first band
        for (let i = 0; i < S * S; i++) x[b * S * S + i] = norm(out[i * ch]! / 255);
      }));
    }
    const shape = this.layout === 'flat' ? [B, S * S] : [B, 1, S, S];
    return { x: { dtype: 'f32', shape, data: x }, y: raw.y, epoch, batch };
  }
}

/**
 * @file An ImageNet-style image folder as a BatchSource: `<root>/<class>/<image>.{jpg,jpeg,png,webp}`,
 * classes sorted by name (label = index), images sorted by path. Each image is decoded with sharp,
 * resized so its shorter side is `size`, center-cropped to size×size, flipped left-right with
 * probability ½ when `flip` is set (the choice depends only on seed, epoch and image index, so a
 * resumed run sees the same flips), converted to 1 or 3 channels and normalized per channel.
 *
 * An unreadable or corrupt image is reported by path. With `onError: 'skip'` it is reported once
 * (through `warn`), remembered, and replaced in its batch by the next readable image of the epoch's
 * order (shapes are static, so a batch is always full); with 'fail' the load throws a DatasetError.
 */
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { mulberry32 } from '../prng.ts';
import { permutation } from './fashionMnist.ts';
import { DatasetError } from './idx.ts';
import { type BatchSource, type Normalization, type SourceBatch, channelStats, hashInts } from './source.ts';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export interface ImageFolderOptions {
  root: string;
  batchSize: number;
  seed: number;
  size: number;
  channels?: 1 | 3;
  flip?: boolean;
  normalize?: Normalization;
  shuffle?: boolean;
  onError?: 'skip' | 'fail';
  warn?: (line: string) => void;
}

export class ImageFolderSource implements BatchSource {
  readonly files: string[] = [];
  readonly labels: number[] = [];
  readonly classes: string[];
  readonly batchesPerEpoch: number;
  readonly batchSize: number;
  readonly imageShape: readonly [number, number, number];
  /** Paths found unreadable so far (skip mode). */
  readonly bad = new Set<number>();
  private readonly stats: { mean: Float32Array; std: Float32Array };

  constructor(private readonly o: ImageFolderOptions) {
    let entries: string[];
    try {
      entries = readdirSync(o.root).sort();
    } catch (e) {
      throw new DatasetError(`cannot read the image folder: ${(e as Error).message}`, o.root);
    }
    this.classes = entries.filter((d) => statSync(join(o.root, d)).isDirectory());
    if (!this.classes.length) throw new DatasetError('no class subfolders (expected <root>/<class>/<image>.jpg)', o.root);
    this.classes.forEach((cls, label) => {
      for (const f of readdirSync(join(o.root, cls)).sort())
        if (IMAGE_EXT.has(extname(f).toLowerCase())) {
          this.files.push(join(o.root, cls, f));
          this.labels.push(label);
        }
    });
    this.batchSize = o.batchSize;
    this.batchesPerEpoch = Math.floor(this.files.length / o.batchSize);
    if (this.batchesPerEpoch < 1) throw new DatasetError(`${this.files.length} images make no batch of ${o.batchSize}`, o.root);
    const c = o.channels ?? 3;
    this.imageShape = [c, o.size, o.size];
    this.stats = channelStats(o.normalize, c);
  }

  order(epoch: number): Uint32Array {
    const n = this.files.length;
    if (this.o.shuffle === false) return Uint32Array.from({ length: n }, (_, i) => i);
    return permutation(n, mulberry32((this.o.seed + epoch) >>> 0));
  }

  /** Decode one image to [C, S, S] values in [0, 1] (before normalization). */
  async decode(i: number, epoch: number): Promise<Uint8Array> {
    const { size, channels = 3, flip } = this.o;
    let img = sharp(this.files[i]!, { failOn: 'error' }).resize(size, size, { fit: 'cover', position: 'centre', kernel: 'linear' });
    if (flip && (hashInts(this.o.seed, epoch, i) & 1)) img = img.flop();
    img = channels === 1 ? img.greyscale() : img.removeAlpha().toColourspace('srgb');
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) {
      // greyscale sources decoded as 1 channel when 3 were asked: replicate
      const out = new Uint8Array(size * size * channels);
      for (let p = 0; p < size * size; p++) for (let c = 0; c < channels; c++) out[p * channels + c] = data[p * info.channels + Math.min(c, info.channels - 1)]!;
      return out;
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  }

  async load(epoch: number, batch: number): Promise<SourceBatch> {
    const order = this.order(epoch);
    const B = this.batchSize, [C, S] = this.imageShape;
    const x = new Float32Array(B * C * S * S);
    const y = new Int32Array(B);
    await Promise.all(Array.from({ length: B }, async (_, b) => {
      let i = order[batch * B + b]!;
      // Replacements for a skipped image: the images after it in the epoch's order (a fixed sequence
      // per slot, so the batch does not depend on which decode finishes first; it may repeat an image).
      for (let k = 1; ; k++) {
        if (!this.bad.has(i)) {
          try {
            const hwc = await this.decode(i, epoch);
            const base = b * C * S * S;
            for (let p = 0; p < S * S; p++)
              for (let c = 0; c < C; c++) x[base + c * S * S + p] = (hwc[p * C + c]! / 255 - this.stats.mean[c]!) / this.stats.std[c]!;
            y[b] = this.labels[i]!;
            return;
          } catch (e) {
            const why = (e as Error).message.split('\n')[0];
            if (this.o.onError !== 'skip') throw new DatasetError(`unreadable image: ${why}`, this.files[i]);
            // Slots decode in parallel, so two may fail on the same image: report it once.
            if (!this.bad.has(i)) this.o.warn?.(`skipping unreadable image ${this.files[i]}: ${why}`);
            this.bad.add(i);
          }
        }
        if (k > order.length) throw new DatasetError('no readable image to fill a batch slot (all candidates unreadable)', this.o.root);
        i = order[(batch * B + b + k) % order.length]!;
      }
    }));
    return { x: { dtype: 'f32', shape: [B, C, S, S], data: x }, y: { dtype: 'i32', shape: [B], data: y }, epoch, batch };
  }
}

/**
 * @file Fashion-MNIST: load the train/test split from the gzip IDX files that the Debian package
 * `dataset-fashion-mnist` installs (/usr/share/datasets/fashion-mnist), and cut it into seeded,
 * shuffled, normalized mini-batches of host tensors (`Batcher`, `batches()`) for training and eval.
 *
 * Batches have a static shape (Kiln compiles per shape): every batch holds `batchSize` examples,
 * except the last one of an epoch when `dropLast` is false and the count does not divide evenly.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../ir/errors.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { mulberry32 } from '../prng.ts';
import { DatasetError, readIdxGz } from './idx.ts';

export { DatasetError } from './idx.ts';

export type FashionMnistSplit = 'train' | 'test';

/** Class names, indexed by label. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;

/** Where the Debian package `dataset-fashion-mnist` puts the files. */
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_INSTALL_HINT =
  'install it with `sudo apt-get install dataset-fashion-mnist` ' +
  `(files go to ${DEBIAN_FASHION_MNIST_DIR}), or set KILN_FASHION_MNIST_DIR to a folder holding ` +
  'the {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz files';

/** A loaded split: `images` is N×28×28 unsigned bytes (row-major), `labels` N values in 0..9. */
export interface FashionMnist {
  readonly split: FashionMnistSplit;
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
  readonly count: number;
  readonly rows: 28;
  readonly cols: 28;
  readonly classes: readonly string[];
}

/** The two file paths of a split (the test split's files are named `t10k-*`). */
export function fashionMnistFiles(split: FashionMnistSplit, dir: string): { images: string; labels: string } {
  const prefix = split === 'train' ? 'train' : 't10k';
  return {
    images: join(dir, `${prefix}-images-idx3-ubyte.gz`),
    labels: join(dir, `${prefix}-labels-idx1-ubyte.gz`),
  };
}

/**
 * Load one split of Fashion-MNIST. Throws DatasetError when a file is missing (naming the missing
 * paths and how to install them) or malformed (naming the file and the problem).
 */
export function loadFashionMnist(
  split: FashionMnistSplit,
  dir: string = process.env.KILN_FASHION_MNIST_DIR ?? DEBIAN_FASHION_MNIST_DIR,
): FashionMnist {
  if (split !== 'train' && split !== 'test') {
    throw new DatasetError(`unknown Fashion-MNIST split '${String(split)}' (expected 'train' or 'test')`);
  }
  const files = fashionMnistFiles(split, dir);
  const missing = [files.images, files.labels].filter((f) => !existsSync(f));
  if (missing.length > 0) {
    throw new DatasetError(
      `Fashion-MNIST ${split} split not found: missing ${missing.join(', ')}; ${FASHION_MNIST_INSTALL_HINT}`,
    );
  }

  const img = readIdxGz(files.images, 3);
  const [n, rows, cols] = img.dims as [number, number, number];
  if (rows !== 28 || cols !== 28) {
    throw new DatasetError(`images are ${rows}x${cols}, expected 28x28`, files.images);
  }
  const lab = readIdxGz(files.labels, 1);
  const nl = lab.dims[0]!;
  if (nl !== n) {
    throw new DatasetError(
      `image/label count mismatch: ${files.images} holds ${n} images but ${files.labels} holds ${nl} labels`,
      files.labels,
    );
  }
  const classes = FASHION_MNIST_CLASSES.length;
  let bad = 0;
  let firstBad = -1;
  for (let i = 0; i < nl; i++) {
    if (lab.data[i]! >= classes) {
      if (firstBad < 0) firstBad = i;
      bad++;
    }
  }
  if (bad > 0) {
    throw new DatasetError(
      `label out of range: label[${firstBad}] = ${lab.data[firstBad]} (labels must be in 0..${classes - 1}); ` +
        `${bad} of ${nl} labels are out of range`,
      files.labels,
    );
  }
  return { split, images: img.data, labels: lab.data, count: n, rows: 28, cols: 28, classes: FASHION_MNIST_CLASSES };
}

// ───────────────────────────── batching ─────────────────────────────

/** The part of a dataset the batcher needs: N images of rows×cols unsigned bytes and N labels. */
export interface ImageDataset {
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
  readonly count: number;
  readonly rows: number;
  readonly cols: number;
}

/** `flat`: x is [B, H*W]; `image`: x is [B, 1, H, W] (NCHW, one channel). */
export type BatchLayout = 'flat' | 'image';

export interface BatcherOptions {
  /** Examples per batch (a positive integer). */
  batchSize: number;
  /** Shuffle each epoch (default true). The order of epoch e comes from a PRNG seeded with seed + e. */
  shuffle?: boolean;
  /** Integer seed of the shuffle (default 0). */
  seed?: number;
  /** Skip the last batch of an epoch when it would be smaller than batchSize (default false). */
  dropLast?: boolean;
  /**
   * Pixel normalization. Default: x/255. With `{ mean, std }`: (x/255 - mean) / std — e.g.
   * `{ mean: 0.2860, std: 0.3530 }`, the usual Fashion-MNIST train statistics.
   */
  normalize?: { mean: number; std: number };
  /** Zero-pad 2 pixels on each side (28x28 → 32x32). The pad value is the normalized value of a 0 pixel. */
  pad32?: boolean;
  /** Layout of x (default 'flat'). */
  layout?: BatchLayout;
}

export interface Batch {
  /** f32 images, [B, H*W] or [B, 1, H, W] (H = W = 32 when padded). */
  readonly x: HostTensor;
  /** i32 labels, [B]. */
  readonly y: HostTensor;
  /** The dataset index of each example of the batch. */
  readonly indices: Uint32Array;
  /** The epoch this batch belongs to, and its position in that epoch. */
  readonly epoch: number;
  readonly batch: number;
}

/** A uniformly random permutation of 0..n-1 (Fisher–Yates) drawn from `rng`. */
export function permutation(n: number, rng: () => number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** Cuts a dataset into mini-batches; see BatcherOptions. Stateless across epochs: epoch e is reproducible. */
export class Batcher {
  readonly dataset: ImageDataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly layout: BatchLayout;
  readonly pad: number;
  /** Height and width of x (after padding). */
  readonly height: number;
  readonly width: number;
  /** Normalized f32 value of each byte value 0..255. */
  private readonly lut: Float32Array;

  constructor(dataset: ImageDataset, opts: BatcherOptions) {
    const { batchSize, shuffle = true, seed = 0, dropLast = false, normalize, pad32 = false, layout = 'flat' } = opts;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new KilnError(`Batcher: batchSize must be a positive integer, got ${batchSize}`);
    }
    if (!Number.isInteger(seed)) throw new KilnError(`Batcher: seed must be an integer, got ${seed}`);
    if (layout !== 'flat' && layout !== 'image') throw new KilnError(`Batcher: unknown layout '${String(layout)}'`);
    const mean = normalize?.mean ?? 0;
    const std = normalize?.std ?? 1;
    if (!Number.isFinite(mean) || !Number.isFinite(std) || std <= 0) {
      throw new KilnError(`Batcher: normalize needs a finite mean and a positive finite std, got mean=${mean} std=${std}`);
    }
    const { count, rows, cols } = dataset;
    if (dataset.images.length !== count * rows * cols || dataset.labels.length !== count) {
      throw new KilnError(
        `Batcher: dataset of ${count} ${rows}x${cols} images has ${dataset.images.length} pixels and ${dataset.labels.length} labels`,
      );
    }
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.seed = seed;
    this.dropLast = dropLast;
    this.layout = layout;
    this.pad = pad32 ? 2 : 0;
    this.height = rows + 2 * this.pad;
    this.width = cols + 2 * this.pad;
    this.lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) this.lut[v] = (v / 255 - mean) / std;
  }

  /** Batches per epoch. */
  get numBatches(): number {
    const n = this.dataset.count;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The example order of `epoch`: a seeded permutation (seed + epoch), or 0..N-1 when not shuffling. */
  order(epoch: number): Uint32Array {
    if (!Number.isInteger(epoch) || epoch < 0) throw new KilnError(`Batcher: epoch must be a non-negative integer, got ${epoch}`);
    const n = this.dataset.count;
    if (!this.shuffle) {
      const identity = new Uint32Array(n);
      for (let i = 0; i < n; i++) identity[i] = i;
      return identity;
    }
    return permutation(n, mulberry32((this.seed + epoch) >>> 0));
  }

  /** Iterate the batches of one epoch. */
  *epoch(epoch = 0): Generator<Batch> {
    const order = this.order(epoch);
    const nb = this.numBatches;
    for (let b = 0; b < nb; b++) {
      const start = b * this.batchSize;
      const end = Math.min(start + this.batchSize, order.length);
      yield this.makeBatch(order.slice(start, end), epoch, b);
    }
  }

  /** Iterate `count` epochs starting at `start`, batch after batch (each batch says its epoch). */
  *epochs(count: number, start = 0): Generator<Batch> {
    for (let e = start; e < start + count; e++) yield* this.epoch(e);
  }

  /** Build one batch from explicit dataset indices (e.g. for evaluation or debugging). */
  makeBatch(indices: ArrayLike<number>, epoch = 0, batch = 0): Batch {
    const { images, labels, count, rows, cols } = this.dataset;
    const B = indices.length;
    const H = this.height;
    const W = this.width;
    const p = this.pad;
    const lut = this.lut;
    const x = new Float32Array(B * H * W);
    const y = new Int32Array(B);
    const idx = new Uint32Array(B);
    if (p > 0) x.fill(lut[0]!);
    for (let b = 0; b < B; b++) {
      const i = indices[b]!;
      if (!Number.isInteger(i) || i < 0 || i >= count) {
        throw new KilnError(`Batcher: index ${i} out of range for a dataset of ${count} examples`);
      }
      idx[b] = i;
      y[b] = labels[i]!;
      const src = i * rows * cols;
      const dst = b * H * W;
      for (let r = 0; r < rows; r++) {
        const s = src + r * cols;
        const d = dst + (r + p) * W + p;
        for (let c = 0; c < cols; c++) x[d + c] = lut[images[s + c]!]!;
      }
    }
    const xShape = this.layout === 'flat' ? [B, H * W] : [B, 1, H, W];
    return {
      x: { dtype: 'f32', shape: xShape, data: x },
      y: { dtype: 'i32', shape: [B], data: y },
      indices: idx,
      epoch,
      batch,
    };
  }
}

/** Iterate the batches of one epoch of `dataset` (shorthand for `new Batcher(dataset, opts).epoch(epoch)`). */
export function batches(dataset: ImageDataset, opts: BatcherOptions, epoch = 0): Generator<Batch> {
  return new Batcher(dataset, opts).epoch(epoch);
}

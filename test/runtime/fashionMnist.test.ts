/**
 * @file Tests of the Fashion-MNIST loader (IDX gz parsing and validation) and of the Batcher
 * (seeded shuffling, normalization, padding, layouts). All but one test run on tiny IDX files the
 * test writes itself; the last checks the real Debian `dataset-fashion-mnist` files when present.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { KilnError } from '../../ir/errors.ts';
import {
  Batcher,
  DEBIAN_FASHION_MNIST_DIR,
  DatasetError,
  FASHION_MNIST_CLASSES,
  batches,
  fashionMnistFiles,
  loadFashionMnist,
  type FashionMnist,
} from '../../runtime/data/fashionMnist.ts';
import { parseIdx } from '../../runtime/data/idx.ts';

const N = 5;
const R = 28;
const C = 28;
const LABELS = [3, 0, 9, 1, 7];
/** The known pixel value of image i at (r, c). */
const pix = (i: number, r: number, c: number): number => (i * 31 + r * 7 + c * 3) % 256;

function idx(magic: number, dims: number[], data: ArrayLike<number>): Buffer {
  const buf = Buffer.alloc(4 + 4 * dims.length + data.length);
  buf.writeUInt32BE(magic, 0);
  dims.forEach((d, k) => buf.writeUInt32BE(d, 4 + 4 * k));
  for (let k = 0; k < data.length; k++) buf[4 + 4 * dims.length + k] = data[k]!;
  return buf;
}

function imageBytes(n: number): Uint8Array {
  const a = new Uint8Array(n * R * C);
  for (let i = 0; i < n; i++) for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) a[(i * R + r) * C + c] = pix(i, r, c);
  return a;
}

const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

interface Files {
  images?: Buffer | null; // raw file contents (null = do not write)
  labels?: Buffer | null;
}
/** Write a dataset dir with a 'train' split; defaults are the valid 5-image files. */
function makeDir(files: Files = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-fmnist-'));
  roots.push(dir);
  const paths = fashionMnistFiles('train', dir);
  const images = files.images === undefined ? gzipSync(idx(0x803, [N, R, C], imageBytes(N))) : files.images;
  const labels = files.labels === undefined ? gzipSync(idx(0x801, [N], LABELS)) : files.labels;
  if (images) writeFileSync(paths.images, images);
  if (labels) writeFileSync(paths.labels, labels);
  return dir;
}

function errorOf(f: () => unknown): DatasetError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DatasetError);
    expect(e).toBeInstanceOf(KilnError);
    return e as DatasetError;
  }
  throw new Error('expected a DatasetError');
}

describe('loadFashionMnist: parsing', () => {
  it('reads images and labels exactly', () => {
    const dir = makeDir();
    const ds = loadFashionMnist('train', dir);
    expect(ds.count).toBe(N);
    expect(ds.rows).toBe(28);
    expect(ds.cols).toBe(28);
    expect(ds.images).toBeInstanceOf(Uint8Array);
    expect(ds.labels).toBeInstanceOf(Uint8Array);
    expect(ds.images.length).toBe(N * R * C);
    expect(Array.from(ds.labels)).toEqual(LABELS);
    expect(Array.from(ds.images)).toEqual(Array.from(imageBytes(N)));
    expect(ds.images[(2 * R + 5) * C + 11]).toBe(pix(2, 5, 11));
    expect(ds.classes).toEqual([...FASHION_MNIST_CLASSES]);
    expect(ds.classes).toHaveLength(10);
    expect(ds.classes[9]).toBe('Ankle boot');
  });

  it('uses t10k-* files for the test split and KILN_FASHION_MNIST_DIR as the default dir', () => {
    const dir = makeDir();
    const p = fashionMnistFiles('test', dir);
    expect(p.images).toBe(join(dir, 't10k-images-idx3-ubyte.gz'));
    expect(p.labels).toBe(join(dir, 't10k-labels-idx1-ubyte.gz'));
    const old = process.env.KILN_FASHION_MNIST_DIR;
    process.env.KILN_FASHION_MNIST_DIR = dir;
    try {
      expect(loadFashionMnist('train').count).toBe(N);
      expect(errorOf(() => loadFashionMnist('test')).message).toContain(p.images);
    } finally {
      if (old === undefined) delete process.env.KILN_FASHION_MNIST_DIR;
      else process.env.KILN_FASHION_MNIST_DIR = old;
    }
  });
});

describe('loadFashionMnist: errors', () => {
  it('missing files: names every missing path and how to install', () => {
    const dir = makeDir({ images: null, labels: null });
    const p = fashionMnistFiles('train', dir);
    const e = errorOf(() => loadFashionMnist('train', dir));
    expect(e.message).toContain(p.images);
    expect(e.message).toContain(p.labels);
    expect(e.message).toContain('sudo apt-get install dataset-fashion-mnist');
    expect(e.message).toContain('KILN_FASHION_MNIST_DIR');

    const dir2 = makeDir({ labels: null });
    const p2 = fashionMnistFiles('train', dir2);
    const e2 = errorOf(() => loadFashionMnist('train', dir2));
    expect(e2.message).toContain(p2.labels);
    expect(e2.message).not.toContain(p2.images);
    expect(e2.message).toContain('sudo apt-get install dataset-fashion-mnist');
  });

  it('bad magic number', () => {
    const dir = makeDir({ images: gzipSync(idx(0x801, [N, R, C], imageBytes(N))) });
    const e = errorOf(() => loadFashionMnist('train', dir));
    expect(e.file).toBe(fashionMnistFiles('train', dir).images);
    expect(e.message).toContain(e.file!);
    expect(e.message).toMatch(/bad magic number 0x00000801.*expected 0x00000803/);

    const dir2 = makeDir({ labels: gzipSync(idx(0x12345678, [N], LABELS)) });
    const e2 = errorOf(() => loadFashionMnist('train', dir2));
    expect(e2.file).toBe(fashionMnistFiles('train', dir2).labels);
    expect(e2.message).toMatch(/bad magic number 0x12345678.*expected 0x00000801/);
  });

  it('truncated IDX data, header, and gzip stream', () => {
    const full = idx(0x803, [N, R, C], imageBytes(N));
    const dir = makeDir({ images: gzipSync(full.subarray(0, full.length - 100)) });
    const e = errorOf(() => loadFashionMnist('train', dir));
    expect(e.file).toBe(fashionMnistFiles('train', dir).images);
    expect(e.message).toMatch(/truncated/);
    expect(e.message).toContain(`need ${N * R * C} data bytes`);

    const dir2 = makeDir({ labels: gzipSync(idx(0x801, [N], LABELS).subarray(0, 6)) });
    const e2 = errorOf(() => loadFashionMnist('train', dir2));
    expect(e2.file).toBe(fashionMnistFiles('train', dir2).labels);
    expect(e2.message).toMatch(/truncated header/);

    const gz = gzipSync(full);
    const dir3 = makeDir({ images: gz.subarray(0, gz.length >> 1) });
    const e3 = errorOf(() => loadFashionMnist('train', dir3));
    expect(e3.file).toBe(fashionMnistFiles('train', dir3).images);
    expect(e3.message).toMatch(/truncated gzip/);
  });

  it('trailing bytes and wrong image size', () => {
    const dir = makeDir({ labels: gzipSync(idx(0x801, [N], [...LABELS, 0, 0])) });
    expect(errorOf(() => loadFashionMnist('train', dir)).message).toMatch(/2 unexpected trailing bytes/);
    const dir2 = makeDir({ images: gzipSync(idx(0x803, [2, 27, 28], new Uint8Array(2 * 27 * 28))) });
    expect(errorOf(() => loadFashionMnist('train', dir2)).message).toMatch(/27x28, expected 28x28/);
  });

  it('image/label count mismatch', () => {
    const dir = makeDir({ labels: gzipSync(idx(0x801, [4], LABELS.slice(0, 4))) });
    const p = fashionMnistFiles('train', dir);
    const e = errorOf(() => loadFashionMnist('train', dir));
    expect(e.message).toMatch(/count mismatch/);
    expect(e.message).toContain(`${p.images} holds 5 images`);
    expect(e.message).toContain(`${p.labels} holds 4 labels`);
  });

  it('label out of 0..9', () => {
    const dir = makeDir({ labels: gzipSync(idx(0x801, [N], [3, 0, 10, 1, 255])) });
    const e = errorOf(() => loadFashionMnist('train', dir));
    expect(e.file).toBe(fashionMnistFiles('train', dir).labels);
    expect(e.message).toContain('label[2] = 10');
    expect(e.message).toContain('0..9');
    expect(e.message).toContain('2 of 5 labels');
  });

  it('not gzip', () => {
    const dir = makeDir({ images: idx(0x803, [N, R, C], imageBytes(N)) });
    const e = errorOf(() => loadFashionMnist('train', dir));
    expect(e.file).toBe(fashionMnistFiles('train', dir).images);
    expect(e.message).toMatch(/not a gzip file/);
    expect(e.message).toMatch(/uncompressed IDX/);
    const dir2 = makeDir({ labels: Buffer.from('hello, world') });
    expect(errorOf(() => loadFashionMnist('train', dir2)).message).toMatch(/not a gzip file: starts with bytes \[68 65 6c 6c\]/);
  });

  it('parseIdx rejects a buffer too short for the magic', () => {
    expect(errorOf(() => parseIdx(new Uint8Array([0, 0]), 1, 'x.idx')).message).toBe(
      'x.idx: truncated: 2 bytes, too short for the 4-byte IDX magic number',
    );
  });
});

describe('Batcher', () => {
  const ds: FashionMnist = loadFashionMnist('train', makeDir());
  const f32 = Math.fround;

  it('x/255 normalization, flat layout, exact values', () => {
    const b = new Batcher(ds, { batchSize: 2, shuffle: false });
    const [first] = [...b.epoch(0)];
    expect(first!.x.dtype).toBe('f32');
    expect(first!.x.shape).toEqual([2, 784]);
    expect(first!.x.data).toBeInstanceOf(Float32Array);
    expect(first!.y.dtype).toBe('i32');
    expect(first!.y.shape).toEqual([2]);
    expect(first!.y.data).toBeInstanceOf(Int32Array);
    expect(Array.from(first!.y.data)).toEqual([3, 0]);
    expect(Array.from(first!.indices)).toEqual([0, 1]);
    for (let i = 0; i < 2; i++)
      for (let r = 0; r < R; r++)
        for (let c = 0; c < C; c++) expect(first!.x.data[i * 784 + r * 28 + c]).toBe(f32(pix(i, r, c) / 255));
  });

  it('(x/255 - mean)/std normalization and padding to 32x32 with the normalized 0', () => {
    const mean = 0.286;
    const std = 0.353;
    const b = new Batcher(ds, { batchSize: 5, shuffle: false, normalize: { mean, std }, pad32: true, layout: 'image' });
    expect(b.height).toBe(32);
    expect(b.width).toBe(32);
    const [batch] = [...b.epoch()];
    expect(batch!.x.shape).toEqual([5, 1, 32, 32]);
    const x = batch!.x.data;
    const zero = f32((0 - mean) / std);
    for (let i = 0; i < 5; i++)
      for (let r = 0; r < 32; r++)
        for (let c = 0; c < 32; c++) {
          const inside = r >= 2 && r < 30 && c >= 2 && c < 30;
          const want = inside ? f32((pix(i, r - 2, c - 2) / 255 - mean) / std) : zero;
          expect(x[i * 1024 + r * 32 + c]).toBe(want);
        }
    expect(x[0]).toBe(zero);
    expect(x[0]).toBeLessThan(0);
    // flat padded layout: [B, 1024]
    const flat = new Batcher(ds, { batchSize: 3, shuffle: false, pad32: true }).makeBatch([4, 0]);
    expect(flat.x.shape).toEqual([2, 1024]);
    expect(flat.x.data[0]).toBe(0);
    expect(flat.x.data[2 * 32 + 2]).toBe(f32(pix(4, 0, 0) / 255));
    expect(Array.from(flat.y.data)).toEqual([7, 3]);
  });

  it('image layout without padding is [B, 1, 28, 28]', () => {
    const b = new Batcher(ds, { batchSize: 4, shuffle: false, layout: 'image' });
    const out = [...b.epoch()];
    expect(out.map((o) => o.x.shape)).toEqual([
      [4, 1, 28, 28],
      [1, 1, 28, 28],
    ]);
    expect(out[1]!.x.data[27 * 28 + 27]).toBe(f32(pix(4, 27, 27) / 255));
  });

  it('batch shapes, numBatches and dropLast', () => {
    const keep = new Batcher(ds, { batchSize: 2, seed: 1 });
    expect(keep.numBatches).toBe(3);
    expect([...keep.epoch(0)].map((b) => b.y.shape[0])).toEqual([2, 2, 1]);
    const drop = new Batcher(ds, { batchSize: 2, seed: 1, dropLast: true });
    expect(drop.numBatches).toBe(2);
    const dropped = [...drop.epoch(0)];
    expect(dropped.map((b) => b.x.shape)).toEqual([
      [2, 784],
      [2, 784],
    ]);
    // same order as without dropLast, minus the tail
    expect(dropped.flatMap((b) => Array.from(b.indices))).toEqual(Array.from(keep.order(0)).slice(0, 4));
    expect(new Batcher(ds, { batchSize: 6, dropLast: true }).numBatches).toBe(0);
    expect([...new Batcher(ds, { batchSize: 6, dropLast: true }).epoch()]).toEqual([]);
    expect(new Batcher(ds, { batchSize: 5, dropLast: true }).numBatches).toBe(1);
  });

  it('labels and pixels follow the shuffled indices', () => {
    for (const b of batches(ds, { batchSize: 3, seed: 42 }, 3)) {
      b.indices.forEach((i, k) => {
        expect(b.y.data[k]).toBe(LABELS[i]);
        expect(b.x.data[k * 784 + 10 * 28 + 3]).toBe(f32(pix(i, 10, 3) / 255));
      });
    }
  });

  it('shuffling is deterministic per seed and a permutation each epoch', () => {
    const a = new Batcher(ds, { batchSize: 2, seed: 7 });
    const b = new Batcher(ds, { batchSize: 2, seed: 7 });
    const sorted = [0, 1, 2, 3, 4];
    const orders: string[] = [];
    for (let e = 0; e < 20; e++) {
      const fromBatches = [...a.epoch(e)].flatMap((x) => Array.from(x.indices));
      expect(fromBatches).toEqual(Array.from(b.order(e)));
      expect([...fromBatches].sort((p, q) => p - q)).toEqual(sorted);
      orders.push(fromBatches.join(','));
    }
    expect(new Set(orders).size).toBeGreaterThan(1); // epochs differ
    // seed + epoch: epoch 1 of seed 7 is epoch 0 of seed 8
    expect(Array.from(new Batcher(ds, { batchSize: 2, seed: 8 }).order(0))).toEqual(Array.from(a.order(1)));

    // a larger dataset: every index exactly once, and the order is not the identity
    const n = 1000;
    const big = { images: new Uint8Array(n), labels: new Uint8Array(n), count: n, rows: 1, cols: 1 };
    const ord = new Batcher(big, { batchSize: 64, seed: 123 }).order(0);
    expect(Array.from(ord).sort((p, q) => p - q)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(Array.from(ord)).not.toEqual(Array.from({ length: n }, (_, i) => i));
    expect(Array.from(new Batcher(big, { batchSize: 64, seed: 123 }).order(0))).toEqual(Array.from(ord));
    expect(Array.from(new Batcher(big, { batchSize: 64, seed: 124 }).order(0))).not.toEqual(Array.from(ord));
  });

  it('epochs() iterates consecutive epochs', () => {
    const b = new Batcher(ds, { batchSize: 2, seed: 3 });
    const all = [...b.epochs(3, 2)];
    expect(all.map((x) => [x.epoch, x.batch])).toEqual([
      [2, 0], [2, 1], [2, 2],
      [3, 0], [3, 1], [3, 2],
      [4, 0], [4, 1], [4, 2],
    ]);
    expect(all.slice(3, 6).flatMap((x) => Array.from(x.indices))).toEqual(Array.from(b.order(3)));
  });

  it('rejects bad options', () => {
    expect(() => new Batcher(ds, { batchSize: 0 })).toThrow(/batchSize/);
    expect(() => new Batcher(ds, { batchSize: 1.5 })).toThrow(/batchSize/);
    expect(() => new Batcher(ds, { batchSize: 2, normalize: { mean: 0, std: 0 } })).toThrow(/std/);
    expect(() => new Batcher(ds, { batchSize: 2, seed: 0.5 })).toThrow(/seed/);
    expect(() => new Batcher(ds, { batchSize: 2 }).makeBatch([5])).toThrow(/out of range/);
  });
});

// The real Debian files. CI installs `dataset-fashion-mnist`, so CI runs this test; it is skipped
// only on a machine without the package.
const realDir = DEBIAN_FASHION_MNIST_DIR;
const realExists = (['train', 'test'] as const).every((s) => {
  const p = fashionMnistFiles(s, realDir);
  return existsSync(p.images) && existsSync(p.labels);
});

describe('real Fashion-MNIST (Debian dataset-fashion-mnist)', () => {
  it.skipIf(!realExists)('has 60000/10000 images, 6000/1000 per class, and the known first labels', () => {
    const expected = { train: 60000, test: 10000 } as const;
    for (const split of ['train', 'test'] as const) {
      const ds = loadFashionMnist(split, realDir);
      expect(ds.count).toBe(expected[split]);
      expect(ds.images.length).toBe(expected[split] * 784);
      const hist = new Array<number>(10).fill(0);
      for (const l of ds.labels) hist[l]!++;
      expect(hist).toEqual(new Array<number>(10).fill(expected[split] / 10));
      // Read from the files with zcat: both splits start with label 9 (Ankle boot).
      expect(ds.labels[0]).toBe(9);
      expect(ds.classes[ds.labels[0]!]).toBe('Ankle boot');
    }
  });
});

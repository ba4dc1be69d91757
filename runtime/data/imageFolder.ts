/**
 * @file An ImageNet-style image folder as a BatchSource: `<root>/<class>/<image>.{jpg,jpeg,png,webp}`,
 * classes sorted by name (label = index), images sorted by path. Each image is decoded with sharp,
 * resized so its shorter side is `size`, center-cropped to size×size, converted to 1 or 3 channels,
 * normalized per channel, and the crop mirrored left-right with probability ½ when `flip` is set (the
 * choice depends only on seed, epoch and image index, so a resumed run sees the same flips). Decoded
 * crops are kept in memory up to `cacheBytes` (exact: the crop does not depend on the epoch).
 *
 * An unreadable or corrupt image is reported by path. With `onError: 'skip'` it is reported once
 * (through `warn`), remembered, and replaced in its batch by the next readable image of the epoch's
 * order (shapes are static, so a batch is always full); with 'fail' the load throws a DatasetError.
 *
 * Decoding runs in a pool of worker processes (decodePool.ts), started on the first load; a batch's
 * images not in the cache are handed to the workers at once (image i to worker i mod N), so the batches
 * the prefetcher asked for are decoded while the trainer runs its step. An image whose decode is already
 * in flight for another batch waits for that decode (`prefetchDepth` may reach past the epoch's end). Cached crops and flips are
 * applied on the calling thread (a copy, or a mirrored copy, per image: no messages). `close()` stops the workers (idle ones never keep the process alive).
 */
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { mulberry32 } from '../prng.ts';
import { type DecodeItem, type DecodeResult, type DecodeSpec, type DecodeWorkerKind, type DecodedBy, type JpegDecoder, DecodePool, configureVipsForDecoding, defaultDecodeWorkers, inThreadDecoder, normalizeInto } from './decodePool.ts';
import { CropFile, CropFileWriter, cropFingerprint } from './cropCache.ts';
import { permutation } from './fashionMnist.ts';
import { DatasetError } from './idx.ts';
import { type BatchSource, type Normalization, type SourceBatch, channelStats, hashInts } from './source.ts';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp']);

/** Prepared batches the prefetcher may hold (prefetchDepth: this many bytes of batches, 4 to 64). */
export const PREFETCH_BYTES = 256 << 20;

/** Decoded crops kept in memory by default. */
export const DEFAULT_CACHE_BYTES = 1 << 30;

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
  /** Decode workers (processes by default; default count: one per core but the main thread's, at most 32); 0 decodes on the calling thread. */
  workers?: number;
  /** Decoded images kept in memory (default 1 GiB; 0: decode every time). Exact: an image's decoded
   * crop does not depend on the epoch, the flip is applied to it afterwards. */
  cacheBytes?: number;
  /** libvips threads per image (process-wide; default 1, see configureVipsForDecoding). */
  vipsThreads?: number;
  /** Worker processes (default) or threads (decodePool.ts), and images each process decodes at once. */
  workerKind?: DecodeWorkerKind;
  inFlight?: number;
  /** Who decodes JPEGs: 'wasm' (default: mozjpeg in WebAssembly, in the worker; decodePool.ts) or 'sharp'. */
  jpegDecoder?: JpegDecoder;
  /** A file of decoded crops (cropCache.ts): read instead of decoding when it holds this folder's crops,
   * else written while epoch 1 decodes (in place once every image is in it). */
  cacheFile?: string;
}

export class ImageFolderSource implements BatchSource {
  readonly files: string[] = [];
  readonly labels: number[] = [];
  readonly classes: string[];
  readonly batchesPerEpoch: number;
  readonly batchSize: number;
  readonly imageShape: readonly [number, number, number];
  /** Deep enough that decoding runs ahead while the step compiles and through epoch 1 (PREFETCH_BYTES). */
  readonly prefetchDepth: number;
  /** Paths found unreadable so far (skip mode). */
  readonly bad = new Set<number>();
  private readonly stats: { mean: Float32Array; std: Float32Array };
  private pool: DecodePool | undefined;
  /** Decoded crops (unflipped, normalized) by image index, up to cacheBytes. */
  private readonly cache = new Map<number, Float32Array>();
  private cachedBytes = 0;
  private decodeChunk: ((items: readonly DecodeItem[]) => Promise<DecodeResult>) | undefined;
  /** Decodes in flight by image index (so two batches never decode one image twice). */
  private readonly pending = new Map<number, Promise<Float32Array | string>>();
  /** Images handed to the decoder so far (each readable or unreadable file once while it fits the cache). */
  decodedImages = 0;
  /** Images decoded so far by each decoder (WebAssembly mozjpeg for JPEGs, sharp for the rest), as last reported. */
  decodedBy: DecodedBy = { wasm: 0, sharp: 0 };
  /** The crop cache file being read, or being written (cacheFile). */
  private disk: CropFile | undefined;
  private writer: CropFileWriter | undefined | null;
  private fingerprint = '';
  /** Misses asked for in this turn, decoded together by flush(). */
  private queued: Array<{ i: number; resolve(v: Float32Array | string): void; reject(e: unknown): void }> = [];

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
    this.prefetchDepth = Math.max(4, Math.min(64, Math.floor(PREFETCH_BYTES / (o.batchSize * c * o.size * o.size * 4))));
    this.stats = channelStats(o.normalize, c);
    if (o.cacheFile) {
      this.fingerprint = cropFingerprint(o.root, this.files, o.size, c);
      const { file, why } = CropFile.open(o.cacheFile, this.fingerprint, o.size, c, this.files.length);
      this.disk = file;
      if (file) o.warn?.(`image crops from the cache ${o.cacheFile} (${this.files.length} images, ${file.bad.size} unreadable): no decoding`);
      else o.warn?.(`crop cache ${o.cacheFile}: ${why}; writing it while the images are decoded`);
    }
  }

  /** The epoch's order of images (the last two epochs' are kept: every batch of an epoch asks, and the
   * prefetcher reaches into the next epoch). */
  order(epoch: number): Uint32Array {
    const hit = this.orders.find((o) => o.epoch === epoch);
    if (hit) return hit.order;
    const n = this.files.length;
    const order = this.o.shuffle === false ? Uint32Array.from({ length: n }, (_, i) => i) : permutation(n, mulberry32((this.o.seed + epoch) >>> 0));
    this.orders = [...this.orders.slice(-1), { epoch, order }];
    return order;
  }
  private orders: Array<{ epoch: number; order: Uint32Array }> = [];

  /** Where images are decoded: the worker pool (started on the first load) or the calling thread. */
  private decoder(): (items: readonly DecodeItem[]) => Promise<DecodeResult> {
    if (this.decodeChunk) return this.decodeChunk;
    const spec = this.spec();
    const workers = this.o.workers ?? defaultDecodeWorkers();
    configureVipsForDecoding(this.o.vipsThreads ?? 1);
    if (workers > 0) {
      const pool = new DecodePool(spec, { workers, kind: this.o.workerKind, inFlight: this.o.inFlight, jpeg: this.o.jpegDecoder, warn: this.o.warn });
      this.pool = pool;
      this.decodeChunk = (items) => pool.decode(items);
    } else this.decodeChunk = inThreadDecoder(spec, this.o.jpegDecoder, this.o.warn);
    return this.decodeChunk;
  }

  private spec(): DecodeSpec {
    const [C, S] = this.imageShape;
    return { size: S, channels: C as 1 | 3, mean: Array.from(this.stats.mean), std: Array.from(this.stats.std) };
  }

  /** Keep image i's crop in memory while the budget allows (a copy: `crop` may view a batch's buffer). */
  private remember(i: number, crop: Float32Array): Float32Array {
    if (this.cachedBytes + crop.byteLength > (this.o.cacheBytes ?? DEFAULT_CACHE_BYTES)) return crop;
    const kept = crop.slice();
    this.cache.set(i, kept);
    this.cachedBytes += kept.byteLength;
    return kept;
  }

  /** Image i's u8 crop (or why it is unreadable) into the crop cache being written; the file is renamed into place once complete. */
  private toDisk(i: number, crop: Uint8Array | string): void {
    if (!this.o.cacheFile || this.disk) return;
    const [C, S] = this.imageShape;
    if (this.writer === null) return; // writing failed once: training goes on without it
    try {
      this.writer ??= new CropFileWriter(this.o.cacheFile, this.fingerprint, S, C, this.files.length);
      this.writer.put(i, crop);
      if (this.writer.complete && this.writer.finish()) this.o.warn?.(`wrote the crop cache ${this.o.cacheFile} (${this.files.length} images)`);
    } catch (e) {
      this.writer?.abort();
      this.writer = null;
      this.o.warn?.(`could not write the crop cache ${this.o.cacheFile}: ${(e as Error).message}`);
    }
  }

  /** Whether image i of `epoch` is flipped (a function of seed, epoch and index only). */
  private flipped(i: number, epoch: number): boolean {
    return !!this.o.flip && (hashInts(this.o.seed, epoch, i) & 1) === 1;
  }

  /** Image i's decoded crop, or the message of why it is unreadable: from the cache, from a decode in
   * flight, or from a new decode (the misses asked for in one turn of the event loop go in one call). */
  private cropOf(i: number): Promise<Float32Array | string> {
    const hit = this.cache.get(i);
    if (hit) return Promise.resolve(hit);
    if (this.disk) {
      const bad = this.disk.bad.get(i);
      if (bad !== undefined) return Promise.resolve(bad);
      const crop = new Float32Array(this.disk.per);
      normalizeInto(this.spec(), this.disk.read(i), 0, crop, 0);
      return Promise.resolve(this.remember(i, crop));
    }
    let p = this.pending.get(i);
    if (!p) {
      p = new Promise((resolve, reject) => {
        if (!this.queued.length) queueMicrotask(() => this.flush());
        this.queued.push({ i, resolve, reject });
      });
      this.pending.set(i, p);
    }
    return p;
  }

  private flush(): void {
    const q = this.queued, per = this.imageShape[0] * this.imageShape[1] * this.imageShape[2];
    this.queued = [];
    this.decodedImages += q.length;
    this.decoder()(q.map(({ i }) => ({ file: this.files[i]!, key: i }))).then((r) => {
      if (r.by) this.decodedBy = r.by;
      const bad = new Map(r.failed.map((f) => [f.k, f.message]));
      q.forEach(({ i, resolve }, j) => {
        this.pending.delete(i);
        const message = bad.get(j);
        if (message !== undefined) return resolve(message);
        this.toDisk(i, r.raw.subarray(j * per, (j + 1) * per));
        resolve(this.remember(i, r.data.subarray(j * per, (j + 1) * per)));
      });
      for (const [j, message] of bad) this.toDisk(q[j]!.i, message);
    }, (e: unknown) => {
      for (const { i, reject } of q) {
        this.pending.delete(i);
        reject(e);
      }
    });
  }

  async load(epoch: number, batch: number): Promise<SourceBatch> {
    const order = this.order(epoch);
    const B = this.batchSize, [C, S] = this.imageShape, per = C * S * S;
    const x = new Float32Array(B * per);
    const y = new Int32Array(B);
    // Slot b takes the first readable image of a fixed sequence: order[batch·B + b + k], k = 0, 1, ...
    // (the images after it in the epoch's order; it may repeat an image). Readability is a property of
    // the file, so a batch never depends on which worker or decode finishes first.
    const k = new Array<number>(B).fill(0);
    const candidate = (b: number): number => {
      for (; ; k[b]!++) {
        if (k[b]! > order.length) throw new DatasetError('no readable image to fill a batch slot (all candidates unreadable)', this.o.root);
        const i = order[(batch * B + b + k[b]!) % order.length]!;
        if (!this.bad.has(i)) return i;
      }
    };
    const place = (b: number, i: number, crop: Float32Array) => {
      const base = b * per;
      if (!this.flipped(i, epoch)) x.set(crop, base);
      else
        for (let row = 0; row < C * S; row++)
          for (let u = 0, o = base + row * S, src = row * S + S - 1; u < S; u++) x[o + u] = crop[src - u]!;
      y[b] = this.labels[i]!;
    };
    let todo = Array.from({ length: B }, (_, b) => b);
    while (todo.length) {
      const picks: Array<{ b: number; i: number }> = [];
      for (const b of todo) {
        const i = candidate(b), hit = this.cache.get(i);
        if (hit) place(b, i, hit);
        else picks.push({ b, i });
      }
      if (!picks.length) break;
      // Misses are decoded once even when batches in flight share an image (a prefetch deeper than an
      // epoch asks for epoch 2 before epoch 1's decodes are back): they wait for the same decode.
      const got = await Promise.all(picks.map(({ i }) => this.cropOf(i)));
      const failed: Array<{ b: number; i: number; message: string }> = [];
      picks.forEach(({ b, i }, j) => {
        const g = got[j]!;
        if (typeof g === 'string') failed.push({ b, i, message: g });
        else place(b, i, g);
      });
      failed.sort((u, v) => u.b - v.b);
      if (failed.length && this.o.onError !== 'skip') throw new DatasetError(`unreadable image: ${failed[0]!.message}`, this.files[failed[0]!.i]);
      for (const f of failed) {
        // Two slots (or two batches in flight) may fail on the same image: report it once.
        if (!this.bad.has(f.i)) this.o.warn?.(`skipping unreadable image ${this.files[f.i]}: ${f.message}`);
        this.bad.add(f.i);
      }
      todo = failed.map((f) => f.b);
    }
    return { x: { dtype: 'f32', shape: [B, C, S, S], data: x }, y: { dtype: 'i32', shape: [B], data: y }, epoch, batch };
  }

  /** Stop the decode workers (a later load starts new ones). */
  async close(): Promise<void> {
    this.writer?.abort(); // unless it finished: epoch 1 did not end
    this.writer = undefined;
    const pool = this.pool;
    this.pool = undefined;
    this.decodeChunk = undefined;
    await pool?.close();
  }
}

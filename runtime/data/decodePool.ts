/**
 * @file Image decoding off the main thread: a pool of worker threads, each with sharp loaded, that
 * turn image files into normalized f32 [C, S, S] arrays (decode, resize so the shorter side is S,
 * center crop, 1 or 3 channels, (v/255 − mean[c]) / std[c]; flips and the cache of decoded crops are
 * the caller's, imageFolder.ts). The main thread
 * only posts file names and copies results into its batch, so decoding goes on while the main thread
 * is busy (or blocked in a device synchronization) with the training step.
 *
 * The same decoder (`DECODER_JS`, JavaScript source) runs in the workers and, for `inThreadDecoder`,
 * on the calling thread, so a value never depends on where it was decoded. A call's images are handed
 * out by key (image i to worker i mod N), one message per worker; a result carries the images that
 * could not be read (by index, with sharp's message) instead of failing the call. Idle workers are
 * unref'd (they never keep the process alive); `close()` terminates them.
 *
 * sharp's native work runs on libuv's thread pool, which is one per process (shared by all workers):
 * at most `UV_THREADPOOL_SIZE` (default 4) images are inside libvips at once, whatever the number of
 * workers. The workers take the JavaScript side (sharp's pipeline set-up, the result callback, the
 * normalization loop) off the main thread; to decode on more cores, start the process with
 * `UV_THREADPOOL_SIZE` set to the core count (it is read when the pool first starts, before any user
 * code runs, so it cannot be raised from inside the process).
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';

/** What every image of a pool is turned into. */
export interface DecodeSpec {
  readonly size: number;
  readonly channels: 1 | 3;
  /** Per channel (length = channels). */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

export interface DecodeItem {
  readonly file: string;
  /** The image's index: it picks the worker (key mod pool size). */
  readonly key: number;
}

export interface DecodeResult {
  /** items.length × C·S·S values; the slots of failed items are zero. */
  readonly data: Float32Array;
  /** Items that could not be decoded: their index in the chunk and the first line of the error. */
  readonly failed: ReadonlyArray<{ readonly k: number; readonly message: string }>;
}

/**
 * `makeDecoder(sharp, spec)` returns `async (items, out) => failures`: each item's image decoded into
 * out[k·C·S·S ...] (CHW), the failures as { k, message }. A source string so that the workers (eval'd
 * CommonJS) and the calling thread run the same code.
 */
const DECODER_JS = String.raw`
function makeDecoder(sharp, spec) {
  const size = spec.size, channels = spec.channels, n = size * size, per = channels * n;
  async function decode(file, out, base) {
    const img = sharp(file, { failOn: 'error' }).resize(size, size, { fit: 'cover', position: 'centre', kernel: 'linear' });
    const r = await (channels === 1 ? img.greyscale() : img.removeAlpha().toColourspace('srgb')).raw().toBuffer({ resolveWithObject: true });
    const data = r.data, ic = r.info.channels;
    if (data.length !== n * ic) throw new Error('decoded ' + data.length + ' bytes, expected ' + n * ic);
    for (let c = 0; c < channels; c++) {
      // a greyscale source decoded to 1 channel when 3 were asked: replicate it
      const src = Math.min(c, ic - 1), m = spec.mean[c], s = spec.std[c], o = base + c * n;
      for (let p = 0; p < n; p++) out[o + p] = (data[p * ic + src] / 255 - m) / s;
    }
  }
  return async function decodeInto(items, out) {
    const failed = [];
    await Promise.all(items.map(async (it, k) => {
      try {
        await decode(it.file, out, k * per);
      } catch (e) {
        out.fill(0, k * per, (k + 1) * per);
        failed.push({ k, message: String((e && e.message) || e).split('\n')[0] });
      }
    }));
    return failed;
  };
}`;

const WORKER_JS = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
${DECODER_JS}
const spec = workerData.spec, per = spec.channels * spec.size * spec.size;
const decodeInto = makeDecoder(require(workerData.sharp), spec);
parentPort.on('message', async (m) => {
  const data = new Float32Array(m.items.length * per);
  const failed = await decodeInto(m.items, data);
  parentPort.postMessage({ id: m.id, data, failed }, [data.buffer]);
});`;

type DecodeInto = (items: readonly DecodeItem[], out: Float32Array) => Promise<Array<{ k: number; message: string }>>;

/** The decoder on the calling thread (libuv's pool still does the native work). */
export function inThreadDecoder(spec: DecodeSpec): (items: readonly DecodeItem[]) => Promise<DecodeResult> {
  const plain = { size: spec.size, channels: spec.channels, mean: [...spec.mean], std: [...spec.std] };
  const decodeInto = new Function('sharp', 'spec', `${DECODER_JS}\nreturn makeDecoder(sharp, spec);`)(sharp, plain) as DecodeInto;
  const per = spec.channels * spec.size * spec.size;
  return async (items) => {
    const data = new Float32Array(items.length * per);
    return { data, failed: await decodeInto(items, data) };
  };
}

/**
 * libvips settings for decoding many small images: `threads` vips threads per image (default 1: the
 * parallelism is across images) and no operation cache (every file is read once per epoch). Both are
 * process-wide. (Measured on the H200 machine: its library default is already 1, and 16 threads per
 * image decode at the same ~10 ms per 64 px JPEG per libuv thread; the cause of that cost is open.)
 */
export function configureVipsForDecoding(threads = 1): void {
  sharp.concurrency(threads);
  sharp.cache(false);
}

/** The default worker count: one per core, at most 16. */
export function defaultDecodeWorkers(): number {
  return Math.max(1, Math.min(16, availableParallelism()));
}

interface Task {
  resolve(r: { data: Float32Array; failed: DecodeResult['failed'] }): void;
  reject(e: Error): void;
}

interface PoolWorker {
  readonly worker: Worker;
  readonly tasks: Map<number, Task>;
}

export class DecodePool {
  private readonly workers: PoolWorker[] = [];
  private readonly per: number;
  private nextId = 0;
  private broken: Error | undefined;
  private closed = false;

  constructor(readonly spec: DecodeSpec, readonly size: number = defaultDecodeWorkers()) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`a decode pool needs at least 1 worker, got ${size}`);
    this.per = spec.channels * spec.size * spec.size;
    const sharpPath = createRequire(import.meta.url).resolve('sharp');
    const plainSpec = { size: spec.size, channels: spec.channels, mean: [...spec.mean], std: [...spec.std] };
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_JS, { eval: true, workerData: { sharp: sharpPath, spec: plainSpec } });
      worker.unref();
      const pw: PoolWorker = { worker, tasks: new Map() };
      worker.on('message', (m: { id: number; data: Float32Array; failed: DecodeResult['failed'] }) => {
        const t = pw.tasks.get(m.id);
        if (!t) return;
        pw.tasks.delete(m.id);
        if (!pw.tasks.size) worker.unref();
        t.resolve(m);
      });
      const fail = (e: Error) => {
        this.broken ??= e;
        for (const t of pw.tasks.values()) t.reject(e);
        pw.tasks.clear();
      };
      worker.on('error', (e) => fail(new Error(`image decode worker failed: ${e.message}`)));
      worker.on('exit', (code) => { if (!this.closed) fail(new Error(`image decode worker exited (code ${code})`)); });
      this.workers.push(pw);
    }
  }

  private post(pw: PoolWorker, items: readonly DecodeItem[]): Promise<{ data: Float32Array; failed: DecodeResult['failed'] }> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      pw.tasks.set(id, { resolve, reject });
      pw.worker.ref(); // keep the process alive while work is in flight
      pw.worker.postMessage({ id, items: items.map((it) => ({ file: it.file })) });
    });
  }

  /** Decode images: each goes to worker `key mod size`; the result is in the items' order. */
  async decode(items: readonly DecodeItem[]): Promise<DecodeResult> {
    if (this.closed) throw new Error('the image decode pool is closed');
    if (this.broken) throw this.broken;
    const groups = this.workers.map(() => [] as number[]);
    items.forEach((it, k) => groups[((it.key % this.size) + this.size) % this.size]!.push(k));
    const data = new Float32Array(items.length * this.per);
    const failed: Array<{ k: number; message: string }> = [];
    await Promise.all(groups.map(async (ks, w) => {
      if (!ks.length) return;
      const r = await this.post(this.workers[w]!, ks.map((k) => items[k]!));
      ks.forEach((k, j) => data.set(r.data.subarray(j * this.per, (j + 1) * this.per), k * this.per));
      for (const f of r.failed) failed.push({ k: ks[f.k]!, message: f.message });
    }));
    failed.sort((a, b) => a.k - b.k);
    return { data, failed };
  }

  /** Terminate the workers (work still in flight is rejected). Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error('the image decode pool was closed');
    for (const pw of this.workers) {
      for (const t of pw.tasks.values()) t.reject(err);
      pw.tasks.clear();
    }
    await Promise.all(this.workers.map((pw) => pw.worker.terminate()));
  }
}

/**
 * @file Image decoding off the main thread: a pool of worker threads, each with sharp loaded, that
 * turn image files into normalized f32 [C, S, S] arrays (decode, resize so the shorter side is S,
 * center crop, optional left-right flip, 1 or 3 channels, (v/255 − mean[c]) / std[c]). The main thread
 * only posts file names and copies results into its batch, so decoding goes on while the main thread
 * is busy (or blocked in a device synchronization) with the training step.
 *
 * The same decoder (`DECODER_JS`, JavaScript source) runs in the workers and, for `inThreadDecoder`,
 * on the calling thread, so a value never depends on where it was decoded. Work is handed out as chunks
 * of images to the worker with the fewest images outstanding; a chunk's result carries the images that
 * could not be read (by index, with sharp's message) instead of failing the chunk. Idle workers are
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
  readonly flip: boolean;
}

export interface DecodeResult {
  /** items.length × C·S·S values; the slots of failed items are zero. */
  readonly data: Float32Array;
  /** Items that could not be decoded: their index in the chunk and the first line of the error. */
  readonly failed: ReadonlyArray<{ readonly k: number; readonly message: string }>;
}

/**
 * `makeDecoder(sharp)` returns `async (file, spec, flip) => Float32Array` (C·S·S values, CHW).
 * A source string so that the workers (eval'd CommonJS) and the calling thread run the same code.
 */
const DECODER_JS = String.raw`
function makeDecoder(sharp) {
  return async function decode(file, spec, flip) {
    const size = spec.size, channels = spec.channels;
    let img = sharp(file, { failOn: 'error' }).resize(size, size, { fit: 'cover', position: 'centre', kernel: 'linear' });
    if (flip) img = img.flop();
    img = channels === 1 ? img.greyscale() : img.removeAlpha().toColourspace('srgb');
    const r = await img.raw().toBuffer({ resolveWithObject: true });
    const data = r.data, ic = r.info.channels, n = size * size, out = new Float32Array(channels * n);
    if (data.length !== n * ic) throw new Error('decoded ' + data.length + ' bytes, expected ' + n * ic);
    for (let c = 0; c < channels; c++) {
      // a greyscale source decoded to 1 channel when 3 were asked: replicate it
      const src = Math.min(c, ic - 1), m = spec.mean[c], s = spec.std[c], base = c * n;
      for (let p = 0; p < n; p++) out[base + p] = (data[p * ic + src] / 255 - m) / s;
    }
    return out;
  };
}`;

const WORKER_JS = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
${DECODER_JS}
const decode = makeDecoder(require(workerData.sharp));
const spec = workerData.spec, per = spec.channels * spec.size * spec.size;
parentPort.on('message', async (m) => {
  const data = new Float32Array(m.items.length * per), failed = [];
  await Promise.all(m.items.map(async (it, k) => {
    try {
      data.set(await decode(it.file, spec, it.flip), k * per);
    } catch (e) {
      failed.push({ k, message: String((e && e.message) || e).split('\n')[0] });
    }
  }));
  parentPort.postMessage({ id: m.id, data, failed }, [data.buffer]);
});`;

type Decoder = (file: string, spec: DecodeSpec, flip: boolean) => Promise<Float32Array>;

/** The decoder on the calling thread (libuv's pool still does the native work). */
export function inThreadDecoder(spec: DecodeSpec): (items: readonly DecodeItem[]) => Promise<DecodeResult> {
  const decode = new Function('sharp', `${DECODER_JS}\nreturn makeDecoder(sharp);`)(sharp) as Decoder;
  const per = spec.channels * spec.size * spec.size;
  return async (items) => {
    const data = new Float32Array(items.length * per), failed: Array<{ k: number; message: string }> = [];
    await Promise.all(items.map(async (it, k) => {
      try {
        data.set(await decode(it.file, spec, it.flip), k * per);
      } catch (e) {
        failed.push({ k, message: String((e as Error)?.message ?? e).split('\n')[0]! });
      }
    }));
    return { data, failed };
  };
}

/** The default worker count: one per core, at most 16. */
export function defaultDecodeWorkers(): number {
  return Math.max(1, Math.min(16, availableParallelism()));
}

interface Task {
  readonly size: number;
  resolve(r: DecodeResult): void;
  reject(e: Error): void;
}

interface PoolWorker {
  readonly worker: Worker;
  readonly tasks: Map<number, Task>;
  outstanding: number;
}

export class DecodePool {
  private readonly workers: PoolWorker[] = [];
  private nextId = 0;
  private broken: Error | undefined;
  private closed = false;

  constructor(readonly spec: DecodeSpec, readonly size: number = defaultDecodeWorkers()) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`a decode pool needs at least 1 worker, got ${size}`);
    const sharpPath = createRequire(import.meta.url).resolve('sharp');
    const plainSpec = { size: spec.size, channels: spec.channels, mean: [...spec.mean], std: [...spec.std] };
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_JS, { eval: true, workerData: { sharp: sharpPath, spec: plainSpec } });
      worker.unref();
      const pw: PoolWorker = { worker, tasks: new Map(), outstanding: 0 };
      worker.on('message', (m: { id: number; data: Float32Array; failed: DecodeResult['failed'] }) => {
        const t = pw.tasks.get(m.id);
        if (!t) return;
        pw.tasks.delete(m.id);
        pw.outstanding -= t.size;
        if (!pw.tasks.size) worker.unref();
        t.resolve({ data: m.data, failed: m.failed });
      });
      const fail = (e: Error) => {
        this.broken ??= e;
        for (const t of pw.tasks.values()) t.reject(e);
        pw.tasks.clear();
        pw.outstanding = 0;
      };
      worker.on('error', (e) => fail(new Error(`image decode worker failed: ${e.message}`)));
      worker.on('exit', (code) => { if (!this.closed) fail(new Error(`image decode worker exited (code ${code})`)); });
      this.workers.push(pw);
    }
  }

  /** Decode a chunk of images on the least busy worker. */
  decode(items: readonly DecodeItem[]): Promise<DecodeResult> {
    if (this.closed) return Promise.reject(new Error('the image decode pool is closed'));
    if (this.broken) return Promise.reject(this.broken);
    let pw = this.workers[0]!;
    for (const w of this.workers) if (w.outstanding < pw.outstanding) pw = w;
    const id = this.nextId++;
    return new Promise<DecodeResult>((resolve, reject) => {
      pw.tasks.set(id, { size: items.length, resolve, reject });
      pw.outstanding += items.length;
      pw.worker.ref(); // keep the process alive while work is in flight
      pw.worker.postMessage({ id, items: items.map((it) => ({ file: it.file, flip: it.flip })) });
    });
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

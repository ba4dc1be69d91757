/**
 * @file Image decoding off the main thread: a pool of workers, each with sharp loaded, that turn image
 * files into normalized f32 [C, S, S] arrays (decode, resize so the shorter side is S, center crop, 1 or
 * 3 channels, (v/255 − mean[c]) / std[c]; flips and the cache of decoded crops are the caller's,
 * imageFolder.ts). The main thread only posts file names and copies results into its batch, so decoding
 * goes on while the main thread is busy (or blocked in a device synchronization) with the training step.
 *
 * Workers are processes by default (`node -e`, IPC with advanced serialization), not threads: what an
 * image costs is libvips' per-operation overhead (GObject construction, locks, allocation: ~1–3 ms of
 * CPU for a 64 px JPEG however small, measured in bench/RESULTS.md), and sharp runs it on libuv's thread
 * pool, which is one per process (UV_THREADPOOL_SIZE, default 4, fixed before user code runs): worker
 * threads all queue on those 4 threads and contend for libvips' process-wide locks. A worker process has
 * its own libvips and libuv pool, so N processes decode N images at once (each keeps `inFlight` images,
 * default 1, inside libvips). `kind: 'thread'` keeps the worker-thread pool.
 *
 * The same decoder (`DECODER_JS`, JavaScript source) runs in the workers and, for `inThreadDecoder`,
 * on the calling thread, so a value never depends on where it was decoded. A call's images are handed
 * out by key (image i to worker i mod N), one message per worker; a result carries the images that
 * could not be read (by index, with sharp's message) instead of failing the call. Idle workers are
 * unref'd (they never keep the process alive; a worker process exits when its parent does);
 * `close()` stops them.
 */
import { spawn } from 'node:child_process';
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
 * the bytes out[k·C·S·S ...] (a Uint8Array, CHW; normalized by the receiver, `normalizeInto`: a quarter of
 * the bytes of f32 through the IPC pipe), the failures as { k, message }. A source string so that the workers (eval'd
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
      const src = Math.min(c, ic - 1), o = base + c * n;
      for (let p = 0; p < n; p++) out[o + p] = data[p * ic + src];
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

/** A worker thread: messages { id, items } in, { id, data, failed } out (data transferred, not copied). */
const WORKER_JS = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
${DECODER_JS}
const spec = workerData.spec, per = spec.channels * spec.size * spec.size;
const decodeInto = makeDecoder(require(workerData.sharp), spec);
// one message at a time, in order: the prefetcher's first batch is not slowed by the ones behind it
let queue = Promise.resolve();
parentPort.on('message', (m) => { queue = queue.then(async () => {
  const data = new Uint8Array(m.items.length * per);
  const failed = await decodeInto(m.items, data);
  parentPort.postMessage({ id: m.id, data, failed }, [data.buffer]);
}); });`;

/** A worker process (node -e, argv[1] = JSON { sharp, spec, inFlight }): the same messages over the IPC
 * channel (advanced serialization: the Uint8Array arrives as one), plus each image's decode span
 * (start, end in ms since the epoch: comparable across processes). It exits when the channel closes
 * (the parent ended or closed the pool). */
const PROCESS_JS = String.raw`
const cfg = JSON.parse(process.argv[1]);
${DECODER_JS}
const sharp = require(cfg.sharp);
sharp.concurrency(1);
sharp.cache(false);
const spec = cfg.spec, per = spec.channels * spec.size * spec.size;
const decodeInto = makeDecoder(sharp, spec);
process.on('disconnect', () => process.exit(0));
// one message at a time, in order: the prefetcher's first batch is not slowed by the ones behind it
let queue = Promise.resolve();
process.on('message', (m) => { queue = queue.then(async () => {
  const data = new Uint8Array(m.items.length * per);
  const failed = [], spans = [];
  // at most cfg.inFlight images inside libvips at once (lanes that each take the next image)
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(cfg.inFlight, m.items.length) }, async () => {
    for (let k; (k = next++) < m.items.length; ) {
      const t0 = performance.timeOrigin + performance.now();
      for (const f of await decodeInto([m.items[k]], data.subarray(k * per, (k + 1) * per))) failed.push({ k, message: f.message });
      spans.push(t0, performance.timeOrigin + performance.now());
    }
  }));
  failed.sort((a, b) => a.k - b.k);
  process.send({ id: m.id, data, failed, spans });
}); });`;

type DecodeInto = (items: readonly DecodeItem[], out: Uint8Array) => Promise<Array<{ k: number; message: string }>>;

/** Image j of the decoded bytes `raw` (CHW u8), normalized ((v/255 − mean[c]) / std[c]) into image k of `out`. */
export function normalizeInto(spec: DecodeSpec, raw: Uint8Array, j: number, out: Float32Array, k: number): void {
  const n = spec.size * spec.size, per = spec.channels * n;
  for (let c = 0; c < spec.channels; c++) {
    const m = spec.mean[c]!, s = spec.std[c]!, i = j * per + c * n, o = k * per + c * n;
    for (let p = 0; p < n; p++) out[o + p] = (raw[i + p]! / 255 - m) / s;
  }
}

/** The decoder on the calling thread (libuv's pool still does the native work). */
export function inThreadDecoder(spec: DecodeSpec): (items: readonly DecodeItem[]) => Promise<DecodeResult> {
  const plain = { size: spec.size, channels: spec.channels, mean: [...spec.mean], std: [...spec.std] };
  const decodeInto = new Function('sharp', 'spec', `${DECODER_JS}\nreturn makeDecoder(sharp, spec);`)(sharp, plain) as DecodeInto;
  const per = spec.channels * spec.size * spec.size;
  return async (items) => {
    const raw = new Uint8Array(items.length * per), data = new Float32Array(items.length * per);
    const failed = await decodeInto(items, raw);
    for (let k = 0; k < items.length; k++) normalizeInto(spec, raw, k, data, k);
    for (const f of failed) data.fill(0, f.k * per, (f.k + 1) * per);
    return { data, failed };
  };
}

/**
 * libvips settings for decoding many small images on the calling process: `threads` vips threads per
 * image (default 1: the parallelism is across images) and no operation cache (every file is read once
 * per epoch). Both are process-wide (worker processes set the same for themselves).
 */
export function configureVipsForDecoding(threads = 1): void {
  sharp.concurrency(threads);
  sharp.cache(false);
}

/** The default worker count: one per core but the main thread's, at least 1, at most 32. */
export function defaultDecodeWorkers(): number {
  return Math.max(1, Math.min(32, availableParallelism() - 1));
}

/** Where a pool's decoders run. `process` (the default): one Node process each, with its own libvips and
 * libuv pool, so N workers decode N images at once with no lock shared between them; `thread`: worker
 * threads of this process (they share libuv's pool: at most UV_THREADPOOL_SIZE images at once). */
export type DecodeWorkerKind = 'process' | 'thread';

export interface DecodePoolOptions {
  /** Workers (default: one per core but the main thread's, at least 1, at most 32). */
  readonly workers?: number;
  readonly kind?: DecodeWorkerKind;
  /** Images a worker process keeps inside libvips at once (default 1); threads: libuv's limit. */
  readonly inFlight?: number;
}

type Reply = { id: number; data: Uint8Array; failed: DecodeResult['failed']; spans?: number[] };

interface Task {
  resolve(r: Reply): void;
  reject(e: Error): void;
}

/** One worker, thread or process, behind the same four calls. */
interface PoolWorker {
  readonly tasks: Map<number, Task>;
  send(m: { id: number; items: Array<{ file: string }> }): void;
  ref(): void;
  unref(): void;
  stop(): Promise<void>;
}

/** Start and end (ms since the epoch) of one image's decode in a worker process. */
export type DecodeSpan = readonly [start: number, end: number];

/** The most spans open at one instant: how many images were being decoded at once. */
export function maxOverlap(spans: readonly DecodeSpan[]): number {
  const ev = spans.flatMap(([a, b]) => [[a, 1], [b, -1]] as const).sort((u, v) => u[0] - v[0] || u[1] - v[1]);
  let open = 0, most = 0;
  for (const [, d] of ev) most = Math.max(most, (open += d));
  return most;
}

export class DecodePool {
  private readonly workers: PoolWorker[] = [];
  private readonly per: number;
  private nextId = 0;
  private broken: Error | undefined;
  private closed = false;
  readonly size: number;
  readonly kind: DecodeWorkerKind;
  /** Decode spans of the worker processes, kept while `traceSpans` is set (the concurrency test). */
  traceSpans = false;
  readonly spans: DecodeSpan[] = [];

  constructor(readonly spec: DecodeSpec, options: DecodePoolOptions | number = {}) {
    const o = typeof options === 'number' ? { workers: options } : options;
    const size = o.workers ?? defaultDecodeWorkers();
    if (!Number.isInteger(size) || size < 1) throw new Error(`a decode pool needs at least 1 worker, got ${size}`);
    const inFlight = o.inFlight ?? 1;
    if (!Number.isInteger(inFlight) || inFlight < 1) throw new Error(`a decode worker needs at least 1 image in flight, got ${inFlight}`);
    this.size = size;
    this.kind = o.kind ?? 'process';
    this.per = spec.channels * spec.size * spec.size;
    const sharpPath = createRequire(import.meta.url).resolve('sharp');
    const plainSpec = { size: spec.size, channels: spec.channels, mean: [...spec.mean], std: [...spec.std] };
    for (let i = 0; i < size; i++) {
      const tasks = new Map<number, Task>();
      const onMessage = (m: Reply) => {
        const t = tasks.get(m.id);
        if (!t) return;
        tasks.delete(m.id);
        if (!tasks.size) pw.unref();
        if (this.traceSpans && m.spans) for (let j = 0; j < m.spans.length; j += 2) this.spans.push([m.spans[j]!, m.spans[j + 1]!]);
        t.resolve(m);
      };
      const fail = (e: Error) => {
        this.broken ??= e;
        for (const t of tasks.values()) t.reject(e);
        tasks.clear();
      };
      let pw: PoolWorker;
      if (this.kind === 'thread') {
        const worker = new Worker(WORKER_JS, { eval: true, workerData: { sharp: sharpPath, spec: plainSpec } });
        worker.on('message', onMessage);
        worker.on('error', (e) => fail(new Error(`image decode worker failed: ${e.message}`)));
        worker.on('exit', (code) => { if (!this.closed) fail(new Error(`image decode worker exited (code ${code})`)); });
        pw = { tasks, send: (m) => worker.postMessage(m), ref: () => worker.ref(), unref: () => worker.unref(), stop: async () => { await worker.terminate(); } };
      } else {
        // NODE_OPTIONS could load a TypeScript loader (tsx) into every worker: the worker is plain JS
        const env = { ...process.env, NODE_OPTIONS: '', UV_THREADPOOL_SIZE: String(Math.max(1, inFlight)) };
        const child = spawn(process.execPath, ['-e', PROCESS_JS, JSON.stringify({ sharp: sharpPath, spec: plainSpec, inFlight })], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced', env });
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.on('message', (m) => onMessage(m as Reply));
        child.on('error', (e) => fail(new Error(`image decode worker process failed: ${e.message}`)));
        child.on('exit', (code, signal) => { if (!this.closed) fail(new Error(`image decode worker process exited (${signal ?? `code ${code}`})`)); });
        pw = {
          tasks,
          send: (m) => child.send(m),
          ref: () => { child.ref(); child.channel?.ref(); },
          unref: () => { child.unref(); child.channel?.unref(); },
          stop: async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.ref(); // an unref'd child would not keep the loop alive until its exit event
            child.kill();
            await exited;
          },
        };
      }
      pw.unref(); // idle workers never keep the process alive
      this.workers.push(pw);
    }
  }

  private post(pw: PoolWorker, items: readonly DecodeItem[]): Promise<Reply> {
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      pw.tasks.set(id, { resolve, reject });
      pw.ref(); // keep the process alive while work is in flight
      pw.send({ id, items: items.map((it) => ({ file: it.file })) });
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
      ks.forEach((k, j) => normalizeInto(this.spec, r.data, j, data, k));
      for (const f of r.failed) {
        failed.push({ k: ks[f.k]!, message: f.message });
        data.fill(0, ks[f.k]! * this.per, (ks[f.k]! + 1) * this.per);
      }
    }));
    failed.sort((a, b) => a.k - b.k);
    return { data, failed };
  }

  /** Stop the workers (work still in flight is rejected). Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error('the image decode pool was closed');
    for (const pw of this.workers) {
      for (const t of pw.tasks.values()) t.reject(err);
      pw.tasks.clear();
    }
    await Promise.all(this.workers.map((pw) => pw.stop()));
  }
}

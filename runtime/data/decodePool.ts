/**
 * @file Image decoding off the main thread: a pool of workers that turn image files into normalized f32
 * [C, S, S] arrays (decode, greyscale or RGB, resize so the shorter side is S, center crop, as torchvision's
 * Grayscale + Resize(S) + CenterCrop(S) on PIL images, byte for byte; then (v/255 − mean[c]) / std[c]; flips
 * and the caches of decoded crops are the caller's, imageFolder.ts and cropCache.ts). The main thread only
 * posts file names and copies results into its batch, so decoding goes on while the main thread is busy
 * (or blocked in a device synchronization) with the training step.
 *
 * Who decodes: JPEGs by mozjpeg compiled to WebAssembly (@jsquash/jpeg; the JPEG library sharp's libvips
 * is built with, so the same pixels), called synchronously in the worker; PNG, WebP, JPEGs at least 3× the
 * crop (libvips shrink-on-load) and JPEGs the WebAssembly decoder refuses (CMYK, truncated) by sharp. What
 * an image costs through sharp is libvips' per-operation overhead, not its pixels (GObject construction,
 * locks, thread hand-offs: ~0.3 ms of CPU for a no-op, ~3 ms for a 64 px JPEG with libvips resize and
 * greyscale on the H200 host, bench/RESULTS.md); hence sharp only decodes and the rest is plain JS on u8
 * pixels (`DECODER_JS`), and JPEGs skip libvips altogether.
 *
 * Workers are processes by default (`node -e`, IPC with advanced serialization), not threads: sharp runs
 * on libuv's thread pool, which is one per process (UV_THREADPOOL_SIZE, default 4, fixed before user code
 * runs), and worker threads contend for libvips' process-wide locks; a worker process has its own, so N
 * processes decode N images at once (each keeps `inFlight` images, default 1, in flight). `kind: 'thread'`
 * keeps the worker-thread pool.
 *
 * The same decoder (`DECODER_JS`, JavaScript source) runs in the workers and, for `inThreadDecoder`,
 * on the calling thread, so a value never depends on where it was decoded. A call's images are handed
 * out by key (image i to worker i mod N), one message per worker; a result carries the images that
 * could not be read (by index, with the decoder's message) instead of failing the call, and counts of
 * images decoded by each decoder. Idle workers are unref'd (they never keep the process alive; a worker
 * process exits when its parent does); `close()` stops them.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
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
  /** The same crops before normalization (u8; what a crop cache file stores, cropCache.ts). */
  readonly raw: Uint8Array;
  /** Items that could not be decoded: their index in the chunk and the first line of the error. */
  readonly failed: ReadonlyArray<{ readonly k: number; readonly message: string }>;
  /** Images decoded so far, by decoder, by whoever decoded this chunk (the pool: all its workers). */
  readonly by?: DecodedBy;
}

/**
 * `makeDecoder(sharp, fs, spec, jpeg)` returns `async (items, out) => failures`: each item's image decoded into
 * the bytes out[k·C·S·S ...] (a Uint8Array, CHW; normalized by the receiver, `normalizeInto`: a quarter of
 * the bytes of f32 through the IPC pipe), the failures as { k, message }; `jpeg` is the WebAssembly JPEG
 * decoder (`loadJpegDecoder`, JPEG_JS) or undefined. Source strings so that the workers (eval'd CommonJS)
 * and the calling thread run the same code.
 *
 * The file's bytes are read here (libvips' file loader costs more than its buffer loader); a JPEG is
 * decoded by `jpeg` to RGBA, anything else (or a JPEG it refuses) by sharp to raw; the rest is done here on u8 pixels: greyscale as PIL's convert('L') (ITU-R 601-2 luma on the
 * encoded values, exactly: (19595 R + 38470 G + 7471 B + 2^15) >> 16; greyscale sources kept, a greyscale
 * source replicated when 3 channels are asked, alpha dropped), resize so the shorter side is S and the
 * longer one floor(S · long / short), center crop at round-half-even offsets, both as torchvision's
 * Resize(S) + CenterCrop(S) on PIL images: PIL's antialiased bilinear filter, its coefficients and 22-bit
 * fixed point, horizontal pass then vertical, only for the pixels the crop keeps. A JPEG whose shorter
 * side is at least 3·S is instead resized to that size by libvips (shrink-on-load: libjpeg decodes it at
 * 1/2, 1/4 or 1/8 scale, then libvips' linear reduce), since there decoding every pixel would cost more
 * than the operation; the crop and the channels are then as above.
 */
const JPEG_JS = String.raw`
async function loadJpegDecoder(fs, cfg, load) {
  if (!cfg) return undefined;
  try {
    return await loadWasm(fs, cfg, load);
  } catch (e) {
    process.stderr.write('kiln: the WebAssembly JPEG decoder did not load (' + ((e && e.message) || e) + '): JPEGs are decoded by sharp\n');
    return undefined;
  }
}
async function loadWasm(fs, cfg, load) {
  const factory = (await load(cfg.url)).default, wasm = new WebAssembly.Module(fs.readFileSync(cfg.wasm));
  let warnings = [];
  const mod = await factory({
    noInitialRun: true,
    instantiateWasm: (imports, done) => { const i = new WebAssembly.Instance(wasm, imports); done(i); return i.exports; },
    print: () => {},
    printErr: (line) => warnings.push(String(line)),
  });
  return (bytes) => {
    warnings = [];
    let r;
    try { r = mod.decode(bytes, false); } catch (e) { return undefined; } // libjpeg's error_exit: exit(1), the module lives on
    // a truncated file is an error for sharp (failOn: 'error') too; other warnings are not
    if (!r || warnings.some((l) => /premature end of jpeg file/i.test(l))) return undefined;
    return r;
  };
}`;

const DECODER_JS = String.raw`
function makeDecoder(sharp, fs, spec, jpeg) {
  const S = spec.size, C = spec.channels, n = S * S, per = C * n, PREC = 22;
  // PIL's bilinear coefficients (Resample.c: precompute_coeffs, normalize_coeffs_8bpc) for the outputs
  // first .. first + count - 1 of a resize from inSize to outSize
  const coeffCache = new Map();
  function coeffs(inSize, outSize, first, count) {
    const key = inSize + ',' + outSize + ',' + first;
    let c = coeffCache.get(key);
    if (c) return c;
    const scale = inSize / outSize, fscale = Math.max(scale, 1), support = fscale, ss = 1 / fscale;
    const ks = Math.ceil(support) * 2 + 1, kk = new Int32Array(count * ks), lo = new Int32Array(count), len = new Int32Array(count);
    const w = new Float64Array(ks);
    for (let j = 0; j < count; j++) {
      const center = (first + j + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0), xn = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      let ww = 0;
      for (let x = 0; x < xn; x++) { const t = Math.abs((x + xmin - center + 0.5) * ss); w[x] = t < 1 ? 1 - t : 0; ww += w[x]; }
      for (let x = 0; x < xn; x++) { const v = ww !== 0 ? w[x] / ww : w[x]; kk[j * ks + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PREC) : 0.5 + v * (1 << PREC)); }
      lo[j] = xmin; len[j] = xn;
    }
    c = { ks, kk, lo, len };
    if (coeffCache.size < 4096) coeffCache.set(key, c);
    return c;
  }
  const clip8 = (v) => (v <= 0 ? 0 : v >= 256 << PREC ? 255 : v >> PREC);
  // round(x / 2) as Python rounds (half to even): torchvision's center-crop offset
  const halfEven = (d) => ((d & 1) === 0 ? d / 2 : ((d - 1) / 2) % 2 === 0 ? (d - 1) / 2 : (d + 1) / 2);
  // the size torchvision's Resize(S) gives a w x h image: shorter side S, longer floor(S * long / short)
  const target = (w, h) => (w <= h ? [S, Math.floor((S * h) / w)] : [Math.floor((S * w) / h), S]);
  // one u8 plane (w x h) resized to tw x th and cropped to S x S at (left, top), into out at o
  function resizeCrop(src, w, h, tw, th, out, o) {
    const left = halfEven(tw - S), top = halfEven(th - S);
    const hc = coeffs(w, tw, left, S), vc = coeffs(h, th, top, S);
    const y0 = vc.lo[0], y1 = vc.lo[S - 1] + vc.len[S - 1], rows = y1 - y0;
    const tmp = new Uint8Array(rows * S);
    for (let r = 0; r < rows; r++) {
      const row = (y0 + r) * w;
      for (let j = 0; j < S; j++) {
        let acc = 1 << (PREC - 1);
        const k = j * hc.ks, x0 = row + hc.lo[j];
        for (let x = 0, xn = hc.len[j]; x < xn; x++) acc += src[x0 + x] * hc.kk[k + x];
        tmp[r * S + j] = clip8(acc);
      }
    }
    for (let i = 0; i < S; i++) {
      const k = i * vc.ks, r0 = vc.lo[i] - y0, yn = vc.len[i];
      for (let j = 0; j < S; j++) {
        let acc = 1 << (PREC - 1);
        for (let y = 0; y < yn; y++) acc += tmp[(r0 + y) * S + j] * vc.kk[k + y];
        out[o + i * S + j] = clip8(acc);
      }
    }
  }
  // a baseline or progressive JPEG's width and height from its SOF marker, else undefined
  function jpegSize(b) {
    if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
    for (let i = 2; i + 9 < b.length; ) {
      if (b[i] !== 0xff) return undefined;
      const m = b[i + 1];
      if (m === 0xff) { i++; continue; }
      if (m === 0x01 || (m >= 0xd0 && m <= 0xd8)) { i += 2; continue; }
      if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return [(b[i + 7] << 8) | b[i + 8], (b[i + 5] << 8) | b[i + 6]];
      i += 2 + ((b[i + 2] << 8) | b[i + 3]);
    }
    return undefined;
  }
  async function decode(file, out, base) {
    const bytes = fs.readFileSync(file);
    const js = jpegSize(bytes), large = js && Math.min(js[0], js[1]) >= 3 * S;
    // a JPEG through mozjpeg in WebAssembly (RGBA), undefined when it could not (sharp then decodes it or says why not)
    const wj = js && !large && jpeg ? jpeg(bytes) : undefined;
    let d, w, h, ic;
    if (wj) { [d, w, h, ic] = [wj.data, wj.width, wj.height, 4]; by.wasm++; }
    else {
      by.sharp++;
      let img = sharp(bytes, { failOn: 'error' });
      if (large) {
        const [tw, th] = target(js[0], js[1]);
        img = img.resize(tw, th, { fit: 'fill', kernel: 'linear' });
      }
      const r = await img.raw().toBuffer({ resolveWithObject: true });
      [d, w, h, ic] = [r.data, r.info.width, r.info.height, r.info.channels];
    }
    const m = w * h;
    if (d.length !== m * ic) throw new Error('decoded ' + d.length + ' bytes, expected ' + m * ic);
    const [tw, th] = target(w, h);
    const plane = new Uint8Array(m);
    for (let c = 0; c < C; c++) {
      if (C === 1 && ic >= 3) for (let p = 0, q = 0; p < m; p++, q += ic) plane[p] = (d[q] * 19595 + d[q + 1] * 38470 + d[q + 2] * 7471 + 0x8000) >>> 16;
      else { const src = ic >= 3 ? c : 0; for (let p = 0, q = src; p < m; p++, q += ic) plane[p] = d[q]; }
      resizeCrop(plane, w, h, tw, th, out, base + c * n);
    }
  }
  const by = { wasm: 0, sharp: 0 };
  async function decodeInto(items, out) {
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
  }
  decodeInto.by = by; // images decoded so far by each decoder (the bench and the tests read it)
  return decodeInto;
}`;

/** A worker thread: messages { id, items } in, { id, data, failed } out (data transferred, not copied). */
const WORKER_JS = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
${JPEG_JS}
${DECODER_JS}
const spec = workerData.spec, per = spec.channels * spec.size * spec.size, fs = require('node:fs');
let decodeInto;
// one message at a time, in order: the prefetcher's first batch is not slowed by the ones behind it
let queue = loadJpegDecoder(fs, workerData.jpeg, (u) => import(u)).then((j) => { decodeInto = makeDecoder(require(workerData.sharp), fs, spec, j); });
parentPort.on('message', (m) => { queue = queue.then(async () => {
  const data = new Uint8Array(m.items.length * per);
  const failed = await decodeInto(m.items, data);
  parentPort.postMessage({ id: m.id, data, failed, by: decodeInto.by }, [data.buffer]);
}); });`;

/** A worker process (node -e, argv[1] = JSON { sharp, jpeg, spec, inFlight }): the same messages over the IPC
 * channel (advanced serialization: the Uint8Array arrives as one), plus each image's decode span
 * (start, end in ms since the epoch: comparable across processes). It exits when the channel closes
 * (the parent ended or closed the pool). */
const PROCESS_JS = String.raw`
const cfg = JSON.parse(process.argv[1]);
${JPEG_JS}
${DECODER_JS}
const sharp = require(cfg.sharp), fs = require('node:fs');
sharp.concurrency(1);
sharp.cache(false);
const spec = cfg.spec, per = spec.channels * spec.size * spec.size;
let decodeInto;
process.on('disconnect', () => process.exit(0));
// one message at a time, in order: the prefetcher's first batch is not slowed by the ones behind it
let queue = loadJpegDecoder(fs, cfg.jpeg, (u) => import(u)).then((j) => { decodeInto = makeDecoder(sharp, fs, spec, j); });
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
  process.send({ id: m.id, data, failed, spans, by: decodeInto.by });
}); });`;

type DecodeInto = ((items: readonly DecodeItem[], out: Uint8Array) => Promise<Array<{ k: number; message: string }>>) & { by: DecodedBy };

/** Image j of the decoded bytes `raw` (CHW u8), normalized ((v/255 − mean[c]) / std[c]) into image k of `out`. */
export function normalizeInto(spec: DecodeSpec, raw: Uint8Array, j: number, out: Float32Array, k: number): void {
  const n = spec.size * spec.size, per = spec.channels * n;
  for (let c = 0; c < spec.channels; c++) {
    const m = spec.mean[c]!, s = spec.std[c]!, i = j * per + c * n, o = k * per + c * n;
    for (let p = 0; p < n; p++) out[o + p] = (raw[i + p]! / 255 - m) / s;
  }
}

/** Where the WebAssembly JPEG decoder is (@jsquash/jpeg: mozjpeg, the JPEG library sharp's libvips is built
 * with, compiled to WebAssembly), or undefined when JPEGs go through sharp (`jpeg: 'sharp'`, or the package
 * is not installed: then `warn` says so once). */
export type JpegDecoder = 'wasm' | 'sharp';
let missingWarned = false;
export function jpegDecoderPaths(which: JpegDecoder = 'wasm', warn?: (line: string) => void): { url: string; wasm: string } | undefined {
  if (which === 'sharp') return undefined;
  try {
    const req = createRequire(import.meta.url);
    return { url: pathToFileURL(req.resolve('@jsquash/jpeg/codec/dec/mozjpeg_dec.js')).href, wasm: req.resolve('@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm') };
  } catch {
    if (!missingWarned) warn?.('@jsquash/jpeg is not installed (npm install): JPEGs are decoded by sharp, several times slower per image');
    missingWarned = true;
    return undefined;
  }
}

/** The decoder on the calling thread (libuv's pool still does sharp's native work). */
export function inThreadDecoder(spec: DecodeSpec, jpeg: JpegDecoder = 'wasm', warn?: (line: string) => void): (items: readonly DecodeItem[]) => Promise<DecodeResult> {
  const plain = { size: spec.size, channels: spec.channels, mean: [...spec.mean], std: [...spec.std] };
  const make = new Function('sharp', 'fs', 'spec', 'jpegCfg', 'load', `${JPEG_JS}\n${DECODER_JS}\nreturn loadJpegDecoder(fs, jpegCfg, load).then((j) => makeDecoder(sharp, fs, spec, j));`);
  const ready = make(sharp, fs, plain, jpegDecoderPaths(jpeg, warn), (u: string) => import(u)) as Promise<DecodeInto>;
  const per = spec.channels * spec.size * spec.size;
  return async (items) => {
    const raw = new Uint8Array(items.length * per), data = new Float32Array(items.length * per);
    const failed = await (await ready)(items, raw);
    for (let k = 0; k < items.length; k++) normalizeInto(spec, raw, k, data, k);
    for (const f of failed) data.fill(0, f.k * per, (f.k + 1) * per);
    return { data, raw, failed, by: { ...(await ready).by } };
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
  /** Who decodes JPEGs (default 'wasm': mozjpeg in WebAssembly where @jsquash/jpeg is installed). */
  readonly jpeg?: JpegDecoder;
  /** Where the pool says that the WebAssembly decoder is missing. */
  readonly warn?: (line: string) => void;
}

/** Images decoded by each decoder (WebAssembly mozjpeg, sharp). */
export interface DecodedBy {
  wasm: number;
  sharp: number;
}

type Reply = { id: number; data: Uint8Array; failed: DecodeResult['failed']; spans?: number[]; by: DecodedBy };

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
  /** Each worker's latest count of images decoded by each decoder. */
  private readonly byWorker: DecodedBy[] = [];

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
    const jpeg = jpegDecoderPaths(o.jpeg, o.warn);
    for (let i = 0; i < size; i++) {
      const tasks = new Map<number, Task>();
      const onMessage = (m: Reply) => {
        const t = tasks.get(m.id);
        if (!t) return;
        tasks.delete(m.id);
        if (!tasks.size) pw.unref();
        if (this.traceSpans && m.spans) for (let j = 0; j < m.spans.length; j += 2) this.spans.push([m.spans[j]!, m.spans[j + 1]!]);
        this.byWorker[i] = m.by;
        t.resolve(m);
      };
      const fail = (e: Error) => {
        this.broken ??= e;
        for (const t of tasks.values()) t.reject(e);
        tasks.clear();
      };
      let pw: PoolWorker;
      if (this.kind === 'thread') {
        const worker = new Worker(WORKER_JS, { eval: true, workerData: { sharp: sharpPath, jpeg, spec: plainSpec } });
        worker.on('message', onMessage);
        worker.on('error', (e) => fail(new Error(`image decode worker failed: ${e.message}`)));
        worker.on('exit', (code) => { if (!this.closed) fail(new Error(`image decode worker exited (code ${code})`)); });
        pw = { tasks, send: (m) => worker.postMessage(m), ref: () => worker.ref(), unref: () => worker.unref(), stop: async () => { await worker.terminate(); } };
      } else {
        // NODE_OPTIONS could load a TypeScript loader (tsx) into every worker: the worker is plain JS
        const env = { ...process.env, NODE_OPTIONS: '', UV_THREADPOOL_SIZE: String(Math.max(1, inFlight)) };
        const child = spawn(process.execPath, ['-e', PROCESS_JS, JSON.stringify({ sharp: sharpPath, jpeg, spec: plainSpec, inFlight })], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced', env });
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
    const data = new Float32Array(items.length * this.per), raw = new Uint8Array(items.length * this.per);
    const failed: Array<{ k: number; message: string }> = [];
    await Promise.all(groups.map(async (ks, w) => {
      if (!ks.length) return;
      const r = await this.post(this.workers[w]!, ks.map((k) => items[k]!));
      ks.forEach((k, j) => {
        normalizeInto(this.spec, r.data, j, data, k);
        raw.set(r.data.subarray(j * this.per, (j + 1) * this.per), k * this.per);
      });
      for (const f of r.failed) {
        failed.push({ k: ks[f.k]!, message: f.message });
        data.fill(0, ks[f.k]! * this.per, (ks[f.k]! + 1) * this.per);
      }
    }));
    failed.sort((a, b) => a.k - b.k);
    return { data, raw, failed, by: this.decodedBy() };
  }

  /** Images decoded so far by the workers, by decoder. */
  decodedBy(): DecodedBy {
    return this.byWorker.reduce((a, b) => ({ wasm: a.wasm + (b?.wasm ?? 0), sharp: a.sharp + (b?.sharp ?? 0) }), { wasm: 0, sharp: 0 });
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

/**
 * @file Data time vs step time of training runs (issue 12): writes an image folder of JPEGs (sharp),
 * or summarizes a run's metrics.jsonl. `tsx bench/dataTime.ts images DIR N SIDE [FIRST COUNT]` writes N random
 * SIDE×SIDE JPEGs in 10 class folders (or images FIRST.. of them); `tsx bench/dataTime.ts summary LABEL RUN_DIR [PER_EPOCH]` prints one table
 * row (two with PER_EPOCH: the first epoch and the rest): steps, median and mean data_ms (how long the trainer waited for the prefetched batch) and
 * step_ms (feeds + device step + fetch of the loss), over the steps after the first 5 (compile warm-up).
 * `tsx bench/dataTime.ts decode DIR SIZE CHANNELS BATCH BATCHES WORKERS[:VIPS_THREADS][:nocache]...` (WORKERS: COUNT, COUNTt
 * worker threads, COUNTp[xK] worker processes with K images in flight each) times the image-folder loader
 * alone (no training): per worker count, ms per batch and images/s decoding (cache off), then the
 * same from the decoded-image cache (a second pass over the same batches); one table row each.
 * `tsx bench/dataTime.ts images DIR N mixed` writes N images of varied sizes and formats (JPEG 20..89 px a side, 10
 * larger JPEGs of 300x200, greyscale and RGBA PNGs) in class folders (the decode's exactness check against torchvision);
 * `images DIR N WxH` writes N smooth photo-like W×H JPEGs (gradients + mild noise).
 * `tsx bench/dataTime.ts seq DIR N` times N decodes one after another on the calling thread (wall and CPU µs per image):
 * sharp no-op, sharp decode only, the previous pipeline (libvips resize + greyscale, from the file and from its bytes),
 * and the loader's decoder (`inThreadDecoder`, JPEGs through sharp and through WebAssembly); one table row each.
 * `tsx bench/dataTime.ts stream DIR SIZE CHANNELS BATCH STEP_MS WORKERS[xK][:sharp]` runs the prefetching loader over one epoch
 * (fresh source: every image decoded; `:sharp`: JPEGs through sharp, not WebAssembly; CACHE_FILE: the source's
 * crop cache file, read when it is there, else written) with a simulated step of STEP_MS that leaves the main thread free (a poll
 * with setImmediate, as the CUDA executable's event query); prints one JSON line (epoch time, images/s after
 * the first batch, wait per step). `crops DIR SIZE CHANNELS OUT` writes the unflipped u8 crops of every image
 * (sorted by class, then name) to OUT (the comparison with bench/data_torch.py crops).
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { configureVipsForDecoding, inThreadDecoder } from '../runtime/data/decodePool.ts';
import { ImageFolderSource } from '../runtime/data/imageFolder.ts';
import { Prefetcher } from '../runtime/data/prefetch.ts';

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'images') {
  // optional FIRST COUNT: write only images FIRST .. FIRST+COUNT-1 (several processes write one folder)
  const [dir, n, side] = [args[0]!, Number(args[1]), args[2]!];
  const first = Number(args[3] ?? 0), end = Math.min(n, first + Number(args[4] ?? n));
  const photo = /^(\d+)x(\d+)$/.exec(side);
  const jobs: Promise<unknown>[] = [];
  for (let i = first; i < end; i++) {
    let s = 12345 + i; // each image's pixels depend on its index only
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const cls = join(dir, `c${i % 10}`);
    mkdirSync(cls, { recursive: true });
    // mixed: varied sizes (odd aspect ratios, crop offsets of both parities), 10 large JPEGs, greyscale and RGBA PNGs
    const [w, h] = side === 'mixed' ? (i % 12 === 11 ? [300, 200] : [20 + ((i * 13) % 70), 20 + ((i * 29) % 70)]) : photo ? [Number(photo[1]), Number(photo[2])] : [Number(side), Number(side)];
    const px = Buffer.alloc(w * h * 3);
    if (photo || side === 'mixed') {
      // smooth content: gradients and a few blobs, plus mild noise (what JPEG photos look like to a decoder)
      const [a, b, c] = [rnd() * 6, rnd() * 6, rnd() * 6];
      for (let y = 0, j = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < 3; ch++, j++)
        px[j] = Math.max(0, Math.min(255, Math.round(128 + 90 * Math.sin(a + (x / w) * (2 + ch) + (y / h) * b) * Math.cos(c + (y / h) * 3) + (rnd() - 0.5) * 24)));
    } else for (let j = 0; j < px.length; j++) px[j] = Math.floor(rnd() * 256);
    const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
    if (side === 'mixed' && i % 12 === 5) jobs.push(img.greyscale().png().toFile(join(cls, `${i}.png`)));
    else if (side === 'mixed' && i % 12 === 7) jobs.push(img.ensureAlpha(0.6).png().toFile(join(cls, `${i}.png`)));
    else jobs.push(img.jpeg({ quality: 90 }).toFile(join(cls, `${i}.jpg`)));
  }
  await Promise.all(jobs);
  console.log(`${end - first} images (${side}) in ${dir}`);
} else if (cmd === 'summary') {
  // optional PER_EPOCH: rows for the first epoch's steps (images decoded) and the later ones (cached)
  const [label, run, perEpoch] = [args[0]!, args[1]!, Number(args[2] ?? 0)];
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as { data_ms: number; step_ms: number });
  const med = (v: number[]) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
  const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
  const row = (what: string, rest: typeof lines) => {
    const d = rest.map((l) => l.data_ms), t = rest.map((l) => l.step_ms);
    console.log(`| ${what} | ${rest.length} | ${med(d).toFixed(3)} | ${avg(d).toFixed(3)} | ${med(t).toFixed(3)} | ${avg(t).toFixed(3)} | ${(100 * avg(d) / (avg(d) + avg(t))).toFixed(1)}% |`);
  };
  if (perEpoch > 5) {
    row(`${label}, epoch 1 (decoding)`, lines.slice(5, perEpoch));
    row(`${label}, epochs 2+ (cached)`, lines.slice(perEpoch));
  } else row(label, lines.slice(5));
} else if (cmd === 'decode') {
  const [dir, size, channels, batch, batches] = [args[0]!, Number(args[1]), Number(args[2]) as 1 | 3, Number(args[3]), Number(args[4])];
  const uv = process.env.UV_THREADPOOL_SIZE ?? '4 (default)';
  console.log(`| sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}: library default ${sharp.concurrency()} vips threads/image, SIMD ${sharp.simd()} | | | | |`);
  // WORKERS items: a worker count, or COUNT:VIPS (libvips threads per image; default 1); ':nocache' skips the cached pass
  for (const spec of args.slice(5)) {
    // COUNT[t|p][xIN_FLIGHT]: worker threads (t) or processes (p, the default), images in flight per process
    const [wk, vipsThreads] = spec.split(':') as [string, string | undefined];
    const m = /^(\d+)([tp]?)(?:x(\d+))?$/.exec(wk);
    if (!m) throw new Error(`bad WORKERS item ${spec}`);
    const workers = Number(m[1]), workerKind = m[2] === 't' ? ('thread' as const) : ('process' as const), inFlight = m[3] ? Number(m[3]) : undefined;
    for (const cached of spec.endsWith(':nocache') ? [false] : [false, true]) {
      const src = new ImageFolderSource({ root: dir, batchSize: batch, seed: 0, size, channels, flip: true, onError: 'skip', workers, cacheBytes: cached ? 1 << 30 : 0, vipsThreads: vipsThreads && vipsThreads !== 'nocache' ? Number(vipsThreads) : undefined, workerKind, inFlight });
      const n = Math.min(batches, src.batchesPerEpoch);
      if (cached) for (let b = 0; b < n; b++) await src.load(0, b); // fill the cache
      else await src.load(1, 0); // start the workers
      const t = performance.now();
      for (let b = 0; b < n; b++) await Promise.all([src.load(0, b)]);
      const ms = (performance.now() - t) / n;
      const who = workers === 0 ? 'calling thread' : `${workers} worker ${workerKind === "thread" ? "threads" : "processes"}${workerKind === 'process' ? ` x${inFlight ?? 1} in flight` : ''}`;
      console.log(`| ${who}, libuv ${workerKind === 'process' && workers ? 'per process' : uv}, ${vipsThreads && vipsThreads !== 'nocache' ? vipsThreads : 1} vips thread(s)/image | ${cached ? 'cached' : 'decode'} | ${n} | ${ms.toFixed(2)} | ${Math.round((batch * 1000) / ms)} |`);
      await src.close();
    }
  }
} else if (cmd === 'seq') {
  // per-image cost on the calling thread, one decode at a time (libvips at 1 thread, no cache)
  const [dir, n] = [args[0]!, Number(args[1] ?? 300)];
  configureVipsForDecoding(1);
  const files = listImages(dir).filter((f) => f.endsWith('.jpg')).slice(0, n);
  const bytes = files.map((f) => readFileSync(f));
  const raw = Buffer.alloc(64 * 64 * 3, 7);
  const cover = { fit: 'cover', position: 'centre', kernel: 'linear' } as const;
  const dec = inThreadDecoder({ size: 28, channels: 1, mean: [0], std: [1] }, 'sharp');
  const wasm = inThreadDecoder({ size: 28, channels: 1, mean: [0], std: [1] }, 'wasm', (w) => console.error(w));
  const ops: Array<[string, (i: number) => Promise<unknown>]> = [
    ['sharp no-op (raw 64x64 in, raw out)', () => sharp(raw, { raw: { width: 64, height: 64, channels: 3 } }).raw().toBuffer()],
    ['sharp decode only, from the bytes', (i) => sharp(bytes[i]!).raw().toBuffer()],
    ['previous pipeline: file, libvips resize 28 cover linear + greyscale', (i) => sharp(files[i]!, { failOn: 'error' }).resize(28, 28, cover).greyscale().raw().toBuffer()],
    ['previous pipeline, sequentialRead', (i) => sharp(files[i]!, { failOn: 'error', sequentialRead: true }).resize(28, 28, cover).greyscale().raw().toBuffer()],
    ['previous pipeline from the bytes (readFileSync)', (i) => sharp(readFileSync(files[i]!), { failOn: 'error' }).resize(28, 28, cover).greyscale().raw().toBuffer()],
    ['the loader with sharp decoding JPEGs: bytes, sharp decode, JS greyscale + resize + crop', (i) => dec([{ file: files[i]!, key: i }])],
    ['the loader (default): bytes, mozjpeg WebAssembly decode, JS greyscale + resize + crop', (i) => wasm([{ file: files[i]!, key: i }])],
  ];
  for (const [name, op] of ops) {
    for (let i = 0; i < Math.min(20, files.length); i++) await op(i);
    const c0 = process.cpuUsage(), t0 = performance.now();
    for (let i = 0; i < files.length; i++) await op(i);
    const wall = performance.now() - t0, cpu = process.cpuUsage(c0), us = (cpu.user + cpu.system) / files.length;
    console.log(`| ${name} | ${files.length} | ${((wall / files.length) * 1000).toFixed(0)} | ${us.toFixed(0)} | ${Math.round(1e6 / us)} |`);
  }
} else if (cmd === 'stream') {
  const [dir, size, channels, batch, stepMs] = [args[0]!, Number(args[1]), Number(args[2]) as 1 | 3, Number(args[3]), Number(args[4])];
  // COUNT[p][xIN_FLIGHT][:sharp] (JPEGs through sharp instead of WebAssembly)
  const m = /^(\d+)p?(?:x(\d+))?(:sharp)?$/.exec(args[5] ?? '');
  if (!m) throw new Error(`bad WORKERS ${args[5]}`);
  const workers = Number(m[1]), inFlight = m[2] ? Number(m[2]) : undefined, jpegDecoder = m[3] ? ('sharp' as const) : ('wasm' as const);
  const t0 = performance.now(), cpu0 = process.cpuUsage();
  const src = new ImageFolderSource({ root: dir, batchSize: batch, seed: 0, size, channels, flip: true, onError: 'skip', workers, inFlight, jpegDecoder, normalize: { mean: 0.5, std: 0.5 }, warn: (w) => console.error(w), cacheFile: process.env.CACHE_FILE || undefined });
  const pf = new Prefetcher(src, { epoch: 0, batch: 0 });
  const waits: number[] = [], steps: number[] = [];
  let tFirst = 0;
  for (let s = 0; s < src.batchesPerEpoch; s++) {
    waits.push((await pf.next()).waitMs);
    if (s === 0) tFirst = performance.now();
    const ts = performance.now(), end = ts + stepMs;
    while (performance.now() < end) await new Promise((r) => setImmediate(r));
    steps.push(performance.now() - ts);
  }
  const tEnd = performance.now(), cpu = process.cpuUsage(cpu0);
  await pf.close();
  // the loader's CPU in this process (the trainer's): receiving, normalizing and placing crops, the step's polling included
  const mainCpuMsPerBatch = (cpu.user + cpu.system) / 1000 / src.batchesPerEpoch;
  console.log(JSON.stringify({ loader: 'kiln', mainCpuMsPerBatch, label: process.env.LABEL ?? '', cacheFile: process.env.CACHE_FILE || undefined, decoded: src.decodedImages, workers, inFlight: inFlight ?? 1, jpeg: jpegDecoder, decodedBy: src.decodedBy, prefetch: src.prefetchDepth, ...streamStats(batch, waits, steps, t0, tFirst, tEnd) }));
} else if (cmd === 'crops') {
  const [dir, size, channels, out] = [args[0]!, Number(args[1]), Number(args[2]) as 1 | 3, args[3]!];
  const files = listImages(dir), per = channels * size * size;
  const r = await inThreadDecoder({ size, channels, mean: Array(channels).fill(0), std: Array(channels).fill(1) })(files.map((file, key) => ({ file, key })));
  if (r.failed.length) throw new Error(`unreadable: ${r.failed.map((f) => files[f.k]).join(', ')}`);
  const u8 = Uint8Array.from(r.data, (v) => Math.round(v * 255));
  writeFileSync(out, u8);
  console.error(`${files.length} crops of ${per} bytes to ${out}`);
} else {
  console.error('usage: tsx bench/dataTime.ts images DIR N SIDE|WxH|mixed | summary LABEL RUN_DIR [PER_EPOCH] | decode DIR SIZE CHANNELS BATCH BATCHES WORKERS... | seq DIR N | stream DIR SIZE CHANNELS BATCH STEP_MS WORKERS | crops DIR SIZE CHANNELS OUT');
  process.exit(2);
}

/** Image files of an image folder, sorted by class folder then name (ImageFolderSource's and torchvision's order). */
function listImages(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((c) => readdirSync(join(dir, c)).filter((f) => /\.(jpe?g|png|webp)$/i.test(f)).sort().map((f) => join(dir, c, f)));
}

/** One epoch of a loader with a simulated step: what bench/data_torch.py stream prints too. */
function streamStats(batch: number, waits: number[], steps: number[], t0: number, tFirst: number, tEnd: number) {
  const rest = waits.slice(1), sorted = [...rest].sort((a, b) => a - b);
  const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
  return {
    batch, batches: waits.length, stepMs: sum(steps) / steps.length, firstBatchMs: waits[0], epochMs: tEnd - t0,
    imagesPerS: ((waits.length - 1) * batch * 1000) / (tEnd - tFirst), waitMedianMs: sorted[sorted.length >> 1] ?? 0,
    waitMeanMs: sum(rest) / Math.max(1, rest.length), waitMaxMs: sorted[sorted.length - 1] ?? 0, stepsWaiting: rest.filter((w) => w > 1).length,
    dataShare: sum(rest) / (sum(rest) + sum(steps.slice(1))),
  };
}

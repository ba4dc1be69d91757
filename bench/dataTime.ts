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
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { ImageFolderSource } from '../runtime/data/imageFolder.ts';

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'images') {
  // optional FIRST COUNT: write only images FIRST .. FIRST+COUNT-1 (several processes write one folder)
  const [dir, n, side] = [args[0]!, Number(args[1]), Number(args[2])];
  const first = Number(args[3] ?? 0), end = Math.min(n, first + Number(args[4] ?? n));
  const jobs: Promise<unknown>[] = [];
  for (let i = first; i < end; i++) {
    let s = 12345 + i; // each image's pixels depend on its index only
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const cls = join(dir, `c${i % 10}`);
    mkdirSync(cls, { recursive: true });
    const px = Buffer.alloc(side * side * 3);
    for (let j = 0; j < px.length; j++) px[j] = Math.floor(rnd() * 256);
    jobs.push(sharp(px, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(cls, `${i}.jpg`)));
  }
  await Promise.all(jobs);
  console.log(`${end - first} JPEGs ${side}x${side} in ${dir}`);
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
} else {
  console.error('usage: tsx bench/dataTime.ts images DIR N SIDE | summary LABEL RUN_DIR [PER_EPOCH] | decode DIR SIZE CHANNELS BATCH BATCHES WORKERS...');
  process.exit(2);
}

/**
 * Image-folder decoding in worker processes (and threads) on files the test writes with sharp (JPEG and PNG of odd
 * sizes, greyscale and RGBA PNGs, a corrupt file and a truncated one): the batches are the same bytes
 * whatever the worker count (0 = the calling thread), cached or decoded again, through the prefetcher; unreadable images are
 * reported by path in skip mode and fail the load in fail mode; a process that never closes its source
 * still exits (idle workers are unref'd), and a closed pool rejects work. Worker processes decode at the
 * same time (their decode spans overlap), each keeping `inFlight` images inside libvips and taking its
 * messages in order; a prefetch deeper than an epoch decodes every file once.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { DecodePool, maxOverlap } from '../../runtime/data/decodePool.ts';
import { ImageFolderSource, type ImageFolderOptions } from '../../runtime/data/imageFolder.ts';
import { Prefetcher } from '../../runtime/data/prefetch.ts';

let root = '';

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'kiln-decode-'));
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24);
  const classes = ['a', 'b', 'c'];
  for (const c of classes) mkdirSync(join(root, c));
  for (let i = 0; i < 30; i++) {
    const [w, h] = [13 + (i % 7) * 5, 11 + (i % 5) * 6];
    const px = Buffer.alloc(w * h * 3);
    for (let j = 0; j < px.length; j++) px[j] = rnd();
    const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
    const dir = join(root, classes[i % 3]!);
    if (i % 5 === 0) await img.greyscale().png().toFile(join(dir, `g${i}.png`)); // 1-channel PNG
    else if (i % 5 === 1) await img.ensureAlpha(0.5).png().toFile(join(dir, `t${i}.png`)); // RGBA
    else await img.jpeg({ quality: 90 }).toFile(join(dir, `j${i}.jpg`));
  }
  writeFileSync(join(root, 'b', 'corrupt.jpg'), 'not a JPEG at all');
  const good = readFileSync(join(root, 'a', 'g0.png'));
  writeFileSync(join(root, 'c', 'truncated.png'), good.subarray(0, good.length >> 1));
});

const opts = (o: Partial<ImageFolderOptions>): ImageFolderOptions => ({ root, batchSize: 8, seed: 11, size: 12, flip: true, onError: 'skip', normalize: { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] }, ...o });

const pathOf = (w: string) => w.replace(/^skipping unreadable image (.*?): .*$/, '$1');

/** Every batch of two epochs (x bytes and labels) and the warnings, with `workers` decode workers
 * (the second epoch comes from the decoded-image cache unless cacheBytes is 0). */
async function epochs(workers: number, channels: 1 | 3, cacheBytes?: number, workerKind?: 'thread'): Promise<{ bytes: Buffer[]; labels: number[][]; warnings: string[] }> {
  const warnings: string[] = [];
  const src = new ImageFolderSource(opts({ workers, channels, cacheBytes, workerKind, warn: (w) => warnings.push(w), normalize: channels === 1 ? { mean: 0.5, std: 0.5 } : undefined }));
  const pf = new Prefetcher(src, { epoch: 0, batch: 0 }, 3);
  const bytes: Buffer[] = [], labels: number[][] = [];
  for (let n = 0; n < 2 * src.batchesPerEpoch; n++) {
    const { batch } = await pf.next();
    bytes.push(Buffer.from((batch.x.data as Float32Array).buffer));
    labels.push(Array.from(batch.y.data as Int32Array));
  }
  await pf.close();
  return { bytes, labels, warnings };
}

describe('image decoding in worker processes and threads', () => {
  it('the same batches, bit for bit, with 0 (calling thread, no cache), 1 and 3 worker processes and 2 worker threads (cached); RGB and greyscale', async () => {
    for (const channels of [3, 1] as const) {
      const [w0, w1, w3, t2] = [await epochs(0, channels, 0), await epochs(1, channels), await epochs(3, channels), await epochs(2, channels, undefined, 'thread')];
      expect(w0.bytes).toHaveLength(8); // 32 files → 4 batches of 8, two epochs
      for (const other of [w1, w3, t2]) {
        expect(other.labels).toEqual(w0.labels);
        other.bytes.forEach((b, i) => expect(b.equals(w0.bytes[i]!), `batch ${i}, ${channels} channels`).toBe(true));
        // the same files reported (libvips' message text for the same file can differ between threads)
        expect(other.warnings.map(pathOf).sort()).toEqual(w0.warnings.map(pathOf).sort());
      }
      // both bad files were met and reported once each, by path
      expect(w3.warnings.sort()).toEqual([expect.stringMatching(/skipping unreadable image .*b\/corrupt\.jpg: /), expect.stringMatching(/skipping unreadable image .*c\/truncated\.png: /)]);
      // epochs differ (shuffle and flips by seed and epoch), values are finite
      expect(w0.bytes[0]!.equals(w0.bytes[4]!)).toBe(false);
      expect(w3.bytes.every((b) => new Float32Array(b.buffer, b.byteOffset, b.length / 4).every(Number.isFinite))).toBe(true);
    }
  });

  it('a worker decodes exactly what the calling thread decodes; a flip mirrors the crop', async () => {
    const a = new ImageFolderSource(opts({ workers: 0, flip: false, shuffle: false }));
    const b = new ImageFolderSource(opts({ workers: 2, flip: false, shuffle: false }));
    const [x0, x2] = [(await a.load(0, 0)).x.data as Float32Array, (await b.load(0, 0)).x.data as Float32Array];
    expect(Buffer.from(x2.buffer).equals(Buffer.from(x0.buffer))).toBe(true);
    // the source keeps mean and std as f32 (channelStats)
    const pool = new DecodePool({ size: 12, channels: 3, mean: [0.4, 0.5, 0.6].map(Math.fround), std: [0.2, 0.25, 0.3].map(Math.fround) }, 2);
    const direct = await pool.decode([{ file: b.files[1]!, key: 1 }, { file: b.files[0]!, key: 0 }]);
    const per = 3 * 12 * 12;
    expect(Buffer.from(direct.data.buffer, 0, per * 4).equals(Buffer.from(x0.buffer, per * 4, per * 4))).toBe(true); // slot 1 = file 1
    await pool.close();
    await expect(pool.decode([{ file: b.files[0]!, key: 0 }])).rejects.toThrow(/closed/);
    // with flips on (same epoch, same order) every image is its plain crop or that crop mirrored, both occur
    const f = new ImageFolderSource(opts({ workers: 2, flip: true, shuffle: false }));
    const xf = (await f.load(0, 0)).x.data as Float32Array;
    let mirrored = 0;
    for (let i = 0; i < 8; i++) {
      let same = true, mirror = true;
      for (let c = 0; c < 3; c++) for (let y = 0; y < 12; y++) for (let u = 0; u < 12; u++) {
        const v = xf[((i * 3 + c) * 12 + y) * 12 + u];
        same &&= v === x0[((i * 3 + c) * 12 + y) * 12 + u];
        mirror &&= v === x0[((i * 3 + c) * 12 + y) * 12 + 11 - u];
      }
      expect(same || mirror, `image ${i}`).toBe(true);
      if (!same) mirrored++;
    }
    expect(mirrored).toBeGreaterThan(0);
    expect(mirrored).toBeLessThan(8);
    await Promise.all([b.close(), f.close()]);
  });

  it('fail mode: the load throws naming the unreadable file; skip mode keeps the batch full', async () => {
    const strict = new ImageFolderSource(opts({ workers: 2, onError: 'fail', shuffle: false, batchSize: 32 }));
    await expect(strict.load(0, 0)).rejects.toThrow(/(corrupt\.jpg|truncated\.png): unreadable image: /);
    await strict.close();
    const pool = new DecodePool({ size: 8, channels: 3, mean: [0, 0, 0], std: [1, 1, 1] }, 2);
    const r = await pool.decode([{ file: join(root, 'a', 'g0.png'), key: 0 }, { file: join(root, 'b', 'corrupt.jpg'), key: 1 }, { file: join(root, 'nope.png'), key: 2 }]);
    expect(r.failed.map((f) => f.k).sort()).toEqual([1, 2]);
    expect(r.data.length).toBe(3 * 3 * 8 * 8);
    await pool.close();
  });

  it('worker processes decode at the same time; a process keeps inFlight images in libvips at once, its messages in order', async () => {
    const spec = { size: 12, channels: 3 as const, mean: [0, 0, 0], std: [1, 1, 1] };
    const files = ['a', 'b', 'c'].flatMap((c) => readdirSync(join(root, c)).filter((f) => !/corrupt|truncated/.test(f)).map((f) => join(root, c, f)));
    const items = (n: number) => Array.from({ length: n }, (_, key) => ({ file: files[key % files.length]!, key }));
    const spansOf = async (pool: DecodePool, n: number) => {
      await pool.decode(items(pool.size)); // start every worker (process start-up is not part of the spans)
      pool.traceSpans = true;
      await pool.decode(items(n));
      await pool.close();
      expect(pool.spans).toHaveLength(n);
      return pool.spans;
    };
    // One process, one image at a time: spans never overlap (exact); two lanes: both open at once (exact:
    // the two lanes start in the same turn of the worker's event loop).
    expect(maxOverlap(await spansOf(new DecodePool(spec, { workers: 1 }), 12))).toBe(1);
    expect(maxOverlap(await spansOf(new DecodePool(spec, { workers: 1, inFlight: 2 }), 12))).toBe(2);
    // A worker takes its messages in order: the prefetcher's next batch is not slowed by those behind it
    // (exact: every image of the first call ends before any of the second starts).
    const fifo = new DecodePool(spec, { workers: 1 });
    await fifo.decode(items(1));
    fifo.traceSpans = true;
    await Promise.all([fifo.decode(items(8)), fifo.decode(items(8))]);
    await fifo.close();
    const [first, second] = [fifo.spans.slice(0, 8), fifo.spans.slice(8)];
    expect(Math.max(...first.map((sp) => sp[1]))).toBeLessThanOrEqual(Math.min(...second.map((sp) => sp[0])));
    // Three processes, 32 images each (each process busy ~30-100 ms on this machine), all posted at once.
    // At least two must be decoding at one instant (usually all three): with 2 cores shared by other
    // jobs, failing this needs one process to finish all its images before another starts (a scheduling
    // delay longer than a whole worker's share); a pool that posts to its workers one after another
    // gives 1.
    const three = await spansOf(new DecodePool(spec, { workers: 3 }), 96);

    expect(maxOverlap(three)).toBeGreaterThanOrEqual(2);
  });

  it('a prefetch deeper than an epoch decodes every file once (later epochs wait for the decodes in flight)', async () => {
    const src = new ImageFolderSource(opts({ workers: 2, warn: () => {} }));
    const pf = new Prefetcher(src, { epoch: 0, batch: 0 }, 3 * src.batchesPerEpoch); // 3 epochs asked for at once
    const seen: Buffer[] = [];
    for (let n = 0; n < 3 * src.batchesPerEpoch; n++) seen.push(Buffer.from(((await pf.next()).batch.x.data as Float32Array).buffer));
    await pf.close();
    // 32 files, each decoded once (the 2 unreadable ones too: they are then skipped, not retried)
    expect(src.decodedImages).toBe(src.files.length);
    // the same batches as the calling thread without a cache, one load at a time
    const ref = new ImageFolderSource(opts({ workers: 0, cacheBytes: 0, warn: () => {} }));
    for (let n = 0; n < seen.length; n++) {
      const b = await ref.load(Math.floor(n / ref.batchesPerEpoch), n % ref.batchesPerEpoch);
      expect(Buffer.from((b.x.data as Float32Array).buffer).equals(seen[n]!), `batch ${n}`).toBe(true);
    }
  });

  it('a process that loads batches and never closes its source exits by itself (no hanging workers)', () => {
    const script = join(mkdtempSync(join(tmpdir(), 'kiln-decode-exit-')), 'load.mts');
    const mod = resolve('runtime/data/imageFolder.ts');
    writeFileSync(script, `import { ImageFolderSource } from ${JSON.stringify(mod)};
const src = new ImageFolderSource({ root: ${JSON.stringify(root)}, batchSize: 8, seed: 1, size: 8, onError: 'skip', workers: 3, warn: () => {} });
const b = await src.load(0, 1);
console.log('loaded', b.x.shape.join('x'));\n`);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 30_000, cwd: resolve('.') });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('loaded 8x3x8x8');
    expect(r.status).toBe(0); // a hang would be killed by the timeout: status null
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

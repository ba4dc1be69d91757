/**
 * An image folder's crop cache file (runtime/data/cropCache.ts) on a folder the test writes (JPEGs and PNGs of
 * odd sizes, a corrupt file): the first run writes it once every image was decoded, a second run decodes
 * nothing and gets the same batches bit for bit (the unreadable image skipped the same way); a changed file or
 * another crop size makes the cache stale, a truncated cache is unusable (both: decoded and written again); a
 * run closed before epoch 1 ends leaves no cache and no temporary file.
 */
import { mkdirSync, mkdtempSync, readdirSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { ImageFolderSource, type ImageFolderOptions } from '../../runtime/data/imageFolder.ts';
import { Prefetcher } from '../../runtime/data/prefetch.ts';

let root = '', work = '';

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'kiln-cropcache-'));
  work = mkdtempSync(join(tmpdir(), 'kiln-cropcache-out-'));
  let s = 3;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24);
  for (const c of ['a', 'b']) mkdirSync(join(root, c));
  for (let i = 0; i < 20; i++) {
    const [w, h] = [15 + (i % 4) * 7, 12 + (i % 3) * 9];
    const px = Buffer.alloc(w * h * 3);
    for (let j = 0; j < px.length; j++) px[j] = rnd();
    const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
    const f = join(root, i % 2 ? 'a' : 'b', `i${i}`);
    await (i % 4 === 0 ? img.png().toFile(`${f}.png`) : img.jpeg({ quality: 85 }).toFile(`${f}.jpg`));
  }
  writeFileSync(join(root, 'a', 'corrupt.jpg'), 'no image here');
});

const opts = (o: Partial<ImageFolderOptions>): ImageFolderOptions => ({ root, batchSize: 4, seed: 2, size: 10, channels: 3, flip: true, onError: 'skip', workers: 2, ...o });

/** Two epochs through the prefetcher: batch bytes, decodes asked of the workers, notes. */
async function run(o: Partial<ImageFolderOptions>): Promise<{ bytes: Buffer[]; decoded: number; notes: string[] }> {
  const notes: string[] = [];
  const src = new ImageFolderSource(opts({ ...o, warn: (w) => notes.push(w) }));
  const pf = new Prefetcher(src, { epoch: 0, batch: 0 }, 3);
  const bytes: Buffer[] = [];
  for (let n = 0; n < 2 * src.batchesPerEpoch; n++) bytes.push(Buffer.from(((await pf.next()).batch.x.data as Float32Array).buffer));
  await pf.close();
  return { bytes, decoded: src.decodedImages, notes };
}

describe('crop cache file', () => {
  it('written by the first run, read by the next (no decoding, the same batches); stale or truncated: decoded and written again', async () => {
    const cacheFile = join(work, 'crops.kc');
    const first = await run({ cacheFile });
    expect(first.decoded).toBe(21); // every file once (the corrupt one too)
    expect(first.notes.some((n) => /writing it while the images are decoded/.test(n))).toBe(true);
    expect(first.notes.some((n) => /wrote the crop cache .*crops\.kc \(21 images\)/.test(n))).toBe(true);
    expect(readdirSync(work)).toEqual(['crops.kc']); // no temporary file left
    const second = await run({ cacheFile });
    expect(second.decoded).toBe(0);
    expect(second.notes).toEqual([expect.stringMatching(/image crops from the cache .* \(21 images, 1 unreadable\): no decoding/), expect.stringMatching(/skipping unreadable image .*corrupt\.jpg/)]);
    expect(second.bytes).toHaveLength(first.bytes.length);
    second.bytes.forEach((b, i) => expect(b.equals(first.bytes[i]!), `batch ${i}`).toBe(true));
    // the same batches as a run without any cache (the in-memory cache off too)
    const plain = await run({ cacheBytes: 0 });
    plain.bytes.forEach((b, i) => expect(b.equals(first.bytes[i]!), `batch ${i}`).toBe(true));
    // another crop size: stale; the cache is rewritten for it
    const other = await run({ cacheFile, size: 8 });
    expect(other.decoded).toBe(21);
    expect(other.notes[0]).toMatch(/made for other files or another crop \(21 images at 3x10x10\)/);
    // a file changed (its modification time): stale
    const f = join(root, 'a', 'i1.jpg'), t = statSync(f).mtime;
    utimesSync(f, t, new Date(t.getTime() + 5000));
    const changed = await run({ cacheFile, size: 8 });
    expect(changed.decoded).toBe(21);
    expect(changed.notes[0]).toMatch(/made for other files/);
    // truncated: unusable
    truncateSync(cacheFile, statSync(cacheFile).size - 5);
    const cut = await run({ cacheFile, size: 8 });
    expect(cut.decoded).toBe(21);
    expect(cut.notes[0]).toMatch(/unusable \(\d+ bytes, expected \d+\)/);
    expect((await run({ cacheFile, size: 8 })).decoded).toBe(0);
  });

  it('a run closed before every image was decoded leaves no cache and no temporary file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-cropcache-part-'));
    const src = new ImageFolderSource(opts({ cacheFile: join(dir, 'crops.kc'), shuffle: false, warn: () => {} }));
    await src.load(0, 0);
    await src.close();
    expect(readdirSync(dir)).toEqual([]);
  });
});

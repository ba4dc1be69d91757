/**
 * The image-folder decode equals torchvision's, byte for byte: test/fixtures/pil-crops holds 24 images (the
 * mixed folder of `bench/dataTime.ts images DIR 120 mixed`, images 0-23: JPEGs 20-89 px a side of odd aspect
 * ratios, smaller than the crop too, greyscale and RGBA PNGs, two 300x200 JPEGs) and their 28x28 crops from
 * PIL 9.4.0 (`bench/data_torch.py crops`: pil_loader's convert('RGB'), convert('L') for 1 channel, Resize(28)
 * = PIL bilinear to shorter side 28, CenterCrop(28) at round-half-even offsets; the GPU machine's run checks
 * the same against torchvision itself, bench/RESULTS.md). Every image decoded by mozjpeg (WebAssembly) or
 * sharp and resized here is equal; the two JPEGs at least 3x the crop are resized by libvips after
 * shrink-on-load, and are within 2 levels. JPEGs give the same bytes through WebAssembly and through sharp
 * (both are mozjpeg), in worker processes and on the calling thread; a truncated JPEG is unreadable for both.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DecodePool, inThreadDecoder } from '../../runtime/data/decodePool.ts';

const dir = 'test/fixtures/pil-crops';
const files = readdirSync(join(dir, 'images')).sort().flatMap((c) => readdirSync(join(dir, 'images', c)).sort().map((f) => join(dir, 'images', c, f)));
const spec = (channels: 1 | 3) => ({ size: 28, channels, mean: Array(channels).fill(0), std: Array(channels).fill(1) });
const u8 = (d: Float32Array) => Uint8Array.from(d, (v) => Math.round(v * 255));
/** Pixel size from the file (JPEG SOF or PNG IHDR): the 300x200 JPEGs take libvips' shrink-on-load. */
function large(file: string): boolean {
  const b = readFileSync(file);
  if (b[0] === 0x89) return Math.min(b.readUInt32BE(16), b.readUInt32BE(20)) >= 84;
  for (let i = 2; i < b.length; ) {
    const m = b[i + 1]!;
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return Math.min(b.readUInt16BE(i + 5), b.readUInt16BE(i + 7)) >= 84;
    i += 2 + b.readUInt16BE(i + 2);
  }
  throw new Error(`no SOF in ${file}`);
}

describe('image decode = torchvision + PIL', () => {
  it('24 images, 1 and 3 channels: equal byte for byte (within 2 levels after libvips shrink-on-load)', async () => {
    expect(files).toHaveLength(24);
    const big = files.map(large);
    expect(big.filter(Boolean)).toHaveLength(2);
    for (const channels of [1, 3] as const) {
      const per = channels * 28 * 28;
      const pil = readFileSync(join(dir, `pil-28-c${channels}.bin`));
      expect(pil.length).toBe(24 * per);
      const r = await inThreadDecoder(spec(channels))(files.map((file, key) => ({ file, key })));
      expect(r.failed).toEqual([]);
      // mozjpeg in WebAssembly decoded the 18 small JPEGs; sharp the 4 PNGs and the 2 large JPEGs
      expect(r.by).toEqual({ wasm: 18, sharp: 6 });
      const got = u8(r.data);
      files.forEach((f, i) => {
        let diff = 0, most = 0;
        for (let p = 0; p < per; p++) {
          const d = Math.abs(got[i * per + p]! - pil[i * per + p]!);
          if (d) diff++;
          most = Math.max(most, d);
        }
        if (big[i]) expect(most, `${f}, ${channels} channel(s)`).toBeLessThanOrEqual(2);
        else expect(diff, `${f}, ${channels} channel(s): ${diff} bytes differ, by up to ${most}`).toBe(0);
      });
    }
  });

  it('JPEGs: WebAssembly = sharp, worker processes = calling thread; a truncated JPEG is unreadable, a corrupt one is lenient as sharp', async () => {
    const jpegs = files.filter((f) => f.endsWith('.jpg') && !large(f));
    const items = jpegs.map((file, key) => ({ file, key }));
    const wasm = await inThreadDecoder(spec(3))(items);
    const viaSharp = await inThreadDecoder(spec(3), 'sharp')(items);
    expect(viaSharp.by).toEqual({ wasm: 0, sharp: jpegs.length });
    expect(Buffer.from(wasm.data.buffer).equals(Buffer.from(viaSharp.data.buffer))).toBe(true);
    const pool = new DecodePool(spec(3), { workers: 2 });
    const pooled = await pool.decode(items);
    expect(pooled.by).toEqual({ wasm: jpegs.length, sharp: 0 });
    expect(Buffer.from(pooled.data.buffer).equals(Buffer.from(wasm.data.buffer))).toBe(true);
    // a truncated JPEG: mozjpeg warns (premature end), so sharp decides, and sharp (failOn: 'error') fails it
    const tmp = mkdtempSync(join(tmpdir(), 'kiln-exact-'));
    mkdirSync(join(tmp, 'a'));
    const good = readFileSync(jpegs[0]!);
    writeFileSync(join(tmp, 'a', 'truncated.jpg'), good.subarray(0, good.length >> 1));
    const garbled = Buffer.from(good);
    for (let i = 300; i < garbled.length - 2; i++) garbled[i] = (i * 7) & 255;
    writeFileSync(join(tmp, 'a', 'garbled.jpg'), garbled);
    copyFileSync(jpegs[0]!, join(tmp, 'a', 'good.jpg'));
    const bad = await pool.decode(['truncated', 'garbled', 'good'].map((n, key) => ({ file: join(tmp, 'a', `${n}.jpg`), key })));
    expect(bad.failed.map((f) => f.k)).toContain(0);
    expect(bad.failed.find((f) => f.k === 0)!.message).toMatch(/premature end/i);
    expect(bad.failed.map((f) => f.k)).not.toContain(2);
    const inThread = await inThreadDecoder(spec(3), 'sharp')(['truncated', 'garbled', 'good'].map((n, key) => ({ file: join(tmp, 'a', `${n}.jpg`), key })));
    expect(inThread.failed.map((f) => f.k).sort()).toEqual(bad.failed.map((f) => f.k).sort()); // the same files unreadable either way (workers finish in any order)
    await pool.close();
  });
});

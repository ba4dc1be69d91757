/**
 * @file A file of decoded image crops (an image folder's `cacheFile`): every image's u8 CHW crop as the decode
 * pool makes it (decodePool.ts), written once while epoch 1 decodes, so later runs (and epochs past the
 * in-memory cache) read crops instead of decoding. Layout: "KILNCROPS1\n", a u32 LE header length, the
 * header (JSON: crop size, channels, image count, fingerprint, unreadable images and their messages), then
 * count × C·S·S bytes at fixed offsets (image i at i·C·S·S, zeros for an unreadable one). The fingerprint covers the decode's
 * definition (DECODE_VERSION), the crop size and channels, and every file's path (relative to the root),
 * size and modification time: a cache made for other files or another crop is not used (the loader says so
 * and writes a new one). A cache is built in `<file>.tmp-<pid>` by positional writes (crops of images
 * in any order), then written out whole and renamed over `<file>` once every image is in it; a crash
 * leaves the old file (or none).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { relative } from 'node:path';

const MAGIC = 'KILNCROPS1\n';
/** What a crop is (decodePool.ts): bump when the decode changes (filter, rounding, greyscale, shrink-on-load rule). */
export const DECODE_VERSION = 'pil-bilinear-resize+center-crop+601-luma, libvips shrink-on-load >= 3S, v1';

interface Header {
  size: number;
  channels: number;
  count: number;
  fingerprint: string;
  /** Unreadable images: index → the decoder's message. */
  bad: Record<string, string>;
}

/** The fingerprint of a folder's files for crops of size × size, `channels` channels. */
export function cropFingerprint(root: string, files: readonly string[], size: number, channels: number): string {
  const h = createHash('sha256').update(`${DECODE_VERSION}\n${size} ${channels}\n`);
  for (const f of files) {
    const st = statSync(f);
    h.update(`${relative(root, f)}\t${st.size}\t${st.mtimeMs}\n`);
  }
  return h.digest('hex');
}

/** A crop file opened for reading. */
export class CropFile {
  private constructor(private readonly fd: number, private readonly base: number, readonly per: number, readonly bad: ReadonlyMap<number, string>, readonly count: number) {}

  /** The cache at `path` when it holds these crops, else undefined and why (missing, stale, corrupt). */
  static open(path: string, fingerprint: string, size: number, channels: number, count: number): { file?: CropFile; why: string } {
    if (!existsSync(path)) return { why: 'no cache file yet' };
    const fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(MAGIC.length + 4);
      if (readSync(fd, head, 0, head.length, 0) !== head.length || head.toString('latin1', 0, MAGIC.length) !== MAGIC) throw new Error('not a Kiln crop cache');
      const n = head.readUInt32LE(MAGIC.length), hb = Buffer.alloc(n);
      if (readSync(fd, hb, 0, n, head.length) !== n) throw new Error('truncated header');
      const h = JSON.parse(hb.toString('utf8')) as Header;
      const per = channels * size * size, base = head.length + n;
      if (h.size !== size || h.channels !== channels || h.count !== count || h.fingerprint !== fingerprint) {
        closeSync(fd);
        return { why: `made for other files or another crop (${h.count} images at ${h.channels}x${h.size}x${h.size})` };
      }
      if (fstatSync(fd).size !== base + count * per) throw new Error(`${fstatSync(fd).size} bytes, expected ${base + count * per}`);
      return { file: new CropFile(fd, base, per, new Map(Object.entries(h.bad).map(([k, v]) => [Number(k), v])), count), why: '' };
    } catch (e) {
      closeSync(fd);
      return { why: `unusable (${(e as Error).message})` };
    }
  }

  /** Image i's crop (u8 CHW), into `out` (a new array by default). */
  read(i: number, out = new Uint8Array(this.per)): Uint8Array {
    if (readSync(this.fd, out, 0, this.per, this.base + i * this.per) !== this.per) throw new Error(`crop cache: short read of image ${i}`);
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** A crop file being written: crops in any order go to `<file>.tmp-<pid>` at i·C·S·S; `finish()`, once all
 * `count` are in, writes the file (header, then the crops) next to it, fsyncs it and renames it over `<file>`. */
export class CropFileWriter {
  private readonly fd: number;
  private readonly tmp: string;
  private readonly per: number;
  private readonly have: Uint8Array;
  private missing: number;
  private readonly bad: Record<string, string> = {};
  private done = false;

  constructor(private readonly path: string, private readonly fingerprint: string, private readonly size: number, private readonly channels: number, private readonly count: number) {
    this.tmp = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.tmp, 'w+', 0o644);
    this.per = channels * size * size;
    this.have = new Uint8Array(count);
    this.missing = count;
  }

  /** Image i's crop (or the message of why it is unreadable); a repeat is ignored. */
  put(i: number, crop: Uint8Array | string): void {
    if (this.done || this.have[i]) return;
    this.have[i] = 1;
    this.missing--;
    if (typeof crop === 'string') this.bad[i] = crop;
    else writeSync(this.fd, crop, 0, this.per, i * this.per);
  }

  /** Whether every image is in. */
  get complete(): boolean {
    return this.missing === 0;
  }

  /** Write the file and rename it into place; false (nothing written) while images are missing. */
  finish(): boolean {
    if (this.done || this.missing) return false;
    this.done = true;
    const header = Buffer.from(JSON.stringify({ size: this.size, channels: this.channels, count: this.count, fingerprint: this.fingerprint, bad: this.bad } satisfies Header));
    const head = Buffer.alloc(MAGIC.length + 4);
    head.write(MAGIC, 0, 'latin1');
    head.writeUInt32LE(header.length, MAGIC.length);
    const out = `${this.tmp}-final`;
    const fd = openSync(out, 'w', 0o644);
    try {
      writeSync(fd, head);
      writeSync(fd, header);
      // copy the crops behind the header; unwritten slots (unreadable images) read as zeros or past the end
      const chunk = Buffer.alloc(Math.max(1, Math.floor((1 << 22) / this.per)) * this.per);
      for (let at = 0, end = this.count * this.per; at < end; ) {
        const want = Math.min(chunk.length, end - at), got = readSync(this.fd, chunk, 0, want, at);
        chunk.fill(0, got, want);
        writeSync(fd, chunk, 0, want);
        at += want;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
      closeSync(this.fd);
      unlinkSync(this.tmp);
    }
    renameSync(out, this.path);
    return true;
  }

  /** Drop the partial file. */
  abort(): void {
    if (this.done) return;
    this.done = true;
    closeSync(this.fd);
    try {
      unlinkSync(this.tmp);
    } catch {
      // already gone
    }
  }
}

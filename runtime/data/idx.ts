/**
 * @file The IDX file format (LeCun's MNIST format, also used by Fashion-MNIST), gzip-compressed.
 *
 * An IDX file is a big-endian header — a 4-byte magic number `0x0000TTNN` (TT = element type,
 * NN = number of dims), then NN 4-byte dim sizes — followed by the row-major elements. Only the
 * unsigned-byte element type (TT = 0x08) is supported, which is all MNIST-style datasets use.
 * Every malformed input is reported as a DatasetError that names the file and what is wrong.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { KilnError } from '../../ir/errors.ts';

/** A dataset file is missing or malformed. `file` names the offending file when there is one. */
export class DatasetError extends KilnError {
  override name = 'DatasetError';
  readonly file: string | undefined;
  constructor(message: string, file?: string) {
    super(file === undefined ? message : `${file}: ${message}`);
    this.file = file;
  }
}

/** IDX element type code for unsigned bytes. */
export const IDX_UBYTE = 0x08;

/** Magic number of an IDX file of unsigned bytes with `ndim` dims (0x00000801 labels, 0x00000803 images). */
export function idxUbyteMagic(ndim: number): number {
  return (IDX_UBYTE << 8) | ndim;
}

/** A decoded IDX array of unsigned bytes. */
export interface IdxArray {
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * Decode an uncompressed IDX buffer of unsigned bytes that must have exactly `ndim` dims.
 * `file` is only used in error messages. The returned data is a view into `buf` (no copy).
 */
export function parseIdx(buf: Uint8Array, ndim: number, file: string): IdxArray {
  const magic = idxUbyteMagic(ndim);
  if (buf.length < 4) {
    throw new DatasetError(`truncated: ${buf.length} bytes, too short for the 4-byte IDX magic number`, file);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const got = view.getUint32(0, false);
  if (got !== magic) {
    let why = '';
    if (buf[0] !== 0 || buf[1] !== 0) why = ' (not an IDX file: the first two bytes must be 0)';
    else if (buf[2] !== IDX_UBYTE) why = ` (element type 0x${buf[2]!.toString(16).padStart(2, '0')}; only 0x08 unsigned bytes is supported)`;
    else why = ` (${buf[3]} dims)`;
    throw new DatasetError(
      `bad magic number ${hex32(got)}${why}; expected ${hex32(magic)} (unsigned bytes, ${ndim} dims)`,
      file,
    );
  }
  const headerLen = 4 + 4 * ndim;
  if (buf.length < headerLen) {
    throw new DatasetError(`truncated header: ${buf.length} bytes, the ${ndim}-dim IDX header needs ${headerLen}`, file);
  }
  const dims: number[] = [];
  let n = 1;
  for (let i = 0; i < ndim; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    n *= d;
  }
  const have = buf.length - headerLen;
  if (have < n) {
    throw new DatasetError(
      `truncated: dims [${dims.join(', ')}] need ${n} data bytes after the ${headerLen}-byte header, but only ${have} are present`,
      file,
    );
  }
  if (have > n) {
    throw new DatasetError(
      `${have - n} unexpected trailing bytes: dims [${dims.join(', ')}] need ${n} data bytes, found ${have}`,
      file,
    );
  }
  return { dims, data: buf.subarray(headerLen, headerLen + n) };
}

/** Decompress a gzip buffer read from `file`, reporting a non-gzip or corrupt/truncated stream as DatasetError. */
export function gunzipFile(raw: Uint8Array, file: string): Uint8Array {
  if (raw.length < 2 || raw[0] !== 0x1f || raw[1] !== 0x8b) {
    const first = Array.from(raw.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    const hint = raw.length >= 2 && raw[0] === 0 && raw[1] === 0 ? ' (it looks like an uncompressed IDX file; gzip it)' : '';
    throw new DatasetError(`not a gzip file: starts with bytes [${first}], expected 1f 8b${hint}`, file);
  }
  try {
    return gunzipSync(raw);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new DatasetError(`corrupt or truncated gzip data (${msg})`, file);
  }
}

/** Read a gzip-compressed IDX file of unsigned bytes with exactly `ndim` dims. */
export function readIdxGz(file: string, ndim: number): IdxArray {
  let raw: Uint8Array;
  try {
    raw = readFileSync(file);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new DatasetError(`cannot read file (${msg})`, file);
  }
  return parseIdx(gunzipFile(raw, file), ndim, file);
}

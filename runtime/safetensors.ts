/**
 * @file Reading and writing safetensors files, the checkpoint format Kiln shares with PyTorch and
 * Hugging Face (https://github.com/huggingface/safetensors).
 *
 * Layout: an 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the
 * byte buffer. Offsets are relative to the start of the buffer; element data is little-endian, row-major.
 *
 * Reading maps safetensors dtypes onto Kiln's host dtypes:
 * - F32 → f32; F16 → f16 and BF16 → bf16, held exactly in a Float32Array (NaN payloads are not kept);
 *   F64 → f32, rounded to nearest (the only lossy mapping).
 * - I32 → i32; I64 → i32, and a value outside the i32 range is an error naming the tensor and index.
 * - U32 → u32; U64 → u32, with the same range check.
 * - BOOL → bool; a byte other than 0 or 1 is an error.
 * - U8, I8, U16, I16 → i32. Decision: U8 is widened to i32 rather than refused, because it is lossless
 *   and U8 tensors do occur in real checkpoints (masks, quantization tables, image data); refusing would
 *   make such files unloadable. It is not mapped to bool, because U8 values are not limited to 0/1.
 *   Kiln writes these back as I32.
 * - Anything else (F8_*, F4, F6_*, C64, unknown strings) is an error listing the supported dtypes.
 *
 * Validation (every error is a SafetensorsError naming the file, and the tensor and field where one is
 * at fault): short file, header length past the end of the file, header not UTF-8 / JSON / an object,
 * entries with missing or mistyped fields, bad shapes, offsets out of range or reversed, byte length not
 * numel × itemsize, overlapping tensors, and `__metadata__` that is not string → string.
 * The reader is more lenient than the reference in one way: it accepts gaps between tensors and bytes
 * after the last one (the reference demands a gap-free buffer); Kiln's writer never produces either.
 *
 * Writing emits F32, F16, BF16, I32, U32 and BOOL from the tensor's Kiln dtype (f16/bf16 are encoded
 * from their float values, rounding to nearest even if a value is not representable). The header is
 * compact JSON padded with spaces to a multiple of 8 bytes, as the reference does. Tensor order in the
 * buffer (and in the header): by dtype in the order F32, U32, I32, BF16, F16, BOOL, then by name
 * (compared as UTF-8 bytes). This is the reference writer's order (its dtype enum, descending, then
 * name), chosen over a plain sort by name because (1) element sizes never increase along the buffer,
 * which starts at a multiple of 8, so every tensor is naturally aligned and zero-copy readers can view
 * it in place; (2) for the same tensors the output is byte-identical to `safetensors.torch.save`
 * (checked by hand against safetensors 0.8; metadata order aside, which the reference does not fix).
 * `__metadata__` is written first, in the caller's key order, and only when it has at least one key.
 *
 * `loadSafetensors` reads the header, then each tensor at its offset, so the whole file is never held
 * in memory at once. `saveSafetensors` is crash-safe: it writes `path.tmp-<pid>`, fsyncs it, renames it
 * over `path` and fsyncs the directory, so an existing file is never left half-written.
 */
import { closeSync, fsyncSync, openSync, fstatSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { type DType, f16BitsToF32, f32Bits, f32ToBf16Bits, f32ToF16Bits } from '../ir/dtype.ts';
import { KilnError } from '../ir/errors.ts';
import { type Shape, numel, shapeEq, shapeStr } from '../ir/shape.ts';
import type { HostTensor, TensorData } from '../ir/tensor.ts';

/** A malformed or unexpected safetensors file. The message always names the file. */
export class SafetensorsError extends KilnError {
  override name = 'SafetensorsError';
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, detail: string, tensor?: string) {
    super(`${file}: ${tensor !== undefined ? `tensor '${tensor}': ` : ''}${detail}`);
    this.file = file;
    this.tensor = tensor;
  }
}

export interface SafetensorsContents {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** The safetensors dtypes Kiln reads. */
const READ_DTYPES = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL'] as const;
type StDType = (typeof READ_DTYPES)[number];
/** Dtypes the format defines that Kiln does not read (for a clearer message than "unknown"). */
const UNSUPPORTED_DTYPES = ['F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64'];

const ITEMSIZE: Record<StDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};
/** The safetensors dtype written for each Kiln dtype. */
const WRITE_DTYPE: Record<DType, StDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', u32: 'U32', bool: 'BOOL' };
/** Buffer order of the written dtypes (the reference writer's: its dtype enum, descending). */
const WRITE_ORDER: StDType[] = ['F32', 'U32', 'I32', 'BF16', 'F16', 'BOOL'];

function isStDType(s: string): s is StDType {
  return (READ_DTYPES as readonly string[]).includes(s);
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ───────────────────────────── reading ─────────────────────────────

interface Entry {
  name: string;
  dtype: StDType;
  shape: number[];
  begin: number;
  end: number;
}

/** Parse a safetensors file held in memory. `file` is only used in error messages. */
export function readSafetensors(bytes: Uint8Array, file = '<buffer>'): SafetensorsContents {
  const n = headerLength(bytes, bytes.length, file);
  const dataStart = 8 + n;
  const { entries, metadata } = parseHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, file);
  const tensors = new Map<string, HostTensor>();
  for (const e of entries) tensors.set(e.name, decode(e, bytes.subarray(dataStart + e.begin, dataStart + e.end), file));
  return { tensors, metadata };
}

/** Read a safetensors file from disk (header first, then each tensor at its offset). */
export function loadSafetensors(path: string): SafetensorsContents {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const prefix = readAt(fd, 0, Math.min(8, size), path);
    const n = headerLength(prefix, size, path);
    const dataStart = 8 + n;
    const { entries, metadata } = parseHeader(readAt(fd, 8, n, path), size - dataStart, path);
    const tensors = new Map<string, HostTensor>();
    for (const e of entries) tensors.set(e.name, decode(e, readAt(fd, dataStart + e.begin, e.end - e.begin, path), path));
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/** Read exactly `length` bytes at `position`, in chunks (readSync takes at most 2 GiB at a time). */
function readAt(fd: number, position: number, length: number, file: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const got = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (got === 0) throw new SafetensorsError(file, `file ended early: wanted ${length} bytes at offset ${position}, got ${done}`);
    done += got;
  }
  return out;
}

/** Validate the 8-byte prefix of a file of `fileSize` bytes and return the header length N. */
function headerLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8) {
    throw new SafetensorsError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length prefix`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError(
      file,
      `header length ${n} bytes is larger than the ${fileSize - 8} bytes after the 8-byte prefix (file is ${fileSize} bytes)`,
    );
  }
  return Number(n);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function jsonType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Decode and validate the JSON header against a data buffer of `dataLen` bytes. */
function parseHeader(headerBytes: Uint8Array, dataLen: number, file: string): { entries: Entry[]; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(file, `header (${headerBytes.length} bytes) is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(file, `header is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(json)) throw new SafetensorsError(file, `header must be a JSON object, got ${jsonType(json)}`);

  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, file);
      continue;
    }
    const fail = (detail: string): never => {
      throw new SafetensorsError(file, detail, name);
    };
    if (!isPlainObject(raw)) fail(`header entry must be an object, got ${jsonType(raw)}`);
    const info = raw as Record<string, unknown>;
    for (const field of ['dtype', 'shape', 'data_offsets']) {
      if (!(field in info)) fail(`header entry is missing field '${field}'`);
    }
    const { dtype, shape, data_offsets: offsets } = info;
    if (typeof dtype !== 'string') return fail(`field 'dtype' must be a string, got ${jsonType(dtype)}`);
    if (!isStDType(dtype)) {
      const why = UNSUPPORTED_DTYPES.includes(dtype) ? 'is not supported by Kiln' : 'is not a known safetensors dtype';
      return fail(`field 'dtype': '${dtype}' ${why} (supported: ${READ_DTYPES.join(', ')})`);
    }
    if (!Array.isArray(shape)) return fail(`field 'shape' must be an array, got ${jsonType(shape)}`);
    shape.forEach((d: unknown, i) => {
      if (!isNonNegInt(d)) fail(`field 'shape' must hold non-negative integers, but shape[${i}] is ${JSON.stringify(d)}`);
    });
    if (!Array.isArray(offsets) || offsets.length !== 2) {
      return fail(`field 'data_offsets' must be an array [begin, end], got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as unknown[];
    if (!isNonNegInt(begin) || !isNonNegInt(end)) {
      return fail(`field 'data_offsets' must hold two non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    if (end < begin) fail(`field 'data_offsets' [${begin}, ${end}]: end < begin`);
    if (end > dataLen) fail(`field 'data_offsets' [${begin}, ${end}] is out of range of the ${dataLen}-byte data buffer`);
    const dims = shape as number[];
    const expected = numel(dims) * ITEMSIZE[dtype];
    if (expected !== end - begin) {
      fail(
        `byte length mismatch: shape ${shapeStr(dims)} of ${dtype} needs ${expected} bytes ` +
          `(${numel(dims)} × ${ITEMSIZE[dtype]}) but field 'data_offsets' [${begin}, ${end}] spans ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: [...dims], begin, end });
  }

  // Overlap: sort the non-empty ranges and compare neighbours (empty tensors may share any offset).
  const ranges = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    const a = ranges[i - 1]!;
    const b = ranges[i]!;
    if (b.begin < a.end) {
      throw new SafetensorsError(
        file,
        `tensors '${a.name}' (data_offsets [${a.begin}, ${a.end}]) and '${b.name}' (data_offsets [${b.begin}, ${b.end}]) overlap`,
      );
    }
  }
  return { entries, metadata };
}

function parseMetadata(raw: unknown, file: string): Record<string, string> {
  if (!isPlainObject(raw)) {
    throw new SafetensorsError(file, `'__metadata__' must be an object of strings, got ${jsonType(raw)}`);
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError(file, `'__metadata__' must map strings to strings, but key '${k}' holds ${jsonType(v)}`);
    }
  }
  // fromEntries defines own properties, so even a key like "__proto__" is kept as data.
  return Object.fromEntries(Object.entries(raw)) as Record<string, string>;
}

/** Copy `src` into a fresh aligned buffer of native-endian elements of `size` bytes. */
function nativeBuffer(src: Uint8Array, size: number): ArrayBuffer {
  const out = src.slice();
  if (!LITTLE_ENDIAN_HOST && size > 1) for (let i = 0; i < out.length; i += size) out.subarray(i, i + size).reverse();
  return out.buffer;
}

let f16Table: Uint32Array | undefined;
/** f32 bit pattern of every f16 bit pattern (built on first use). */
function f16ToF32BitsTable(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f32Bits(f16BitsToF32(h));
  }
  return f16Table;
}

function decode(e: Entry, src: Uint8Array, file: string): HostTensor {
  const n = numel(e.shape);
  const shape = e.shape;
  switch (e.dtype) {
    case 'F32':
      return { dtype: 'f32', shape, data: new Float32Array(nativeBuffer(src, 4)) };
    case 'F64':
      return { dtype: 'f32', shape, data: Float32Array.from(new Float64Array(nativeBuffer(src, 8))) };
    case 'F16':
    case 'BF16': {
      const bits = new Uint16Array(nativeBuffer(src, 2));
      const data = new Float32Array(n);
      const out = new Uint32Array(data.buffer);
      if (e.dtype === 'BF16') for (let i = 0; i < n; i++) out[i] = bits[i]! << 16;
      else {
        const table = f16ToF32BitsTable();
        for (let i = 0; i < n; i++) out[i] = table[bits[i]!]!;
      }
      return { dtype: e.dtype === 'F16' ? 'f16' : 'bf16', shape, data };
    }
    case 'I32':
      return { dtype: 'i32', shape, data: new Int32Array(nativeBuffer(src, 4)) };
    case 'U32':
      return { dtype: 'u32', shape, data: new Uint32Array(nativeBuffer(src, 4)) };
    case 'I64':
    case 'U64': {
      const buf = nativeBuffer(src, 8);
      const words = new Int32Array(buf);
      const [lo, hi] = LITTLE_ENDIAN_HOST ? [0, 1] : [1, 0];
      const signed = e.dtype === 'I64';
      const data = signed ? new Int32Array(n) : new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        const l = words[2 * i + lo]!;
        const h = words[2 * i + hi]!;
        // Fits i32 when the high word is the sign extension of the low word; fits u32 when it is zero.
        if (signed ? h !== l >> 31 : h !== 0) {
          const v = signed ? new BigInt64Array(buf)[i] : new BigUint64Array(buf)[i];
          const target = signed ? 'i32' : 'u32';
          throw new SafetensorsError(file, `${e.dtype} value ${v} at flat index ${i} does not fit in ${target}`, e.name);
        }
        data[i] = l;
      }
      return { dtype: signed ? 'i32' : 'u32', shape, data };
    }
    case 'I16':
      return { dtype: 'i32', shape, data: Int32Array.from(new Int16Array(nativeBuffer(src, 2))) };
    case 'U16':
      return { dtype: 'i32', shape, data: Int32Array.from(new Uint16Array(nativeBuffer(src, 2))) };
    case 'I8':
      return { dtype: 'i32', shape, data: Int32Array.from(new Int8Array(nativeBuffer(src, 1))) };
    case 'U8':
      return { dtype: 'i32', shape, data: Int32Array.from(src) };
    case 'BOOL': {
      const data = src.slice();
      const bad = data.findIndex((b) => b > 1);
      if (bad >= 0) throw new SafetensorsError(file, `BOOL byte at flat index ${bad} is ${data[bad]}, not 0 or 1`, e.name);
      return { dtype: 'bool', shape, data };
    }
  }
}

/**
 * Fetch tensor `name` from a loaded file, checking its dtype and shape when given. Throws a
 * SafetensorsError naming `file` and the key when it is missing or does not match.
 */
export function expectTensor(
  tensors: ReadonlyMap<string, HostTensor>,
  name: string,
  dtype?: DType,
  shape?: Shape,
  file = '<buffer>',
): HostTensor {
  const t = tensors.get(name);
  if (!t) {
    const keys = [...tensors.keys()].sort();
    const shown = keys.slice(0, 12).map((k) => `'${k}'`).join(', ') + (keys.length > 12 ? ', …' : '');
    throw new SafetensorsError(file, `no tensor '${name}' (the file has ${keys.length} tensors${keys.length ? `: ${shown}` : ''})`);
  }
  if (dtype !== undefined && t.dtype !== dtype) {
    throw new SafetensorsError(file, `expected dtype ${dtype}, but the file holds ${t.dtype}${shapeStr(t.shape)}`, name);
  }
  if (shape !== undefined && !shapeEq(t.shape, shape)) {
    throw new SafetensorsError(file, `expected shape ${shapeStr(shape)}, but the file holds ${t.dtype}${shapeStr(t.shape)}`, name);
  }
  return t;
}

// ───────────────────────────── writing ─────────────────────────────

interface Planned {
  name: string;
  tensor: HostTensor;
  dtype: StDType;
  begin: number;
  end: number;
}
interface Plan {
  header: Uint8Array; // JSON, padded
  parts: Planned[];
  dataLen: number;
}

const WRITE_FILE = '<write>';

function planWrite(tensors: Record<string, HostTensor> | ReadonlyMap<string, HostTensor>, metadata?: Record<string, string>): Plan {
  const items: [string, HostTensor][] =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, HostTensor>).entries()] : Object.entries(tensors as Record<string, HostTensor>);
  const utf8 = new TextEncoder();
  const keyed = items.map(([name, tensor]) => {
    if (name === '__metadata__') throw new SafetensorsError(WRITE_FILE, `'__metadata__' is reserved and cannot name a tensor`);
    if (!tensor || !(tensor.dtype in WRITE_DTYPE)) {
      throw new SafetensorsError(WRITE_FILE, `not a host tensor with a Kiln dtype`, name);
    }
    tensor.shape.forEach((d, i) => {
      if (!isNonNegInt(d)) throw new SafetensorsError(WRITE_FILE, `shape[${i}] is ${d}, not a non-negative integer`, name);
    });
    if (tensor.data.length !== numel(tensor.shape)) {
      throw new SafetensorsError(
        WRITE_FILE,
        `data holds ${tensor.data.length} elements but shape ${shapeStr(tensor.shape)} needs ${numel(tensor.shape)}`,
        name,
      );
    }
    const dtype = WRITE_DTYPE[tensor.dtype];
    return { name, tensor, dtype, key: utf8.encode(name) };
  });
  // Dtype (reference order, element sizes non-increasing), then name by UTF-8 bytes; see the file comment.
  keyed.sort((a, b) => WRITE_ORDER.indexOf(a.dtype) - WRITE_ORDER.indexOf(b.dtype) || Buffer.compare(a.key, b.key));

  const fields: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    const kv = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== 'string') {
        throw new SafetensorsError(WRITE_FILE, `metadata value for key '${k}' must be a string, got ${jsonType(v)}`);
      }
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    fields.push(`"__metadata__":{${kv.join(',')}}`);
  }
  const parts: Planned[] = [];
  let offset = 0;
  for (const { name, tensor, dtype } of keyed) {
    const end = offset + tensor.data.length * ITEMSIZE[dtype];
    parts.push({ name, tensor, dtype, begin: offset, end });
    fields.push(`${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${tensor.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = utf8.encode(`{${fields.join(',')}}`);
  const header = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  header.set(json);
  return { header, parts, dataLen: offset };
}

/** Native-endian element bytes → little-endian, in place. */
function toLittleEndian(bytes: Uint8Array, size: number): Uint8Array {
  if (!LITTLE_ENDIAN_HOST && size > 1) for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
  return bytes;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
/** f16 bits of x; a fast path for values that are normal f16 numbers, else the exact general rounding. */
function f16Bits(x: number): number {
  scratchF32[0] = x;
  if (scratchF32[0] === x) {
    const b = scratchU32[0]!;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    if (exp >= 113 && exp <= 142 && (mant & 0x1fff) === 0) return ((b >>> 16) & 0x8000) | ((exp - 112) << 10) | (mant >>> 13);
  }
  return f32ToF16Bits(x);
}

/** The little-endian bytes of one tensor in its written dtype (a fresh buffer or a view of one). */
function encode(p: Planned): Uint8Array {
  const data: TensorData = p.tensor.data;
  const n = data.length;
  const bytesOf = (a: Float32Array | Int32Array | Uint32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  switch (p.dtype) {
    case 'F32':
      return toLittleEndian(bytesOf(Float32Array.from(data)), 4);
    case 'F16':
    case 'BF16': {
      const bits = new Uint16Array(n);
      if (p.dtype === 'F16') for (let i = 0; i < n; i++) bits[i] = f16Bits(data[i]!);
      else for (let i = 0; i < n; i++) bits[i] = f32ToBf16Bits(data[i]!);
      return toLittleEndian(bytesOf(bits), 2);
    }
    case 'I32':
      return toLittleEndian(bytesOf(Int32Array.from(data)), 4);
    case 'U32':
      return toLittleEndian(bytesOf(Uint32Array.from(data)), 4);
    case 'BOOL':
      return Uint8Array.from(data, (v) => (v ? 1 : 0));
    default:
      throw new SafetensorsError(WRITE_FILE, `cannot write dtype ${p.dtype}`, p.name);
  }
}

function prefixBytes(headerLen: number): Uint8Array {
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerLen), true);
  return prefix;
}

/**
 * Serialize tensors (and optional string metadata) to safetensors bytes. Tensors are laid out by dtype
 * (F32, U32, I32, BF16, F16, BOOL), then by name; see the file comment.
 */
export function writeSafetensors(
  tensors: Record<string, HostTensor> | ReadonlyMap<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const plan = planWrite(tensors, metadata);
  const dataStart = 8 + plan.header.length;
  const out = new Uint8Array(dataStart + plan.dataLen);
  out.set(prefixBytes(plan.header.length), 0);
  out.set(plan.header, 8);
  for (const p of plan.parts) out.set(encode(p), dataStart + p.begin);
  return out;
}

/**
 * Write a safetensors file crash-safely: the bytes go to `path.tmp-<pid>`, which is fsynced and then
 * renamed over `path` (and the directory fsynced), so `path` always holds either the old or the new file.
 */
export function saveSafetensors(
  path: string,
  tensors: Record<string, HostTensor> | ReadonlyMap<string, HostTensor>,
  metadata?: Record<string, string>,
): void {
  const plan = planWrite(tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeAll(fd, prefixBytes(plan.header.length));
    writeAll(fd, plan.header);
    for (const p of plan.parts) writeAll(fd, encode(p));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone; report the original error
    }
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone; report the original error
    }
    throw err;
  }
  // Make the rename itself durable. Not every platform can open or fsync a directory (Windows).
  try {
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // best effort
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
}

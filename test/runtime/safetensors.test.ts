import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import {
  SafetensorsError,
  expectTensor,
  loadSafetensors,
  readSafetensors,
  saveSafetensors,
  writeSafetensors,
} from '../../runtime/safetensors.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GOLDEN = join(ROOT, 'golden', 'data', 'safetensors_interop.safetensors');

/** Build a safetensors file by hand: prefix + header (object or raw text) + data. */
function makeFile(header: unknown, data: Uint8Array | number = 0, headerLen?: number): Uint8Array {
  const h = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 2);
  const v = new DataView(b.buffer);
  values.forEach((x, i) => v.setUint16(2 * i, x, true));
  return b;
}

/** Elementwise identity, telling -0 from 0 and accepting NaN == NaN. */
function expectSameTensor(a: HostTensor, b: HostTensor): void {
  expect(a.dtype).toBe(b.dtype);
  expect([...a.shape]).toEqual([...b.shape]);
  expect(a.data.length).toBe(b.data.length);
  for (let i = 0; i < a.data.length; i++) {
    if (!Object.is(a.data[i], b.data[i])) throw new Error(`element ${i}: ${a.data[i]} vs ${b.data[i]}`);
  }
}

/** Run fn, expect a SafetensorsError, and return its message. */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SafetensorsError);
    return (err as Error).message;
  }
  throw new Error('expected a SafetensorsError');
}
const readErr = (bytes: Uint8Array, file = 'bad.safetensors') => errorOf(() => readSafetensors(bytes, file));

function headerOf(bytes: Uint8Array): { len: number; text: string } {
  const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { len, text: new TextDecoder().decode(bytes.subarray(8, 8 + len)) };
}

const tmp = mkdtempSync(join(tmpdir(), 'kiln-safetensors-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Independently written special values.
const F16_MAX = 65504;
const F16_MIN_SUB = 2 ** -24;
const F16_MAX_SUB = 1023 * 2 ** -24;
const F16_MIN_NORMAL = 2 ** -14;
const F16_THIRD = 1365 / 4096; // 0x3555
const BF16_MAX = (2 - 2 ** -7) * 2 ** 127;
const BF16_MIN_SUB = 2 ** -133;
const BF16_MIN_NORMAL = 2 ** -126;
const BF16_THIRD = 171 / 512; // 0x3eab
const F32_MAX = (2 - 2 ** -23) * 2 ** 127;

describe('round trip', () => {
  const cases: Record<string, HostTensor> = {
    f32: hostTensor('f32', [2, 5], [0, -0, Infinity, -Infinity, NaN, 2 ** -149, 2 ** -126, F32_MAX, Math.fround(1 / 3), -1.5]),
    f16: hostTensor('f16', [12], [
      0, -0, Infinity, -Infinity, NaN, F16_MAX, -F16_MAX, F16_MIN_SUB, -F16_MIN_SUB, F16_MAX_SUB, F16_MIN_NORMAL, F16_THIRD,
    ]),
    bf16: hostTensor('bf16', [3, 3], [0, -0, Infinity, -Infinity, NaN, BF16_MAX, BF16_MIN_SUB, BF16_MIN_NORMAL, BF16_THIRD]),
    i32: hostTensor('i32', [5], [-(2 ** 31), 2 ** 31 - 1, 0, -1, 12345]),
    u32: hostTensor('u32', [4], [0, 1, 2 ** 31, 2 ** 32 - 1]),
    bool: hostTensor('bool', [2, 2], [1, 0, 0, 1]),
  };
  for (const [name, t] of Object.entries(cases)) {
    it(`${name} survives write → read exactly`, () => {
      const back = readSafetensors(writeSafetensors({ [name]: t })).tensors.get(name)!;
      expectSameTensor(back, t);
    });
  }

  it('all dtypes together, from a Map, keep their names', () => {
    const back = readSafetensors(writeSafetensors(new Map(Object.entries(cases)))).tensors;
    expect([...back.keys()].sort()).toEqual(Object.keys(cases).sort());
    for (const [name, t] of Object.entries(cases)) expectSameTensor(back.get(name)!, t);
  });

  it('encodes f16 and bf16 to the exact IEEE / bfloat16 bit patterns', () => {
    const bytes = writeSafetensors({
      h: hostTensor('f16', [6], [1, -2, F16_MAX, F16_MIN_SUB, -0, Infinity]),
      b: hostTensor('bf16', [4], [1, -2, BF16_MIN_SUB, -Infinity]),
    });
    const { len } = headerOf(bytes);
    const data = bytes.subarray(8 + len);
    // BF16 before F16.
    expect([...data]).toEqual([...u16le([0x3f80, 0xc000, 0x0001, 0xff80]), ...u16le([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00])]);
  });

  it('every f16 and bf16 bit pattern decodes and re-encodes bit-exactly (NaNs stay NaN)', () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const raw = u16le(all);
    for (const dt of ['F16', 'BF16'] as const) {
      const file = makeFile({ t: { dtype: dt, shape: [65536], data_offsets: [0, raw.length] } }, raw);
      const t = readSafetensors(file).tensors.get('t')!;
      expect(t.data).toBeInstanceOf(Float32Array);
      const again = writeSafetensors({ t });
      const bits = new DataView(again.buffer, 8 + headerOf(again).len);
      const expMask = dt === 'F16' ? 0x7c00 : 0x7f80;
      const manMask = dt === 'F16' ? 0x03ff : 0x007f;
      for (let h = 0; h < 65536; h++) {
        const isNan = (h & expMask) === expMask && (h & manMask) !== 0;
        if (isNan) expect(Number.isNaN(t.data[h])).toBe(true);
        else if (bits.getUint16(2 * h, true) !== h) throw new Error(`${dt} 0x${h.toString(16)} came back as 0x${bits.getUint16(2 * h, true).toString(16)}`);
      }
    }
  });

  it('decodes f16 subnormals, normals and specials to their exact values', () => {
    const raw = u16le([0x0001, 0x03ff, 0x0400, 0x3555, 0x7bff, 0xfbff, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3c01]);
    const t = readSafetensors(makeFile({ t: { dtype: 'F16', shape: [11], data_offsets: [0, raw.length] } }, raw)).tensors.get('t')!;
    expect(t.dtype).toBe('f16');
    expectSameTensor(t, {
      dtype: 'f16',
      shape: [11],
      data: Float32Array.from([F16_MIN_SUB, F16_MAX_SUB, F16_MIN_NORMAL, F16_THIRD, F16_MAX, -F16_MAX, -0, Infinity, -Infinity, NaN, 1 + 2 ** -10]),
    });
  });

  it('writes f16/bf16 tensors held in Float64Array (f64 mode)', () => {
    const t: HostTensor = { dtype: 'f16', shape: [3], data: Float64Array.from([F16_MIN_SUB, -0, 0.5]) };
    const back = readSafetensors(writeSafetensors({ t })).tensors.get('t')!;
    expectSameTensor(back, { dtype: 'f16', shape: [3], data: Float32Array.from([F16_MIN_SUB, -0, 0.5]) });
  });

  it('empty tensors and scalars', () => {
    const tensors = {
      scalar: hostTensor('f32', [], [3.5]),
      scalar_bool: hostTensor('bool', [], [1]),
      scalar_bf16: hostTensor('bf16', [], [-2]),
      empty: hostTensor('f32', [0, 3]),
      empty_i32: hostTensor('i32', [4, 0]),
      empty_1d: hostTensor('f16', [0]),
    };
    const back = readSafetensors(writeSafetensors(tensors)).tensors;
    for (const [name, t] of Object.entries(tensors)) expectSameTensor(back.get(name)!, t);
    expect(back.get('scalar')!.shape).toEqual([]);
    // A file with no tensors at all.
    const none = readSafetensors(writeSafetensors({}));
    expect(none.tensors.size).toBe(0);
    expect(none.metadata).toEqual({});
  });

  it('metadata round trip, including awkward keys and non-ASCII', () => {
    const metadata = { format: 'pt', 'step"\\': '12', __proto__x: 'ü → ✓', '': 'empty key', '10': 'numeric key' };
    const back = readSafetensors(writeSafetensors({ a: hostTensor('f32', [1], [1]) }, metadata));
    expect(back.metadata).toEqual(metadata);
    // A "__proto__" key is kept as plain data on read and written back.
    const proto = readSafetensors(makeFile('{"__metadata__":{"__proto__":"x"}}')).metadata;
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
    expect(Object.keys(proto)).toEqual(['__proto__']);
    expect(headerOf(writeSafetensors({}, proto)).text.trimEnd()).toBe('{"__metadata__":{"__proto__":"x"}}');
  });

  it('header: padded with spaces to a multiple of 8, metadata first, tensors by dtype (F32 U32 I32 BF16 F16 BOOL) then name', () => {
    const bytes = writeSafetensors(
      {
        z: hostTensor('f32', [1], [1]),
        b: hostTensor('f16', [3], [1, 2, 3]),
        a: hostTensor('bool', [1], [1]),
        y: hostTensor('i32', [2], [1, 2]),
        u: hostTensor('u32', [1], [1]),
        c: hostTensor('bf16', [1], [1]),
        d: hostTensor('f32', [1], [1]),
        é: hostTensor('f32', [1], [1]),
        Z: hostTensor('f32', [1], [1]),
      },
      { k: 'v' },
    );
    const { len, text } = headerOf(bytes);
    expect(len % 8).toBe(0);
    expect(text.trimEnd()).toBe(
      '{"__metadata__":{"k":"v"},' +
        '"Z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
        '"d":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},' +
        '"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},' +
        '"é":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},' +
        '"u":{"dtype":"U32","shape":[1],"data_offsets":[16,20]},' +
        '"y":{"dtype":"I32","shape":[2],"data_offsets":[20,28]},' +
        '"c":{"dtype":"BF16","shape":[1],"data_offsets":[28,30]},' +
        '"b":{"dtype":"F16","shape":[3],"data_offsets":[30,36]},' +
        '"a":{"dtype":"BOOL","shape":[1],"data_offsets":[36,37]}}',
    );
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    expect(bytes.length).toBe(8 + len + 37);
    // No metadata → no __metadata__ key.
    expect(headerOf(writeSafetensors({ a: hostTensor('f32', [1], [1]) })).text).not.toContain('__metadata__');
  });

  it('writing rejects bad input', () => {
    expect(errorOf(() => writeSafetensors({ __metadata__: hostTensor('f32', [1], [1]) }))).toContain('reserved');
    const bad: HostTensor = { dtype: 'f32', shape: [2, 2], data: new Float32Array(3) };
    expect(errorOf(() => writeSafetensors({ w: bad }))).toMatch(/tensor 'w'.*3 elements.*\[2,2\].*4/);
    expect(errorOf(() => writeSafetensors({}, { n: 5 as unknown as string }))).toContain("key 'n'");
  });
});

describe('read dtype mapping', () => {
  const one = (dtype: string, shape: number[], data: Uint8Array, file = 'm.safetensors') =>
    readSafetensors(makeFile({ t: { dtype, shape, data_offsets: [0, data.length] } }, data), file).tensors.get('t')!;
  /** `bytes` zero bytes, filled in through a DataView. */
  const le = (bytes: number, fill: (v: DataView) => void) => {
    const b = new Uint8Array(bytes);
    fill(new DataView(b.buffer));
    return b;
  };

  it('I64 → i32 when every value fits', () => {
    const vals = [-3n, 0n, 7n, 2n ** 31n - 1n, -(2n ** 31n)];
    const b = le(40, (v) => vals.forEach((x, i) => v.setBigInt64(8 * i, x, true)));
    expectSameTensor(one('I64', [5], b), { dtype: 'i32', shape: [5], data: Int32Array.from([-3, 0, 7, 2 ** 31 - 1, -(2 ** 31)]) });
  });

  it('I64 out of i32 range is an error naming file, tensor, value and index', () => {
    for (const bad of [2n ** 31n, -(2n ** 31n) - 1n, 2n ** 40n]) {
      const b = le(16, (v) => {
        v.setBigInt64(0, 1n, true);
        v.setBigInt64(8, bad, true);
      });
      const msg = readErr(makeFile({ pos: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, b), 'ids.safetensors');
      expect(msg).toContain('ids.safetensors');
      expect(msg).toContain("tensor 'pos'");
      expect(msg).toContain(`${bad}`);
      expect(msg).toContain('index 1');
      expect(msg).toContain('i32');
    }
  });

  it('U64 → u32 with a range check; U32 stays u32', () => {
    const b = le(16, (v) => {
      v.setBigUint64(0, 2n ** 32n - 1n, true);
      v.setBigUint64(8, 5n, true);
    });
    expectSameTensor(one('U64', [2], b), { dtype: 'u32', shape: [2], data: Uint32Array.from([2 ** 32 - 1, 5]) });
    const big = le(8, (v) => v.setBigUint64(0, 2n ** 32n, true));
    expect(errorOf(() => one('U64', [1], big))).toContain(`${2n ** 32n}`);
    const u32 = le(4, (v) => v.setUint32(0, 0xfffffffe, true));
    expectSameTensor(one('U32', [1], u32), { dtype: 'u32', shape: [1], data: Uint32Array.from([0xfffffffe]) });
  });

  it('U8, I8, U16, I16 widen to i32', () => {
    expectSameTensor(one('U8', [3], Uint8Array.from([0, 200, 255])), { dtype: 'i32', shape: [3], data: Int32Array.from([0, 200, 255]) });
    expectSameTensor(one('I8', [2], Uint8Array.from([0xff, 0x80])), { dtype: 'i32', shape: [2], data: Int32Array.from([-1, -128]) });
    expectSameTensor(one('U16', [1], u16le([0xffff])), { dtype: 'i32', shape: [1], data: Int32Array.from([65535]) });
    expectSameTensor(one('I16', [1], u16le([0x8000])), { dtype: 'i32', shape: [1], data: Int32Array.from([-32768]) });
  });

  it('F64 → f32, rounded to nearest', () => {
    const vals = [0.1, -0, 1e300, 2 ** -1074, 1 + 2 ** -30];
    const b = le(40, (v) => vals.forEach((x, i) => v.setFloat64(8 * i, x, true)));
    expectSameTensor(one('F64', [5], b), { dtype: 'f32', shape: [5], data: Float32Array.from([Math.fround(0.1), -0, Infinity, 0, 1]) });
  });

  it('BOOL bytes other than 0/1 are an error', () => {
    expect(one('BOOL', [2], Uint8Array.from([1, 0])).dtype).toBe('bool');
    const msg = errorOf(() => one('BOOL', [3], Uint8Array.from([1, 0, 7])));
    expect(msg).toMatch(/m\.safetensors: tensor 't'.*index 2 is 7/);
  });

  it('unknown and unsupported dtypes are clear errors', () => {
    const msg = errorOf(() => one('Q4', [1], new Uint8Array(1)));
    expect(msg).toMatch(/m\.safetensors: tensor 't': field 'dtype': 'Q4' is not a known safetensors dtype \(supported: .*BF16/);
    expect(errorOf(() => one('F8_E4M3', [1], new Uint8Array(1)))).toContain('not supported by Kiln');
  });
});

describe('malformed files', () => {
  const entry = (o: Record<string, unknown> = {}) => ({ dtype: 'F32', shape: [2], data_offsets: [0, 8], ...o });

  it('file shorter than 8 bytes', () => {
    const msg = readErr(new Uint8Array(5));
    expect(msg).toContain('bad.safetensors');
    expect(msg).toContain('5 bytes');
    expect(readErr(new Uint8Array(0))).toContain('0 bytes');
  });

  it('header length larger than the file names both numbers', () => {
    const msg = readErr(makeFile('{}', 0, 1000));
    expect(msg).toContain('bad.safetensors');
    expect(msg).toMatch(/header length 1000 bytes is larger than the 2 bytes/);
    // A huge u64 (beyond 2^53) is still reported exactly.
    const huge = makeFile('{}');
    new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
    expect(readErr(huge)).toContain(`${2n ** 63n}`);
  });

  it('header not valid UTF-8 or JSON, or not an object', () => {
    const badUtf8 = makeFile('{}');
    badUtf8[9] = 0xff;
    expect(readErr(badUtf8)).toMatch(/bad\.safetensors: header .*not valid UTF-8/);
    expect(readErr(makeFile('{"a": '))).toMatch(/bad\.safetensors: header is not valid JSON/);
    expect(readErr(makeFile(''))).toMatch(/not valid JSON/);
    expect(readErr(makeFile('[1,2]'))).toMatch(/header must be a JSON object, got an array/);
    expect(readErr(makeFile('null'))).toMatch(/got null/);
  });

  it('entries missing a field, or with a field of the wrong type', () => {
    for (const field of ['dtype', 'shape', 'data_offsets']) {
      const e: Record<string, unknown> = entry();
      delete e[field];
      const msg = readErr(makeFile({ 'layer.w': e }, 8));
      expect(msg).toBe(`bad.safetensors: tensor 'layer.w': header entry is missing field '${field}'`);
    }
    expect(readErr(makeFile({ w: 3 }, 8))).toMatch(/tensor 'w': header entry must be an object, got number/);
    expect(readErr(makeFile({ w: entry({ dtype: 4 }) }, 8))).toMatch(/tensor 'w': field 'dtype' must be a string/);
    expect(readErr(makeFile({ w: entry({ shape: '2' }) }, 8))).toMatch(/tensor 'w': field 'shape' must be an array/);
    expect(readErr(makeFile({ w: entry({ data_offsets: [0] }) }, 8))).toMatch(/tensor 'w': field 'data_offsets' must be an array \[begin, end\]/);
    expect(readErr(makeFile({ w: entry({ data_offsets: [0, '8'] }) }, 8))).toMatch(/tensor 'w': field 'data_offsets' must hold two non-negative integers/);
    expect(readErr(makeFile({ w: entry({ data_offsets: [-1, 8] }) }, 8))).toMatch(/field 'data_offsets'/);
  });

  it('shape entries must be non-negative integers', () => {
    expect(readErr(makeFile({ w: entry({ shape: [2, -1] }) }, 8))).toMatch(/tensor 'w': field 'shape' .*shape\[1\] is -1/);
    expect(readErr(makeFile({ w: entry({ shape: [1.5] }) }, 8))).toMatch(/shape\[0\] is 1\.5/);
    expect(readErr(makeFile({ w: entry({ shape: [null] }) }, 8))).toMatch(/shape\[0\] is null/);
  });

  it('offsets out of range of the buffer, and end < begin', () => {
    const msg = readErr(makeFile({ w: entry({ data_offsets: [4, 12] }) }, 8));
    expect(msg).toBe(`bad.safetensors: tensor 'w': field 'data_offsets' [4, 12] is out of range of the 8-byte data buffer`);
    expect(readErr(makeFile({ w: entry({ data_offsets: [8, 0] }) }, 8))).toMatch(/tensor 'w': field 'data_offsets' \[8, 0\]: end < begin/);
  });

  it('byte length must be numel × itemsize (expected vs actual)', () => {
    const msg = readErr(makeFile({ w: entry({ dtype: 'F16', shape: [2, 3], data_offsets: [0, 8] }) }, 8));
    expect(msg).toContain("tensor 'w'");
    expect(msg).toContain('needs 12 bytes');
    expect(msg).toContain('spans 8');
    expect(readErr(makeFile({ s: entry({ shape: [], data_offsets: [0, 0] }) }, 8))).toMatch(/needs 4 bytes .*spans 0/);
  });

  it('overlapping tensors', () => {
    const msg = readErr(makeFile({ a: entry({ data_offsets: [0, 8] }), b: entry({ data_offsets: [4, 12] }) }, 12));
    expect(msg).toMatch(/bad\.safetensors: tensors 'a' \(data_offsets \[0, 8\]\) and 'b' \(data_offsets \[4, 12\]\) overlap/);
    // Empty tensors may sit anywhere, and gaps are tolerated.
    const ok = readSafetensors(
      makeFile({ a: entry({ data_offsets: [0, 8] }), e: entry({ shape: [0], data_offsets: [4, 4] }), b: entry({ data_offsets: [12, 20] }) }, 20),
    );
    expect([...ok.tensors.keys()]).toEqual(['a', 'e', 'b']);
  });

  it('__metadata__ must map strings to strings', () => {
    expect(readErr(makeFile({ __metadata__: { step: 3 } }))).toMatch(/bad\.safetensors: '__metadata__' must map strings to strings, but key 'step' holds number/);
    expect(readErr(makeFile({ __metadata__: ['x'] }))).toMatch(/'__metadata__' must be an object of strings, got an array/);
  });

  it('a truncated file', () => {
    const good = writeSafetensors({ a: hostTensor('f32', [4], [1, 2, 3, 4]), b: hostTensor('f32', [2], [5, 6]) });
    const { len } = headerOf(good);
    // Cut inside the data: the last tensor's offsets run past the end.
    expect(readErr(good.subarray(0, good.length - 3), 'cut.safetensors')).toMatch(
      /cut\.safetensors: tensor '[ab]': field 'data_offsets' \[\d+, \d+\] is out of range of the 21-byte data buffer/,
    );
    // Cut inside the header.
    expect(readErr(good.subarray(0, 8 + len - 10), 'cut.safetensors')).toMatch(
      new RegExp(`cut\\.safetensors: header length ${len} bytes is larger than the ${len - 10} bytes`),
    );
    // Cut inside the length prefix.
    expect(readErr(good.subarray(0, 6), 'cut.safetensors')).toMatch(/cut\.safetensors: file is 6 bytes/);
  });
});

describe('files on disk', () => {
  it('save and load round trip, replacing an existing file and leaving no temporary file', () => {
    const dir = join(tmp, 'roundtrip');
    mkdirSync(dir);
    const path = join(dir, 'ckpt.safetensors');
    saveSafetensors(path, { a: hostTensor('f32', [2], [1, 2]) }, { step: '1' });
    saveSafetensors(path, { b: hostTensor('bf16', [2, 2], [1, -2, 0.5, 3]) }, { step: '2' });
    const { tensors, metadata } = loadSafetensors(path);
    expect(metadata).toEqual({ step: '2' });
    expect([...tensors.keys()]).toEqual(['b']);
    expectSameTensor(tensors.get('b')!, hostTensor('bf16', [2, 2], [1, -2, 0.5, 3]));
    expect(readdirSync(dir)).toEqual(['ckpt.safetensors']);
    // Same bytes as the in-memory writer.
    expect(new Uint8Array(readFileSync(path))).toEqual(writeSafetensors({ b: hostTensor('bf16', [2, 2], [1, -2, 0.5, 3]) }, { step: '2' }));
  });

  it('a failed save leaves the existing file untouched and cleans up', () => {
    const dir = join(tmp, 'failed');
    mkdirSync(dir);
    const path = join(dir, 'ckpt.safetensors');
    saveSafetensors(path, { a: hostTensor('f32', [2], [1, 2]) });
    const before = readFileSync(path);
    const bad: HostTensor = { dtype: 'f32', shape: [3], data: new Float32Array(2) };
    expect(() => saveSafetensors(path, { a: hostTensor('f32', [1], [9]), bad })).toThrow(SafetensorsError);
    expect(readFileSync(path)).toEqual(before);
    // Rename onto a directory fails: the temporary file must be removed.
    const target = join(dir, 'is-a-dir');
    mkdirSync(join(target, 'child'), { recursive: true });
    expect(() => saveSafetensors(target, { a: hostTensor('f32', [1], [9]) })).toThrow();
    expect(readdirSync(dir).sort()).toEqual(['ckpt.safetensors', 'is-a-dir']);
  });

  it('load errors name the path', () => {
    const path = join(tmp, 'truncated.safetensors');
    const good = writeSafetensors({ a: hostTensor('f32', [4], [1, 2, 3, 4]) });
    writeFileSync(path, good.subarray(0, good.length - 1));
    expect(errorOf(() => loadSafetensors(path))).toContain(`${path}: tensor 'a': field 'data_offsets' [0, 16] is out of range`);
    writeFileSync(path, good.subarray(0, 3));
    expect(errorOf(() => loadSafetensors(path))).toBe(`${path}: file is 3 bytes, shorter than the 8-byte header length prefix`);
  });
});

describe('expectTensor', () => {
  const tensors = new Map([
    ['blocks.0.attn.qkv.weight', hostTensor('f32', [6, 2])],
    ['blocks.0.attn.qkv.bias', hostTensor('f32', [6])],
  ]);
  it('returns the tensor when name, dtype and shape match', () => {
    expect(expectTensor(tensors, 'blocks.0.attn.qkv.bias', 'f32', [6], 'vit.safetensors').shape).toEqual([6]);
    expect(expectTensor(tensors, 'blocks.0.attn.qkv.weight').dtype).toBe('f32');
  });
  it('names file and key when missing, mismatched in dtype, or in shape', () => {
    const missing = errorOf(() => expectTensor(tensors, 'blocks.0.attn.proj.weight', 'f32', [2, 2], 'vit.safetensors'));
    expect(missing).toMatch(/^vit\.safetensors: no tensor 'blocks\.0\.attn\.proj\.weight' \(the file has 2 tensors: 'blocks\.0\.attn\.qkv\.bias'/);
    expect(errorOf(() => expectTensor(tensors, 'blocks.0.attn.qkv.bias', 'bf16', undefined, 'vit.safetensors'))).toBe(
      "vit.safetensors: tensor 'blocks.0.attn.qkv.bias': expected dtype bf16, but the file holds f32[6]",
    );
    expect(errorOf(() => expectTensor(tensors, 'blocks.0.attn.qkv.weight', 'f32', [2, 6], 'vit.safetensors'))).toBe(
      "vit.safetensors: tensor 'blocks.0.attn.qkv.weight': expected shape [2,6], but the file holds f32[6,2]",
    );
  });
});

describe('interop with PyTorch (golden/safetensors_interop.py)', () => {
  it('the golden file is small enough to commit', () => {
    expect(existsSync(GOLDEN)).toBe(true);
    expect(readFileSync(GOLDEN).length).toBeLessThan(10_000);
  });

  it('reads every tensor written by torch + safetensors with exactly the expected values', () => {
    const { tensors, metadata } = loadSafetensors(GOLDEN);
    expect(metadata).toEqual({ format: 'pt', source: 'kiln golden/safetensors_interop.py' });
    const arange = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));
    const expected: Record<string, HostTensor> = {
      f32_arange: { dtype: 'f32', shape: [3, 4], data: Float32Array.from(arange(12, (i) => i * 0.25 - 1)) },
      f32_special: {
        dtype: 'f32',
        shape: [9],
        data: Float32Array.from([0, -0, Infinity, -Infinity, NaN, 2 ** -149, 2 ** -126, F32_MAX, Math.fround(1 / 3)]),
      },
      f16_arange: { dtype: 'f16', shape: [2, 8], data: Float32Array.from(arange(16, (i) => (i - 8) / 8)) },
      f16_special: {
        dtype: 'f16',
        shape: [11],
        data: Float32Array.from([0, -0, Infinity, -Infinity, NaN, F16_MAX, -F16_MAX, F16_MIN_SUB, F16_MAX_SUB, F16_MIN_NORMAL, F16_THIRD]),
      },
      bf16_arange: { dtype: 'bf16', shape: [2, 3, 4], data: Float32Array.from(arange(24, (i) => i - 12)) },
      bf16_special: {
        dtype: 'bf16',
        shape: [9],
        data: Float32Array.from([0, -0, Infinity, -Infinity, NaN, BF16_MAX, BF16_MIN_SUB, BF16_MIN_NORMAL, BF16_THIRD]),
      },
      i32_arange: { dtype: 'i32', shape: [2, 5], data: Int32Array.from(arange(10, (i) => i - 5)) },
      i32_extremes: { dtype: 'i32', shape: [4], data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, -1]) },
      i64_values: { dtype: 'i32', shape: [2, 3], data: Int32Array.from([-3, 0, 7, 2 ** 31 - 1, -(2 ** 31), 42]) },
      bool_mask: { dtype: 'bool', shape: [2, 3], data: Uint8Array.from([1, 0, 1, 1, 0, 0]) },
      f32_scalar: { dtype: 'f32', shape: [], data: Float32Array.from([3.5]) },
      f32_empty: { dtype: 'f32', shape: [0, 3], data: new Float32Array(0) },
    };
    expect([...tensors.keys()].sort()).toEqual(Object.keys(expected).sort());
    for (const [name, t] of Object.entries(expected)) {
      expect(expectTensor(tensors, name, t.dtype, t.shape, GOLDEN)).toBeDefined();
      expectSameTensor(tensors.get(name)!, t);
    }
  });

  it('re-writing the golden tensors (minus the I64 one) reproduces the reference tensor order', () => {
    const { tensors, metadata } = loadSafetensors(GOLDEN);
    tensors.delete('i64_values');
    const bytes = writeSafetensors(tensors, metadata);
    const names = [...headerOf(bytes).text.matchAll(/"([a-z0-9_]+)":\{"dtype"/g)].map((m) => m[1]);
    const golden = [...headerOf(new Uint8Array(readFileSync(GOLDEN))).text.matchAll(/"([a-z0-9_]+)":\{"dtype"/g)].map((m) => m[1]);
    expect(names).toEqual(golden.filter((n) => n !== 'i64_values'));
  });
});

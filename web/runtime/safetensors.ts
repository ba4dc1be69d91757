/**
 * @file Reading safetensors in the browser: an 8-byte little-endian header length, a JSON header of
 * {name: {dtype, shape, data_offsets}}, then the raw little-endian data. F32, F16, BF16, I32 are read
 * (floats into f32 host tensors). The Node reader is runtime/safetensors.ts; this one has no Node imports.
 */
import { bf16BitsToF32, f16BitsToF32 } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function parseSafetensors(buf: ArrayBuffer, from: string): Map<string, HostTensor> {
  if (buf.byteLength < 8) throw new KilnError(`${from}: not a safetensors file (${buf.byteLength} bytes)`);
  const dv = new DataView(buf);
  const n = Number(dv.getBigUint64(0, true));
  if (8 + n > buf.byteLength) throw new KilnError(`${from}: header length ${n} exceeds the file (${buf.byteLength} bytes)`);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n))) as Record<string, Entry>;
  const base = 8 + n;
  const out = new Map<string, HostTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = e.data_offsets;
    const count = e.shape.reduce((x, y) => x * y, 1);
    const bytes = new Uint8Array(buf.slice(base + a, base + b));
    const words = (size: number) => {
      if (bytes.byteLength !== count * size) throw new KilnError(`${from}: tensor '${name}' has ${bytes.byteLength} bytes for ${e.dtype}[${e.shape.join(',')}]`);
      return bytes.buffer;
    };
    switch (e.dtype) {
      case 'F32': out.set(name, hostTensor('f32', e.shape, new Float32Array(words(4)))); break;
      case 'I32': out.set(name, hostTensor('i32', e.shape, new Int32Array(words(4)))); break;
      case 'F16': out.set(name, hostTensor('f32', e.shape, Float32Array.from(new Uint16Array(words(2)), f16BitsToF32))); break;
      case 'BF16': out.set(name, hostTensor('f32', e.shape, Float32Array.from(new Uint16Array(words(2)), bf16BitsToF32))); break;
      default: throw new KilnError(`${from}: tensor '${name}': dtype ${e.dtype} is not read in the browser (F32, F16, BF16, I32)`);
    }
  }
  return out;
}

/**
 * @file Inception-v3 weights from a safetensors file with torchvision's state_dict keys — what
 * `torchvision.models.inception_v3().state_dict()` and pytorch-fid's `fid_inception_v3().state_dict()`
 * (pt_inception-2015-12-05 converted to safetensors) hold: `Conv2d_1a_3x3.conv.weight`,
 * `Mixed_5b.branch1x1.bn.running_mean`, ... Keys the feature extractor does not use (`fc.*`,
 * `AuxLogits.*`, every `*.num_batches_tracked`) are ignored; any other unknown key, a missing key or a
 * wrong shape is an error naming the file and the key. Tensors of other float dtypes are read as f32.
 * The variant cannot be told from the keys (FID and torchvision networks have the same ones): the
 * caller says which; the width is read from the file (Conv2d_1a_3x3's output channels are 32 / width).
 */
import { existsSync } from 'node:fs';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { type InceptionConfig, type InceptionVariant, InceptionV3 } from './model.ts';

const UNUSED = /^(fc\.|AuxLogits\.)|\.num_batches_tracked$/;

export interface LoadedInception {
  model: InceptionV3;
  weights: Map<string, HostTensor>;
  /** Keys in the file that were ignored (fc, AuxLogits, num_batches_tracked). */
  ignored: string[];
}

/** Build the Inception-v3 whose weights `file` holds and return it with them. */
export function loadInception(file: string, opts: { variant?: InceptionVariant; resize?: number | null } = {}): LoadedInception {
  if (!existsSync(file)) throw new KilnError(`${file}: no such Inception-v3 weights file (a .safetensors file with torchvision's state_dict keys)`);
  const tensors = loadSafetensors(file).tensors;
  const first = tensors.get('Conv2d_1a_3x3.conv.weight');
  if (!first) throw new KilnError(`${file}: not an Inception-v3 state_dict (no 'Conv2d_1a_3x3.conv.weight'; it has ${[...tensors.keys()].slice(0, 5).join(', ')}...)`);
  const width = 32 / first.shape[0]!;
  if (!Number.isInteger(width)) throw new KilnError(`${file}: Conv2d_1a_3x3.conv.weight has ${first.shape[0]} output channels, Inception-v3 has 32 (or 32 / width)`);
  const config: InceptionConfig = { variant: opts.variant ?? 'fid', width, resize: opts.resize === undefined ? 299 : opts.resize, normalizeInput: true };
  const model = new InceptionV3(config);
  const weights = new Map<string, HostTensor>();
  const expected = new Map(model.namedParameters().map(([n, p]) => [n, p.shape] as const));
  const ignored: string[] = [];
  for (const [key, t] of tensors) {
    if (UNUSED.test(key)) { ignored.push(key); continue; }
    const shape = expected.get(key);
    if (!shape) throw new KilnError(`${file}: unexpected key '${key}' (not an Inception-v3 parameter of torchvision's naming)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new KilnError(`${file}: '${key}' has shape [${t.shape.join(', ')}], Inception-v3 (width ÷${width}) expects [${shape.join(', ')}]`);
    weights.set(key, t.dtype === 'f32' ? t : hostTensor('f32', t.shape, Float32Array.from(t.data as ArrayLike<number>)));
  }
  const missing = [...expected.keys()].filter((k) => !weights.has(k));
  if (missing.length) throw new KilnError(`${file}: missing ${missing.length} Inception-v3 tensor(s): ${missing.slice(0, 6).join(', ')}${missing.length > 6 ? ', ...' : ''}`);
  return { model, weights, ignored };
}

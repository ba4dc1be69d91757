/**
 * @file Loading HF-format DINOv2 checkpoints (`model.safetensors` and `config.json` of
 * facebook/dinov2-* and facebook/dinov2-with-registers-*) into Kiln parameter maps.
 *
 * `loadDinov2State(path, config)` returns one f32 host tensor per parameter of `Dinov2Model(config)`,
 * keyed by its state_dict name, in state_dict order. Every expected key must be present with the
 * expected shape; errors are SafetensorsErrors naming the file and the key. F16/BF16/F64 tensors
 * are accepted and widened (or, for F64, rounded) to f32; integer tensors are refused.
 *
 * Key prefixes: a checkpoint of the HF task model (`Dinov2ForImageClassification`,
 * `Dinov2WithRegistersForImageClassification`) stores the backbone under the base-model prefix
 * `dinov2.` / `dinov2_with_registers.`; when the bare keys are absent and the prefixed ones present,
 * the prefix is stripped, as HF's from_pretrained does.
 *
 * Extra tensors in the file are an error (they usually mean the wrong config: more layers, registers,
 * SwiGLU...), except these known-harmless ones (DINOV2_IGNORED_KEYS):
 * - `embeddings.mask_token` when the config has no mask token (HF use_mask_token=false): only used
 *   for masked-image pretraining;
 * - `classifier.weight`, `classifier.bias`: the linear head of the *ForImageClassification models
 *   (only with a base-model prefix), not part of the backbone.
 *
 * Layering note: this file reads files through runtime/safetensors.ts, which DESIGN.md's import rule
 * ("models import only the DSL") does not foresee; the model itself (model.ts) imports only the DSL.
 */
import { readFileSync } from 'node:fs';
import { KilnError } from '../../ir/errors.ts';
import { isFloat } from '../../ir/dtype.ts';
import { shapeEq, shapeStr } from '../../ir/shape.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { SafetensorsError, expectTensor, loadSafetensors } from '../../runtime/safetensors.ts';
import { type Dinov2Config, dinov2ConfigFromHf, positionGrid } from './config.ts';
import { Dinov2Model } from './model.ts';

/** Base-model prefixes HF uses inside task-model checkpoints. */
const BASE_PREFIX: Record<Dinov2Config['variant'], string> = {
  dinov2: 'dinov2.',
  dinov2_with_registers: 'dinov2_with_registers.',
};

/** Keys that may be present in a checkpoint without being loaded (see the file comment). */
export const DINOV2_IGNORED_KEYS = {
  /** Ignored when the config has useMaskToken false. */
  maskToken: 'embeddings.mask_token',
  /** Ignored when the backbone keys carry the base-model prefix (an image-classification checkpoint). */
  classifierHead: ['classifier.weight', 'classifier.bias'],
} as const;

/** (name, shape) of every parameter the config's model has, in state_dict order. */
export function dinov2ParameterShapes(config: Dinov2Config): Array<[string, readonly number[]]> {
  return new Dinov2Model(config).namedParameters().map(([n, p]) => [n, p.shape]);
}

function listKeys(keys: readonly string[], max = 8): string {
  return keys.slice(0, max).map((k) => `'${k}'`).join(', ') + (keys.length > max ? `, … (${keys.length} in all)` : '');
}

/**
 * Read an HF-format DINOv2 safetensors checkpoint for `config`; returns state_dict name → f32 tensor.
 * Throws a SafetensorsError naming `path` (and the tensor) when the file is unreadable, a key is
 * missing, a shape or dtype is wrong, or the file holds unexpected tensors.
 */
export function loadDinov2State(path: string, config: Dinov2Config): Map<string, HostTensor> {
  let tensors: Map<string, HostTensor>;
  try {
    tensors = loadSafetensors(path).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) {
      const detail = e.message.startsWith(`${path}: `) ? e.message.slice(path.length + 2) : e.message;
      throw new SafetensorsError(path, `not a readable safetensors checkpoint: ${detail}`);
    }
    if ((e as NodeJS.ErrnoException).code !== undefined) throw new SafetensorsError(path, `cannot be read: ${(e as Error).message}`);
    throw e;
  }
  const expected = dinov2ParameterShapes(config);
  const probe = expected[0]![0];
  const base = BASE_PREFIX[config.variant];
  const prefix = !tensors.has(probe) && tensors.has(base + probe) ? base : '';

  const missing = expected.filter(([n]) => !tensors.has(prefix + n)).map(([n]) => prefix + n);
  if (missing.length) {
    let hint = '';
    if (config.variant === 'dinov2_with_registers' && missing.includes(`${prefix}embeddings.register_tokens`))
      hint = '; the file has no register tokens: is it a plain DINOv2 checkpoint (model_type "dinov2")?';
    else if (config.useSwiglu && tensors.has(`${prefix}encoder.layer.0.mlp.fc1.weight`))
      hint = '; the file has a GELU MLP (mlp.fc1), but the config says use_swiglu_ffn';
    else if (!config.useSwiglu && tensors.has(`${prefix}encoder.layer.0.mlp.weights_in.weight`))
      hint = '; the file has a SwiGLU MLP (mlp.weights_in), but the config does not set use_swiglu_ffn';
    else if (tensors.size > 0 && !tensors.has(prefix + probe)) hint = '; is this a DINOv2 checkpoint in the HF transformers format?';
    throw new SafetensorsError(
      path,
      `missing ${missing.length} of the ${expected.length} tensors of the DINOv2 config: ${listKeys(missing)}${hint}`,
      missing.length === 1 ? missing[0] : undefined,
    );
  }

  const state = new Map<string, HostTensor>();
  for (const [name, shape] of expected) {
    const key = prefix + name;
    const held = tensors.get(key)!;
    if (name === 'embeddings.position_embeddings' && !shapeEq(held.shape, shape)) {
      const [gh, gw] = positionGrid(config);
      throw new SafetensorsError(
        path,
        `expected shape ${shapeStr(shape)}, but the file holds ${held.dtype}${shapeStr(held.shape)} (the config's image_size ` +
          `${config.imageSize.join('x')} and patch_size ${config.patchSize} give a ${gh}x${gw} position grid)`,
        key,
      );
    }
    const t = expectTensor(tensors, key, undefined, shape, path);
    if (!isFloat(t.dtype)) throw new SafetensorsError(path, `expected a floating-point tensor, but the file holds ${t.dtype}${shapeStr(t.shape)}`, key);
    state.set(name, t.dtype === 'f32' ? t : { dtype: 'f32', shape: t.shape, data: t.data });
  }

  const ignorable = new Set<string>();
  if (!config.useMaskToken) ignorable.add(prefix + DINOV2_IGNORED_KEYS.maskToken);
  if (prefix) for (const k of DINOV2_IGNORED_KEYS.classifierHead) ignorable.add(k);
  const wanted = new Set(expected.map(([n]) => prefix + n));
  const extra = [...tensors.keys()].filter((k) => !wanted.has(k) && !ignorable.has(k)).sort();
  if (extra.length)
    throw new SafetensorsError(
      path,
      `holds ${extra.length} tensor(s) that the DINOv2 config (${config.variant}, ${config.numLayers} layers${config.useSwiglu ? ', SwiGLU' : ''}) does not have: ${listKeys(extra)}` +
        ' (a checkpoint for a different config? only mask_token without use_mask_token and a classifier head are ignored)',
      extra.length === 1 ? extra[0] : undefined,
    );
  return state;
}

/** Read an HF `config.json` file into a DINOv2 config (errors name the file). */
export function loadDinov2Config(path: string): Dinov2Config {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new KilnError(`${path}: cannot read the HF config: ${(e as Error).message}`);
  }
  return dinov2ConfigFromHf(json, path);
}

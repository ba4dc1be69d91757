/**
 * @file Pretrained checkpoints in one call: `loadPretrained(dir)` reads an HF-format directory
 * (config.json + model.safetensors, as `save_pretrained` writes it) and returns the configured model
 * and its weights, keyed by parameter name. Supported: DINOv2 (`model_type` "dinov2") and DINOv2 with
 * registers ("dinov2_with_registers"). The model traces at any image size (traceDinov2's height and
 * width); position embeddings are interpolated from the checkpoint's grid when the patch grid differs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../ir/errors.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { type Dinov2Config, Dinov2Model, loadDinov2Config, loadDinov2State } from './dinov2.ts';

export interface Pretrained {
  kind: 'dinov2';
  config: Dinov2Config;
  model: Dinov2Model;
  /** Parameter name → f32 tensor, for Session.open or a compiled program's resident inputs. */
  weights: Map<string, HostTensor>;
}

const SUPPORTED = ['dinov2', 'dinov2_with_registers'];

export function loadPretrained(dir: string): Pretrained {
  const configPath = join(dir, 'config.json');
  const weightsPath = join(dir, 'model.safetensors');
  if (!existsSync(dir)) throw new KilnError(`${dir}: no such checkpoint directory`);
  if (!existsSync(configPath)) throw new KilnError(`${configPath}: missing (an HF-format checkpoint directory has config.json and model.safetensors)`);
  if (!existsSync(weightsPath)) throw new KilnError(`${weightsPath}: missing (sharded or .bin checkpoints are not supported; save with safe_serialization)`);
  let modelType: unknown;
  try {
    modelType = (JSON.parse(readFileSync(configPath, 'utf8')) as { model_type?: unknown }).model_type;
  } catch (e) {
    throw new KilnError(`${configPath}: not valid JSON (${(e as Error).message})`);
  }
  if (!SUPPORTED.includes(String(modelType)))
    throw new KilnError(`${configPath}: model_type ${JSON.stringify(modelType)} is not supported (supported: ${SUPPORTED.join(', ')})`);
  const config = loadDinov2Config(configPath);
  const weights = loadDinov2State(weightsPath, config);
  return { kind: 'dinov2', config, model: new Dinov2Model(config), weights };
}

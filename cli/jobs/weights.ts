/**
 * @file Weights for a job from an earlier run: a checkpoint directory (model.safetensors) or a run
 * directory (its newest valid checkpoint), optionally under a key prefix (an SSL encoder's bare keys
 * become `encoder.*` inside the FAE).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../ir/errors.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { loadCheckpoint } from '../../runtime/checkpoint.ts';
import { loadLatestCheckpoint } from '../../runtime/checkpoints.ts';

export function loadWeights(path: string, warn: (s: string) => void): Map<string, HostTensor> {
  if (existsSync(join(path, 'model.safetensors'))) return loadCheckpoint(path).model;
  const found = loadLatestCheckpoint(join(path, 'checkpoints'), warn);
  if (!found) throw new KilnError(`${path}: neither a checkpoint (no model.safetensors) nor a run directory with a valid checkpoint`);
  return found.checkpoint.model;
}

/** Put `weights` into `state` (keys as they are, or under `prefix` when they lack it); every key must be known. */
export function applyWeights(state: Map<string, HostTensor>, weights: ReadonlyMap<string, HostTensor>, from: string, prefix = ''): number {
  let n = 0;
  for (const [k, v] of weights) {
    const key = state.has(k) ? k : prefix + k;
    if (!state.has(key)) continue;
    const want = state.get(key)!;
    if (want.shape.join(',') !== v.shape.join(',')) throw new KilnError(`${from}: tensor '${k}' has shape [${v.shape.join(', ')}], the model's '${key}' is [${want.shape.join(', ')}]`);
    state.set(key, v);
    n++;
  }
  if (n === 0) throw new KilnError(`${from}: none of its tensors belong to this model`);
  return n;
}

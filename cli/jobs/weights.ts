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

/** `which`: the model weights, or the run's EMA (an SSL run's EMA is its DINO teacher). */
export function loadWeights(path: string, warn: (s: string) => void, which: 'model' | 'ema' = 'model'): Map<string, HostTensor> {
  let ck;
  if (existsSync(join(path, 'model.safetensors'))) ck = loadCheckpoint(path);
  else {
    const found = loadLatestCheckpoint(join(path, 'checkpoints'), warn);
    if (!found) throw new KilnError(`${path}: neither a checkpoint (no model.safetensors) nor a run directory with a valid checkpoint`);
    ck = found.checkpoint;
  }
  if (which === 'ema' && ck.ema.size === 0) throw new KilnError(`${path}: the checkpoint has no EMA weights (ema.safetensors is empty)`);
  return which === 'ema' ? new Map([...ck.model, ...ck.ema]) : ck.model;
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

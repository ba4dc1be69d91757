/**
 * @file Training checkpoints: a directory of safetensors files that PyTorch reads directly.
 *
 *   <dir>/model.safetensors        parameters under their PyTorch state_dict keys
 *   <dir>/ema.safetensors          EMA parameters, same keys (when training keeps an EMA)
 *   <dir>/train_state.safetensors  optimizer state (optim.*), plus metadata: step, epoch, config JSON
 *
 * Saving is crash-safe: the new checkpoint is written completely into `<dir>.tmp-<pid>` (each file
 * fsynced), the old directory is renamed aside, the new one renamed into place, and the old one
 * removed. A crash at any point leaves either the old or the new checkpoint readable; loading
 * falls back to a directory left aside by an interrupted save.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KilnError } from '../ir/errors.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { loadSafetensors, saveSafetensors } from './safetensors.ts';

export interface Checkpoint {
  /** Parameters by PyTorch key. */
  model: Map<string, HostTensor>;
  /** EMA of the parameters by PyTorch key (empty when no EMA is kept). */
  ema: Map<string, HostTensor>;
  /** Optimizer state and step counter (names as in compiler/transforms/trainStep.ts). */
  trainState: Map<string, HostTensor>;
  /** Free-form string metadata (step, epoch, config JSON, ...). */
  meta: Record<string, string>;
}

const EMA_PREFIX = 'ema.';

/** Split a session's resident values into model / ema / train-state groups. */
export function splitResident(values: ReadonlyMap<string, HostTensor>, paramNames: readonly string[]): Omit<Checkpoint, 'meta'> {
  const params = new Set(paramNames);
  const model = new Map<string, HostTensor>(), ema = new Map<string, HostTensor>(), trainState = new Map<string, HostTensor>();
  for (const [k, v] of values) {
    if (params.has(k)) model.set(k, v);
    else if (k.startsWith(EMA_PREFIX) && params.has(k.slice(EMA_PREFIX.length))) ema.set(k.slice(EMA_PREFIX.length), v);
    else trainState.set(k, v);
  }
  return { model, ema, trainState };
}

/** Inverse of splitResident: the resident values to load into a session. */
export function joinResident(c: Pick<Checkpoint, 'model' | 'ema' | 'trainState'>): Map<string, HostTensor> {
  const m = new Map<string, HostTensor>(c.model);
  for (const [k, v] of c.ema) m.set(EMA_PREFIX + k, v);
  for (const [k, v] of c.trainState) m.set(k, v);
  return m;
}

/**
 * Write `c` to `dir` crash-safely. `finish(tmpDir)`, when given, runs after the tensor files are
 * written and before the directory is renamed into place (e.g. to add a manifest).
 */
export function saveCheckpoint(dir: string, c: Checkpoint, finish?: (tmpDir: string) => void): void {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    saveSafetensors(join(tmp, 'model.safetensors'), c.model, { format: 'pt' });
    if (c.ema.size) saveSafetensors(join(tmp, 'ema.safetensors'), c.ema, { format: 'pt' });
    saveSafetensors(join(tmp, 'train_state.safetensors'), c.trainState, c.meta);
    finish?.(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

/** Load a checkpoint directory; if it is missing but an interrupted save left the old one aside, load that. */
export function loadCheckpoint(dir: string): Checkpoint {
  let from = dir;
  if (!existsSync(join(dir, 'model.safetensors'))) {
    const parent = dirname(dir);
    const aside = existsSync(parent)
      ? readdirSync(parent).filter((f) => f.startsWith(`${basename(dir)}.old-`)).map((f) => join(parent, f))
      : [];
    const usable = aside.find((d) => existsSync(join(d, 'model.safetensors')));
    if (!usable) throw new KilnError(`${dir}: not a checkpoint (no model.safetensors)`);
    from = usable;
  }
  const model = loadSafetensors(join(from, 'model.safetensors')).tensors;
  const emaFile = join(from, 'ema.safetensors');
  const ema = existsSync(emaFile) ? loadSafetensors(emaFile).tensors : new Map<string, HostTensor>();
  const stateFile = join(from, 'train_state.safetensors');
  const st = existsSync(stateFile) ? loadSafetensors(stateFile) : { tensors: new Map<string, HostTensor>(), metadata: {} };
  return { model, ema, trainState: st.tensors, meta: st.metadata };
}

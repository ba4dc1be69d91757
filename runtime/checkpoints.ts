/**
 * @file A training run's checkpoints: `<root>/step-<NNNNNNNN>/`, each a crash-safe checkpoint directory
 * (runtime/checkpoint.ts) plus `manifest.json` with the byte size and SHA-256 of every file in it,
 * written last, inside the temporary directory, before the atomic rename. The N latest are kept.
 *
 * `loadLatestCheckpoint` tries the newest first; a checkpoint whose manifest is missing, or whose
 * files are missing, truncated, corrupt (size or hash differ) or unreadable is refused with a warning
 * naming the file and the problem, and the previous one is tried. The run state a checkpoint carries
 * besides tensors (step, epoch, position in the epoch, RNG state, job config) is in its metadata.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../ir/errors.ts';
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.ts';

export const MANIFEST = 'manifest.json';
const STEP_DIR = /^step-(\d+)$/;

/** Where training resumes from: written into every checkpoint's metadata as `run_state` (JSON). */
export interface RunState {
  /** Optimizer steps done. */
  step: number;
  /** Epoch of the next batch, and the batch's index within that epoch. */
  epoch: number;
  batchInEpoch: number;
  /** Host-side RNG: every random choice of step s is drawn from (seed, s); `counter` = the next step. */
  rng: { seed: number; counter: number };
}

export class CheckpointError extends KilnError {
  override name = 'CheckpointError';
}

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Checkpoint step directories under `root`, newest first. */
export function listCheckpoints(root: string): Array<{ step: number; dir: string }> {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((f) => ({ m: STEP_DIR.exec(f), f }))
    .filter((x) => x.m)
    .map((x) => ({ step: Number(x.m![1]), dir: join(root, x.f) }))
    .sort((a, b) => b.step - a.step);
}

/** Save `c` as `<root>/step-N` (N = state.step) with its manifest, then delete all but the `keep` newest. */
export function saveRunCheckpoint(root: string, c: Checkpoint, state: RunState, config: unknown, keep: number): string {
  mkdirSync(root, { recursive: true });
  const dir = join(root, stepDirName(state.step));
  const meta = { ...c.meta, run_state: JSON.stringify(state), job_config: JSON.stringify(config), step: String(state.step) };
  saveCheckpoint(dir, { ...c, meta }, (tmp) => {
    const files: Record<string, { bytes: number; sha256: string }> = {};
    for (const f of readdirSync(tmp).sort()) files[f] = { bytes: statSync(join(tmp, f)).size, sha256: sha256(join(tmp, f)) };
    const fd = openSync(join(tmp, MANIFEST), 'w');
    writeSync(fd, JSON.stringify({ step: state.step, files }, null, 1));
    fsyncSync(fd);
    closeSync(fd);
  });
  for (const f of readdirSync(root)) if (/^step-\d+\.(tmp|old)-\d+$/.test(f) && !f.endsWith(`-${process.pid}`)) rmSync(join(root, f), { recursive: true, force: true });
  for (const old of listCheckpoints(root).slice(Math.max(1, keep))) rmSync(old.dir, { recursive: true, force: true });
  return dir;
}

/** Check a checkpoint directory against its manifest; throws CheckpointError naming the file and the problem. */
export function verifyCheckpoint(dir: string): void {
  const mpath = join(dir, MANIFEST);
  if (!existsSync(mpath)) throw new CheckpointError(`${mpath}: missing (the checkpoint was not completely written)`);
  let manifest: { files: Record<string, { bytes: number; sha256: string }> };
  try {
    manifest = JSON.parse(readFileSync(mpath, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${mpath}: not valid JSON (${(e as Error).message})`);
  }
  for (const [f, want] of Object.entries(manifest.files ?? {})) {
    const p = join(dir, f);
    if (!existsSync(p)) throw new CheckpointError(`${p}: missing`);
    const bytes = statSync(p).size;
    if (bytes !== want.bytes) throw new CheckpointError(`${p}: truncated or overwritten: ${bytes} bytes, the manifest says ${want.bytes}`);
    if (sha256(p) !== want.sha256) throw new CheckpointError(`${p}: corrupt: its SHA-256 differs from the manifest's`);
  }
}

export interface LoadedRunCheckpoint {
  checkpoint: Checkpoint;
  state: RunState;
  config: unknown;
  dir: string;
}

/**
 * The newest valid checkpoint under `root` (undefined when there is none). Refused ones are reported
 * through `warn` (file and problem) and skipped.
 */
export function loadLatestCheckpoint(root: string, warn: (line: string) => void = () => {}): LoadedRunCheckpoint | undefined {
  for (const { dir } of listCheckpoints(root)) {
    try {
      verifyCheckpoint(dir);
      const checkpoint = loadCheckpoint(dir);
      const rs = checkpoint.meta.run_state;
      if (!rs) throw new CheckpointError(`${join(dir, 'train_state.safetensors')}: no run_state in its metadata`);
      return { checkpoint, state: JSON.parse(rs) as RunState, config: JSON.parse(checkpoint.meta.job_config ?? 'null'), dir };
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      warn(`refusing checkpoint ${dir}: ${e.message}; trying the previous one`);
    }
  }
  return undefined;
}

/**
 * Resuming training: a run stopped and resumed from its checkpoint computes the same losses, bit for
 * bit, as an uninterrupted run on the same backend (CPU); a corrupt or truncated newest checkpoint,
 * or one without its manifest, is refused with a message naming the file and the problem, and the
 * previous checkpoint is used. Checkpoints carry model, EMA, optimizer state, step, data position,
 * RNG state and the job config; only the N newest are kept.
 */
import { mkdirSync, mkdtempSync, readFileSync, truncateSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { makeSource } from '../../cli/jobs/load.ts';
import { type Job, parseJob } from '../../cli/jobs/schema.ts';
import { buildTask } from '../../cli/jobs/tasks.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { listCheckpoints, loadLatestCheckpoint } from '../../runtime/checkpoints.ts';
import { makeSchedule } from '../../runtime/schedule.ts';
import { train } from '../../runtime/train/trainer.ts';

const JOB = parseJob({
  name: 'resume-test', model: { kind: 'mlp', hidden: [16] },
  data: { kind: 'fashion_mnist', limit: 96, normalize: { mean: 0.286, std: 0.353 } },
  optimizer: { kind: 'adamw', weightDecay: 0.01 }, schedule: { kind: 'warmup_cosine', lr: 3e-3, warmup: 3 },
  batchSize: 16, steps: 14, ema: { decay: 0.9 }, keepCheckpoints: 2, seed: 7,
}, 'test');

async function run(dir: string, o: { stopAt?: number; resume?: boolean; warn?: (s: string) => void } = {}) {
  const job: Job = { ...JOB, outputDir: dir };
  const source = makeSource(job, () => {});
  const { task } = await buildTask({ job, backend: cpuBackend, precision: 'f32', source, log: () => {}, warn: () => {} });
  return train({ ...task, evaluate: undefined }, {
    backend: cpuBackend, totalSteps: 14, schedule: makeSchedule({ kind: 'warmup_cosine', lr: 3e-3, warmup: 3, total: 14 }), seed: job.seed, runDir: dir, config: job,
    intervals: { log: 100, checkpoint: 4 }, keepCheckpoints: 2, stopAt: o.stopAt, resume: o.resume, log: () => {}, warn: o.warn ?? (() => {}),
  });
}
const lossesOf = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);

describe('resume', () => {
  it('a stopped and resumed run has the losses of an uninterrupted run, bit for bit; bad checkpoints are refused', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-resume-'));
    const full = await run(join(root, 'full'));
    expect(full.losses).toHaveLength(14 - 0);
    expect(full.lastLoss).toBeLessThan(full.firstLoss);

    const dir = join(root, 'parts');
    await run(dir, { stopAt: 9 }); // 6 batches per epoch: stops in epoch 1; checkpoints at 4, 8 and 9 (the stop)
    expect(listCheckpoints(join(dir, 'checkpoints')).map((c) => c.step)).toEqual([9, 8]); // keep 2
    const ck = loadLatestCheckpoint(join(dir, 'checkpoints'))!;
    expect(ck.state).toEqual({ step: 9, epoch: 1, batchInEpoch: 3, rng: { seed: 7, counter: 9 } });
    expect((ck.config as Job).name).toBe('resume-test');
    expect([...ck.checkpoint.model.keys()].sort()).toEqual(['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.weight']);
    expect([...ck.checkpoint.ema.keys()].sort()).toEqual([...ck.checkpoint.model.keys()].sort());
    expect(ck.checkpoint.trainState.get('optim.step')!.data[0]).toBe(9);
    expect(ck.checkpoint.trainState.has('optim.exp_avg.layers.0.weight')).toBe(true);

    // Truncate the newest checkpoint's model file: refused (file and problem named), step 8 used.
    const newest = join(dir, 'checkpoints', 'step-00000009', 'model.safetensors');
    truncateSync(newest, 100);
    const warnings: string[] = [];
    const resumed = await run(dir, { resume: true, warn: (s) => warnings.push(s) });
    expect(warnings.join('\n')).toMatch(/refusing checkpoint .*step-00000009: .*step-00000009\/model\.safetensors: truncated or overwritten: 100 bytes/);
    expect(resumed.startStep).toBe(8);
    expect(resumed.steps).toBe(14);
    const a = lossesOf(join(root, 'full')), b = lossesOf(dir);
    expect(b).toHaveLength(14);
    for (let i = 0; i < 14; i++) expect(Object.is(a[i], b[i]), `step ${i + 1}: ${a[i]} vs ${b[i]}`).toBe(true);
    // the final parameters agree too
    const fa = loadSafetensors(join(root, 'full', 'checkpoints', 'step-00000014', 'model.safetensors')).tensors;
    const fb = loadSafetensors(join(dir, 'checkpoints', 'step-00000014', 'model.safetensors')).tensors;
    for (const [k, v] of fa) expect(Buffer.from((fb.get(k)!.data as Float32Array).buffer).equals(Buffer.from((v.data as Float32Array).buffer)), k).toBe(true);
  }, 240_000);

  it('refuses a checkpoint with a flipped byte or without its manifest, naming the file, and falls back', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-corrupt-'));
    const dir = join(root, 'run');
    await run(dir, { stopAt: 8 });
    const cks = join(dir, 'checkpoints');
    // a directory left without its manifest (never renamed into place by a real save, but refuse it anyway)
    mkdirSync(join(cks, 'step-00000012'));
    writeFileSync(join(cks, 'step-00000012', 'model.safetensors'), 'partial');
    // what a save killed half-way leaves: its temporary directory (never renamed into place), ignored
    mkdirSync(join(cks, 'step-00000016.tmp-99999'));
    writeFileSync(join(cks, 'step-00000016.tmp-99999', 'model.safetensors'), 'half');
    // flip one byte in the middle of step 8's optimizer state
    const f = join(cks, 'step-00000008', 'train_state.safetensors');
    const bytes = readFileSync(f);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(f, bytes);
    const warnings: string[] = [];
    const found = loadLatestCheckpoint(cks, (s) => warnings.push(s))!;
    expect(found.state.step).toBe(4);
    expect(warnings[0]).toMatch(/step-00000012\/manifest\.json: missing/);
    expect(warnings[1]).toMatch(/step-00000008\/train_state\.safetensors: corrupt: its SHA-256 differs/);
    expect(warnings).toHaveLength(2);
    expect(readdirSync(cks).sort()).toEqual(['step-00000004', 'step-00000008', 'step-00000012', 'step-00000016.tmp-99999']);
  }, 120_000);
});

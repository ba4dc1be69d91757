/**
 * Stage Ib with the GAN term (cli/jobs/tasks.ts ganStageTask, runtime/train/trainer.ts adversary):
 * the pixel decoder's step and the patch discriminator's step alternate on every batch, on the CPU
 * backend with the tiny FAE preset (16 px, 3 channels) and an in-memory data source.
 * - the trainer's sequence equals a hand-written alternation (G step on (G_s, D_s); D step on the G
 *   step's reconstruction; D's new weights copied into the G session), loss for loss, bit for bit;
 * - disc_factor: before model.ganStart the discriminator loss and the generator's GAN weight are 0,
 *   from it on both are positive;
 * - a stopped and resumed run has the losses of an uninterrupted one, bit for bit, for both players;
 *   the checkpoint holds both: discriminator.* in model.safetensors, its optimizer state under
 *   `adversary.` in train_state.safetensors.
 */
import { mkdtempSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { type Job, parseJob } from '../../cli/jobs/schema.ts';
import { buildTask } from '../../cli/jobs/tasks.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import { loadLatestCheckpoint } from '../../runtime/checkpoints.ts';
import type { BatchSource, SourceBatch } from '../../runtime/data/source.ts';
import { makeSchedule } from '../../runtime/schedule.ts';
import { Session } from '../../runtime/session.ts';
import { train } from '../../runtime/train/trainer.ts';

const B = 4, STEPS = 6, GAN_START = 2;
const JOB = parseJob({
  name: 'gan-test', model: { kind: 'fae_stage_ib', preset: 'tiny', encoder: { depth: 1, heads: 2 }, gan: true, ganStart: GAN_START },
  data: { kind: 'image_folder', root: '/unused', size: 16 },
  optimizer: { kind: 'adamw', beta1: 0.5, beta2: 0.9, weightDecay: 0 }, schedule: { kind: 'constant', lr: 1e-3 },
  batchSize: B, steps: STEPS, seed: 3,
}, 'test');
const schedule = makeSchedule({ kind: 'constant', lr: 1e-3 });

/** Random images in [−1, 1), 3 batches per epoch, deterministic per (epoch, batch). */
const source: BatchSource = {
  batchesPerEpoch: 3, batchSize: B, imageShape: [3, 16, 16], classes: ['a', 'b'],
  async load(epoch: number, batch: number): Promise<SourceBatch> {
    const r = mulberry32(1000 * epoch + batch + 1);
    return {
      x: hostTensor('f32', [B, 3, 16, 16], Float32Array.from({ length: B * 768 }, () => 2 * r() - 1)),
      y: hostTensor('i32', [B], new Int32Array(B)), epoch, batch,
    };
  },
};

async function task() {
  return (await buildTask({ job: JOB, backend: cpuBackend, precision: 'f32', source, log: () => {}, warn: () => {} })).task;
}

async function run(dir: string, o: { stopAt?: number; resume?: boolean } = {}) {
  const t = await task();
  return train(t, {
    backend: cpuBackend, precision: 'f32', totalSteps: STEPS, schedule, seed: JOB.seed, runDir: dir, config: { ...JOB, outputDir: dir } satisfies Job,
    intervals: { log: 100, checkpoint: 3 }, keepCheckpoints: 2, stopAt: o.stopAt, resume: o.resume, log: () => {}, warn: () => {},
  });
}
const metrics = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

describe('stage Ib GAN: alternating generator / discriminator steps', () => {
  it('equals a hand-written alternation; disc_factor switches the GAN on at ganStart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-gan-'));
    await run(dir);
    const m = metrics(dir);
    expect(m).toHaveLength(STEPS);

    // The reference loop: two sessions, fed and synchronized by hand.
    const t = await task();
    const adv = t.adversary!;
    const g = await Session.open(cpuBackend, t.graph, t.initial, { precision: 'f32' });
    const d = await Session.open(cpuBackend, adv.graph, adv.initial, { precision: 'f32' });
    const want: Array<{ loss: number; d_loss: number; gan_weight: number }> = [];
    for (let s = 0; s < STEPS; s++) {
      const batch = await source.load(Math.floor(s / 3), s % 3);
      const factor = hostTensor('f32', [], [s >= GAN_START ? 1 : 0]);
      const lr = hostTensor('f32', [], [1e-3]);
      const go = await g.run({ images: batch.x, gan_factor: factor, lr, rng_seed: hostTensor('u32', [2], [JOB.seed, s]) }, ['loss', 'gan_weight', 'reconstruction']);
      const dout = await d.run({ images: batch.x, reconstruction: go.reconstruction!, gan_factor: factor, lr }, ['loss']);
      const dw = new Map<string, HostTensor>();
      for (const n of adv.paramNames) dw.set(n, await d.exe.read(n));
      await g.load(dw);
      want.push({ loss: go.loss!.data[0]!, d_loss: dout.loss!.data[0]!, gan_weight: go.gan_weight!.data[0]! });
    }
    g.dispose();
    d.dispose();
    expect(m.map((l) => ({ loss: l.loss!, d_loss: l.d_loss!, gan_weight: l.gan_weight! }))).toEqual(want);
    for (let s = 0; s < STEPS; s++) {
      if (s < GAN_START) {
        expect(m[s]!.d_loss, `step ${s + 1}`).toBe(0);
        expect(m[s]!.gan_weight, `step ${s + 1}`).toBe(0);
      } else {
        expect(m[s]!.d_loss, `step ${s + 1}`).toBeGreaterThan(0);
        expect(m[s]!.gan_weight, `step ${s + 1}`).toBeGreaterThan(0);
      }
    }
    // The discriminator learns from step GAN_START on: its weights moved (the sync is not a no-op).
    const ck = loadLatestCheckpoint(join(dir, 'checkpoints'))!;
    const w0 = adv.initial.get('discriminator.head.weight')!.data, w1 = ck.checkpoint.model.get('discriminator.head.weight')!.data;
    expect(Array.from(w1)).not.toEqual(Array.from(w0));
  }, 240_000);

  it('resumes bit for bit; the checkpoint holds both players', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-gan-resume-'));
    await run(join(root, 'full'));
    const parts = join(root, 'parts');
    await run(parts, { stopAt: 3 });
    const ck = loadLatestCheckpoint(join(parts, 'checkpoints'))!;
    const keys = [...ck.checkpoint.model.keys()];
    expect(keys.some((k) => k.startsWith('pixel_decoder.'))).toBe(true);
    expect(keys.filter((k) => k.startsWith('discriminator.')).sort()).toEqual((await task()).adversary!.paramNames.slice().sort());
    expect(keys.every((k) => k.startsWith('pixel_decoder.') || k.startsWith('discriminator.'))).toBe(true);
    const st = ck.checkpoint.trainState;
    expect(st.get('optim.step')!.data[0]).toBe(3);
    expect(st.get('adversary.optim.step')!.data[0]).toBe(3);
    expect(st.has('adversary.optim.exp_avg.discriminator.head.weight')).toBe(true);
    expect(st.has('optim.exp_avg.discriminator.head.weight')).toBe(false);
    await run(parts, { resume: true });
    const pick = (dir: string) => metrics(dir).map((l) => [l.loss, l.d_loss, l.g_loss, l.adaptive_weight]);
    expect(pick(parts)).toEqual(pick(join(root, 'full')));
  }, 240_000);
});

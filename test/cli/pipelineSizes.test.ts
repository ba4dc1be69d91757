/**
 * @file `kiln pipeline`'s short sizes resolve, stage by stage, to jobs that can learn in their few hundred steps
 * (fae-small) and train nothing idle (fae-small, fae-tiny): each stage's job file with the size's arguments applied exactly as `kiln train` applies
 * them (cli/jobs/load.ts resolveJob). A warmup schedule reaches its peak rate within the first quarter of the run
 * (the shipped jobs' warmups of 100–500 steps, clamped to the run, left the 30–60-step runs at a ramping fraction
 * of their rate), and stage Ib trains no discriminator whose GAN term never counts (fae-stage-ib.json's starts at
 * step 3744). fae-full runs the shipped jobs as they are.
 */
import { describe, expect, it } from 'vitest';
import { PIPELINE_SIZES, trainingStages } from '../../cli/commands/pipeline.ts';
import { setting } from '../../cli/commands/train.ts';
import { resolveJob } from '../../cli/jobs/load.ts';

/** The `kiln train` options the pipeline passes, as the overrides train.ts builds from them. */
function overrides(args: readonly string[]): Array<[string, unknown]> {
  let out: Array<[string, unknown]> = [];
  for (let i = 0; i < args.length; i += 2) {
    const [flag, v] = [args[i]!, args[i + 1]!];
    if (flag === '--set') out = setting(v, out);
    else if (flag === '--steps') out.push(['steps', Number(v)], ['epochs', null]);
    else if (flag === '--batch') out.push(['batchSize', Number(v)]);
    else if (flag === '--lr') out.push(['schedule.lr', Number(v)]);
    else if (flag === '--limit') out.push(['data.limit', Number(v)]);
    else throw new Error(`unexpected pipeline argument ${flag}`);
  }
  return out;
}

describe('kiln pipeline sizes', () => {
  for (const size of ['fae-small', 'fae-tiny'] as const)
    it(`${size}: ${size === 'fae-small' ? 'every stage reaches its peak rate early and ' : ''}trains nothing idle`, async () => {
      const stages = trainingStages(PIPELINE_SIZES[size]!);
      expect(stages.map((s) => s.job)).toEqual(expect.arrayContaining(['ssl-encoder', 'fae-stage-ia', 'fae-stage-ib', 'fae-pixel-finetune', 'lightningdit-fae', 'fashion-classifier']));
      for (const s of stages) {
        const { job } = await resolveJob(s.job, { overrides: overrides(s.args) });
        expect(job.steps, `${size} ${s.name}: steps`).toBeGreaterThan(0);
        // fae-tiny checks the plumbing in a few steps (its rates do not matter); fae-small has to learn
        if (size === 'fae-small' && job.schedule.kind !== 'constant') expect(job.schedule.warmup, `${size} ${s.name}: warmup of ${job.steps} steps`).toBeLessThanOrEqual(job.steps! / 4);
        if (job.model.kind === 'fae_stage_ib' || job.model.kind === 'fae_pixel_finetune')
          expect(!job.model.gan || job.model.ganStart < job.steps!, `${size} ${s.name}: a discriminator trained whose GAN term starts at step ${job.model.ganStart}`).toBe(true);
      }
    });
});

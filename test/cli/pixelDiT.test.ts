/**
 * The pixel-space baseline of issue 13 item 3: a LightningDiT job with `model.latents: null` trains on the
 * images themselves (28x28, patch 4 → the 7x7 token grid of the FAE latents), its first step's loss is
 * the flow-matching loss of a zero-init model on those images (velocity 0: MSE = mean (x1 − x0)², cosine
 * term 1), and `kiln sample` of the run reads the pixel geometry from the job (no FAE, no latent stats)
 * and saves images [N, 1, 28, 28]. The job's `intervals.sample` writes a sample grid during training
 * (cli/jobs/preview.ts), and it is the grid `kiln sample` draws from the same checkpoint with its defaults
 * and the job's seed, pixel for pixel.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { kiln } from '../support/kilnCli.ts';

describe('LightningDiT on pixels (model.latents null)', () => {
  it('trains on 1x28x28 images at patch 4, writes sample grids at its interval, and samples images', async () => {
    const d = mkdtempSync(join(tmpdir(), 'kiln-pixel-dit-'));
    const run = join(d, 'run');
    const job = JSON.parse(readFileSync('jobs/lightningdit-pixels.json', 'utf8'));
    Object.assign(job, { batchSize: 4, steps: 2, epochs: undefined, intervals: { log: 1, checkpoint: 2, sample: 2 }, ema: null });
    job.model.config = { depth: 1, hiddenSize: 16, numHeads: 2, classDropoutProb: 0.1 };
    job.data.limit = 16;
    // A large constant rate: after 2 steps the velocity is far from the zero-init model's 0, so the sampler's settings show in the grid.
    job.schedule = { kind: 'constant', lr: 0.05 };
    writeFileSync(join(d, 'job.json'), JSON.stringify(job));
    const t = kiln(['train', join(d, 'job.json'), '--out', run, '--backend', 'cpu']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/LightningDiT S\/4 on 1x28x28 pixels \(patch 4: 49 tokens\)/);
    const first = JSON.parse(readFileSync(join(run, 'metrics.jsonl'), 'utf8').split('\n')[0]!) as { mse: number; cos: number };
    // zero-init final layer → v = 0: cos term 1 exactly (cosine of a zero vector taken as 0); MSE of
    // x1 − x0 with x1 the images in [−1, 1] (mean square ≈ 0.5 on Fashion-MNIST) and x0 ~ N(0, 1): ≈ 1.5,
    // far from the ≈ 1.0 of all-zero "images" (the bug this pins: feeding anything but the pixels).
    expect(first.cos).toBeCloseTo(1, 5);
    expect(first.mse).toBeGreaterThan(1.2);
    const s = kiln(['sample', run, '--num', '2', '--steps', '3', '--backend', 'cpu', '--out', join(d, 's.png'), '--save-samples', join(d, 's.safetensors')]);
    expect(s.code, s.stderr).toBe(0);
    expect(loadSafetensors(join(d, 's.safetensors')).tensors.get('images')!.shape).toEqual([2, 1, 28, 28]);

    // The grid written at step 2 = `kiln sample` of the step-2 checkpoint (16 samples, Euler 50, shift 0.4, seed = job's).
    const grid = join(run, 'samples', 'step-00000002.png');
    expect(t.stdout.split(`samples at step 2: ${grid}`)).toHaveLength(2); // once: the last step's hooks do not run again after the loop
    const again = kiln(['sample', run, '--num', '16', '--seed', String(job.seed), '--backend', 'cpu', '--out', join(d, 'again.png')]);
    expect(again.code, again.stderr).toBe(0);
    const pixels = async (f: string) => sharp(f).raw().toBuffer({ resolveWithObject: true });
    const [a, b] = [await pixels(grid), await pixels(join(d, 'again.png'))];
    expect(a.info.width).toBe(2 + 4 * (56 + 2)); // 4 columns of 28x28 at scale 2, 2-pixel padding
    expect(a.info).toEqual(b.info);
    expect(a.data.equals(b.data)).toBe(true);
  }, 240_000);
});

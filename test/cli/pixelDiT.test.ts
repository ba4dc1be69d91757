/**
 * The pixel-space baseline of issue 13 item 3: a LightningDiT job with `model.latents: null` trains on the
 * images themselves (28x28, patch 4 → the 7x7 token grid of the FAE latents), its first step's loss is
 * the flow-matching loss of a zero-init model on those images (velocity 0: MSE = mean (x1 − x0)², cosine
 * term 1), and `kiln sample` of the run reads the pixel geometry from the job (no FAE, no latent stats)
 * and saves images [N, 1, 28, 28].
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { kiln } from '../support/kilnCli.ts';

describe('LightningDiT on pixels (model.latents null)', () => {
  it('trains on 1x28x28 images at patch 4 and samples images', () => {
    const d = mkdtempSync(join(tmpdir(), 'kiln-pixel-dit-'));
    const run = join(d, 'run');
    const job = JSON.parse(readFileSync('jobs/lightningdit-pixels.json', 'utf8'));
    Object.assign(job, { batchSize: 4, steps: 2, epochs: undefined, intervals: { log: 1, checkpoint: 2 }, ema: null });
    job.model.config = { depth: 1, hiddenSize: 16, numHeads: 2, classDropoutProb: 0.1 };
    job.data.limit = 16;
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
  }, 240_000);
});

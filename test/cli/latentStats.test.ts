/**
 * Latent normalization travels with the run: a LightningDiT job on FAE latents stores the per-channel
 * mean/std it normalized the latents with (checkpoint metadata `latent_stats`), and `kiln sample` of
 * that run undoes it before decoding without being told (the same images as an explicit
 * `--latent-stats` file with those numbers; different ones from identity stats). Its `intervals.sample`
 * grid is decoded through the FAE decoders of `latents.checkpoint` (28x28 image tiles, not 7x7 latents).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadLatestCheckpoint } from '../../runtime/checkpoints.ts';
import { loadSafetensors, saveSafetensors } from '../../runtime/safetensors.ts';
import { FAE } from '../../models/fae/model.ts';
import { fashionMnistFaeConfig } from '../../models/fae/config.ts';
import { ViTFeatureEncoder } from '../../models/fae/encoder.ts';
import { kiln } from '../support/kilnCli.ts';

describe('latent stats in a LightningDiT-on-FAE run', () => {
  it('are stored in the checkpoint and undone by kiln sample automatically', async () => {
    const d = mkdtempSync(join(tmpdir(), 'kiln-latent-stats-'));
    const run = join(d, 'run');
    const job = {
      name: 'tiny-dit-fae',
      model: { kind: 'lightningdit', size: 'S/1', config: { depth: 1, hiddenSize: 32, numHeads: 2 }, latents: { preset: 'fashionMnist', encoder: { depth: 1, heads: 2 }, checkpoint: join(d, 'fae') } },
      data: { kind: 'fashion_mnist', size: 28, limit: 16 },
      optimizer: { kind: 'adamw' }, schedule: { kind: 'constant', lr: 1e-3 },
      batchSize: 4, steps: 2, intervals: { log: 1, checkpoint: 2, sample: 2 }, seed: 0,
    };
    // FAE weights (random; the point is the denormalization and the decoding, not the picture).
    const cfg = fashionMnistFaeConfig();
    const enc = new ViTFeatureEncoder({ dim: 64, depth: 1, heads: 2, mlpHidden: 256, patchSize: 4, imageSize: 28, channels: 1 });
    mkdirSync(join(d, 'fae'));
    const faeFile = join(d, 'fae', 'model.safetensors'); // a checkpoint directory for latents.checkpoint, the file for --fae
    saveSafetensors(faeFile, new FAE(cfg, enc).initState(1));
    writeFileSync(join(d, 'job.json'), JSON.stringify(job));
    const t = kiln(['train', join(d, 'job.json'), '--out', run, '--backend', 'cpu']);
    expect(t.code, t.stderr).toBe(0);
    const grid = await sharp(join(run, 'samples', 'step-00000002.png')).metadata();
    expect(t.stderr).not.toMatch(/latents' first channels/);
    expect(grid.width).toBe(2 + 4 * (56 + 2)); // 16 decoded 1x28x28 images, 4 columns at scale 2 (latents would be 7x7)
    const ck = loadLatestCheckpoint(join(run, 'checkpoints'), () => {})!;
    const stats = JSON.parse(ck.checkpoint.meta.latent_stats!) as { mean: number[]; std: number[] };
    expect(stats.mean).toHaveLength(4), expect(stats.std).toHaveLength(4);
    for (const s of stats.std) expect(s).toBeGreaterThan(0);

    const sample = (name: string, extra: string[] = []) => {
      const r = kiln(['sample', run, '--fae', faeFile, '--num', '2', '--steps', '3', '--backend', 'cpu', '--out', join(d, `${name}.png`), '--save-samples', join(d, `${name}.safetensors`), ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return { r, images: loadSafetensors(join(d, `${name}.safetensors`)).tensors.get('images')!.data };
    };
    const auto = sample('auto');
    expect(auto.r.stdout).toMatch(/latent stats from .*undone before decoding/);
    expect(auto.r.stderr).not.toMatch(/no latent stats/);
    writeFileSync(join(d, 'same.json'), JSON.stringify(stats));
    writeFileSync(join(d, 'identity.json'), JSON.stringify({ mean: [0, 0, 0, 0], std: [1, 1, 1, 1] }));
    expect(Array.from(sample('explicit', ['--latent-stats', join(d, 'same.json')]).images)).toEqual(Array.from(auto.images));
    expect(Array.from(sample('identity', ['--latent-stats', join(d, 'identity.json')]).images)).not.toEqual(Array.from(auto.images));
  }, 240_000);
});

/**
 * @file `kiln pipeline --size fae-tiny` end to end on the CPU interpreter (a few minutes): every stage
 * runs as the CLI a user types, the FAE stages load the SSL run's encoder (all of its tensors), the
 * pixel-decoder fine-tuning starts from stage Ib's run and the samples are decoded by it, and the
 * outputs exist: the sample grid PNGs (LightningDiT, 10 columns of 28·2 px tiles; TarFlow), the
 * reconstruction grid, and a metrics table whose numbers are finite (probe, kNN and classifier
 * accuracies in [0, 1], PSNR, SSIM, FD ≥ 0 for both generators).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadSafetensors } from '../../runtime/safetensors.ts';

describe('kiln pipeline', () => {
  it('fae-tiny: SSL encoder → FAE (Ia, Ib, fine-tune) → LightningDiT, TarFlow → classifier → samples and metrics', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kiln-pipe-')), 'run');
    const r = spawnSync(process.execPath, ['cli/bin.mjs', 'pipeline', '--size', 'fae-tiny', '--out', out, '--backend', 'cpu'], { encoding: 'utf8' });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    // the FAE stage loaded every tensor of the depth-1 SSL ViT (pos_embed, patch_embed ×2, 12 per block, norm ×2)
    expect(readFileSync(join(out, 'logs', 'fae-stage-ia.log'), 'utf8')).toMatch(new RegExp(`frozen encoder: 17 tensors from ${join(out, 'ssl-encoder')}`));
    // the fine-tuning continues stage Ib's pixel decoder on the output of stage Ia's adapter and feature decoder
    // (a checkpoint holds only what its stage trained: both runs are loaded), and decodes the samples
    const ft = readFileSync(join(out, 'logs', 'fae-pixel-finetune.log'), 'utf8');
    expect(ft).toMatch(new RegExp(`FAE weights: \\d+ tensors from ${join(out, 'fae-stage-ia')}\n`));
    expect(ft).toMatch(new RegExp(`FAE weights: \\d+ tensors from ${join(out, 'fae-stage-ib')}\n`));
    // the stage-Ib run alone has no feature decoder: refused (exit 2, one line), not fine-tuned on a random one
    const only = spawnSync(process.execPath, ['cli/bin.mjs', 'train', 'fae-pixel-finetune', '--backend', 'cpu', '--set', 'model.preset=fashionTiny', '--set', 'model.encoder.depth=1', '--set', 'model.encoder.heads=2',
      '--set', `model.encoder.checkpoint=${join(out, 'ssl-encoder')}`, '--set', `model.init=${join(out, 'fae-stage-ib')}`, '--steps', '1', '--batch', '8', '--limit', '64', '--out', join(out, 'ft-ib-only')], { encoding: 'utf8' });
    expect(only.status, only.stderr).toBe(2);
    expect(only.stderr).toMatch(/fae_pixel_finetune: model\.init \(.*fae-stage-ib\) holds no adapter, feature_decoder weights; give the stage-Ia run too/);
    expect(readFileSync(join(out, 'logs', 'sample-cfg.log'), 'utf8')).toMatch(new RegExp(`decoded through the FAE decoders of ${join(out, 'fae-stage-ia')},${join(out, 'fae-pixel-finetune')}`));
    expect((await sharp(join(out, 'samples-tarflow.png')).metadata()).format).toBe('png');
    const png = await sharp(join(out, 'samples.png')).metadata();
    expect(png.format).toBe('png');
    expect(png.width).toBeGreaterThanOrEqual(8 * 56);
    expect(existsSync(join(out, 'reconstructions.png'))).toBe(true);
    const m = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    for (const v of [m.probe, m.knn, m.fae.probe_raw, m.fae.probe_reconstructed, m.classifier, m.accuracy.cfg, m.accuracy.none, m.accuracy.tarflow]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    expect(Number.isFinite(m.fae.psnr) && Number.isFinite(m.fae.ssim)).toBe(true);
    expect(m.fd.cfg.fd).toBeGreaterThanOrEqual(0);
    expect(m.fd.cfg.floor).toBeGreaterThanOrEqual(0);
    expect(m.fd.tarflow.fd).toBeGreaterThanOrEqual(0);
    expect(readFileSync(join(out, 'metrics.md'), 'utf8')).toMatch(/\| classifier accuracy on samples: LightningDiT CFG \/ no guidance \/ TarFlow \| [\d.]+% \/ [\d.]+% \/ [\d.]+% \|/);
    expect(readFileSync(join(out, 'metrics.md'), 'utf8')).toMatch(/\| FD real-vs-real floor \| [\d.]+ \|/);
    // guidance changes the samples: the sampled model depends on the class (not a zero-init EMA copy)
    const a = loadSafetensors(join(out, 'samples.safetensors')).tensors.get('samples')!.data, b = loadSafetensors(join(out, 'samples-nocfg.safetensors')).tensors.get('samples')!.data;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(Number(a[i]) - Number(b[i])));
    expect(diff).toBeGreaterThan(1e-5);
  }, 900_000);
});

/**
 * `kiln eval fid` against PyTorch (golden/inception_golden.py → golden/data/inception/fid_sets.safetensors):
 * 16 real and 8 fake 24×24 images, the width-÷8 Inception-v3 with random weights (the 'fid' variant,
 * resized to 75 px), and pytorch-fid's statistic computed by the script in float64.
 * - the statistic alone: Kiln's frechetDistance on PyTorch's features equals PyTorch's value within
 *   1e-6 relative (both in f64; the covariances have rank 7 in 256 dimensions, and the two eigen-solvers
 *   round the null space differently: measured 2.5e-8 and 3.4e-8);
 * - end to end: the command's FD and real-vs-real floor (Kiln's features, f32) within 1e-4 relative
 *   (feature differences of ~3e-7 relative move the FD by far less);
 * - user errors: a bad weights file or a fake set smaller than --count is one line, exit 2.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { featureStats, frechetDistance } from '../../runtime/eval/frechet.ts';
import { loadSafetensors, saveSafetensors } from '../../runtime/safetensors.ts';
import { kiln } from '../support/kilnCli.ts';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '../../golden/data/inception');
const sets = loadSafetensors(join(DIR, 'fid_sets.safetensors')).tensors;
const t = (k: string) => sets.get(k)!;
const [fdRef, floorRef] = [Number(t('fd').data[0]), Number(t('floor').data[0])];
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('FID vs PyTorch (random Inception weights)', () => {
  it("the statistic on PyTorch's features", () => {
    const d = 256;
    const rf = t('real_features').data, ff = t('fake_features').data;
    const r0 = featureStats(rf.subarray(0, 8 * d), 8, d);
    expect(rel(frechetDistance(r0, featureStats(ff, 8, d)), fdRef)).toBeLessThan(1e-6);
    expect(rel(frechetDistance(r0, featureStats(rf.subarray(8 * d), 8, d)), floorRef)).toBeLessThan(1e-6);
  });

  it('kiln eval fid: FD and real-vs-real floor from the images', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-fid-'));
    const [real, fake] = [join(dir, 'real.safetensors'), join(dir, 'fake.safetensors')];
    saveSafetensors(real, { images: t('real') });
    saveSafetensors(fake, { images: t('fake') });
    const r = kiln(['eval', 'fid', '--inception', join(DIR, 'w8.safetensors'), '--real', real, '--fake', fake, '--count', '8', '--resize', '75', '--range', '0,1', '--backend', 'cpu', '--batch', '4', '--json']);
    expect(r.stderr).toMatch(/backend: cpu/);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { fd: number; floor: number; count: number; dim: number; space: string };
    expect(out.count).toBe(8);
    expect(out.dim).toBe(256);
    expect(out.space).toMatch(/Inception-v3 .*w8.safetensors \(fid variant, 256-d pool features, resized to 75\)/);
    expect(rel(out.fd, fdRef)).toBeLessThan(1e-4);
    expect(rel(out.floor, floorRef)).toBeLessThan(1e-4);
    // Too few fakes for --count, and a file that is not Inception weights: one line, exit 2.
    const few = kiln(['eval', 'fid', '--inception', join(DIR, 'w8.safetensors'), '--real', real, '--fake', fake, '--count', '9', '--resize', '75', '--backend', 'cpu']);
    expect(few.code).toBe(2);
    expect(few.stderr.trim()).toMatch(/fake.safetensors: 8 samples, --count is 9$/);
    const notInception = kiln(['eval', 'fid', '--inception', real, '--real', real, '--fake', fake, '--count', '8', '--backend', 'cpu']);
    expect(notInception.code).toBe(2);
    expect(notInception.stderr.trim().split('\n').at(-1)).toMatch(/real.safetensors: not an Inception-v3 state_dict \(no 'Conv2d_1a_3x3.conv.weight'/);
  }, 240_000);
});

/**
 * `kiln eval fd|accuracy|recon|bpd` end to end on files the test writes: feature sets with a known
 * Fréchet distance, a tiny DINOv2 encoder (golden/data/dinov2/tiny.*, laid out as an HF directory), an
 * MLP whose predictions are known, image pairs with a known PSNR, and a freshly initialized TarFlow
 * (its output projections zeroed: z = x, log-det 0) whose bits per dimension has a closed form.
 */
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { gaussianNoise } from '../../models/flowMatching.ts';
import { TarFlow } from '../../models/tarflow/model.ts';
import { tarflowConfigs } from '../../models/tarflow/config.ts';
import { featureStats, frechetDistance } from '../../runtime/eval/frechet.ts';
import { saveSafetensors } from '../../runtime/safetensors.ts';

const dir = mkdtempSync(join(tmpdir(), 'kiln-eval-'));
const f = (n: string) => join(dir, n);

/** Run `kiln eval ... --json` and return its parsed output line. */
async function evalJson(args: string[]): Promise<Record<string, number | null>> {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const rc = await main(['eval', ...args, '--json']);
    expect(rc, err.mock.calls.join('\n')).toBe(0);
    return JSON.parse(String(log.mock.calls.at(-1)![0]));
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}
afterEach(() => vi.restoreAllMocks());

describe('kiln eval', () => {
  it('fd on given features: the statistic of the first N of each set, and the real-vs-real floor', async () => {
    const N = 50, D = 6;
    const real = gaussianNoise([2 * N, D], 1), fake = hostTensor('f32', [N + 10, D], (gaussianNoise([N + 10, D], 2).data as Float32Array).map((v, i) => 1.5 * v + (i % D) * 0.3));
    saveSafetensors(f('real.safetensors'), { features: real });
    saveSafetensors(f('fake.safetensors'), { features: fake });
    const r = await evalJson(['fd', '--real', f('real.safetensors'), '--fake', f('fake.safetensors'), '--count', String(N)]);
    const st = (d: Float32Array, a: number, b: number) => featureStats(d.subarray(a * D, b * D), b - a, D);
    const want = frechetDistance(st(real.data as Float32Array, 0, N), st(fake.data as Float32Array, 0, N));
    const floor = frechetDistance(st(real.data as Float32Array, 0, N), st(real.data as Float32Array, N, 2 * N));
    expect(r.fd).toBeCloseTo(want, 10);
    expect(r.floor).toBeCloseTo(floor, 10);
    expect(r.fd!).toBeGreaterThan(3 * r.floor!);
  });

  it('fd through a frozen DINOv2 encoder: a set against its own first N is 0, against its second half the floor', async () => {
    const hf = f('dinov2');
    mkdirSync(hf);
    copyFileSync('golden/data/dinov2/tiny.config.json', join(hf, 'config.json'));
    copyFileSync('golden/data/dinov2/tiny.safetensors', join(hf, 'model.safetensors'));
    const N = 6;
    const imgs = hostTensor('f32', [2 * N, 1, 28, 28], (gaussianNoise([2 * N, 1, 28, 28], 3).data as Float32Array).map((v) => Math.tanh(v)));
    saveSafetensors(f('imgs.safetensors'), { images: imgs });
    const first = hostTensor('f32', [N, 1, 28, 28], (imgs.data as Float32Array).slice(0, N * 784));
    const second = hostTensor('f32', [N, 1, 28, 28], (imgs.data as Float32Array).slice(N * 784));
    saveSafetensors(f('first.safetensors'), { images: first });
    saveSafetensors(f('second.safetensors'), { images: second });
    const common = ['--real', f('imgs.safetensors'), '--encoder', hf, '--count', String(N), '--backend', 'cpu', '--batch', '4'];
    const same = await evalJson(['fd', ...common, '--fake', f('first.safetensors')]);
    const other = await evalJson(['fd', ...common, '--fake', f('second.safetensors')]);
    expect(same.floor!).toBeGreaterThan(1e-3);
    // N = 6 samples of 32-d features: rank-5 covariances, so tr √(Σ½ΣΣ½) sums square roots of ~27 eigenvalues
    // that are 0 up to rounding (≈1e-16·‖Σ‖ → √ ≈ 1e-8·√‖Σ‖ each): relative 1e-6 of the floor.
    expect(Math.abs(same.fd!)).toBeLessThan(1e-6 * same.floor!);
    expect(other.fd).toBeCloseTo(same.floor!, 10);
    expect(same.dim).toBe(32);
  });

  it('accuracy of a classifier on labelled samples', async () => {
    // One linear layer with identity weights: the predicted class is the brightest of 4 pixels.
    const eye = hostTensor('f32', [4, 4], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    saveSafetensors(f('mlp.safetensors'), { 'layers.0.weight': eye, 'layers.0.bias': hostTensor('f32', [4], [0, 0, 0, 0]) });
    const images = hostTensor('f32', [5, 1, 2, 2], [9, 0, 0, 0, 0, 9, 0, 0, 0, 0, 9, 0, 0, 0, 0, 9, 9, 0, 0, 0]);
    saveSafetensors(f('labelled.safetensors'), { images, labels: hostTensor('i32', [5], [0, 1, 2, 0, 3]) }); // items 3 and 4 are wrong
    const r = await evalJson(['accuracy', '--classifier', f('mlp.safetensors'), '--samples', f('labelled.safetensors'), '--backend', 'cpu', '--batch', '2']);
    expect(r.accuracy).toBeCloseTo(3 / 5, 12);
  });

  it('recon: PSNR of a constant error, SSIM 1 for identical images', async () => {
    const a = hostTensor('f32', [2, 1, 12, 12], (gaussianNoise([2, 1, 12, 12], 4).data as Float32Array).map((v) => 0.3 * v));
    saveSafetensors(f('ref.safetensors'), { images: a });
    saveSafetensors(f('rec.safetensors'), { images: hostTensor('f32', a.shape, (a.data as Float32Array).map((v) => v + 0.02)) });
    const r = await evalJson(['recon', '--reference', f('ref.safetensors'), '--reconstruction', f('rec.safetensors')]);
    expect(r.psnr).toBeCloseTo(10 * Math.log10(4 / 0.0004), 3); // L = 2 (range −1..1), e = 0.02 (f32)
    const same = await evalJson(['recon', '--reference', f('ref.safetensors'), '--reconstruction', f('ref.safetensors')]);
    expect(same.ssim).toBeCloseTo(1, 10);
  });

  it('bpd of a TarFlow with zero output projections (z = x, log-det 0): (½·mean x² + ½·log 2π − log Δ) / ln 2', async () => {
    const flow = new TarFlow(tarflowConfigs.tiny);
    const state = flow.initState(0);
    for (const [k, v] of state) if (k.includes('proj_out')) state.set(k, hostTensor('f32', v.shape)); // α = μ = 0
    saveSafetensors(f('tf.safetensors'), state, { format: 'pt' });
    const x = gaussianNoise([3, 2, 4, 4], 5);
    saveSafetensors(f('tfdata.safetensors'), { images: x });
    const r = await evalJson(['bpd', f('tf.safetensors'), '--model', JSON.stringify({ kind: 'tarflow', config: tarflowConfigs.tiny }), '--data', f('tfdata.safetensors'), '--backend', 'cpu', '--batch', '2']);
    let want = 0;
    for (let b = 0; b < 3; b++) {
      let sq = 0;
      for (let i = 0; i < 32; i++) sq += Number(x.data[b * 32 + i]) ** 2;
      want += (0.5 * (sq / 32) + 0.5 * Math.log(2 * Math.PI) - Math.log(2 / 256)) / Math.LN2;
    }
    expect(r.bpd).toBeCloseTo(want / 3, 4); // f32 graph arithmetic on values ~10
  });

  it('user errors exit 2', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await main(['eval', 'fd', '--real', f('nope.safetensors'), '--fake', f('fake.safetensors')])).toBe(2);
    expect(await main(['eval', 'fd', '--real', f('real.safetensors'), '--fake', f('fake.safetensors'), '--count', '1000'])).toBe(2);
  });
});

/**
 * @file Views cut in the program (models/ssl/cropViews.ts) against the host reference
 * (runtime/data/multiCrop.ts): for the same seed, epoch and batch, the program's global views equal
 * MultiCropSource's views (crops, flips, jitter) and its smaller local views equal `resizedCrop` into the
 * smaller size, to 1e-5 (f32 rounding of sums of two or four products), on the Graph-IR interpreter and
 * through the compiler on the kernel-IR interpreter; the position-embedding resampling matrix.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../backends/backend.ts';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { kernelCpuBackend } from '../../backends/kernel/executable.ts';
import { trace } from '../../compiler/dsl/index.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { cropViews } from '../../models/ssl/cropViews.ts';
import { resampleMatrix } from '../../models/ssl/dino.ts';
import { CROP_PARAMS, MultiCropSource, cropParams, resizedCrop } from '../../runtime/data/multiCrop.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import type { BatchSource, SourceBatch } from '../../runtime/data/source.ts';
import { Session } from '../../runtime/session.ts';

const B = 3, C = 2, S = 10;
const r = mulberry32(5);
const img = Float32Array.from({ length: B * C * S * S }, () => 2 * r() - 1);

class Fixed implements BatchSource {
  readonly batchesPerEpoch = 4;
  readonly batchSize = B;
  readonly imageShape = [C, S, S] as const;
  readonly classes = ['a'];
  async load(epoch: number, batch: number): Promise<SourceBatch> {
    return { x: hostTensor('f32', [B, C, S, S], img), y: hostTensor('i32', [B], [0, 0, 0]), epoch, batch };
  }
}

async function deviceViews(params: Float32Array, copies: number, out: number, backend: Backend = cpuBackend): Promise<Float32Array> {
  const g = trace('crops', (t) => ({ v: cropViews(t.input('images', [B, C, S, S]), t.input('p', [copies * B, CROP_PARAMS]), copies, out) }));
  const s = await Session.open(backend, g, new Map());
  const v = (await s.run({ images: hostTensor('f32', [B, C, S, S], img), p: hostTensor('f32', [copies * B, CROP_PARAMS], params) })).v!;
  s.dispose();
  expect(v.shape).toEqual([copies * B, C, out, out]);
  return v.data as Float32Array;
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe('cropViews (views cut in the program)', () => {
  const o = { globalViews: 2, localViews: 3, globalScale: [0.3, 1] as const, localScale: [0.1, 0.5] as const, jitter: 0.3, seed: 11 };

  it('equal MultiCropSource views for the same seed, epoch and batch (crops, flips, jitter)', async () => {
    const host = await new MultiCropSource(new Fixed(), o).load(2, 3);
    const params = cropParams(o, S, S, 2, 3, B);
    const flips = Array.from({ length: 5 * B }, (_, i) => params[i * CROP_PARAMS + 4]);
    expect(flips).toContain(0); // both branches of the flip are exercised
    expect(flips).toContain(1);
    expect(maxDiff(await deviceViews(params, 5, S), host.x.data as Float32Array)).toBeLessThan(1e-5);
    // the compiled path (fusion, lowering, the kernel-IR interpreter) cuts the same views
    expect(maxDiff(await deviceViews(params, 5, S, kernelCpuBackend), host.x.data as Float32Array)).toBeLessThan(1e-5);
  });

  it('cut smaller local views like resizedCrop into the smaller size', async () => {
    const out = 6, params = cropParams(o, S, S, 0, 1, B).subarray(2 * B * CROP_PARAMS); // the 3 local views
    const want = new Float32Array(3 * B * C * out * out);
    for (let n = 0; n < 3 * B; n++) {
      const p = params.subarray(n * CROP_PARAMS, (n + 1) * CROP_PARAMS), i = n % B;
      const dst = want.subarray(n * C * out * out, (n + 1) * C * out * out);
      resizedCrop(img.subarray(i * C * S * S, (i + 1) * C * S * S), dst, C, S, S, { top: p[0]!, left: p[1]!, h: p[2]!, w: p[3]! }, p[4] === 1, out, out);
      for (let k = 0; k < dst.length; k++) dst[k] = dst[k]! * p[5]! + p[6]!;
    }
    expect(maxDiff(await deviceViews(Float32Array.from(params), 3, out), want)).toBeLessThan(1e-5);
  });
});

describe('resampleMatrix (position embedding on a smaller grid)', () => {
  it('rows are bilinear weights that sum to 1; same size is the identity', () => {
    const m = resampleMatrix(7, 3);
    for (let i = 0; i < 3; i++) expect(Array.from(m.subarray(i * 7, i * 7 + 7)).reduce((a, b) => a + b)).toBeCloseTo(1, 12);
    // output 0 of 3 from 7 samples at (0.5·7/3 − 0.5) = 0.6667: weights 1/3 at 0, 2/3 at 1
    expect(m[0]).toBeCloseTo(1 / 3, 12);
    expect(m[1]).toBeCloseTo(2 / 3, 12);
    expect(Array.from(resampleMatrix(4, 4))).toEqual([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
  });
});

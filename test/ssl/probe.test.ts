/**
 * @file Feature evaluation (models/ssl/probe.ts) on the CPU interpreter: the logistic-regression probe
 * separates separable classes (test accuracy 1) and stays at chance on random labels (it scores the
 * held-out split, not the training one); the in-program top-k kNN gives exactly the accuracy of a
 * brute-force host kNN with the same weighting.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { type FeatureSet, knnAccuracy, linearProbe } from '../../models/ssl/probe.ts';
import { mulberry32 } from '../../runtime/prng.ts';

function blobs(n: number, d: number, classes: number, seed: number, spread: number, randomLabels = false): FeatureSet {
  const r = mulberry32(seed);
  const centers = Array.from({ length: classes }, (_, c) => Array.from({ length: d }, (_, k) => (k === c % d ? 3 : 0) + (c >= d ? -3 : 0)));
  const x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % classes;
    y[i] = randomLabels ? Math.floor(r() * classes) : c;
    for (let k = 0; k < d; k++) x[i * d + k] = centers[c]![k]! + spread * (r() + r() + r() - 1.5) + 5; // offset: the probe standardizes
  }
  return { x, y, n, d };
}

describe('linear probe', () => {
  it('reaches 100% on separable classes and chance on random labels', async () => {
    const sep = await linearProbe(cpuBackend, blobs(240, 5, 4, 1, 0.5), blobs(80, 5, 4, 2, 0.5), 4, { epochs: 20 });
    expect(sep.testAccuracy).toBe(1);
    // 64 items in 40 dims: random labels can be memorized (train ~100%) but not predicted (test ~ chance)
    const rnd = await linearProbe(cpuBackend, blobs(64, 40, 4, 3, 2, true), blobs(400, 40, 4, 4, 2, true), 4, { epochs: 60, lr: 0.05 });
    expect(rnd.trainAccuracy).toBeGreaterThan(0.9);
    expect(rnd.testAccuracy).toBeLessThan(0.4); // chance 0.25; 400 test items: sd 0.022
  }, 60_000);
});

describe('kNN', () => {
  it('equals a brute-force weighted kNN on the host', async () => {
    const train = blobs(60, 4, 3, 5, 4), test = blobs(25, 4, 3, 6, 4);
    const k = 5, T = 0.07;
    const norm = (s: FeatureSet) => Array.from({ length: s.n }, (_, i) => {
      const v = Array.from(s.x.subarray(i * s.d, (i + 1) * s.d));
      const l = Math.sqrt(v.reduce((a, b) => a + b * b, 0));
      return v.map((q) => q / l);
    });
    const tr = norm(train), te = norm(test);
    let correct = 0;
    te.forEach((q, i) => {
      const sims = tr.map((t, j) => [t.reduce((a, b, c) => a + b * q[c]!, 0), j] as const).sort((a, b) => b[0] - a[0]).slice(0, k);
      const votes = [0, 0, 0];
      for (const [s, j] of sims) votes[train.y[j]!]! += Math.exp(s / T);
      if (votes.indexOf(Math.max(...votes)) === test.y[i]) correct++;
    });
    const want = correct / test.n;
    expect(want).toBeGreaterThan(0.34); // the data is not degenerate
    expect(want).toBeLessThan(1);
    expect(await knnAccuracy(cpuBackend, train, test, 3, { k, queryBatch: 10 })).toBeCloseTo(want, 12);
  }, 60_000);
});

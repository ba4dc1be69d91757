/**
 * @file Feature evaluation (models/ssl/probe.ts) on the CPU interpreter: the logistic-regression probe
 * separates separable classes (test accuracy 1) and stays at chance on random labels (it scores the
 * held-out split, not the training one); the in-program top-k kNN gives exactly the accuracy of a
 * brute-force host kNN with the same weighting; the tuned probe picks its weight decay on held-out
 * train rows only (the test labels cannot change the choice) and then equals the plain probe at that decay.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { type FeatureSet, featureRows, knnAccuracy, linearProbe, tunedLinearProbe } from '../../models/ssl/probe.ts';
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

describe('tuned linear probe', () => {
  it('chooses the weight decay on held-out train rows, not on the test split', async () => {
    // overlapping classes in 30 dims, few rows: the decays give different held-out accuracies
    const train = blobs(96, 30, 4, 1, 6), test = blobs(80, 30, 4, 2, 6), shuffled = blobs(80, 30, 4, 2, 6, true);
    const wds = [1e-4, 3, 30];
    const o = { epochs: 8, lr: 0.05, weightDecays: wds, valFraction: 0.25 };
    const r = await tunedLinearProbe(cpuBackend, train, test, 4, o);
    // each candidate: trained on the first 72 rows, scored on the last 24
    const fit = featureRows(train, 0, 72), held = featureRows(train, 72, 96);
    const want = [];
    for (const wd of wds) want.push({ weightDecay: wd, accuracy: (await linearProbe(cpuBackend, fit, held, 4, { epochs: 8, lr: 0.05, weightDecay: wd })).testAccuracy });
    expect(r.validation).toEqual(want);
    expect(new Set(want.map((c) => c.accuracy)).size).toBeGreaterThan(1); // the choice is not a tie
    const best = Math.max(...want.map((c) => c.accuracy));
    expect(r.weightDecay).toBe(want.find((c) => c.accuracy === best)!.weightDecay);
    // then retrained on all of train: the plain probe at that decay, bit for bit (same seed, same order)
    const plain = await linearProbe(cpuBackend, train, test, 4, { epochs: 8, lr: 0.05, weightDecay: r.weightDecay });
    expect(r.testAccuracy).toBe(plain.testAccuracy);
    expect(r.finalLoss).toBe(plain.finalLoss);
    // the test labels play no part in the choice
    const r2 = await tunedLinearProbe(cpuBackend, train, shuffled, 4, o);
    expect(r2.validation).toEqual(r.validation);
    expect(r2.weightDecay).toBe(r.weightDecay);
  }, 120_000);
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

/**
 * The first real training job, short: an MLP on Fashion-MNIST (Debian package dataset-fashion-mnist,
 * which .ci/run installs) on the CPU backend. The loss must fall and test accuracy must be far above
 * chance (10%). The full run (`npx kiln train fashion-mlp`) reaches >= 85%; see bench/RESULTS.md.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runFashionMlp } from '../../cli/jobs/fashionMlp.ts';
import { loadCheckpoint } from '../../runtime/checkpoint.ts';

describe('Fashion-MNIST MLP on the CPU backend', () => {
  it('trains: loss falls, test accuracy far above chance, checkpoint written and resumable', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'kiln-mlp-')), 'ck');
    const lines: string[] = [];
    const r = await runFashionMlp({
      backend: cpuBackend, epochs: 1, batch: 64, hidden: [32], lr: 3e-3, weightDecay: 1e-4, seed: 1, maxSteps: 150,
      checkpointDir: dir, log: (s) => lines.push(s), logEvery: 50,
    });
    expect(r.steps).toBe(150);
    expect(r.firstLoss).toBeGreaterThan(1.8); // ~ln(10) at initialization
    expect(r.lastLoss).toBeLessThan(0.9);
    expect(r.testAccuracy).toBeGreaterThan(0.7);
    expect(lines.some((l) => l.includes('step 100/150'))).toBe(true);
    const ck = loadCheckpoint(dir);
    expect(ck.meta.step).toBe('150');
    expect([...ck.model.keys()]).toEqual(['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias'].sort());
    expect(ck.trainState.get('optim.step')!.data[0]).toBe(150);
    // resuming continues from the saved step
    const r2 = await runFashionMlp({
      backend: cpuBackend, epochs: 1, batch: 64, hidden: [32], lr: 3e-3, weightDecay: 1e-4, seed: 1, maxSteps: 170,
      checkpointDir: dir, resume: true, log: (s) => lines.push(s), logEvery: 10,
    });
    expect(r2.steps).toBe(170);
    expect(lines.some((l) => l.includes('resumed') && l.includes('step 150'))).toBe(true);
    expect(r2.testAccuracy).toBeGreaterThan(0.7);
  });
});

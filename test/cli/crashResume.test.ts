/**
 * Crash safety of `kiln train`: a training process is killed with SIGKILL at random moments (with a
 * checkpoint every 2 steps, a kill lands during a step, between steps, or during a checkpoint write),
 * then resumed with --resume until it finishes. (test/runtime/trainResume.test.ts adds the
 * deterministic cases: what a save killed half-way leaves behind, and corrupt files.) After
 * every kill: the newest checkpoint that loads is complete (its manifest verifies: a half-written
 * file is never read), and at most the steps since that checkpoint are lost (≤ the checkpoint
 * interval). At the end, the losses in metrics.jsonl equal those of an uninterrupted run, bit for bit.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadLatestCheckpoint } from '../../runtime/checkpoints.ts';
import { kiln, spawnKiln } from '../support/kilnCli.ts';
import { mulberry32 } from '../../runtime/prng.ts';

const STEPS = 30, EVERY = 2;
// The example model file (examples/my-model.ts) under this job: small, so a step takes ~0.1 s on the CPU.
const job = {
  name: 'crash-test', data: { kind: 'fashion_mnist', limit: 512, normalize: { mean: 0.286, std: 0.353 } },
  schedule: { kind: 'warmup_cosine', lr: 3e-3, warmup: 4 }, batchSize: 16, steps: STEPS, backend: 'cpu',
  intervals: { log: 1000, checkpoint: EVERY, plot: 1000 }, keepCheckpoints: 2, seed: 3,
};
const MODEL = './examples/my-model.ts';

function metrics(dir: string): Array<{ step: number; loss: number }> {
  const p = join(dir, 'metrics.jsonl');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => { try { return [JSON.parse(l)]; } catch { return []; } });
}

function runUntilKilled(args: string[], dir: string, killAfterMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawnKiln(args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', stdout = '';
    p.stderr!.on('data', (d) => (stderr += d));
    p.stdout!.on('data', (d) => (stdout += d));
    // Start the clock when this process has trained a step (a metrics line past the checkpoint it
    // resumed from), so the kills land inside the training loop.
    const saved = loadLatestCheckpoint(join(dir, 'checkpoints'))?.state.step ?? 0;
    const started = Date.now();
    const poll = setInterval(() => {
      if ((stdout.includes('\nmodel: ') && (metrics(dir).at(-1)?.step ?? 0) > saved) || Date.now() - started > 120_000) {
        clearInterval(poll);
        setTimeout(() => p.kill('SIGKILL'), killAfterMs);
      }
    }, 10);
    p.on('exit', (code, signal) => {
      clearInterval(poll);
      resolve({ code, signal, stderr });
    });
  });
}

describe('kiln train survives SIGKILL', () => {
  it('resume after random kills loses at most the steps since the last checkpoint and ends with the uninterrupted losses', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kiln-crash-'));
    const jobFile = join(root, 'job.json');
    writeFileSync(jobFile, JSON.stringify(job));
    const ref = kiln(['train', MODEL, '--job', jobFile, '--out', join(root, 'ref')]);
    expect(ref.code, ref.stderr).toBe(0);
    const want = metrics(join(root, 'ref')).map((m) => m.loss);
    expect(want).toHaveLength(STEPS);

    const dir = join(root, 'run');
    const rng = mulberry32(Date.now() >>> 0);
    let kills = 0;
    // Up to 6 kills, each 0-maxDelay ms after the process has trained a step, then one resume that runs to
    // the end. A run that ends before its first kill (a fast machine: 30 steps can take well under a
    // second since the CPU interpreter's fast paths) starts again from scratch with a third of the delay.
    let maxDelay = 400;
    for (let attempt = 0; attempt < 9 && kills < 6; attempt++) {
      const r = await runUntilKilled(['train', MODEL, '--job', jobFile, '--out', dir, '--resume'], dir, Math.floor(rng() * maxDelay));
      if (r.code === 0 && kills > 0) break;
      if (r.code === 0) {
        rmSync(dir, { recursive: true, force: true });
        maxDelay /= 3;
        continue;
      }
      expect(r.signal, r.stderr).toBe('SIGKILL');
      kills++;
      const logged = metrics(dir).at(-1)?.step ?? 0;
      const ck = loadLatestCheckpoint(join(dir, 'checkpoints'), (w) => { throw new Error(`a checkpoint needed refusing after a kill: ${w}`); });
      const saved = ck?.state.step ?? 0;
      expect(logged - saved, `killed at logged step ${logged}, newest checkpoint ${saved}`).toBeLessThanOrEqual(EVERY);
    }
    expect(kills).toBeGreaterThan(0);
    if ((metrics(dir).at(-1)?.step ?? 0) < STEPS) {
      const last = kiln(['train', MODEL, '--job', jobFile, '--out', dir, '--resume']);
      expect(last.code, last.stderr).toBe(0);
    }
    const got = metrics(dir);
    expect(got.map((m) => m.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    for (let i = 0; i < STEPS; i++) expect(Object.is(got[i]!.loss, want[i]), `step ${i + 1}`).toBe(true);
  }, 600_000);
});

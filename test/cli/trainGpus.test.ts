/**
 * `kiln train JOB --gpus 2 --backend cpu`: the launcher (runtime/parallel/launch.ts) starts two ranks
 * of the same command over the TCP transport; rank 0 alone prints the log and writes the run directory
 * (metrics of every step, a checkpoint), the job's batch is the global one (8 per rank), exit 0. A
 * world size that contradicts --gpus is one line and exit 2.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STACK_LINE, kiln } from '../support/kilnCli.ts';

describe('kiln train --gpus', () => {
  it('runs two ranks on the cpu backend; rank 0 writes the run directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-gpus-'));
    const job = join(dir, 'job.json');
    writeFileSync(job, JSON.stringify({
      name: 'dp-cli', model: { kind: 'mlp', hidden: [16] }, data: { kind: 'fashion_mnist', limit: 128 },
      optimizer: { kind: 'sgd', momentum: 0.9 }, schedule: { kind: 'constant', lr: 0.05 }, batchSize: 16, steps: 5, seed: 1,
    }));
    const r = kiln(['train', job, '--gpus', '2', '--backend', 'cpu', '--out', join(dir, 'run')], {}, 120_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/data parallel: rank 0 of 2, host all-reduce over tcp/);
    expect(r.stdout).toMatch(/5 steps of 16 \(8 on each of 2 ranks\)/);
    expect(r.stdout.match(/resolved config/g)).toHaveLength(1); // only rank 0 prints
    const lines = readFileSync(join(dir, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4, 5]);
    expect(existsSync(join(dir, 'run', 'checkpoints', 'step-00000005', 'model.safetensors'))).toBe(true);
  }, 120_000);

  it('a world size that contradicts --gpus is one line, exit 2', () => {
    const r = kiln(['train', 'fashion-mlp', '--gpus', '2', '--backend', 'cpu'], { KILN_WORLD_SIZE: '3', KILN_RANK: '0', KILN_RENDEZVOUS: '127.0.0.1:1' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^kiln train: world size mismatch: --gpus 2 but KILN_WORLD_SIZE=3/);
    expect(r.stderr).not.toMatch(STACK_LINE);
  });
});

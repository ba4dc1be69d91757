/**
 * @file The SSL encoder's commands as a user types them (CPU interpreter, tiny sizes): `kiln train
 * ssl-encoder` writes a checkpoint whose student and EMA teacher differ (the teacher is updated by the
 * program, not the optimizer) and evaluates it at the end; `kiln eval probe` on the run (student,
 * teacher, token map) and on raw pixels prints one JSON line with accuracies in [0, 1] (and, given a
 * list of weight decays, the held-out accuracy of each);
 * user errors exit 2; `--time-limit` stops a run early with its checkpoint.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadLatestCheckpoint } from '../../runtime/checkpoints.ts';
import { kiln } from '../support/kilnCli.ts';

const tiny = ['--backend', 'cpu', '--set', 'model.dim=16', '--set', 'model.depth=1', '--set', 'model.heads=2', '--set', 'model.prototypes=32', '--set', 'model.localViews=1',
  '--steps', '3', '--batch', '8', '--limit', '64', '--set', 'model.probe={"epochs":2,"knn":true,"trainLimit":64,"testLimit":32}'];
const dir = mkdtempSync(join(tmpdir(), 'kiln-ssl-'));
const run = join(dir, 'ssl');

describe('kiln train ssl-encoder / kiln eval probe', () => {
  let trained: ReturnType<typeof kiln>;
  beforeAll(() => {
    trained = kiln(['train', 'ssl-encoder', ...tiny, '--out', run]);
  }, 300_000);

  it('trains, checkpoints the student and its EMA teacher, and evaluates at the end', () => {
    expect(trained.code, trained.stderr).toBe(0);
    expect(trained.stdout).toMatch(/SSL encoder evaluation \(teacher, 16-d mean-pooled features.*\): linear probe [\d.]+% test .*kNN [\d.]+%/);
    const ck = loadLatestCheckpoint(join(run, 'checkpoints'), () => {})!;
    expect(ck.state.step).toBe(3);
    const s = ck.checkpoint.model.get('encoder.pos_embed')!.data, t = ck.checkpoint.ema.get('encoder.pos_embed')!.data;
    expect(Array.from(t)).not.toEqual(Array.from(s));
    expect(ck.checkpoint.trainState.has('dino.center')).toBe(true);
  });

  it('eval probe: student, teacher, token map, raw pixels', () => {
    for (const extra of [[], ['--teacher'], ['--features', 'tokens', '--no-knn'], ['--features', 'last4', '--no-knn']]) {
      const r = kiln(['eval', 'probe', '--backend', 'cpu', '--encoder', run, ...extra, '--train-limit', '64', '--test-limit', '32', '--epochs', '2', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      expect(j.linear_probe).toBeGreaterThanOrEqual(0);
      expect(j.linear_probe).toBeLessThanOrEqual(1);
      expect(j.features).toBe(extra[1] === 'tokens' ? 49 * 16 : 16); // last4 of a depth-1 encoder: its one block
      expect(j.space).toMatch(extra[0] === '--teacher' ? /teacher/ : /student/);
    }
    const p = kiln(['eval', 'probe', '--backend', 'cpu', '--pixels', '--train-limit', '256', '--test-limit', '64', '--epochs', '3', '--weight-decay', '0.0001,0.5', '--json']);
    expect(p.code, p.stderr).toBe(0);
    const pj = JSON.parse(p.stdout.trim());
    expect(pj.linear_probe).toBeGreaterThan(0.5); // pixels separate Fashion-MNIST well even from 256 images
    expect(pj.validation.map((c: { weightDecay: number }) => c.weightDecay)).toEqual([0.0001, 0.5]); // chosen on held-out train rows
    expect([0.0001, 0.5]).toContain(pj.weight_decay);
  }, 300_000);

  it('user errors exit 2 with one line', () => {
    const none = kiln(['eval', 'probe', '--backend', 'cpu']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/give --encoder <run dir> or --pixels/);
    const notSsl = kiln(['eval', 'probe', '--backend', 'cpu', '--encoder', dir]);
    expect(notSsl.code).toBe(2);
    expect(notSsl.stderr).toMatch(/neither an SSL checkpoint/);
    const badWd = kiln(['eval', 'probe', '--backend', 'cpu', '--pixels', '--weight-decay', '0.1,-1']);
    expect(badWd.code).toBe(2);
    expect(badWd.stderr).toMatch(/'-1' is not a non-negative weight decay/);
  });

  it('--time-limit stops early, saves the checkpoint and still runs the final evaluation', () => {
    const out = join(dir, 'limited');
    const r = kiln(['train', 'ssl-encoder', ...tiny, '--steps', '500', '--time-limit', '1', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const m = /time limit of 1 s reached after step (\d+) of 500/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(500);
    expect(existsSync(join(out, 'checkpoints', `step-${m![1]!.padStart(8, '0')}`))).toBe(true);
    expect(r.stdout).toMatch(/SSL encoder evaluation/);
  }, 300_000);
});

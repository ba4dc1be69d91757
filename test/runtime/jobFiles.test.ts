/**
 * Job files: every shipped job (jobs/*.json) validates and names its model kind; errors name the file,
 * the field, the expected type and the value; defaults are filled in.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseJob } from '../../cli/jobs/schema.ts';

const KINDS = ['mlp', 'ssl_encoder', 'fae_stage_ia', 'fae_stage_ib', 'fae_pixel_finetune', 'lightningdit', 'tarflow'];

describe('job files', () => {
  const files = readdirSync('jobs').filter((f) => f.endsWith('.json'));
  it('one shipped job per model of the pipeline', () => {
    const kinds = files.map((f) => parseJob(JSON.parse(readFileSync(`jobs/${f}`, 'utf8')), f).model.kind);
    expect(new Set(kinds)).toEqual(new Set(KINDS));
  });
  for (const f of files) it(`${f} validates, with its name matching the file`, () => {
    const j = parseJob(JSON.parse(readFileSync(`jobs/${f}`, 'utf8')), `jobs/${f}`);
    expect(`${j.name}.json`).toBe(f);
    expect((j.steps === null) !== (j.epochs === null)).toBe(true);
  });

  const base = { name: 'x', model: { kind: 'mlp' }, data: { kind: 'fashion_mnist' }, schedule: { lr: 1e-3 }, batchSize: 8, steps: 10 };
  it('fills defaults', () => {
    const j = parseJob(base, 'x.json');
    expect(j.model).toEqual({ kind: 'mlp', hidden: [256, 128] });
    expect(j.optimizer).toEqual({ kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
    expect(j.intervals).toEqual({ log: 50, checkpoint: 500, plot: 100, eval: null, sample: null });
    expect([j.precision, j.backend, j.seed, j.keepCheckpoints, j.ema]).toEqual([null, 'auto', 0, 3, null]); // precision null: the backend's
  });
  const bad: Array<[string, unknown, RegExp]> = [
    ['unknown top-level field', { ...base, epochz: 3 }, /^x\.json: unknown field 'epochz'/],
    ['unknown nested field', { ...base, schedule: { lr: 1, warmpu: 3 } }, /^x\.json: unknown field 'schedule.warmpu'/],
    ['wrong type', { ...base, seed: '1' }, /^x\.json: field 'seed': expected number, got the string "1"$/],
    ['wrong element type', { ...base, model: { kind: 'mlp', hidden: [8, 'x'] } }, /^x\.json: field 'model.hidden.1': expected number/],
    ['unknown model kind', { ...base, model: { kind: 'resnet' } }, /^x\.json: field 'model.kind': expected one of 'mlp' \| .*got the string "resnet"/],
    ['missing field', { ...base, batchSize: undefined }, /^x\.json: field 'batchSize': missing \(expected number\)/],
    ['out of range', { ...base, batchSize: 0 }, /^x\.json: field 'batchSize': .*got number 0/],
    ['both steps and epochs', { ...base, epochs: 2 }, /^x\.json: field 'steps': give exactly one of steps and epochs/],
    ['bad enum', { ...base, precision: 'f8' }, /^x\.json: field 'precision': .*got the string "f8"/],
  ];
  for (const [what, raw, msg] of bad) it(`rejects: ${what}`, () => expect(() => parseJob(raw, 'x.json')).toThrow(msg));
});

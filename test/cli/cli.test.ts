/**
 * The `kiln` command as a user runs it (a child process): help for every command, exit codes and
 * one-line messages for user errors, a user's model file compiled and trained, a pretrained DINOv2
 * directory compiled at another image size, golden checks.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STACK_LINE, kiln } from '../support/kilnCli.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'kiln-cli-'));

describe('kiln --help', () => {
  for (const args of [['--help'], ['compile', '--help'], ['train', '--help'], ['ir', '--help'], ['golden', 'check', '--help'], ['bench', '--help'], ['demo', '--help']]) {
    it(`kiln ${args.join(' ')} exits 0, lists its options with defaults, no stack trace`, () => {
      const r = kiln(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Usage: kiln/);
      expect(r.stdout + r.stderr).not.toMatch(STACK_LINE);
      if (args[0] === '--help') for (const c of ['compile', 'train', 'golden', 'bench', 'demo', 'ir']) expect(r.stdout).toContain(c);
      // every option line carries its default
      const optionLines = r.stdout.split('\n\n').find((b) => b.startsWith('Options:'))!.split(/\n(?=  -)/).slice(1).filter((l) => !l.includes('--help'));
      for (const l of optionLines) expect(l.replace(/\s+/g, ' '), l).toMatch(/default|choices/);
    });
  }
});

describe('kiln user errors: one line, exit 2, no stack trace', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown flag', ['compile', 'mlp', '--bogus'], /unknown option '--bogus'/],
    ['bad value', ['compile', 'mlp', '--batch', 'many'], /'many' is not a non-negative integer/],
    ['unknown program', ['compile', 'nope'], /unknown program 'nope'/],
    ['missing model file', ['compile', './no-such-model.ts'], /no-such-model\.ts: no such model file/],
    ['missing job', ['train', 'no-such-job'], /no job 'no-such-job'/],
    ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [what, args, msg] of cases)
    it(what, () => {
      const r = kiln(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(STACK_LINE);
    });

  it('a bad job field names the file, the field, the expected type and the value', () => {
    const d = tmp();
    const file = join(d, 'bad.json');
    const job = JSON.parse(readFileSync('jobs/fashion-mlp.json', 'utf8'));
    writeFileSync(file, JSON.stringify({ ...job, batchSize: 'lots' }));
    let r = kiln(['train', file]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`kiln train: ${file}: field 'batchSize': expected number, got the string "lots"`);
    writeFileSync(file, JSON.stringify({ ...job, optimizer: { ...job.optimizer, momentum: 0.9 } }));
    r = kiln(['train', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`${file}: unknown field 'optimizer.momentum'`));
    writeFileSync(file, '{ "name": ');
    r = kiln(['train', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not valid JSON/);
  });

  it('KILN_DEBUG=1 adds the stack trace', () => {
    const r = kiln(['compile', 'nope'], { KILN_DEBUG: '1' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(STACK_LINE);
  });

  it('a job whose model has no training program yet says so (exit 3)', () => {
    const r = kiln(['train', 'ssl-encoder', '--out', join(tmp(), 'run'), '--limit', '64', '--batch', '8', '--set', 'model.method=mim']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/not implemented yet: model.method 'mim'/);
  });
});

describe('a user model file', () => {
  it('kiln compile ./examples/my-model.ts --report prints the kernel report', () => {
    const r = kiln(['compile', './examples/my-model.ts', '--report', '--train', '--batch', '4']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/total/);
    expect(r.stdout).toMatch(/memory: parameters [\d.]+k?B, state [\d.]+k?B, data inputs .*, arena [\d.]+[kMG]?B; total/);
    expect(r.stdout).toMatch(/state updates: \d+ written in place, 0 copied/);
  });

  it('kiln train ./examples/my-model.ts trains a few steps: resolved config printed and written, metrics, loss plot, checkpoint', () => {
    const out = join(tmp(), 'run');
    const r = kiln(['train', './examples/my-model.ts', '--steps', '6', '--batch', '8', '--limit', '256', '--log-every', '2', '--out', out, '--backend', 'cpu']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resolved config:/);
    expect(r.stdout).toMatch(/backend: cpu \(as asked\)/);
    expect(r.stdout).toMatch(/step 6\/6 {2}loss \d/);
    expect(r.stdout).toMatch(/data [\d.]+ ms vs step [\d.]+ ms per step/);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config.model).toEqual({ kind: 'user', file: './examples/my-model.ts' });
    expect(config.batchSize).toBe(8);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(metrics[0].loss).toBeGreaterThan(1.5); // ≈ ln 10 at initialization
    expect(existsSync(join(out, 'loss.png'))).toBe(true);
    expect(existsSync(join(out, 'checkpoints', 'step-00000006', 'manifest.json'))).toBe(true);
  });
});

describe('kiln compile dinov2 --checkpoint DIR --image-size H,W', () => {
  it('loads an HF-format directory and compiles at another image size', () => {
    const d = join(tmp(), 'dinov2-tiny');
    mkdirSync(d);
    copyFileSync('golden/data/dinov2/tiny.config.json', join(d, 'config.json'));
    copyFileSync('golden/data/dinov2/tiny.safetensors', join(d, 'model.safetensors'));
    const r = kiln(['compile', 'dinov2', '--checkpoint', d, '--image-size', '56,70', '--batch', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/dinov2, 2 layers, width 32, \d+ tensors; 56x70 px \(position embeddings interpolated from 42x42\)/);
    const bad = kiln(['compile', 'dinov2', '--checkpoint', join(d, 'nope')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no such checkpoint directory/);
  });
});

describe('kiln golden', () => {
  it('check runs the goldens matching a name and prints per-output errors against tolerances', () => {
    const r = kiln(['golden', 'check', 'nn/linear', '--backend', 'cpu']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ok {3}nn\/linear_bias out: max err [\d.e+-]+ \(tolerance [\d.e+-]+\)/);
    expect(r.stdout).toMatch(/2 of 2 goldens pass/);
  });
  it('update without torch says how to install it (exit 2)', () => {
    const r = kiln(['golden', 'update', '--python', '/nonexistent/python3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pip install torch/);
  });
});

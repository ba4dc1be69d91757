/**
 * `kiln sample --help` and `kiln eval <metric> --help` as a user runs them: exit 0, every option with
 * its default (or marked required), listed by `kiln --help`; a bad flag value is one line, exit 2.
 */
import { describe, expect, it } from 'vitest';
import { STACK_LINE, kiln } from '../support/kilnCli.ts';

describe('kiln sample / eval --help', () => {
  for (const args of [['sample', '--help'], ['eval', 'fd', '--help'], ['eval', 'fid', '--help'], ['eval', 'accuracy', '--help'], ['eval', 'recon', '--help'], ['eval', 'bpd', '--help']]) {
    it(`kiln ${args.join(' ')} lists every option with its default`, () => {
      const r = kiln(args);
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).not.toMatch(STACK_LINE);
      const optionLines = r.stdout.split('\n\n').find((b) => b.startsWith('Options:'))!.split(/\n(?=  -)/).slice(1).filter((l) => !l.includes('--help'));
      expect(optionLines.length).toBeGreaterThan(3);
      for (const l of optionLines) expect(l.replace(/\s+/g, ' '), l).toMatch(/default|choices|required/);
    });
  }
  it('kiln --help lists sample and eval; a bad value is one line and exit 2', () => {
    const h = kiln(['--help']);
    expect(h.stdout).toMatch(/\n  sample /);
    expect(h.stdout).toMatch(/\n  eval /);
    const r = kiln(['sample', 'x.safetensors', '--method', 'rk4']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

/**
 * Console behaviour of training and the CLI, in process: the progress bar on a terminal (redrawn in
 * place with step, rate, loss, data vs step time and ETA; a log line breaks it cleanly) and plain lines
 * every N steps otherwise; exit codes (a user error 2, an internal error 1 naming itself as such, a
 * feature not implemented 3) with one line each; `--backend auto` says what it picked and why.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT_INTERNAL, EXIT_NOT_IMPLEMENTED, EXIT_USER, reportError } from '../../cli/errors.ts';
import { NotImplementedError } from '../../cli/jobs/tasks.ts';
import { KilnError } from '../../ir/errors.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { Progress } from '../../runtime/train/progress.ts';

describe('progress', () => {
  it('on a terminal: one bar line redrawn with \\r, the stats, a newline at the end; a log line breaks the bar', () => {
    const writes: string[] = [], logs: string[] = [];
    const p = new Progress(0, { tty: true, every: 100, write: (s) => writes.push(s), log: (l) => logs.push(l) });
    p.update({ step: 1, total: 4, loss: 2.5, dataMs: 0.5, stepMs: 10 });
    p.update({ step: 2, total: 4, loss: 2.25, dataMs: 1.5, stepMs: 30 });
    expect(writes).toHaveLength(2);
    expect(writes[1]).toMatch(/^\r\[#{12}\.{12}\] step 2\/4 {2}loss 2\.2500 {2}[\d.]+ step\/s {2}data 1\.0 ms \/ step 20\.0 ms {2}ETA \S+\x1b\[K$/);
    p.log('eval at step 2: x 1');
    expect(writes.at(-1)).toBe('\n'); // the bar's line is ended before the log line
    expect(logs).toEqual(['eval at step 2: x 1']);
    p.update({ step: 4, total: 4, loss: 2, dataMs: 0, stepMs: 20 });
    expect(writes.at(-2)).toMatch(/^\r\[#{24}\] step 4\/4/);
    expect(writes.at(-1)).toBe('\n'); // the last step ends the bar
    expect(p.means).toEqual({ dataMs: 2 / 3, stepMs: 20 });
  });
  it('not on a terminal: a plain line every `every` steps and at the last step, no control characters', () => {
    const writes: string[] = [], logs: string[] = [];
    const p = new Progress(10, { tty: false, every: 3, write: (s) => writes.push(s), log: (l) => logs.push(l) });
    for (let s = 11; s <= 17; s++) p.update({ step: s, total: 17, loss: 1, dataMs: 0, stepMs: 1 });
    expect(writes).toEqual([]);
    expect(logs.map((l) => l.split('  ')[0])).toEqual(['step 12/17', 'step 15/17', 'step 17/17']);
    expect(logs.join('')).not.toMatch(/[\r\x1b]/);
  });
});

describe('exit codes', () => {
  afterEach(() => vi.restoreAllMocks());
  it('user error 2, internal error 1, not implemented 3: one line each, a stack trace only with KILN_DEBUG', () => {
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((s: string) => { lines.push(String(s)); });
    const debug = process.env.KILN_DEBUG;
    delete process.env.KILN_DEBUG;
    try {
      expect(reportError(new KilnError('jobs/x.json: field steps: expected number'), 'kiln train')).toBe(EXIT_USER);
      expect(reportError(new TypeError('x is undefined'), 'kiln train')).toBe(EXIT_INTERNAL);
      expect(reportError(new NotImplementedError('wgmma'), 'kiln bench')).toBe(EXIT_NOT_IMPLEMENTED);
      expect(lines).toEqual([
        'kiln train: jobs/x.json: field steps: expected number',
        'kiln train: internal error: TypeError: x is undefined (KILN_DEBUG=1 shows the stack trace)',
        'kiln bench: not implemented yet: wgmma',
      ]);
      process.env.KILN_DEBUG = '1';
      lines.length = 0;
      expect(reportError(new Error('boom'), 'kiln demo')).toBe(EXIT_INTERNAL);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toMatch(/^Error: boom\n\s+at /);
    } finally {
      if (debug === undefined) delete process.env.KILN_DEBUG; else process.env.KILN_DEBUG = debug;
    }
  });
});

describe('--backend', () => {
  it('auto picks a backend and says why; a named one is "as asked"; an unknown one is a user error listing the choices', async () => {
    const auto = await chooseBackend('auto');
    if (auto.backend.name === 'cuda') expect(auto.reason).toMatch(/^auto: a CUDA GPU is present \(.+\)$/);
    else if (auto.backend.name === 'wgsl') expect(auto.reason).toMatch(/^auto: no CUDA \(.+\); a WebGPU adapter is present$/);
    else {
      expect(auto.backend.name).toBe('cpu');
      expect(auto.reason).toMatch(/^auto: no CUDA \(.+\); no WebGPU \(.+\); using the CPU reference interpreter$/);
    }
    expect(await chooseBackend('kernel-cpu')).toMatchObject({ backend: { name: 'kernel-cpu' }, reason: 'as asked' });
    await expect(chooseBackend('tpu')).rejects.toThrow(/unknown backend 'tpu' \(expected one of auto, cpu, kernel-cpu, cuda, wgsl\)/);
  }, 60_000);
});

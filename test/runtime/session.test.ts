/**
 * Sessions keep program state resident between runs: only data goes in, only requested outputs
 * come out, and `next.` outputs update params and state.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { Module, Parameter, init, trace } from '../../compiler/dsl/index.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { Session, defaultResident } from '../../runtime/session.ts';

class Scale extends Module {
  w = new Parameter([2], init.ones);
}

describe('Session', () => {
  const m = new Scale();
  const fwd = trace('scale', (t) => {
    const x = t.input('x', [2]);
    const y = x.mul(m.w);
    return { loss: y.sub(1).square().sum(), y };
  }, { params: m });
  const step = trainStep(fwd, { loss: 'loss', metrics: ['y'], optimizer: { kind: 'sgd' }, ema: { decay: 0.5 } });

  it('initializes optimizer state to zero and EMA to the parameters', () => {
    const r = defaultResident(step, new Map([['w', hostTensor('f32', [2], [3, 4])]]));
    expect(Array.from(r.get('ema.w')!.data)).toEqual([3, 4]);
    expect(r.get('optim.step')!.data[0]).toBe(0);
    expect(() => defaultResident(step, new Map())).toThrow(/no initial value for parameter 'w'/);
  });

  it('updates parameters in place across runs and returns only what is fetched', async () => {
    const s = await Session.open(cpuBackend, step, new Map([['w', hostTensor('f32', [2], [1, 1])]]));
    const x = hostTensor('f32', [2], [2, 3]);
    const lr = hostTensor('f32', [], [0.1]);
    const out = await s.run({ x, lr });
    expect(Object.keys(out).sort()).toEqual(['loss', 'y']);
    expect(out.loss!.data[0]).toBeCloseTo(1 + 4, 6);
    // d loss / d w = 2 (x w − 1) x = [4, 12]; w ← w − 0.1 · g = [0.6, −0.2]
    const w = await s.read(['param']);
    const wv = w.get('w')!.data;
    expect(wv[0]).toBeCloseTo(0.6, 6);
    expect(wv[1]).toBeCloseTo(-0.2, 6);
    const st = await s.read(['state']);
    expect(st.get('optim.step')!.data[0]).toBe(1);
    expect(st.get('ema.w')!.data[0]).toBeCloseTo(0.8, 6);
    expect(st.get('ema.w')!.data[1]).toBeCloseTo(0.4, 6);
    const only = await s.run({ x, lr }, ['loss']);
    expect(Object.keys(only)).toEqual(['loss']);
    expect(only.loss!.data[0]).toBeCloseTo((2 * 0.6 - 1) ** 2 + (3 * -0.2 - 1) ** 2, 5);
  });

  it('rejects feeding resident inputs, unknown fetches, and wrongly shaped writes', async () => {
    const s = await Session.open(cpuBackend, step, new Map([['w', hostTensor('f32', [2], [1, 1])]]));
    const x = hostTensor('f32', [2], [2, 3]);
    const lr = hostTensor('f32', [], [0.1]);
    await expect(s.run({ x, lr, w: hostTensor('f32', [2], [0, 0]) })).rejects.toThrow(/'w' is resident/);
    await expect(s.run({ x, lr }, ['nope'])).rejects.toThrow(/no output 'nope'/);
    await expect(s.load(new Map([['w', hostTensor('f32', [3], [0, 0, 0])]]))).rejects.toThrow(/'w' expects f32\[2\], got f32\[3\]/);
    await expect(s.run({ lr })).rejects.toThrow(/input 'x'.*was not fed/);
  });
});

import { describe, expect, it } from 'vitest';
import { constantLr, makeSchedule, warmupCosine, warmupLinear } from '../../runtime/schedule.ts';

describe('learning-rate schedules', () => {
  it('constant', () => {
    expect([0, 5, 1e6].map(constantLr(3e-4))).toEqual([3e-4, 3e-4, 3e-4]);
  });
  it('warmup + cosine: linear ramp, lr at the end of warmup, half-way point, min at the end', () => {
    const s = warmupCosine(1, 10, 110, 0.1);
    expect(s(0)).toBeCloseTo(0.1, 12);
    expect(s(4)).toBeCloseTo(0.5, 12);
    expect(s(9)).toBeCloseTo(1, 12);
    expect(s(10)).toBeCloseTo(1, 12);
    expect(s(60)).toBeCloseTo(0.1 + 0.45 * (1 + Math.cos(Math.PI * 0.5)), 12);
    expect(s(110)).toBeCloseTo(0.1, 12);
    expect(s(500)).toBeCloseTo(0.1, 12);
  });
  it('warmup + linear', () => {
    const s = warmupLinear(2, 4, 14);
    expect([0, 3, 4, 9, 14, 20].map(s)).toEqual([0.5, 2, 2, 1, 0, 0]);
  });
  it('rejects inconsistent settings', () => {
    expect(() => warmupCosine(1, 20, 10)).toThrow(/warmup \(20\) <= total \(10\)/);
    expect(makeSchedule({ kind: 'warmup_linear', lr: 1, warmup: 0, total: 2 })(1)).toBe(0.5);
  });
});

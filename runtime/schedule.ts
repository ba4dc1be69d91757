/**
 * @file Learning-rate schedules, evaluated on the host and fed to the training step as its `lr`
 * input each step (step counts from 0).
 */
import { KilnError } from '../ir/errors.ts';

export type Schedule = (step: number) => number;

export function constantLr(lr: number): Schedule {
  return () => lr;
}

/** Linear warmup from 0 to `lr` over `warmup` steps, then cosine decay to `minLr` at `total`. */
export function warmupCosine(lr: number, warmup: number, total: number, minLr = 0): Schedule {
  if (total <= 0 || warmup < 0 || warmup > total) throw new KilnError(`warmupCosine: need 0 <= warmup (${warmup}) <= total (${total}), total > 0`);
  return (step) => {
    if (step < warmup) return (lr * (step + 1)) / warmup;
    const t = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * t));
  };
}

/** Linear warmup from 0 to `lr` over `warmup` steps, then linear decay to `minLr` at `total`. */
export function warmupLinear(lr: number, warmup: number, total: number, minLr = 0): Schedule {
  if (total <= 0 || warmup < 0 || warmup > total) throw new KilnError(`warmupLinear: need 0 <= warmup (${warmup}) <= total (${total}), total > 0`);
  return (step) => {
    if (step < warmup) return (lr * (step + 1)) / warmup;
    const t = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    return lr + (minLr - lr) * t;
  };
}

export type ScheduleSpec =
  | { kind: 'constant'; lr: number }
  | { kind: 'warmup_cosine'; lr: number; warmup: number; total: number; minLr?: number }
  | { kind: 'warmup_linear'; lr: number; warmup: number; total: number; minLr?: number };

export function makeSchedule(s: ScheduleSpec): Schedule {
  switch (s.kind) {
    case 'constant': return constantLr(s.lr);
    case 'warmup_cosine': return warmupCosine(s.lr, s.warmup, s.total, s.minLr);
    case 'warmup_linear': return warmupLinear(s.lr, s.warmup, s.total, s.minLr);
  }
}

/**
 * @file The Euler ODE loop of the flow samplers, over any compiled one-step program: for each grid
 * interval [t_i, t_{i+1}], the guidance scale at t_i picks the guided step (scale fed as `cfg_scale`) or
 * the conditional one (scale undefined), and the step maps x to x + (t_{i+1} − t_i)·v(x, t_i | y).
 * models/flowMatching.ts's FlowSampler (Node, any backend) and the browser runtime (web/runtime, plan
 * executables on navigator.gpu) both run exactly this loop, so their samples agree for the same seed.
 */
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { type GuidanceSchedule, guidanceScaleAt } from './guidance.ts';

/** Feeds of one Euler step program (buildStepGraph kind 'euler'). */
export interface EulerStepFeeds {
  readonly x: HostTensor;
  readonly y: HostTensor;
  readonly t: HostTensor;
  readonly dt: HostTensor;
}

/** Run one step: the guided program with `cfg_scale` = scale, or the unguided one when scale is undefined. */
export type EulerStep = (feeds: EulerStepFeeds, scale: number | undefined) => Promise<HostTensor>;

/** x at the end of `grid` from z at its start; `onStep(i, n)` after step i of n. */
export async function eulerOde(z: HostTensor, y: HostTensor, grid: ArrayLike<number>, scaleAt: (t: number) => number | undefined, step: EulerStep, onStep?: (done: number, total: number) => void): Promise<HostTensor> {
  let x = z;
  const n = grid.length - 1;
  for (let i = 0; i < n; i++) {
    const t = grid[i]!;
    x = await step({ x, y, t: hostTensor('f32', [], [t]), dt: hostTensor('f32', [], [grid[i + 1]! - t]) }, scaleAt(t));
    onStep?.(i + 1, n);
  }
  return x;
}

/**
 * The per-step scale of a guidance schedule as the Node sampler applies it (generate.ts → FlowSampler):
 * the schedule's scale at t, conditional (undefined) where it gives none, and scale 1 run as the
 * conditional step (v_u + 1·(v_c − v_u) = v_c).
 */
export function eulerScaleAt(g: GuidanceSchedule): (t: number) => number | undefined {
  return (t) => {
    const s = guidanceScaleAt(g, t) ?? 1;
    return s === 1 ? undefined : s;
  };
}

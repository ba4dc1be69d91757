/**
 * @file Finite-difference gradient checking on the CPU backend in f64: compares grad()'s analytic
 * gradients with central differences of the same graph.
 */
import { mulberry32 } from '../../runtime/prng.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import type { Graph } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { numel } from '../../ir/shape.ts';

export interface GradCheckResult {
  /**
   * Per input: max_i |analytic_i − numeric_i| / max(max_i |numeric_i|, FD_FLOOR·|loss|, 1e-12): each
   * input's gradient is judged against its own size, floored (for gradients that are zero in exact
   * arithmetic) by what central differences can resolve, not by the other inputs' gradients. With
   * h = 1e-6 in f64 a difference quotient carries rounding noise of about eps·|loss|/h ≈ 2e-10·|loss|,
   * so FD_FLOOR = 1e-4 makes the 1e-6 bounds the tests use sit at that resolution. Worst over inputs.
   */
  relErr: number;
  worstInput: string;
  perInput: Record<string, number>;
}

/** The gradient floor per unit of |loss| (see GradCheckResult.relErr). */
export const FD_FLOOR = 1e-4;

function scalarLoss(g: Graph, feeds: Record<string, HostTensor>, loss: string): number {
  const out = runGraph(g, feeds, { precision: 'f64' })[loss]!;
  let s = 0;
  for (const v of out.data) s += v;
  return s;
}

/** Check d(loss)/d(wrt) of `g` at `feeds` (values are used in f64). */
export function gradCheck(
  g: Graph, feeds: Record<string, HostTensor>, loss: string, wrt: readonly string[],
  opts: { h?: number; /** Check at most this many elements per input (evenly spaced); default all. */ maxElements?: number } = {},
): GradCheckResult {
  const h = opts.h ?? 1e-6;
  const f64: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(feeds))
    f64[k] = t.data instanceof Float32Array ? { ...t, data: Float64Array.from(t.data) } : t;
  const gg = grad(g, { loss, wrt, outputs: [loss] });
  const floor = Math.max(FD_FLOOR * Math.abs(scalarLoss(g, f64, loss)), 1e-12);
  const analytic = runGraph(gg, f64, { precision: 'f64' });
  const perInput: Record<string, number> = {};
  let relErr = 0;
  let worstInput = '';
  for (const name of wrt) {
    const x = f64[name]!;
    const a = analytic[`grad.${name}`]!.data;
    const n = numel(x.shape);
    const stride = opts.maxElements && n > opts.maxElements ? n / opts.maxElements : 1;
    const picks = stride === 1 ? [...Array(n).keys()] : Array.from({ length: opts.maxElements! }, (_, k) => Math.floor(k * stride));
    const num = new Float64Array(n);
    for (const i of picks) {
      const orig = x.data[i]!;
      const step = h * Math.max(1, Math.abs(orig));
      x.data[i] = orig + step;
      const up = scalarLoss(g, f64, loss);
      x.data[i] = orig - step;
      const down = scalarLoss(g, f64, loss);
      x.data[i] = orig;
      num[i] = (up - down) / (2 * step);
    }
    let maxDiff = 0, maxRef = 0;
    for (const i of picks) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - num[i]!));
      maxRef = Math.max(maxRef, Math.abs(num[i]!));
    }
    const e = maxDiff / Math.max(maxRef, floor);
    perInput[name] = e;
    if (e >= relErr) {
      relErr = e;
      worstInput = name;
    }
  }
  return { relErr, worstInput, perInput };
}

/** Deterministic values in [lo, hi) for tests (mulberry32). */
export function randomValues(n: number, seed: number, lo = -1, hi = 1): number[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => lo + (hi - lo) * r());
}

export function randomTensor(shape: readonly number[], seed: number, lo = -1, hi = 1): HostTensor {
  return hostTensor('f32', shape, randomValues(numel(shape), seed, lo, hi), true);
}

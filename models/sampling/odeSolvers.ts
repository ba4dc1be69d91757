/**
 * @file Fixed-grid ODE solvers for dx/dt = v(x, t) on a time grid t_0 < … < t_n, on host vectors in f64:
 * Euler (first order) and Heun (explicit trapezoid, second order: predictor x̃ = x + h·v(x, t), corrector
 * x + h/2·(v(x, t) + v(x̃, t + h)); 2 evaluations per step). The velocity is any async function, e.g. a
 * compiled model (models/sampling/velocityField.ts) or a closed-form field in tests.
 */
export type VelocityFn = (x: Float64Array, t: number) => Promise<Float64Array>;

export type OdeMethod = 'euler' | 'heun';

export async function solveOde(method: OdeMethod, v: VelocityFn, x0: Float64Array, grid: ArrayLike<number>): Promise<Float64Array> {
  let x = Float64Array.from(x0);
  for (let i = 0; i + 1 < grid.length; i++) {
    const t = grid[i]!, h = grid[i + 1]! - t;
    const v0 = await v(x, t);
    const pred = new Float64Array(x.length);
    for (let j = 0; j < x.length; j++) pred[j] = x[j]! + h * v0[j]!;
    if (method === 'euler') {
      x = pred;
      continue;
    }
    const v1 = await v(pred, grid[i + 1]!);
    for (let j = 0; j < x.length; j++) pred[j] = x[j]! + 0.5 * h * (v0[j]! + v1[j]!);
    x = pred;
  }
  return x;
}

/** Model evaluations a solve takes on a grid of n points. */
export function odeEvaluations(method: OdeMethod, n: number): number {
  return (n - 1) * (method === 'heun' ? 2 : 1);
}

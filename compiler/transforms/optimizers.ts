/**
 * @file Optimizers as graph code: each one says which per-parameter state it keeps (with PyTorch's
 * state key names) and emits the update of one parameter with DSL tensors. Formulas follow
 * torch.optim (SGD with momentum and optional Nesterov; AdamW with decoupled weight decay and
 * bias correction, in PyTorch's operation order).
 */
import type { Tensor } from '../dsl/tensor.ts';

export interface SgdOptions {
  kind: 'sgd';
  momentum?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient (torch.optim.SGD weight_decay). */
  weightDecay?: number;
}
export interface AdamWOptions {
  kind: 'adamw';
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (torch.optim.AdamW default 0.01). */
  weightDecay?: number;
}
export type OptimizerOptions = SgdOptions | AdamWOptions;

export interface UpdateArgs {
  param: Tensor;
  grad: Tensor;
  /** Current value of each state slot, by slot name. */
  state: Record<string, Tensor>;
  lr: Tensor;
  /** The step number after this update (1 for the first step), as f32[]. */
  step: Tensor;
  /** Whether weight decay applies to this parameter. */
  decay: boolean;
}
export interface UpdateResult {
  param: Tensor;
  state: Record<string, Tensor>;
}

/** Per-parameter state slot names, as in torch.optim state dicts. */
export function stateSlots(o: OptimizerOptions): string[] {
  if (o.kind === 'adamw') return ['exp_avg', 'exp_avg_sq'];
  return (o.momentum ?? 0) > 0 ? ['momentum_buffer'] : [];
}

export function applyUpdate(o: OptimizerOptions, a: UpdateArgs): UpdateResult {
  return o.kind === 'adamw' ? adamw(o, a) : sgd(o, a);
}

function sgd(o: SgdOptions, { param, grad, state, lr, decay }: UpdateArgs): UpdateResult {
  const mu = o.momentum ?? 0;
  let g = grad;
  if (decay && (o.weightDecay ?? 0) > 0) g = g.add(param.mul(o.weightDecay!));
  if (mu === 0) return { param: param.sub(g.mul(lr)), state: {} };
  // The buffer starts at zero, so the first step gives buf = g as PyTorch's does (no dampening).
  const buf = state.momentum_buffer!.mul(mu).add(g);
  const dir = o.nesterov ? g.add(buf.mul(mu)) : buf;
  return { param: param.sub(dir.mul(lr)), state: { momentum_buffer: buf } };
}

function adamw(o: AdamWOptions, { param, grad, state, lr, step, decay }: UpdateArgs): UpdateResult {
  const [b1, b2, eps, wd] = [o.beta1 ?? 0.9, o.beta2 ?? 0.999, o.eps ?? 1e-8, o.weightDecay ?? 0.01];
  let p = param;
  if (decay && wd > 0) p = p.mul(lr.mul(wd).rsub(1));
  const m = state.exp_avg!, v = state.exp_avg_sq!;
  const m2 = m.add(grad.sub(m).mul(1 - b1)); // exp_avg.lerp_(grad, 1 - beta1)
  const v2 = v.mul(b2).add(grad.mul(grad).mul(1 - b2));
  const bc1 = step.scalar(b1).pow(step).rsub(1);
  const bc2 = step.scalar(b2).pow(step).rsub(1);
  const stepSize = lr.div(bc1);
  const denom = v2.sqrt().div(bc2.sqrt()).add(eps);
  return { param: p.sub(m2.div(denom).mul(stepSize)), state: { exp_avg: m2, exp_avg_sq: v2 } };
}

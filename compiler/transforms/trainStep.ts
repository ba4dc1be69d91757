/**
 * @file The training-step transform: forward graph → one program that computes the loss and
 * metrics, differentiates, optionally clips the global gradient norm, applies the optimizer, and
 * updates an EMA of the parameters.
 *
 * Naming contract with the runtime (runtime/program.ts):
 *  - new inputs: `lr` (f32[], data, fed each step from the schedule), `optim.step` (f32[], state),
 *    `optim.<slot>.<param>` (state; slots as in torch.optim: exp_avg, exp_avg_sq, momentum_buffer),
 *    `ema.<param>` (state) when EMA is on;
 *  - outputs: the loss, the requested metrics, `grad_norm` (when clipping), and `next.<input>` for
 *    every parameter and state input: the value that input takes for the next step.
 */
import { KilnError } from '../../ir/errors.ts';
import { type Graph, NEXT_PREFIX } from '../../ir/graph.ts';
import type { Tensor } from '../dsl/tensor.ts';
import { dumpGraph } from '../debug.ts';
import { dce } from '../passes/dce.ts';
import { grad, gradName } from './grad.ts';
import { type OptimizerOptions, applyUpdate, stateSlots } from './optimizers.ts';
import { copyGraph } from './rewrite.ts';

export interface TrainStepOptions {
  /** Scalar loss output of the forward graph. */
  loss: string;
  /** Forward outputs returned each step besides the loss (e.g. accuracy). */
  metrics?: readonly string[];
  /** Parameters to train (default: every 'param' input). */
  params?: readonly string[];
  optimizer: OptimizerOptions;
  /** Clip the global L2 norm of all gradients to this value (torch.nn.utils.clip_grad_norm_). */
  clipGradNorm?: number;
  /** Keep an exponential moving average of the parameters: ema = decay·ema + (1 − decay)·param. */
  ema?: { decay: number };
  /** Parameters exempt from weight decay (default: none). */
  noDecay?: (param: string) => boolean;
}

export const LR_INPUT = 'lr';
export const STEP_STATE = 'optim.step';
export const GRAD_NORM_OUTPUT = 'grad_norm';
export function slotName(slot: string, param: string): string {
  return `optim.${slot}.${param}`;
}
export function emaName(param: string): string {
  return `ema.${param}`;
}

export function trainStep(g: Graph, opts: TrainStepOptions): Graph {
  const params = opts.params ?? g.inputs.filter((i) => i.kind === 'param').map((i) => i.name);
  if (params.length === 0) throw new KilnError(`trainStep: graph ${g.name} has no trainable parameters (no 'param' inputs, and none named in 'params')`);
  for (const p of params) {
    const i = g.inputByName(p);
    if (!i) throw new KilnError(`trainStep: graph ${g.name} has no parameter '${p}'`);
  }
  for (const reserved of [LR_INPUT, STEP_STATE])
    if (g.inputByName(reserved)) throw new KilnError(`trainStep: graph ${g.name} already has an input named '${reserved}'`);
  const gg = grad(g, { loss: opts.loss, wrt: params, outputs: opts.metrics ?? [] });
  const rw = copyGraph(gg, `${g.name}_train`);
  const { ctx, builder: b } = rw;

  return rw.run(() => {
    const lr = ctx.input(LR_INPUT, [], 'f32', 'data');
    const step = ctx.input(STEP_STATE, [], 'f32', 'state');
    const slots = stateSlots(opts.optimizer);
    const slotInputs = new Map<string, Record<string, Tensor>>();
    for (const p of params) {
      const t = gg.inputByName(p)!.type;
      slotInputs.set(p, Object.fromEntries(slots.map((s) => [s, ctx.input(slotName(s, p), t.shape, t.dtype, 'state')])));
    }
    const emaInputs = new Map<string, Tensor>();
    if (opts.ema) for (const p of params) {
      const t = gg.inputByName(p)!.type;
      emaInputs.set(p, ctx.input(emaName(p), t.shape, t.dtype, 'state'));
    }

    for (const name of [opts.loss, ...(opts.metrics ?? [])]) b.output(name, rw.out(name).id);

    let grads = params.map((p) => rw.out(gradName(p)));
    if (opts.clipGradNorm !== undefined) {
      const total = grads.map((gr) => gr.cast('f32').square().sum()).reduce((a, c) => a.add(c)).sqrt();
      b.output(GRAD_NORM_OUTPUT, total.id);
      // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), clamped to 1.
      const coef = total.add(1e-6).rdiv(opts.clipGradNorm).minimum(1);
      grads = grads.map((gr) => gr.mul(coef.cast(gr.dtype)));
    }

    const nextStep = step.add(1);
    b.output(NEXT_PREFIX + STEP_STATE, nextStep.id);
    params.forEach((p, k) => {
      const param = rw.input(p);
      const r = applyUpdate(opts.optimizer, {
        param, grad: grads[k]!, state: slotInputs.get(p)!, lr: lr.cast(param.dtype), step: nextStep, decay: !(opts.noDecay?.(p) ?? false),
      });
      b.output(NEXT_PREFIX + p, r.param.id);
      for (const s of slots) b.output(NEXT_PREFIX + slotName(s, p), r.state[s]!.id);
      const ema = emaInputs.get(p);
      if (ema) b.output(NEXT_PREFIX + emaName(p), ema.mul(opts.ema!.decay).add(r.param.mul(1 - opts.ema!.decay)).id);
    });
    const out = dce(b.build());
    dumpGraph('ir', 'trainStep', out);
    return out;
  });
}

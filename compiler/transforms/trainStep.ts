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
 *
 * Data parallelism (runtime/parallel/) splits the same step in two programs at the gradients, where
 * the ranks' gradients are averaged: `gradients` (the loss, the metrics and `grad.<param>` for every
 * trained parameter: forward and backward) and `update` (its inputs: the parameters, `grad.<param>`
 * as state filled by the all-reduce, lr, the optimizer state and EMA; its outputs: `grad_norm` and the
 * `next.` updates: clipping, the optimizer and the EMA). Composed, they compute what trainStep does.
 * trainStep remembers the forward graph and options of each step it makes (dataParallelSteps(step)
 * finds them), so every job's step can be split without the job knowing.
 */
import { KilnError } from '../../ir/errors.ts';
import type { DType } from '../../ir/dtype.ts';
import { Graph, NEXT_PREFIX } from '../../ir/graph.ts';
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

/** The two programs of a data-parallel step (see the file comment). */
export interface DataParallelSteps {
  readonly gradients: Graph;
  readonly update: Graph;
  /** The trained parameters, in the order of the step's inputs. */
  readonly params: readonly string[];
  /** The dtype `grad.<param>` crosses the ranks in (the parameter's own, or bf16 when asked). */
  readonly gradDtype: (param: string) => DType;
}

/** What each trainStep graph was made from (dataParallelSteps splits it again). */
const MADE_FROM = new WeakMap<Graph, { forward: Graph; opts: TrainStepOptions }>();

export function trainStep(g: Graph, opts: TrainStepOptions): Graph {
  const out = buildStep(g, opts, 'whole');
  MADE_FROM.set(out, { forward: g, opts });
  return out;
}

/**
 * The gradients and update programs of a step made by trainStep (throws for any other graph).
 * `gradDtype: 'bf16'`: the gradients are rounded to bf16 before the all-reduce (half the bytes on the
 * wire) and widened back to the parameter's dtype in the update.
 */
export function dataParallelSteps(step: Graph, o: { gradDtype?: 'bf16' } = {}): DataParallelSteps {
  const made = MADE_FROM.get(step);
  if (!made) throw new KilnError(`data parallelism: graph ${step.name} was not made by trainStep, so it cannot be split at its gradients`);
  const gradients = buildStep(made.forward, made.opts, 'gradients', o.gradDtype);
  const update = buildStep(made.forward, made.opts, 'update', o.gradDtype);
  const params = made.opts.params ?? made.forward.inputs.filter((i) => i.kind === 'param').map((i) => i.name);
  return { gradients, update, params, gradDtype: (p) => o.gradDtype ?? made.forward.inputByName(p)!.type.dtype };
}

/**
 * `g` without the inputs no node or output uses: the update program needs none of the forward's data,
 * the gradients program none of the optimizer's state (each resident value lives in one program).
 */
function pruneInputs(g: Graph): Graph {
  const used = new Set<number>(g.outputs.map((o) => o.id));
  for (const n of g.nodes) for (const i of n.inputs) used.add(i);
  return new Graph(g.name, g.inputs.filter((i) => used.has(i.id)), g.nodes, g.outputs);
}

function buildStep(g: Graph, opts: TrainStepOptions, part: 'whole' | 'gradients' | 'update', gradDtype?: DType): Graph {
  const params = opts.params ?? g.inputs.filter((i) => i.kind === 'param').map((i) => i.name);
  if (params.length === 0) throw new KilnError(`trainStep: graph ${g.name} has no trainable parameters (no 'param' inputs, and none named in 'params')`);
  for (const p of params) {
    const i = g.inputByName(p);
    if (!i) throw new KilnError(`trainStep: graph ${g.name} has no parameter '${p}'`);
  }
  for (const reserved of [LR_INPUT, STEP_STATE])
    if (g.inputByName(reserved)) throw new KilnError(`trainStep: graph ${g.name} already has an input named '${reserved}'`);
  const gg = grad(g, { loss: opts.loss, wrt: params, outputs: opts.metrics ?? [] });
  const rw = copyGraph(gg, `${g.name}_${part === 'whole' ? 'train' : part}`);
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

    if (part !== 'update') for (const name of [opts.loss, ...(opts.metrics ?? [])]) b.output(name, rw.out(name).id);
    if (part === 'gradients') {
      for (const p of params) {
        const gr = rw.out(gradName(p));
        b.output(gradName(p), (gradDtype ? gr.cast(gradDtype) : gr).id);
      }
      const grads = pruneInputs(dce(b.build())); // without the optimizer state and EMA inputs made above
      dumpGraph('ir', 'trainStep', grads);
      return grads;
    }

    let grads = part === 'update'
      ? params.map((p) => {
        const t = gg.inputByName(p)!.type;
        const x = ctx.input(gradName(p), t.shape, gradDtype ?? t.dtype, 'state');
        return gradDtype ? x.cast(t.dtype) : x;
      })
      : params.map((p) => rw.out(gradName(p)));
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
    const out = part === 'update' ? pruneInputs(dce(b.build())) : dce(b.build());
    dumpGraph('ir', 'trainStep', out);
    return out;
  });
}

/**
 * @file Flow matching for LightningDiT / SiT: the training objective, time sampling, the timestep
 * shift, and the Euler ODE (with classifier-free guidance) and Euler–Maruyama SDE samplers.
 *
 * Conventions (hustvl/LightningDiT and willisma/SiT transport/, Linear path = ICPlan, velocity
 * prediction; the same as FAE.md): t = 0 is noise, t = 1 is data,
 *   x_t = t·x1 + (1 − t)·x0     (x0 ~ N(0, I) noise, x1 data; alpha_t = t, sigma_t = 1 − t)
 *   u   = x1 − x0               (the target velocity; the model predicts v ≈ u)
 * Samplers integrate forward in t from noise (t = 0) to data. A convention with t = 1 as noise
 * (rectified flow / SD3 style, x_t = (1 − τ)·x1 + τ·x0) maps by τ = 1 − t and v_τ = −v.
 *
 * Loss (train.py with use_cosine_loss): mean_flat((v − u)²).mean() + mean_flat(1 − cos(v, u)).mean(),
 * the cosine taken over the channel axis (dim 1 of [B, C, H, W]) with PyTorch's eps 1e-8. Every sample
 * has the same element count, so both terms are plain means over all elements / all (b, h, w) positions.
 * Time sampling (use_lognorm): t = sigmoid(n), n ~ N(0, 1) (logit-normal; the reference's t0 = 0,
 * t1 = 1 for velocity models). Noise and t come from the trace's Philox seed (`randn`), so a training
 * step is deterministic given its `rng_seed` input; pass `x0` / `t` explicitly to pin them.
 *
 * Sampling grid: linspace(0, 1, N) with the timestep shift t' = s·t / (1 + (s − 1)·t) when s > 0
 * (s < 1 puts more steps near t = 0, the noise end; LightningDiT's config uses 0.3, FAE 0.4). The ODE takes
 * N − 1 Euler steps x ← x + (t_{i+1} − t_i)·v(x, t_i) (torchdiffeq's fixed-grid euler on that grid).
 * CFG as forward_with_cfg: one batch [x, x] with labels [y, null], v = v_u + w·(v_c − v_u); guidance
 * applies where t is in `interval` (LightningDiT: t ≥ cfg_interval_start) and elsewhere v = v_c. Kiln
 * guides every channel by default (the references guide only the first 3: `channels: 3` reproduces that).
 *
 * SDE (SiT sample_sde defaults): grid linspace(0, 1 − h, N), h = last_step_size = 0.04, constant
 * dt = grid[1] − grid[0]; N − 1 Euler–Maruyama steps
 *   s = (t·v − x)/(1 − t)  (score from velocity),  w_t = norm·(1 − t)  (diffusion_form 'sigma'),
 *   x ← x + (v + w_t·s)·dt + √(2 w_t)·ε·√dt,
 * then the last step drift only ('Mean'): x ← x + (v + w_t·s)·h at t = 1 − h. N model evaluations.
 *
 * The samplers are host loops over traced single-step graphs (one per step kind, with t, dt and the
 * guidance scale as scalar inputs), compiled by any Backend and holding the parameters resident; only
 * x moves per step. Noise of the SDE comes either from the host (`noise`, e.g. for goldens) or from
 * Philox inside the step graph, keyed (seed, step).
 */
import type { Backend, Executable } from '../backends/backend.ts';
import { compileOn } from '../runtime/compile.ts';
import { type Module, type Tensor, concat, full, rand, randn, trace } from '../compiler/dsl/index.ts';
import type { Graph } from '../ir/graph.ts';
import { KilnError } from '../ir/errors.ts';
import { numel } from '../ir/shape.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { eulerOde } from './sampling/eulerOde.ts';
import { linspace, samplingGrid } from './sampling/timeGrid.ts';

/** A class-conditional velocity model (LightningDiT, DiT, SiT). */
export interface VelocityModel extends Module {
  forward(x: Tensor, t: Tensor, y: Tensor, opts?: { train?: boolean }): Tensor;
  /** The label of the unconditional (null) class. */
  readonly nullClass: number;
  readonly config: { readonly inChannels: number; readonly inputSize: number };
}

/** [C, H, W] of one latent sample of `model`. */
export function latentShape(model: VelocityModel): [number, number, number] {
  const c = model.config;
  return [c.inChannels, c.inputSize, c.inputSize];
}

// ───────────────────────────── training objective ─────────────────────────────

export type TimeSampling =
  /** t = sigmoid(mean + std·n), n ~ N(0, 1). LightningDiT's default (use_lognorm). */
  | { readonly kind: 'logit_normal'; readonly mean?: number; readonly std?: number }
  /** t ~ U[0, 1) (SiT's default). */
  | { readonly kind: 'uniform' };

/** Draw t [batch] in (0, 1) from the trace's seed. */
export function sampleTime(batch: number, sampling: TimeSampling = { kind: 'logit_normal' }): Tensor {
  if (sampling.kind === 'uniform') return rand([batch]);
  return randn([batch]).mul(sampling.std ?? 1).add(sampling.mean ?? 0).sigmoid();
}

/** t [B] as [B, 1, ..., 1] against x. */
function perSample(t: Tensor, x: Tensor): Tensor {
  return t.reshape([t.size(0), ...Array(x.rank - 1).fill(1)]);
}

/** x_t = t·x1 + (1 − t)·x0, t [B]. */
export function interpolate(x0: Tensor, x1: Tensor, t: Tensor): Tensor {
  const tt = perSample(t, x1);
  return tt.mul(x1).add(tt.rsub(1).mul(x0));
}

export interface FlowLossOptions {
  /** Noise x0 (default: randn like x1). */
  x0?: Tensor;
  /** Times t [B] (default: drawn with `timeSampling`). */
  t?: Tensor;
  /** Default logit-normal(0, 1). */
  timeSampling?: TimeSampling;
  /** Add mean(1 − cos(v, u)) over channels (LightningDiT's use_cosine_loss). Default true. */
  cosineLoss?: boolean;
  /** Training mode of the model (label dropout). Default true. */
  train?: boolean;
}

export interface FlowLossTerms {
  /** mse + cos (or mse alone without the cosine term). */
  loss: Tensor;
  mse: Tensor;
  cos: Tensor;
  /** The model's prediction and the target, [B, C, H, W]. */
  v: Tensor;
  u: Tensor;
  t: Tensor;
}

/**
 * cos(a, b) along `axis` as torch.nn.functional.cosine_similarity computes it:
 * Σ (a / max(‖a‖, eps)) · (b / max(‖b‖, eps)). The norm is written sqrt(max(Σa², eps²)) (the same value)
 * so that its gradient stays finite at a = 0 — where the model starts, its final layer being zero —
 * and is zero there, as PyTorch's norm backward masks it (the quotient's own gradient, b̂/eps, stays).
 */
export function cosine(a: Tensor, b: Tensor, axis: number, eps = 1e-8): Tensor {
  const norm = (x: Tensor) => x.square().sum(axis, true).maximum(eps * eps).sqrt();
  return a.div(norm(a)).mul(b.div(norm(b))).sum(axis);
}

/** The LightningDiT/SiT flow-matching loss of `model` on data x1 [B, C, H, W] with labels y [B]. */
export function flowMatchingLoss(model: VelocityModel, x1: Tensor, y: Tensor, opts: FlowLossOptions = {}): FlowLossTerms {
  const b = x1.size(0);
  const x0 = opts.x0 ?? randn(x1.shape, x1.dtype);
  const t = opts.t ?? sampleTime(b, opts.timeSampling);
  const xt = interpolate(x0, x1, t);
  const u = x1.sub(x0);
  const v = model.forward(xt, t, y, { train: opts.train ?? true });
  const mse = v.sub(u).square().mean();
  const cos = cosine(v, u, 1).rsub(1).mean();
  return { loss: (opts.cosineLoss ?? true) ? mse.add(cos) : mse, mse, cos, v, u, t };
}

/** Trace the loss for data batches of `batch`: inputs x1, y (and rng_seed); outputs loss, mse, cos. */
export function flowMatchingLossGraph(model: VelocityModel, batch: number, opts: Omit<FlowLossOptions, 'x0' | 't'> = {}): Graph {
  return trace('flow_matching_loss', (tc) => {
    const x1 = tc.input('x1', [batch, ...latentShape(model)]);
    const y = tc.input('y', [batch], 'i32');
    const r = flowMatchingLoss(model, x1, y, opts);
    return { loss: r.loss, mse: r.mse, cos: r.cos };
  }, { params: model });
}

/** LightningDiT's optimizer (train.py): AdamW, lr 2e-4, betas (0.9, 0.95), no weight decay; EMA 0.9999. */
export const LIGHTNINGDIT_TRAINING = {
  lr: 2e-4,
  optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.95, weightDecay: 0 },
  ema: { decay: 0.9999 },
} as const;

// ───────────────────────────── time grids ─────────────────────────────

export { linspace, samplingGrid, shiftTime } from './sampling/timeGrid.ts';

// ───────────────────────────── sampler step graphs ─────────────────────────────

export type StepKind =
  /** Euler ODE step: x + v·dt. */
  | 'euler'
  /** Euler–Maruyama step: x + (v + w·s)·dt + √(2w)·ε·√dt. */
  | 'sde'
  /** The SDE's last step, drift only: x + (v + w·s)·dt. */
  | 'sde_mean';

export interface StepGraphOptions {
  kind: StepKind;
  batch: number;
  /** Classifier-free guidance: adds the input `cfg_scale` (f32[]); guides `channels` leading channels (default all). */
  cfg?: { channels?: number };
  /** Where ε of an 'sde' step comes from: input `noise` or Philox on `rng_seed`. Default 'random'. */
  noise?: 'input' | 'random';
  /** The diffusion scale (the reference's diffusion_norm). Default 1. */
  diffusionNorm?: number;
}

/** v_u + w·(v_c − v_u) on the leading `channels` channels, v_c on the rest; one model call on [x, x]. */
export function guidedVelocity(model: VelocityModel, x: Tensor, t: Tensor, y: Tensor, scale: Tensor, channels?: number): Tensor {
  const b = x.size(0);
  const c = x.size(1);
  const k = channels ?? c;
  if (!Number.isInteger(k) || k < 1 || k > c) throw new KilnError(`guidedVelocity: cannot guide ${k} of ${c} channels`);
  const yNull = full([b], model.nullClass, 'i32');
  const out = model.forward(concat([x, x], 0), t, concat([y, yNull], 0), { train: false });
  const cond = out.slice(0, 0, b);
  const uncond = out.slice(0, b, 2 * b);
  const [cg, ug] = [cond.slice(1, 0, k), uncond.slice(1, 0, k)];
  const g = ug.add(scale.mul(cg.sub(ug)));
  return k === c ? g : concat([g, cond.slice(1, k, c)], 1);
}

/** Trace one sampler step: inputs x, t (f32[]), dt (f32[]), y, [cfg_scale], [noise | rng_seed]; output x. */
export function buildStepGraph(model: VelocityModel, o: StepGraphOptions): Graph {
  const shape = [o.batch, ...latentShape(model)];
  const name = `flow_${o.kind}${o.cfg ? '_cfg' : ''}${o.kind === 'sde' ? `_${o.noise ?? 'random'}` : ''}`;
  return trace(name, (tc) => {
    const x = tc.input('x', shape);
    const t = tc.input('t', []);
    const dt = tc.input('dt', []);
    const y = tc.input('y', [o.batch], 'i32');
    const v = o.cfg ? guidedVelocity(model, x, t, y, tc.input('cfg_scale', []), o.cfg.channels) : model.forward(x, t, y, { train: false });
    if (o.kind === 'euler') return { x: x.add(v.mul(dt)) };
    const w = t.rsub(1).mul(o.diffusionNorm ?? 1); // diffusion_form 'sigma'
    const score = t.mul(v).sub(x).div(t.rsub(1)); // ICPlan.get_score_from_velocity
    const mean = x.add(v.add(w.mul(score)).mul(dt));
    if (o.kind === 'sde_mean') return { x: mean };
    const eps = (o.noise ?? 'random') === 'input' ? tc.input('noise', shape) : randn(shape);
    return { x: mean.add(w.mul(2).sqrt().mul(eps.mul(dt.sqrt()))) };
  }, { params: model });
}

// ───────────────────────────── samplers ─────────────────────────────

export interface CfgOptions {
  /** The guidance scale w (a number, or a function of t). */
  scale: number | ((t: number) => number);
  /** Guide only where lo ≤ t ≤ hi (t = 0 noise, 1 data); elsewhere the conditional velocity. Default [0, 1]. */
  interval?: readonly [number, number];
  /** Number of leading channels guided. Default: all (the references: 3). */
  channels?: number;
}

export interface OdeSampleOptions {
  /** Grid points N (the reference's num_sampling_steps): N − 1 Euler steps. */
  numSteps: number;
  /** Timestep shift s (> 0 applies it; default 0: none). */
  shift?: number;
  cfg?: CfgOptions;
}

export interface SdeSampleOptions {
  /** Model evaluations N: N − 1 Euler–Maruyama steps and the drift-only last step. */
  numSteps: number;
  /** h: the grid ends at 1 − h and the last step is drift only over h. Default 0.04. 0 is the reference's
   *  last_step=None: the grid ends at 1 and the last step is the identity (N − 1 model evaluations). */
  lastStepSize?: number;
  /** Default 1. */
  diffusionNorm?: number;
  /** ε for each noisy step, [N − 1, B, C, H, W]; without it ε is Philox-drawn in the graph from `seed`. */
  noise?: HostTensor;
  /** Default 0. */
  seed?: number;
  cfg?: CfgOptions;
}

export { gaussianNoise } from './sampling/timeGrid.ts';

/**
 * Runs the samplers of one model on one backend. Step graphs are traced and compiled on first use
 * (per kind, guidance on/off and batch size); each holds the parameters resident.
 */
export class FlowSampler {
  private readonly exes = new Map<string, Promise<Executable>>();

  constructor(
    readonly backend: Backend,
    readonly model: VelocityModel,
    /** Parameter values by state_dict key (e.g. initState, a checkpoint, or the EMA weights). */
    readonly params: ReadonlyMap<string, HostTensor>,
  ) {}

  /** The compiled step graph for `o` (compiled and loaded once). */
  step(o: StepGraphOptions): Promise<Executable> {
    const key = JSON.stringify([o.kind, o.batch, o.cfg?.channels ?? (o.cfg ? 'all' : null), o.noise ?? 'random', o.diffusionNorm ?? 1]);
    let e = this.exes.get(key);
    if (!e) {
      e = (async () => {
        const exe = await compileOn(this.backend, buildStepGraph(this.model, o));
        for (const i of exe.graph.inputs) {
          if (i.kind !== 'param' && i.kind !== 'frozen') continue;
          const v = this.params.get(i.name);
          if (!v) throw new KilnError(`FlowSampler: no value for parameter '${i.name}'`);
          await exe.write(i.name, v);
        }
        return exe;
      })();
      this.exes.set(key, e);
    }
    return e;
  }

  private check(z: HostTensor, y: HostTensor): number {
    const want = latentShape(this.model);
    const b = z.shape[0]!;
    if (z.shape.length !== 4 || want.some((d, i) => z.shape[i + 1] !== d))
      throw new KilnError(`FlowSampler: z must be [B, ${want.join(', ')}], got [${z.shape.join(', ')}]`);
    if (y.dtype !== 'i32' || y.shape.length !== 1 || y.shape[0] !== b) throw new KilnError(`FlowSampler: y must be i32 [${b}]`);
    return b;
  }

  /** Guidance scale at t, or undefined where the step is unguided. */
  private scaleAt(cfg: CfgOptions | undefined, t: number): number | undefined {
    if (!cfg) return undefined;
    const [lo, hi] = cfg.interval ?? [0, 1];
    // t is an f32 grid value; compare in f32 as the reference's tensor comparison does.
    if (t < Math.fround(lo) || t > Math.fround(hi)) return undefined;
    const s = typeof cfg.scale === 'number' ? cfg.scale : cfg.scale(t);
    return s === 1 ? undefined : s;
  }

  private async runStep(o: StepGraphOptions, feeds: Record<string, HostTensor>, scale: number | undefined): Promise<HostTensor> {
    const exe = await this.step(o);
    const all = scale === undefined ? feeds : { ...feeds, cfg_scale: hostTensor('f32', [], [scale]) };
    return (await exe.run(all, ['x'])).x!;
  }

  /** Euler ODE from noise z [B, C, H, W] (t = 0) to data (t = 1), labels y i32 [B] (the loop: sampling/eulerOde.ts). */
  async sampleOde(z: HostTensor, y: HostTensor, opts: OdeSampleOptions): Promise<HostTensor> {
    const batch = this.check(z, y);
    const cfg = (scale: number | undefined) => (scale === undefined ? undefined : { channels: opts.cfg!.channels });
    return eulerOde(z, y, samplingGrid(opts.numSteps, opts.shift ?? 0), (t) => this.scaleAt(opts.cfg, t), (feeds, scale) => this.runStep({ kind: 'euler', batch, cfg: cfg(scale) }, { ...feeds }, scale));
  }

  /** Euler–Maruyama SDE from noise z to data; the last step is drift only. */
  async sampleSde(z: HostTensor, y: HostTensor, opts: SdeSampleOptions): Promise<HostTensor> {
    const batch = this.check(z, y);
    const n = opts.numSteps;
    if (!Number.isInteger(n) || n < 2) throw new KilnError(`sampleSde: numSteps ${n} must be an integer >= 2`);
    const h = opts.lastStepSize ?? 0.04;
    const grid = linspace(0, 1 - h, n);
    const dt = hostTensor('f32', [], [grid[1]! - grid[0]!]);
    const per = numel(z.shape);
    if (opts.noise && (opts.noise.shape.length !== 5 || opts.noise.shape[0] !== n - 1 || numel(opts.noise.shape) !== (n - 1) * per))
      throw new KilnError(`sampleSde: noise must be [${n - 1}, ${z.shape.join(', ')}], got [${opts.noise.shape.join(', ')}]`);
    const noiseMode = opts.noise ? 'input' : 'random';
    const seed = opts.seed ?? 0;
    let x = z;
    for (let i = 0; i < (h > 0 ? n : n - 1); i++) {
      const last = i === n - 1;
      const t = grid[i]!;
      const scale = this.scaleAt(opts.cfg, t);
      const cfg = scale === undefined ? undefined : { channels: opts.cfg!.channels };
      const feeds: Record<string, HostTensor> = { x, y, t: hostTensor('f32', [], [t]), dt: last ? hostTensor('f32', [], [h]) : dt };
      if (!last && opts.noise) feeds.noise = hostTensor('f32', z.shape, opts.noise.data.subarray(i * per, (i + 1) * per));
      if (!last && !opts.noise) feeds.rng_seed = hostTensor('u32', [2], [seed >>> 0, i]);
      const kind: StepKind = last ? 'sde_mean' : 'sde';
      x = await this.runStep({ kind, batch, cfg, noise: noiseMode, diffusionNorm: opts.diffusionNorm }, feeds, scale);
    }
    return x;
  }

  dispose(): void {
    for (const e of this.exes.values()) void e.then((x) => x.dispose(), () => undefined);
    this.exes.clear();
  }
}

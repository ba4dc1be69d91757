/**
 * @file One entry point for sampling the Kiln generators from noise, deterministic given the seed on a
 * given backend:
 * - velocity models (LightningDiT): Euler ODE and Euler–Maruyama SDE (models/flowMatching.ts's
 *   FlowSampler), Heun ODE (odeSolvers.ts over a compiled VelocityField); time grid with the timestep
 *   shift; guidance schedule none / constant / interval / piecewise (guidance.ts);
 * - TarFlow/STARFlow: the KV-cached reverse sampler with guidance weight w, then optionally the score
 *   denoising step x ← x + σ²·∇ log p(x | y).
 * Initial noise: Philox (seed, stream 0) as gaussianNoise; the SDE's step noise Philox (seed, step).
 */
import type { Backend } from '../../backends/backend.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { compileOn } from '../../runtime/compile.ts';
import { FlowSampler, type VelocityModel, gaussianNoise, latentShape, samplingGrid } from '../flowMatching.ts';
import type { TarFlow } from '../tarflow/model.ts';
import { TarFlowDenoiser, TarFlowSampler } from '../tarflow/sampler.ts';
import { type GuidanceSchedule, guidanceScaleAt } from './guidance.ts';
import { solveOde } from './odeSolvers.ts';
import { VelocityField } from './velocityField.ts';

export type FlowMethod = 'euler' | 'heun' | 'sde';

export interface FlowGenerateOptions {
  method: FlowMethod;
  /** Grid points N (Euler/Heun: N − 1 steps; SDE: N model evaluations). */
  numSteps: number;
  /** Timestep shift s > 0 (0: none). ODE grids only. */
  shift: number;
  guidance: GuidanceSchedule;
  seed: number;
  /** SDE: the drift-only last step size h (default 0.04). */
  lastStepSize?: number;
}

/** Latent samples [B, C, H, W] of a velocity model for labels y (i32 [B]). */
export async function generateFlow(backend: Backend, model: VelocityModel, params: ReadonlyMap<string, HostTensor>, y: HostTensor, o: FlowGenerateOptions): Promise<HostTensor> {
  const batch = y.shape[0]!;
  const shape = [batch, ...latentShape(model)];
  const z = gaussianNoise(shape, o.seed);
  const scaleAt = (t: number) => guidanceScaleAt(o.guidance, t);
  if (o.method === 'heun') {
    const field = new VelocityField(backend, model, params, batch);
    try {
      const v = async (x: Float64Array, t: number) => Float64Array.from((await field.velocity(hostTensor('f32', shape, Float32Array.from(x)), t, y, scaleAt(t))).data as Float32Array);
      const x = await solveOde('heun', v, Float64Array.from(z.data as Float32Array), samplingGrid(o.numSteps, o.shift));
      return hostTensor('f32', shape, Float32Array.from(x));
    } finally {
      field.dispose();
    }
  }
  const sampler = new FlowSampler(backend, model, params);
  try {
    const cfg = o.guidance.kind === 'none' ? undefined : { scale: (t: number) => scaleAt(t) ?? 1 };
    if (o.method === 'euler') return await sampler.sampleOde(z, y, { numSteps: o.numSteps, shift: o.shift, cfg });
    if (o.shift > 0) throw new KilnError('the SDE sampler has no timestep shift (SiT sample_sde uses a uniform grid); use --shift 0');
    return await sampler.sampleSde(z, y, { numSteps: o.numSteps, seed: o.seed, lastStepSize: o.lastStepSize, cfg });
  } finally {
    sampler.dispose();
  }
}

export interface TarFlowGenerateOptions {
  /** Guidance weight w (0: none). */
  guidance: number;
  seed: number;
  /** σ of the denoising step (0: no step). */
  denoiseSigma: number;
}

/** Samples [B, C, S, S] of a TarFlow for labels y (i32 [B]; −1 = no class). */
export async function generateTarFlow(backend: Backend, flow: TarFlow, params: ReadonlyMap<string, HostTensor>, y: HostTensor, o: TarFlowGenerateOptions): Promise<HostTensor> {
  const batch = y.shape[0]!;
  const compile = (g: Parameters<typeof compileOn>[1]) => compileOn(backend, g);
  const sampler = await TarFlowSampler.open(flow, compile, params, { batch, guided: o.guidance !== 0 });
  let x: HostTensor;
  try {
    x = await sampler.sample(gaussianNoise([batch, flow.cfg.tokens, flow.cfg.tokenChannels], o.seed), { y: flow.cfg.numClasses > 0 ? y : undefined, guidance: o.guidance });
  } finally {
    sampler.dispose();
  }
  if (o.denoiseSigma <= 0) return x;
  const den = await TarFlowDenoiser.open(flow, compile, grad, params, { batch });
  try {
    return (await den.denoise(x, o.denoiseSigma, flow.cfg.numClasses > 0 ? y : undefined)).x;
  } finally {
    den.dispose();
  }
}

/**
 * @file FAE's stage programs: traced graphs for stage Ia (adapter + feature decoder), stage Ib
 * (pixel decoder, with the VQGAN adaptive GAN weight computed in-graph) and the discriminator's own
 * step, and their training steps (compiler/transforms/trainStep.ts).
 *
 * Graph inputs (data): `features` [B, N, D] (stage Ia), `images` [B, c, S, S] (stage Ib and the
 * discriminator), `reconstruction` [B, c, S, S] (the discriminator's fakes, fetched from the stage-Ib
 * step: an input, hence detached as taming's `reconstructions.detach()`), `gan_factor` f32[] (taming's
 * disc_factor: 0 before disc_start, then 1; fed by the host), explicit noise `noise.latent`
 * [B, N, C], `noise.features` [B, N, D], `noise.sigma` [B] when `explicitNoise` is set (goldens),
 * else noise comes from `randn`/`rand` on the trace's `rng_seed`.
 *
 * The adaptive weight (taming-transformers, VQLPIPSWithDiscriminator.calculate_adaptive_weight):
 *   λ = clamp(‖∇_W rec_loss‖ / (‖∇_W g_loss‖ + 1e-4), 0, 1e4), detached,   W = pixel_decoder.output_proj.weight
 *   loss = rec_loss + λ·discriminator_weight·disc_factor·g_loss
 * Kiln has no stop-gradient op, so "detached" is made structural: the stage-Ib forward graph takes
 * the weight as a data input `gan_weight`; `grad` (twice, w.r.t. W only) adds ∇_W rec_loss and
 * ∇_W g_loss to it; the result is differentiated (grad or trainStep) with `gan_weight` still an input,
 * so no derivative flows through λ; finally `bindInput` replaces that input by λ computed from the two
 * gradient outputs, in the same graph (its nodes placed after the gradients and before everything that
 * reads `gan_weight`). One program, one shared forward pass; the extra backward passes only run from
 * the losses back to W (grad differentiates only nodes that depend on a `wrt` input).
 */
import { type Tensor, trace } from '../../compiler/dsl/index.ts';
import { bindInput } from '../../compiler/transforms/bindInput.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { type TrainStepOptions, trainStep } from '../../compiler/transforms/trainStep.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { FeatureNoiseConfig } from './config.ts';
import { hingeDLoss } from './discriminator.ts';
import { type LatentMode, stageIaLoss, stageIbTerms } from './losses.ts';
import { type FAE, type FaePart, faeScope } from './model.ts';

export const FAE_INPUTS = {
  features: 'features',
  images: 'images',
  reconstruction: 'reconstruction',
  ganFactor: 'gan_factor',
  ganWeight: 'gan_weight',
  latentNoise: 'noise.latent',
  featureNoise: 'noise.features',
  sigmaNoise: 'noise.sigma',
} as const;

/** taming's `last_layer`: the pixel decoder's final linear weight. */
export const LAST_LAYER = 'pixel_decoder.output_proj.weight';
const REC_GRAD_PREFIX = 'adaptive.rec_grad.';
const GAN_GRAD_PREFIX = 'adaptive.gan_grad.';

/** Training-step options besides those the stage fixes (loss, params, metrics). */
export type StepOptions = Omit<TrainStepOptions, 'loss' | 'params' | 'metrics'>;

// ───────────────────────────── stage Ia ─────────────────────────────

export interface StageIaProgramOptions {
  batch: number;
  mode?: LatentMode;
  /** Feed ε as input `noise.latent` instead of drawing it. */
  explicitNoise?: boolean;
  /** 'losses' (default): loss, feature_mse, kl; 'all': also mean, logvar, z, decoded. */
  outputs?: 'losses' | 'all';
}

export function traceStageIa(fae: FAE, o: StageIaProgramOptions): Graph {
  const [n, d, c] = [fae.tokens, fae.config.encoder.dim, fae.config.adapter.latentChannels];
  return trace('fae_stage_ia', (t) => {
    const f = t.input(FAE_INPUTS.features, [o.batch, n, d]);
    const noise = o.explicitNoise && o.mode !== 'mode' ? t.input(FAE_INPUTS.latentNoise, [o.batch, n, c]) : undefined;
    const r = stageIaLoss(fae, f, { mode: o.mode, noise });
    const out: Record<string, Tensor> = { loss: r.loss, feature_mse: r.feature_mse, kl: r.kl };
    if (o.outputs === 'all') Object.assign(out, { mean: r.mean, logvar: r.logvar, z: r.z, decoded: r.decoded });
    return out;
  }, { params: faeScope(fae, ['adapter', 'feature_decoder']) });
}

/** One stage-Ia training step (trains adapter and feature decoder). */
export function stageIaTrainStep(fae: FAE, o: StageIaProgramOptions & StepOptions): Graph {
  const { batch, mode, explicitNoise, outputs: _outputs, ...step } = o;
  const g = traceStageIa(fae, { batch, mode, explicitNoise });
  return trainStep(g, { ...step, loss: 'loss', metrics: ['feature_mse', 'kl'], params: fae.paramNames('adapter', 'feature_decoder') });
}

// ───────────────────────────── stage Ib ─────────────────────────────

export interface StageIbProgramOptions {
  batch: number;
  source?: 'encoder' | 'feature_decoder';
  addNoise?: boolean;
  featureNoise?: FeatureNoiseConfig;
  /** Feed the feature noise as inputs `noise.features` (and `noise.sigma` for the uniform kind). */
  explicitNoise?: boolean;
  /** Include the GAN term (default: the model has a discriminator). */
  gan?: boolean;
}

function ibParts(fae: FAE, o: StageIbProgramOptions): FaePart[] {
  const parts: FaePart[] = ['encoder'];
  if (o.source === 'feature_decoder') parts.push('adapter', 'feature_decoder');
  parts.push('pixel_decoder');
  if (o.gan ?? fae.discriminator !== undefined) parts.push('discriminator');
  return parts;
}

/**
 * The stage-Ib forward graph. Outputs: features, reconstruction, l1, mse, perceptual (if weighted),
 * rec_loss, and with the GAN term logits_fake, g_loss and loss = rec_loss + gan_weight·g_loss
 * (`gan_weight` a data input until withAdaptiveGanWeight binds it); without it loss = rec_loss.
 */
export function traceStageIb(fae: FAE, o: StageIbProgramOptions): Graph {
  const [b, n, d, s, c] = [o.batch, fae.tokens, fae.config.encoder.dim, fae.imageSize, fae.config.pixelDecoder.channels];
  const gan = o.gan ?? fae.discriminator !== undefined;
  const noiseCfg = o.featureNoise ?? fae.config.featureNoise;
  const noisy = (o.addNoise ?? (o.source ?? 'encoder') === 'encoder') && noiseCfg.kind !== 'none';
  return trace('fae_stage_ib', (t) => {
    const images = t.input(FAE_INPUTS.images, [b, c, s, s]);
    const eps = o.explicitNoise && noisy ? t.input(FAE_INPUTS.featureNoise, [b, n, d]) : undefined;
    const u = o.explicitNoise && noisy && noiseCfg.kind === 'uniform' ? t.input(FAE_INPUTS.sigmaNoise, [b]) : undefined;
    const r = stageIbTerms(fae, images, { source: o.source, addNoise: o.addNoise, featureNoise: o.featureNoise, noise: { eps, u }, gan });
    const out: Record<string, Tensor> = { features: r.features, reconstruction: r.reconstruction, l1: r.l1, mse: r.mse };
    if (r.perceptual) out.perceptual = r.perceptual;
    out.rec_loss = r.rec_loss;
    if (gan) {
      t.input(FAE_INPUTS.ganFactor, []);
      const w = t.input(FAE_INPUTS.ganWeight, []);
      Object.assign(out, { logits_fake: r.logits_fake!, g_loss: r.g_loss!, loss: r.rec_loss.add(w.mul(r.g_loss!)) });
    } else out.loss = r.rec_loss;
    return out;
  }, { params: faeScope(fae, ibParts(fae, o)) });
}

export interface AdaptiveWeightOptions {
  /** Default LAST_LAYER. */
  lastLayer?: string;
  /** taming's discriminator_weight. */
  discriminatorWeight: number;
  /** Differentiate the graph (grad or trainStep), keeping the outputs named in `keep`. */
  differentiate: (g: Graph, keep: readonly string[]) => Graph;
}

/**
 * Bind the `gan_weight` input of a stage-Ib forward graph to the adaptive weight (see the file
 * comment), after `differentiate` has differentiated it. Adds outputs `adaptive_weight` (λ, clamped)
 * and `gan_weight` (λ·discriminator_weight·gan_factor).
 */
export function withAdaptiveGanWeight(forward: Graph, o: AdaptiveWeightOptions): Graph {
  const last = o.lastLayer ?? LAST_LAYER;
  for (const name of ['rec_loss', 'g_loss'])
    if (!forward.output(name)) throw new KilnError(`withAdaptiveGanWeight: graph ${forward.name} has no output '${name}'`);
  const g1 = grad(forward, { loss: 'rec_loss', wrt: [last], prefix: REC_GRAD_PREFIX });
  const g2 = grad(g1, { loss: 'g_loss', wrt: [last], prefix: GAN_GRAD_PREFIX });
  const [recName, ganName] = [REC_GRAD_PREFIX + last, GAN_GRAD_PREFIX + last];
  const diff = o.differentiate(g2, [recName, ganName]);
  return bindInput(diff, FAE_INPUTS.ganWeight, ({ output, input }) => {
    const nRec = output(recName).square().sum().sqrt();
    const nGan = output(ganName).square().sum().sqrt();
    const lambda = nRec.div(nGan.add(1e-4)).clamp(0, 1e4);
    const w = lambda.mul(o.discriminatorWeight).mul(input(FAE_INPUTS.ganFactor));
    return { value: w, outputs: { adaptive_weight: lambda, gan_weight: w } };
  }, { drop: [recName, ganName] });
}

/**
 * Gradients of the stage-Ib loss w.r.t. the pixel decoder (outputs `grad.<name>`) with the adaptive
 * GAN weight bound in-graph; every forward output is kept. For tests and evaluation.
 */
export function stageIbGradients(fae: FAE, o: StageIbProgramOptions & { wrt?: readonly string[] }): Graph {
  const f = traceStageIb(fae, o);
  const wrt = o.wrt ?? fae.paramNames('pixel_decoder');
  const differentiate = (g: Graph) => grad(g, { loss: 'loss', wrt });
  if (!f.output('g_loss')) return differentiate(f);
  return withAdaptiveGanWeight(f, { discriminatorWeight: fae.config.loss.discriminatorWeight, differentiate });
}

/** One stage-Ib training step of the pixel decoder (metrics: the loss terms and the reconstruction). */
export function stageIbTrainStep(fae: FAE, o: StageIbProgramOptions & StepOptions): Graph {
  const { batch, source, addNoise, featureNoise, explicitNoise, gan, ...step } = o;
  const f = traceStageIb(fae, { batch, source, addNoise, featureNoise, explicitNoise, gan });
  const params = fae.paramNames('pixel_decoder');
  const metrics = ['l1', 'mse', 'perceptual', 'rec_loss', 'g_loss', 'reconstruction'].filter((m) => f.output(m));
  const differentiate = (g: Graph, keep: readonly string[]) => trainStep(g, { ...step, loss: 'loss', params, metrics: [...metrics, ...keep] });
  if (!f.output('g_loss')) return differentiate(f, []);
  return withAdaptiveGanWeight(f, { discriminatorWeight: fae.config.loss.discriminatorWeight, differentiate });
}

// ───────────────────────────── discriminator ─────────────────────────────

/**
 * The discriminator's own loss: loss = gan_factor · hinge(D(images), D(reconstruction)). Outputs
 * loss, logits_real_mean, logits_fake_mean (and the logits with outputs 'all').
 */
export function traceDiscriminatorStep(fae: FAE, o: { batch: number; outputs?: 'losses' | 'all' }): Graph {
  const disc = fae.discriminator;
  if (!disc) throw new KilnError('traceDiscriminatorStep: the model has no discriminator (config.discriminator is null)');
  const shape = [o.batch, fae.config.pixelDecoder.channels, fae.imageSize, fae.imageSize];
  return trace('fae_discriminator', (t) => {
    const real = t.input(FAE_INPUTS.images, shape);
    const fake = t.input(FAE_INPUTS.reconstruction, shape);
    const factor = t.input(FAE_INPUTS.ganFactor, []);
    const lr = disc.forward(real);
    const lf = disc.forward(fake);
    const out: Record<string, Tensor> = { loss: hingeDLoss(lr, lf).mul(factor), logits_real_mean: lr.mean(), logits_fake_mean: lf.mean() };
    if (o.outputs === 'all') Object.assign(out, { logits_real: lr, logits_fake: lf });
    return out;
  }, { params: faeScope(fae, ['discriminator']) });
}

export function discriminatorTrainStep(fae: FAE, o: { batch: number } & StepOptions): Graph {
  const { batch, ...step } = o;
  return trainStep(traceDiscriminatorStep(fae, { batch }), {
    ...step, loss: 'loss', metrics: ['logits_real_mean', 'logits_fake_mean'], params: fae.paramNames('discriminator'),
  });
}

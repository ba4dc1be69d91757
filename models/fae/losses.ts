/**
 * @file FAE's training objectives as DSL functions (called inside a trace).
 *
 * Stage Ia (adapter + feature decoder, the encoder frozen):
 *   (mean, logvar) = adapter(f);  z = mean + exp(0.5·logvar)·ε  (or z = mean in 'mode')
 *   loss = MSE(feature_decoder(z), f) + β·KL(N(mean, exp(logvar)) ‖ N(0, I))
 *   with KL summed over tokens and channels and averaged over the batch (klDiagonalGaussian).
 *
 * Stage Ib (pixel decoder, the encoder frozen):
 *   f = encoder(x);  f̃ = f + σ·ε   (σ fixed, or σ_b = max·u_b with u_b ~ U(0, 1) per sample)
 *   x̂ = pixel_decoder(f̃)
 *   rec_loss = w₁·mean|x̂ − x| + w₂·mean(x̂ − x)² + w_p·MSE(encoder(x̂), f)      (taming's nll_loss)
 *   g_loss  = −mean(D(x̂))
 *   loss    = rec_loss + gan_weight·g_loss,  gan_weight = λ·discriminator_weight·disc_factor with the
 *             adaptive λ of programs.ts (detached), or a given number.
 * The fine-tuning phase feeds the pixel decoder the feature decoder's reconstruction of f instead
 * (source 'feature_decoder', deterministic z = mean, no feature noise by default).
 */
import { type Tensor, klDiagonalGaussian, l1Loss, mseLoss, rand, randn } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import { type Posterior, reparameterize } from './adapter.ts';
import type { FeatureNoiseConfig } from './config.ts';
import { generatorGanLoss } from './discriminator.ts';
import type { FAE } from './model.ts';

export type LatentMode = 'sample' | 'mode';

export interface EncodeOptions {
  /** 'sample' (training): z = mean + σ·ε; 'mode' (evaluation): z = mean. Default 'sample'. */
  mode?: LatentMode;
  /** Explicit ε [B, N, C] (goldens); default randn from the trace's Philox seed. */
  noise?: Tensor;
}

/** Encoder features [B, N, D] → posterior and latent z [B, N, C]. */
export function encodeLatent(fae: FAE, features: Tensor, opts: EncodeOptions = {}): Posterior & { z: Tensor } {
  const post = fae.adapter.forward(features);
  const z = (opts.mode ?? 'sample') === 'mode' ? post.mean : reparameterize(post, opts.noise);
  return { ...post, z };
}

export interface StageIaOutputs {
  loss: Tensor;
  feature_mse: Tensor;
  kl: Tensor;
  mean: Tensor;
  logvar: Tensor;
  z: Tensor;
  decoded: Tensor;
}

/** Stage Ia: MSE(decoded, features) + β·KL. `features` are the frozen encoder's tokens [B, N, D]. */
export function stageIaLoss(fae: FAE, features: Tensor, opts: EncodeOptions = {}): StageIaOutputs {
  const { mean, logvar, z } = encodeLatent(fae, features, opts);
  const decoded = fae.feature_decoder.forward(z);
  const featureMse = mseLoss(decoded, features);
  const kl = klDiagonalGaussian(mean, logvar);
  const loss = featureMse.add(kl.mul(fae.config.loss.klWeight));
  return { loss, feature_mse: featureMse, kl, mean, logvar, z, decoded };
}

export interface FeatureNoiseInputs {
  /** ε [B, N, D]; default randn. */
  eps?: Tensor;
  /** u [B] in [0, 1) for the 'uniform' kind (σ_b = max·u_b); default rand. */
  u?: Tensor;
}

/** f + σ·ε as configured (noise augmentation of the pixel decoder's input). */
export function addFeatureNoise(features: Tensor, noise: FeatureNoiseConfig, inputs: FeatureNoiseInputs = {}): Tensor {
  if (noise.kind === 'none') return features;
  const eps = inputs.eps ?? randn([...features.shape], features.dtype);
  if (eps.rank !== features.rank || eps.shape.some((d, i) => d !== features.shape[i]))
    throw dslError('addFeatureNoise', [features, eps], 'the noise must have the shape of the features');
  if (noise.kind === 'fixed') return features.add(eps.mul(noise.sigma));
  const b = features.size(0);
  const u = inputs.u ?? rand([b], features.dtype);
  if (u.rank !== 1 || u.size(0) !== b) throw dslError('addFeatureNoise', [u], `expects u [${b}]`);
  return features.add(eps.mul(u.mul(noise.max).reshape(b, 1, 1)));
}

export interface StageIbOptions {
  /** Clean encoder features of the images when already computed; default encoder(images) in-graph. */
  features?: Tensor;
  /** What the pixel decoder reads: noisy encoder features (default) or the feature decoder's reconstruction. */
  source?: 'encoder' | 'feature_decoder';
  /** Add the configured feature noise. Default: true for source 'encoder', false for 'feature_decoder'. */
  addNoise?: boolean;
  /** Overrides config.featureNoise (e.g. the RAE-style uniform σ). */
  featureNoise?: FeatureNoiseConfig;
  noise?: FeatureNoiseInputs;
  /** Include the GAN generator term. Default: the model has a discriminator. */
  gan?: boolean;
}

export interface StageIbTerms {
  features: Tensor;
  decoderInput: Tensor;
  reconstruction: Tensor;
  l1: Tensor;
  mse: Tensor;
  /** Absent when the perceptual weight is 0 (saves an encoder pass). */
  perceptual: Tensor | undefined;
  /** taming's nll_loss: the weighted sum of the reconstruction terms. */
  rec_loss: Tensor;
  logits_fake: Tensor | undefined;
  g_loss: Tensor | undefined;
}

/** Stage Ib terms for images [B, c, H, W] (H = W = grid · patch). */
export function stageIbTerms(fae: FAE, images: Tensor, opts: StageIbOptions = {}): StageIbTerms {
  const w = fae.config.loss;
  const features = opts.features ?? fae.encoder.forward(images);
  const source = opts.source ?? 'encoder';
  let input = features;
  if (source === 'feature_decoder') input = fae.feature_decoder.forward(encodeLatent(fae, features, { mode: 'mode' }).z);
  if (opts.addNoise ?? source === 'encoder') input = addFeatureNoise(input, opts.featureNoise ?? fae.config.featureNoise, opts.noise);
  const reconstruction = fae.pixel_decoder.forward(input);
  const l1 = l1Loss(reconstruction, images);
  const mse = mseLoss(reconstruction, images);
  const perceptual = w.perceptualWeight > 0 ? mseLoss(fae.encoder.forward(reconstruction), features) : undefined;
  let rec = l1.mul(w.l1Weight).add(mse.mul(w.mseWeight));
  if (perceptual) rec = rec.add(perceptual.mul(w.perceptualWeight));
  const gan = opts.gan ?? fae.discriminator !== undefined;
  if (gan && !fae.discriminator) throw dslError('stageIbTerms', [images], 'the GAN term needs a discriminator (config.discriminator is null)');
  const logitsFake = gan ? fae.discriminator!.forward(reconstruction) : undefined;
  return {
    features,
    decoderInput: input,
    reconstruction,
    l1,
    mse,
    perceptual,
    rec_loss: rec,
    logits_fake: logitsFake,
    g_loss: logitsFake ? generatorGanLoss(logitsFake) : undefined,
  };
}

/**
 * @file FAE configurations: plain objects (JSON-serializable) at the paper's sizes, a small one for
 * Fashion-MNIST, a tiny one for the PyTorch goldens, and `validateFaeConfig`, whose errors name the
 * offending field (`FaeConfigError.field`, e.g. "adapter.headDim").
 *
 * Sizes (arXiv 2512.07829): frozen DINOv2-g/14 at 224 px → 16×16 patch tokens of width 1536;
 * adapter = one attention layer with 24 heads × 256 head dim (inner width 6144 ≠ 1536), latent
 * 16×16×32; feature decoder = 6 transformer layers at width 1536; pixel decoder = ViT-L (1024 wide,
 * 24 layers, 16 heads) with patch 16 → 256 px. The loss weights are not published: the paper config
 * uses the usual LDM/taming values (KL 1e-6, L1 1, perceptual 1, discriminator weight 0.5).
 */
import { KilnError } from '../../ir/errors.ts';

export type AdapterActivation = 'gelu' | 'silu';

/** The frozen encoder's output the FAE is built for: grid×grid patch tokens of width `dim`. */
export interface EncoderSpec {
  dim: number;
  /** Side of the square patch grid (16 for DINOv2 at 224 px); N = grid² tokens. */
  grid: number;
}

/** The FAE encoder: one self-attention layer with a residual, then act + Linear(D, 2C). */
export interface AdapterConfig {
  heads: number;
  /** Head dim of the adapter's attention; the attention's inner width heads·headDim may differ from D. */
  headDim: number;
  /** Latent channels C (paper: 32). */
  latentChannels: number;
  activation: AdapterActivation;
  /** Pre-norm RMSNorm eps. */
  normEps: number;
  /** The log-variance is clamped to [lo, hi] before use (LDM's DiagonalGaussianDistribution: [-30, 20]). */
  logvarClamp: [number, number];
}

/** The feature decoder: LightningDiT-style blocks (RMSNorm, 2D RoPE, SwiGLU) at the encoder's width. */
export interface FeatureDecoderConfig {
  depth: number;
  heads: number;
  /** SwiGLU hidden width (LightningDiT's rule int(2/3·4·D) in the paper config). */
  mlpHidden: number;
  normEps: number;
  ropeTheta: number;
}

/** The pixel decoder: a ViT (LayerNorm, GELU MLP, fixed 2D sin-cos positions) to an image. */
export interface PixelDecoderConfig {
  dim: number;
  depth: number;
  heads: number;
  mlpHidden: number;
  /** Output patch size: image side = encoder.grid · patchSize. */
  patchSize: number;
  /** Image channels (3 for RGB; 1 for Fashion-MNIST). */
  channels: number;
  normEps: number;
}

/** The patch discriminator: non-overlapping strided convolutions (see discriminator.ts). */
export interface DiscriminatorConfig {
  /** Output channels of each layer. */
  channels: number[];
  /** Kernel = stride of each layer; their product is the receptive field of one logit. */
  patchSizes: number[];
  /** LeakyReLU negative slope (PatchGAN: 0.2). */
  leakySlope: number;
}

/** Noise added to the encoder features the pixel decoder is trained on (stage Ib). */
export type FeatureNoiseConfig =
  | { kind: 'none' }
  /** features + σ·ε with a fixed σ (FAE with DINOv2: 0.4). */
  | { kind: 'fixed'; sigma: number }
  /** features + σ·ε with σ ~ U(0, max) drawn per sample (RAE: max 0.8). */
  | { kind: 'uniform'; max: number };

export interface FaeLossConfig {
  /** β of stage Ia: MSE(decoded, features) + β·KL. */
  klWeight: number;
  /** Stage Ib reconstruction: l1·L1 + mse·MSE + perceptual·MSE(enc(x̂), enc(x)). */
  l1Weight: number;
  mseWeight: number;
  perceptualWeight: number;
  /** taming's discriminator_weight: the adaptive weight λ is multiplied by it. */
  discriminatorWeight: number;
}

export interface FaeConfig {
  encoder: EncoderSpec;
  adapter: AdapterConfig;
  featureDecoder: FeatureDecoderConfig;
  pixelDecoder: PixelDecoderConfig;
  /** null: no GAN term. */
  discriminator: DiscriminatorConfig | null;
  featureNoise: FeatureNoiseConfig;
  loss: FaeLossConfig;
}

/** A config field that is missing or out of range; `field` is its dotted path. */
export class FaeConfigError extends KilnError {
  override name = 'FaeConfigError';
  constructor(readonly field: string, detail: string, value: unknown) {
    super(`FAE config: ${field} ${detail} (got ${JSON.stringify(value)})`);
  }
}

/** LightningDiT's SwiGLU hidden width int(2/3 · int(4·D)). */
function swigluHidden(dim: number): number {
  return Math.trunc((2 / 3) * Math.trunc(dim * 4));
}

/** The paper's sizes: DINOv2-g/14 features (1536 × 16×16), C = 32, ViT-L pixel decoder to 256 px. */
export function paperFaeConfig(): FaeConfig {
  return {
    encoder: { dim: 1536, grid: 16 },
    adapter: { heads: 24, headDim: 256, latentChannels: 32, activation: 'gelu', normEps: 1e-6, logvarClamp: [-30, 20] },
    featureDecoder: { depth: 6, heads: 24, mlpHidden: swigluHidden(1536), normEps: 1e-6, ropeTheta: 10000 },
    pixelDecoder: { dim: 1024, depth: 24, heads: 16, mlpHidden: 4096, patchSize: 16, channels: 3, normEps: 1e-6 },
    discriminator: { channels: [128, 256, 512], patchSizes: [4, 2, 2], leakySlope: 0.2 },
    featureNoise: { kind: 'fixed', sigma: 0.4 },
    loss: { klWeight: 1e-6, l1Weight: 1, mseWeight: 0, perceptualWeight: 1, discriminatorWeight: 0.5 },
  };
}

/**
 * Fashion-MNIST: a small in-project encoder (width 64, patch 4 on 28 px → 7×7 tokens), a 4-channel
 * latent 7×7×4, and a pixel decoder back to 28×28×1.
 */
export function fashionMnistFaeConfig(): FaeConfig {
  return {
    encoder: { dim: 64, grid: 7 },
    adapter: { heads: 4, headDim: 32, latentChannels: 4, activation: 'gelu', normEps: 1e-6, logvarClamp: [-30, 20] },
    featureDecoder: { depth: 2, heads: 4, mlpHidden: swigluHidden(64), normEps: 1e-6, ropeTheta: 10000 },
    pixelDecoder: { dim: 96, depth: 4, heads: 4, mlpHidden: 384, patchSize: 4, channels: 1, normEps: 1e-6 },
    discriminator: { channels: [32, 64], patchSizes: [2, 2], leakySlope: 0.2 },
    featureNoise: { kind: 'fixed', sigma: 0.4 },
    loss: { klWeight: 1e-4, l1Weight: 1, mseWeight: 0, perceptualWeight: 0.5, discriminatorWeight: 0.5 },
  };
}

/**
 * Fashion-MNIST at the smallest useful size (the CPU pipeline `kiln pipeline fae-small` and its test):
 * a 16-wide encoder on the same 7×7 grid, the same 7×7×4 latent, one-layer decoders.
 */
export function fashionTinyFaeConfig(): FaeConfig {
  return {
    encoder: { dim: 16, grid: 7 },
    adapter: { heads: 2, headDim: 8, latentChannels: 4, activation: 'gelu', normEps: 1e-6, logvarClamp: [-30, 20] },
    featureDecoder: { depth: 1, heads: 2, mlpHidden: swigluHidden(16), normEps: 1e-6, ropeTheta: 10000 },
    pixelDecoder: { dim: 32, depth: 1, heads: 2, mlpHidden: 64, patchSize: 4, channels: 1, normEps: 1e-6 },
    discriminator: { channels: [8, 8], patchSizes: [2, 2], leakySlope: 0.2 },
    featureNoise: { kind: 'fixed', sigma: 0.4 },
    loss: { klWeight: 1e-4, l1Weight: 1, mseWeight: 0, perceptualWeight: 0.5, discriminatorWeight: 0.5 },
  };
}

/** The tiny config of the PyTorch goldens (golden/fae_golden.py writes the same object). */
export function tinyFaeConfig(): FaeConfig {
  return {
    encoder: { dim: 16, grid: 4 },
    adapter: { heads: 2, headDim: 12, latentChannels: 4, activation: 'gelu', normEps: 1e-6, logvarClamp: [-30, 20] },
    featureDecoder: { depth: 2, heads: 2, mlpHidden: 24, normEps: 1e-6, ropeTheta: 10000 },
    pixelDecoder: { dim: 24, depth: 2, heads: 2, mlpHidden: 40, patchSize: 4, channels: 3, normEps: 1e-6 },
    discriminator: { channels: [8, 12], patchSizes: [2, 2], leakySlope: 0.2 },
    featureNoise: { kind: 'fixed', sigma: 0.4 },
    loss: { klWeight: 0.01, l1Weight: 1, mseWeight: 0.5, perceptualWeight: 0.7, discriminatorWeight: 0.8 },
  };
}

export const faeConfigs = { paper: paperFaeConfig, fashionMnist: fashionMnistFaeConfig, fashionTiny: fashionTinyFaeConfig, tiny: tinyFaeConfig } as const;

/** Image side of the pixel decoder's output (encoder.grid · pixelDecoder.patchSize). */
export function faeImageSize(cfg: FaeConfig): number {
  return cfg.encoder.grid * cfg.pixelDecoder.patchSize;
}

// ───────────────────────────── validation ─────────────────────────────

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FaeConfigError(field, 'must be an object', v);
  return v as Record<string, unknown>;
}
function posInt(o: Record<string, unknown>, k: string, path: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new FaeConfigError(`${path}.${k}`, 'must be a positive integer', v);
  return v;
}
function nonNeg(o: Record<string, unknown>, k: string, path: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new FaeConfigError(`${path}.${k}`, 'must be a finite number >= 0', v);
  return v;
}
function positive(o: Record<string, unknown>, k: string, path: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FaeConfigError(`${path}.${k}`, 'must be a finite number > 0', v);
  return v;
}
function divides(path: string, dim: number, heads: number, what: string): void {
  if (dim % heads !== 0) throw new FaeConfigError(path, `must divide ${what} ${dim}`, heads);
}

/**
 * Check every field of `cfg` (types, ranges and the cross-field rules: head dims, RoPE's head dim
 * multiple of 4, sin-cos width multiple of 4, the discriminator's patches tiling the image).
 * Returns the config, typed; throws FaeConfigError naming the first bad field.
 */
export function validateFaeConfig(cfg: unknown): FaeConfig {
  const c = obj(cfg, 'config');
  const enc = obj(c.encoder, 'encoder');
  const d = posInt(enc, 'dim', 'encoder');
  const grid = posInt(enc, 'grid', 'encoder');

  const ad = obj(c.adapter, 'adapter');
  posInt(ad, 'heads', 'adapter');
  posInt(ad, 'headDim', 'adapter');
  posInt(ad, 'latentChannels', 'adapter');
  if (ad.activation !== 'gelu' && ad.activation !== 'silu') throw new FaeConfigError('adapter.activation', "must be 'gelu' or 'silu'", ad.activation);
  positive(ad, 'normEps', 'adapter');
  const lc = ad.logvarClamp;
  if (!Array.isArray(lc) || lc.length !== 2 || !lc.every((x) => typeof x === 'number' && Number.isFinite(x)) || !(lc[0] < lc[1]))
    throw new FaeConfigError('adapter.logvarClamp', 'must be [lo, hi] with finite lo < hi', lc);

  const fd = obj(c.featureDecoder, 'featureDecoder');
  posInt(fd, 'depth', 'featureDecoder');
  const fh = posInt(fd, 'heads', 'featureDecoder');
  divides('featureDecoder.heads', d, fh, 'encoder.dim');
  if ((d / fh) % 4 !== 0) throw new FaeConfigError('featureDecoder.heads', `must give a head dim (encoder.dim / heads = ${d / fh}) that is a multiple of 4 (2D RoPE)`, fh);
  posInt(fd, 'mlpHidden', 'featureDecoder');
  positive(fd, 'normEps', 'featureDecoder');
  positive(fd, 'ropeTheta', 'featureDecoder');

  const pd = obj(c.pixelDecoder, 'pixelDecoder');
  const pw = posInt(pd, 'dim', 'pixelDecoder');
  if (pw % 4 !== 0) throw new FaeConfigError('pixelDecoder.dim', 'must be a multiple of 4 (2D sin-cos positions)', pw);
  posInt(pd, 'depth', 'pixelDecoder');
  divides('pixelDecoder.heads', pw, posInt(pd, 'heads', 'pixelDecoder'), 'pixelDecoder.dim');
  posInt(pd, 'mlpHidden', 'pixelDecoder');
  const patch = posInt(pd, 'patchSize', 'pixelDecoder');
  posInt(pd, 'channels', 'pixelDecoder');
  positive(pd, 'normEps', 'pixelDecoder');

  if (c.discriminator !== null) {
    const ds = obj(c.discriminator, 'discriminator');
    const ch = ds.channels, ps = ds.patchSizes;
    if (!Array.isArray(ch) || ch.length === 0 || !ch.every((x) => Number.isInteger(x) && x >= 1))
      throw new FaeConfigError('discriminator.channels', 'must be a non-empty list of positive integers', ch);
    if (!Array.isArray(ps) || ps.length !== ch.length || !ps.every((x) => Number.isInteger(x) && x >= 1))
      throw new FaeConfigError('discriminator.patchSizes', `must be ${ch.length} positive integers (one per layer)`, ps);
    const field = (ps as number[]).reduce((a, b) => a * b, 1);
    const side = grid * patch;
    if (side % field !== 0)
      throw new FaeConfigError('discriminator.patchSizes', `must multiply to a divisor of the image side ${side} (encoder.grid · pixelDecoder.patchSize)`, ps);
    nonNeg(ds, 'leakySlope', 'discriminator');
  }

  const fn = obj(c.featureNoise, 'featureNoise');
  if (fn.kind === 'fixed') nonNeg(fn, 'sigma', 'featureNoise');
  else if (fn.kind === 'uniform') nonNeg(fn, 'max', 'featureNoise');
  else if (fn.kind !== 'none') throw new FaeConfigError('featureNoise.kind', "must be 'none', 'fixed' or 'uniform'", fn.kind);

  const l = obj(c.loss, 'loss');
  for (const k of ['klWeight', 'l1Weight', 'mseWeight', 'perceptualWeight', 'discriminatorWeight']) nonNeg(l, k, 'loss');
  return cfg as FaeConfig;
}

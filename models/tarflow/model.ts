/**
 * @file TarFlow (apple/ml-tarflow `Model`), with STARFlow's changes as options: patchify → blocks
 * (alternating identity / flipped token order) → z; loss, NLL and bits per dimension; noise
 * augmentation and dequantization of the training input.
 *
 * Conventions (the reference's):
 * - logdet [B] is the sum over blocks of each block's per-dimension mean log-determinant, so the
 *   total log|det ∂z/∂x| of sample b is D·logdet[b], D = C·H·W.
 * - loss = 0.5·mean(z²) − mean_b(logdet): the per-dimension negative log-likelihood without the
 *   constant 0.5·log 2π (TarFlow get_loss; STARFlow's get_loss is the same number).
 * - nll[b] = 0.5·mean(z_b²) + 0.5·log 2π − logdet[b]: nats per dimension of the model's density at x.
 * - bits per dimension = (nll − log Δ − log s) / ln 2, where Δ is the quantization bin width in the
 *   model's input space (uniformly dequantized discrete data; 8-bit images in [−1, 1]: Δ = 2/256,
 *   i.e. + log 128, as evaluate_bpd.py) and s the data scale (model input = s·data, e.g. latents
 *   normalized by a scale factor; 1 by default). Continuous data (FAE latents with Gaussian noise
 *   augmentation σ) have no bin: Δ = 1 and the number is the differential entropy of the noisy data
 *   in bits per dimension (it can be negative).
 * - Sampling starts from z ~ N(0, I) in token form [B, T, C'] (the reference's `var` buffer is all
 *   ones for nvp flows and is not modelled).
 * - The reference's state_dict also holds buffers that are constants here: `var` [T, C'] (ones) and
 *   each block's causal `attn_mask` [T, T]. `dropReferenceBuffers` / `withReferenceBuffers` convert
 *   between the two key sets (so a checkpoint loads strictly on either side).
 */
import { Module, type Tensor, rand, randn, where } from '../../compiler/dsl/index.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { type ResolvedTarFlowConfig, type TarFlowConfig, resolveConfig } from './config.ts';
import { MetaBlock } from './metaBlock.ts';

/** Training-input corruption (the reference's noise_type). */
export type NoiseSpec =
  /** x + σ·ε, σ fixed or drawn per sample uniformly from [lo, hi]. */
  | { kind: 'gaussian'; sigma: number | readonly [number, number] }
  /** Uniform dequantization of `bits`-bit data in [−1, 1]: ((x + 1)·(2^bits − 1)/2 + u)/2^bits·2 − 1. */
  | { kind: 'uniform'; bits?: number };

export interface BpdOptions {
  /** Quantization bin width in the model's input space (8-bit images in [−1, 1]: 2/256). Default 1 (continuous). */
  binWidth?: number;
  /** Model input = dataScale · data. Default 1. */
  dataScale?: number;
}

/** Bin width of `bits`-bit data mapped to [lo, hi] (8 bits, [−1, 1] → 2/256). */
export function quantizationBin(bits = 8, range: readonly [number, number] = [-1, 1]): number {
  return (range[1] - range[0]) / 2 ** bits;
}

/** Nats per dimension → bits per dimension (host numbers): (nll − log Δ − log s) / ln 2. */
export function bitsPerDim(nllPerDim: number, opts: BpdOptions = {}): number {
  return (nllPerDim - Math.log(opts.binWidth ?? 1) - Math.log(opts.dataScale ?? 1)) / Math.LN2;
}

/** Keys of the reference's buffers (not Kiln parameters): `var` and `blocks.<i>.attn_mask`. */
export function isReferenceBuffer(key: string): boolean {
  return key === 'var' || /^blocks\.\d+\.attn_mask$/.test(key);
}

/** A reference state_dict (e.g. a converted .pth) without its buffers: exactly Kiln's parameters. */
export function dropReferenceBuffers(state: ReadonlyMap<string, HostTensor>): Map<string, HostTensor> {
  return new Map([...state].filter(([k]) => !isReferenceBuffer(k)));
}

/** Kiln's parameters plus the reference's buffers (`var` = ones, causal `attn_mask`), for load_state_dict(strict=True). */
export function withReferenceBuffers(flow: TarFlow, params: ReadonlyMap<string, HostTensor>): Map<string, HostTensor> {
  const { tokens: t, tokenChannels: c } = flow.cfg;
  const out = new Map(params);
  const tril = new Float32Array(t * t).map((_, i) => (i % t <= Math.floor(i / t) ? 1 : 0));
  flow.blocks.forEach((_, i) => out.set(`blocks.${i}.attn_mask`, hostTensor('f32', [t, t], tril)));
  out.set('var', hostTensor('f32', [t, c], new Float32Array(t * c).fill(1)));
  return out;
}

export class TarFlow extends Module {
  readonly blocks: MetaBlock[];
  readonly cfg: ResolvedTarFlowConfig;

  constructor(config: TarFlowConfig) {
    super();
    const cfg = resolveConfig(config);
    const firstFlipped = cfg.seqOrder === 'L2R';
    this.blocks = cfg.layersPerBlock.map((n, i) => new MetaBlock(cfg, n, (i % 2 === 1) !== firstFlipped));
    this.cfg = cfg;
  }

  /** Dimensions per sample D = C·S². */
  get dims(): number {
    return this.cfg.inChannels * this.cfg.imgSize ** 2;
  }

  /** Image [B, C, S, S] → tokens [B, T, C'] (row-major patches; features per cfg.patchLayout). */
  patchify(x: Tensor): Tensor {
    const { patchSize: p, inChannels: c, imgSize: s } = this.cfg;
    const b = x.size(0);
    const g = s / p;
    const six = x.reshape(b, c, g, p, g, p);
    const perm = this.cfg.patchLayout === 'unfold' ? [0, 2, 4, 1, 3, 5] : [0, 2, 4, 3, 5, 1];
    return six.permute(...perm).reshape(b, g * g, c * p * p);
  }

  /** Tokens [B, T, C'] → image [B, C, S, S] (the inverse of patchify). */
  unpatchify(t: Tensor): Tensor {
    const { patchSize: p, inChannels: c, imgSize: s } = this.cfg;
    const b = t.size(0);
    const g = s / p;
    if (this.cfg.patchLayout === 'unfold') return t.reshape(b, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, s, s);
    return t.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, s, s);
  }

  /** Data → noise: z [B, T, C'] (tokens), logdet [B] (per-dimension, summed over blocks), each block's output. */
  forward(x: Tensor, y?: Tensor): { z: Tensor; logdet: Tensor; outputs: Tensor[] } {
    let h = this.patchify(x);
    let logdet: Tensor | undefined;
    const outputs: Tensor[] = [];
    for (const blk of this.blocks) {
      const r = blk.forward(h, y);
      h = r.z;
      logdet = logdet ? logdet.add(r.logdet) : r.logdet;
      outputs.push(h);
    }
    return { z: h, logdet: logdet!, outputs };
  }

  /** 0.5·mean(z²) − mean(logdet). */
  loss(z: Tensor, logdet: Tensor): Tensor {
    return z.square().mean().mul(0.5).sub(logdet.mean());
  }

  /** Nats per dimension of each sample: 0.5·mean(z_b²) + 0.5·log 2π − logdet[b]  → [B]. */
  nllPerDim(z: Tensor, logdet: Tensor): Tensor {
    return z.square().mean([1, 2]).mul(0.5).add(0.5 * Math.log(2 * Math.PI)).sub(logdet);
  }

  /** Bits per dimension of each sample (see the file comment for Δ and s). */
  bitsPerDim(nll: Tensor, opts: BpdOptions = {}): Tensor {
    return nll.sub(Math.log(opts.binWidth ?? 1) + Math.log(opts.dataScale ?? 1)).div(Math.LN2);
  }

  /** Σ_b log p(x_b) in nats (its gradient w.r.t. x is the score used by the denoising step). */
  logDensity(x: Tensor, y?: Tensor): Tensor {
    const { z, logdet } = this.forward(x, y);
    return this.nllPerDim(z, logdet).sum().mul(-this.dims);
  }

  /** Corrupt a training batch x [B, C, S, S] (random numbers from the trace's rng_seed). */
  augment(x: Tensor, noise: NoiseSpec): Tensor {
    if (noise.kind === 'uniform') {
      const levels = 2 ** (noise.bits ?? 8);
      const xInt = x.add(1).mul((levels - 1) / 2);
      return xInt.add(rand(x.shape, x.dtype)).div(levels).mul(2).sub(1);
    }
    const eps = randn(x.shape, x.dtype);
    if (typeof noise.sigma === 'number') return x.add(eps.mul(noise.sigma));
    const [lo, hi] = noise.sigma;
    const sigma = rand([x.size(0), 1, 1, 1], x.dtype).mul(hi - lo).add(lo);
    return x.add(eps.mul(sigma));
  }

  /** Replace each label by −1 ("no class") with probability p (classifier-free guidance training). */
  dropLabels(y: Tensor, p: number): Tensor {
    if (p <= 0) return y;
    return where(rand(y.shape).lt(p), -1, y);
  }
}

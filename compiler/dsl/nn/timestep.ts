/**
 * @file DiT's TimestepEmbedder: sinusoidal frequency embedding of a float timestep, then
 * `mlp.0` = Linear(freqDim, hidden) → SiLU → `mlp.2` = Linear(hidden, hidden).
 *
 * Reference: facebookresearch/DiT models.py `TimestepEmbedder` (same in SiT and LightningDiT):
 *   half = dim // 2;  freqs = exp(-ln(max_period) · arange(half, f32) / half)
 *   args = t[:, None] · freqs[None];  emb = cat([cos(args), sin(args)])   (cos first)
 *   and one zero column when dim is odd.  Defaults: dim 256, max_period 10000.
 * The frequencies are computed on the host with the reference's f32 operation order
 * (fround(fround(-ln P) · i) / half, then exp), so they equal PyTorch's except where PyTorch's
 * vectorized f32 exp is off by one ulp (3 of 128 entries for dim 256); the product t·freqs and the
 * cos/sin run in the graph. The Sequential's numeric keys come from the array `mlp` with a hole at 1.
 * Init follows DiT's initialize_weights: mlp weights N(0, 0.02), biases 0.
 */
import type { DType } from '../../../ir/dtype.ts';
import { concat, constant, zeros } from '../functional.ts';
import { Module } from '../module.ts';
import { type Tensor, dslError } from '../tensor.ts';
import { Linear } from './linear.ts';

/** exp(-ln(maxPeriod) · i / half) for i < half, rounded as PyTorch's f32 computation is. */
export function timestepFrequencies(dim: number, maxPeriod = 10000): Float32Array {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(half);
  const negLog = Math.fround(-Math.log(maxPeriod));
  for (let i = 0; i < half; i++) out[i] = Math.exp(Math.fround(Math.fround(negLog * i) / half));
  return out;
}

/** t [B] (float) → [B, dim] = [cos(t·f), sin(t·f)] (+ a zero column when dim is odd). */
export function timestepEmbedding(t: Tensor, dim: number, maxPeriod = 10000): Tensor {
  if (t.rank !== 1 || !t.isFloat()) throw dslError('timestepEmbedding', [t], 'expects a float tensor t [B]');
  const f = timestepFrequencies(dim, maxPeriod);
  const args = t.unsqueeze(1).mul(constant(f, [1, f.length], t.dtype));
  const parts = [args.cos(), args.sin()];
  if (dim % 2 === 1) parts.push(zeros([t.size(0), 1], t.dtype));
  return concat(parts, -1);
}

export interface TimestepEmbedderOptions {
  /** Size of the frequency embedding. Default 256. */
  frequencyEmbeddingSize?: number;
  /** Default 10000. */
  maxPeriod?: number;
  dtype?: DType;
}

export class TimestepEmbedder extends Module {
  /** nn.Sequential(Linear, SiLU, Linear): keys mlp.0.*, mlp.2.* */
  readonly mlp: readonly [Linear, undefined, Linear];
  readonly frequencyEmbeddingSize: number;
  readonly maxPeriod: number;
  constructor(readonly hidden: number, opts: TimestepEmbedderOptions = {}) {
    super();
    this.frequencyEmbeddingSize = opts.frequencyEmbeddingSize ?? 256;
    this.maxPeriod = opts.maxPeriod ?? 10000;
    const init = { weightInit: { kind: 'normal', std: 0.02 }, biasInit: { kind: 'zeros' }, dtype: opts.dtype } as const;
    this.mlp = [new Linear(this.frequencyEmbeddingSize, hidden, init), undefined, new Linear(hidden, hidden, init)];
  }
  /** t [B] float → [B, hidden]. */
  forward(t: Tensor): Tensor {
    const f = timestepEmbedding(t, this.frequencyEmbeddingSize, this.maxPeriod);
    return this.mlp[2].forward(this.mlp[0].forward(f).silu());
  }
}

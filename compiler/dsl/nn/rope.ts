/**
 * @file 2D rotary position embedding for vision transformers, EVA-02 style, exactly as
 * LightningDiT's `VisionRotaryEmbeddingFast`.
 *
 * Reference followed: hustvl/LightningDiT @ 2725fed, models/pos_embed.py `VisionRotaryEmbeddingFast`
 * (identical to baaivision/EVA, EVA-02/asuka/rope.py), with its default freqs_for='lang':
 *
 *   freqs   = 1 / theta^(arange(0, dim, 2)[:dim//2] / dim)            (dim//2 frequencies)
 *   t       = arange(ft_seq_len) / ft_seq_len * pt_seq_len             (positions, rescaled)
 *   f       = repeat(outer(t, freqs), '... n -> ... (n r)', r=2)        ([ft, 2·(dim//2)], pairs equal)
 *   F[i, j] = concat(f[i], f[j])                                        (row i first, then column j)
 *   freqs_cos/sin = cos/sin(F).view(ft·ft, 4·(dim//2))                  (token n = i·ft + j, row-major)
 *   rope(x) = x · freqs_cos + rotate_half(x) · freqs_sin,   rotate_half: (x0, x1) ↦ (−x1, x0) per
 *             adjacent pair.
 *
 * `dim` is the reference's constructor argument: LightningDiT passes half the head dim
 * (`hidden_size // num_heads // 2`) with pt_seq_len = the token grid side, so the rotated width
 * 4·(dim//2) is the whole head dim: the first half of each head rotates with the row index, the second
 * half with the column index. Use `VisionRotaryEmbeddingFast.forHeadDim` for that convention.
 *
 * Kiln computes the tables on the host in f64 and rounds them to f32 constants (the reference computes
 * them in f32; the two agree to ~1e-6 for the angles used in practice). The reference registers the
 * tables as persistent buffers (`feat_rope.freqs_cos/sin` in LightningDiT checkpoints); Kiln does not
 * treat them as parameters: it recomputes them, and ignores those keys when loading.
 * Only freqs_for='lang' (the mode every reference model uses) is implemented.
 */
import { ShapeError } from '../../../ir/errors.ts';
import { constant, stack } from '../functional.ts';
import { type Tensor, dslError } from '../tensor.ts';
import { type TraceContext, activeTrace } from '../trace.ts';

export interface VisionRopeOptions {
  /** The grid side the model was trained at (the reference's pt_seq_len). Default 16. */
  ptSeqLen?: number;
  /** The grid side used now (ft_seq_len); positions are rescaled by pt/ft. Default ptSeqLen. */
  ftSeqLen?: number;
  /** Default 10000. */
  theta?: number;
}

export interface VisionRopeTables {
  /** ft·ft tokens, row-major over the grid. */
  readonly seqLen: number;
  /** Rotated width 4·(dim//2) (the head dim under LightningDiT's convention). */
  readonly rotDim: number;
  /** [seqLen, rotDim] row-major, f64 values. */
  readonly cos: Float64Array;
  readonly sin: Float64Array;
}

/** The reference's freqs_cos / freqs_sin, computed in f64. */
export function visionRopeTables(dim: number, opts: VisionRopeOptions = {}): VisionRopeTables {
  const pt = opts.ptSeqLen ?? 16;
  const ft = opts.ftSeqLen ?? pt;
  const theta = opts.theta ?? 10000;
  if (!Number.isInteger(dim) || dim < 2) throw new ShapeError('rope', [], `dim ${dim} must be an integer >= 2`);
  if (!Number.isInteger(ft) || ft < 1) throw new ShapeError('rope', [], `ft_seq_len ${ft} must be a positive integer`);
  const nf = Math.floor(dim / 2);
  const freqs = Array.from({ length: nf }, (_, i) => 1 / theta ** ((2 * i) / dim));
  const pos = Array.from({ length: ft }, (_, i) => (i / ft) * pt);
  const rotDim = 4 * nf;
  const seqLen = ft * ft;
  const cos = new Float64Array(seqLen * rotDim);
  const sin = new Float64Array(seqLen * rotDim);
  for (let i = 0; i < ft; i++)
    for (let j = 0; j < ft; j++) {
      const base = (i * ft + j) * rotDim;
      for (let f = 0; f < nf; f++) {
        const a = pos[i]! * freqs[f]!; // row half
        const b = pos[j]! * freqs[f]!; // column half
        for (const [off, ang] of [[2 * f, a], [2 * nf + 2 * f, b]] as const) {
          cos[base + off] = cos[base + off + 1] = Math.cos(ang);
          sin[base + off] = sin[base + off + 1] = Math.sin(ang);
        }
      }
    }
  return { seqLen, rotDim, cos, sin };
}

/** EVA's rotate_half on adjacent pairs: (x0, x1, x2, x3, ...) ↦ (−x1, x0, −x3, x2, ...). */
export function rotateHalf(x: Tensor): Tensor {
  const d = x.size(-1);
  if (d % 2 !== 0) throw dslError('rotateHalf', [x], `last axis ${d} must be even`);
  const pairs = x.reshape([...x.shape.slice(0, -1), d / 2, 2]);
  return stack([pairs.select(-1, 1).neg(), pairs.select(-1, 0)], -1).reshape([...x.shape]);
}

/** LightningDiT's VisionRotaryEmbeddingFast: apply with `forward(x)` on x [..., seqLen, rotDim]. */
export class VisionRotaryEmbeddingFast {
  readonly tables: VisionRopeTables;
  private readonly perTrace = new WeakMap<TraceContext, { cos: Tensor; sin: Tensor }>();

  constructor(
    /** The reference's `dim` (half the head dim in LightningDiT). */
    readonly dim: number,
    readonly opts: VisionRopeOptions = {},
  ) {
    this.tables = visionRopeTables(dim, opts);
  }

  /** LightningDiT's convention: dim = headDim / 2, pt_seq_len = the token grid side. */
  static forHeadDim(headDim: number, gridSize: number, opts: Omit<VisionRopeOptions, 'ptSeqLen'> = {}): VisionRotaryEmbeddingFast {
    if (headDim % 4 !== 0) throw new ShapeError('rope', [], `head dim ${headDim} must be a multiple of 4 for 2D RoPE`);
    return new VisionRotaryEmbeddingFast(headDim / 2, { ...opts, ptSeqLen: gridSize });
  }

  get seqLen(): number {
    return this.tables.seqLen;
  }
  get rotDim(): number {
    return this.tables.rotDim;
  }

  /** The f32 cos/sin constants [seqLen, rotDim] in the active trace (created once per trace). */
  constants(): { cos: Tensor; sin: Tensor } {
    const ctx = activeTrace();
    let c = this.perTrace.get(ctx);
    if (!c) {
      const shape = [this.seqLen, this.rotDim];
      c = {
        cos: constant(Array.from(this.tables.cos, Math.fround), shape),
        sin: constant(Array.from(this.tables.sin, Math.fround), shape),
      };
      this.perTrace.set(ctx, c);
    }
    return c;
  }

  /** x · cos + rotate_half(x) · sin, x [..., seqLen, rotDim] (e.g. q or k as [B, heads, N, head dim]). */
  forward(x: Tensor): Tensor {
    const n = x.size(-2);
    const d = x.size(-1);
    if (n !== this.seqLen || d !== this.rotDim)
      throw dslError('rope', [x], `tables are [${this.seqLen}, ${this.rotDim}] (tokens, rotated dims); got ${n} tokens of width ${d}`);
    const { cos, sin } = this.constants();
    const [c, s] = x.dtype === 'f32' ? [cos, sin] : [cos.cast(x.dtype), sin.cast(x.dtype)];
    return x.mul(c).add(rotateHalf(x).mul(s));
  }
}

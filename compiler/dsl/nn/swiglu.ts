/**
 * @file SwiGLU feed-forward: `w12` = Linear(in, 2·hidden) → chunk into (x1, x2) →
 * silu(x1)·x2 → `w3` = Linear(hidden, out).
 *
 * References: hustvl/LightningDiT models/swiglu_ffn.py `SwiGLUFFN` (= facebookresearch/dinov2's,
 * names `w12`, `w3`, biases on by default) and transformers' `Dinov2SwiGLUFFN` (the same math with
 * names `weights_in`, `weights_out`, always with biases): choose the names with `names`.
 *
 * Hidden sizes, as each reference computes them (both are given mlp_ratio·dim first):
 * - LightningDiT: `int(2/3 * int(dim * mlp_ratio))`, no rounding (it uses SwiGLUFFN, not the Fused
 *   variant): dim 768 → 2048, 1024 → 2730, 1152 → 3072.
 * - DINOv2 (SwiGLUFFNFused, HF Dinov2SwiGLUFFN): `(int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8`,
 *   rounded up to a multiple of 8: dim 1024 → 2736, 1536 → 4096.
 */
import { Module } from '../module.ts';
import type { Tensor } from '../tensor.ts';
import { Linear, type LinearInitOptions } from './linear.ts';

/** LightningDiT's SwiGLU hidden size: int(2/3 · int(dim · mlpRatio)). */
export function lightningDiTSwiGLUHidden(dim: number, mlpRatio = 4): number {
  return Math.trunc((2 / 3) * Math.trunc(dim * mlpRatio));
}

/** DINOv2's SwiGLU hidden size: (int(int(dim · mlpRatio) · 2 / 3) + 7) // 8 · 8. */
export function dinov2SwiGLUHidden(dim: number, mlpRatio = 4): number {
  const h = Math.trunc(dim * mlpRatio);
  return Math.floor((Math.trunc((h * 2) / 3) + 7) / 8) * 8;
}

export interface SwiGLUOptions {
  /** Default inFeatures. */
  out?: number;
  /** Biases of both linears. Default true. */
  bias?: boolean;
  /** Parameter names of the input and output linears: ['w12', 'w3'] (default) or ['weights_in', 'weights_out']. */
  names?: readonly [string, string];
  linear?: LinearInitOptions;
}

export class SwiGLUFFN extends Module {
  readonly names: readonly [string, string];

  constructor(
    readonly inFeatures: number,
    readonly hidden: number,
    opts: SwiGLUOptions = {},
  ) {
    super();
    const names = opts.names ?? ['w12', 'w3'];
    if (names[0] === names[1]) throw new Error(`SwiGLUFFN: the two linears need different names, got ${names[0]}`);
    this.names = names;
    const bias = opts.bias ?? true;
    // The two Linears live under the configured property names, so state_dict keys follow them.
    const self = this as unknown as Record<string, Linear>;
    self[names[0]] = new Linear(inFeatures, 2 * hidden, { ...opts.linear, bias });
    self[names[1]] = new Linear(hidden, opts.out ?? inFeatures, { ...opts.linear, bias });
  }

  /** The input projection (`w12` / `weights_in`). */
  get inProj(): Linear {
    return (this as unknown as Record<string, Linear>)[this.names[0]]!;
  }
  /** The output projection (`w3` / `weights_out`). */
  get outProj(): Linear {
    return (this as unknown as Record<string, Linear>)[this.names[1]]!;
  }

  forward(x: Tensor): Tensor {
    const [x1, x2] = this.inProj.forward(x).chunk(2, -1) as [Tensor, Tensor];
    return this.outProj.forward(x1.silu().mul(x2));
  }
}

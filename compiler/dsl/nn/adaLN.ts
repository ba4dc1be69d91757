/**
 * @file adaLN conditioning (DiT): `modulate` and the `adaLN_modulation` module.
 *
 * Reference: facebookresearch/DiT models.py: `modulate(x, shift, scale) = x·(1 + scale.unsqueeze(1))
 * + shift.unsqueeze(1)` (LightningDiT allows shift = None: wo_shift), and
 * `adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(c, n·dim))` whose output is chunked into n
 * pieces (n = 6 in blocks: shift/scale/gate for attention and MLP; 2 in the final layer). The module
 * keeps the Sequential's key: its Linear is property `1`, so a block holding it as
 * `adaLN_modulation` has `adaLN_modulation.1.weight` / `.bias`. DiT zero-initializes these (adaLN-Zero):
 * `zeroInit` defaults to true.
 */
import type { DType } from '../../../ir/dtype.ts';
import { zeros } from '../init.ts';
import { Module } from '../module.ts';
import { type Tensor, dslError } from '../tensor.ts';
import { Linear } from './linear.ts';

/** x [B, N, D] · (1 + scale[:, None]) + shift[:, None]; shift may be omitted (LightningDiT wo_shift). */
export function modulate(x: Tensor, shift: Tensor | undefined, scale: Tensor): Tensor {
  const y = x.mul(scale.unsqueeze(1).add(1));
  return shift ? y.add(shift.unsqueeze(1)) : y;
}

export interface AdaLNModulationOptions {
  /** Zero weight and bias (adaLN-Zero). Default true. */
  zeroInit?: boolean;
  dtype?: DType;
}

export class AdaLNModulation extends Module {
  /** Index 1 of the reference's Sequential(SiLU, Linear). */
  readonly 1: Linear;
  constructor(
    readonly condDim: number,
    readonly dim: number,
    readonly n: number,
    opts: AdaLNModulationOptions = {},
  ) {
    super();
    const z = opts.zeroInit ?? true;
    this[1] = new Linear(condDim, n * dim, z ? { weightInit: zeros, biasInit: zeros, dtype: opts.dtype } : { dtype: opts.dtype });
  }
  get linear(): Linear {
    return this[1];
  }
  /** c [B, condDim] → n tensors [B, dim] (Linear(SiLU(c)).chunk(n, 1)). */
  forward(c: Tensor): Tensor[] {
    if (c.rank !== 2 || c.size(1) !== this.condDim) throw dslError('AdaLNModulation', [c], `expects c [B, ${this.condDim}]`);
    return this[1].forward(c.silu()).chunk(this.n, 1);
  }
}

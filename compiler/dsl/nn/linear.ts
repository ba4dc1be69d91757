/**
 * @file nn.Linear: y = x Wᵀ + b with PyTorch's parameter layout (weight [out, in], bias [out])
 * and PyTorch's default init (kaiming_uniform(a=√5) → U(±1/√in) for weight and bias).
 */
import type { DType } from '../../../ir/dtype.ts';
import { type Init } from '../init.ts';
import { Module, Parameter } from '../module.ts';
import type { Tensor } from '../tensor.ts';

export interface LinearOptions {
  bias?: boolean;
  dtype?: DType;
  weightInit?: Init;
  biasInit?: Init;
}

/** Initializers and dtype passed down to a layer's Linear sub-modules. */
export type LinearInitOptions = Pick<LinearOptions, 'weightInit' | 'biasInit' | 'dtype'>;

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    const u: Init = { kind: 'uniform', low: -bound, high: bound };
    this.weight = new Parameter([outFeatures, inFeatures], opts.weightInit ?? u, opts.dtype);
    this.bias = opts.bias === false ? undefined : new Parameter([outFeatures], opts.biasInit ?? u, opts.dtype);
  }
  forward(x: Tensor): Tensor {
    const y = x.matmul(this.weight.mT);
    return this.bias ? y.add(this.bias) : y;
  }
}

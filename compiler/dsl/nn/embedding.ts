/**
 * @file nn.Embedding: a lookup table `weight` [num, dim] indexed by i32 ids (PyTorch's layout and
 * default init N(0, 1)).
 */
import type { DType } from '../../../ir/dtype.ts';
import type { Init } from '../init.ts';
import { Module, Parameter } from '../module.ts';
import type { Tensor } from '../tensor.ts';

export interface EmbeddingOptions {
  init?: Init;
  dtype?: DType;
}

export class Embedding extends Module {
  readonly weight: Parameter;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: EmbeddingOptions = {},
  ) {
    super();
    this.weight = new Parameter([numEmbeddings, embeddingDim], opts.init ?? { kind: 'normal', std: 1 }, opts.dtype);
  }
  /** ids: i32 [...] → [..., dim]. */
  forward(ids: Tensor): Tensor {
    return this.weight.take(ids, 0);
  }
}

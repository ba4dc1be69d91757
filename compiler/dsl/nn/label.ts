/**
 * @file DiT's LabelEmbedder: class-label lookup with label dropout for classifier-free guidance.
 *
 * Reference: facebookresearch/DiT models.py `LabelEmbedder` (same in SiT and LightningDiT):
 * `embedding_table` = nn.Embedding(num_classes + 1, hidden) when dropout_prob > 0 (the extra row,
 * index num_classes, is the "null" class), else num_classes rows. `token_drop` replaces a label by
 * num_classes where `force_drop_ids == 1`, or, without force_drop_ids, where a uniform sample is
 * < dropout_prob. forward applies token_drop when (train and dropout_prob > 0) or force_drop_ids is
 * given. Kiln draws the uniforms with `rand()` (Philox, so they differ from torch.rand's numbers).
 * Init: N(0, 0.02) as DiT's initialize_weights.
 */
import type { DType } from '../../../ir/dtype.ts';
import { rand, where } from '../functional.ts';
import { Module } from '../module.ts';
import { type Tensor, dslError } from '../tensor.ts';
import { Embedding } from './embedding.ts';

export interface LabelForwardOptions {
  /** Training mode: labels are dropped at random with probability dropoutProb. */
  train?: boolean;
  /** Drop exactly these rows: i32 [B] (dropped where == 1, as the reference) or bool [B]. */
  forceDrop?: Tensor;
}

export class LabelEmbedder extends Module {
  readonly embedding_table: Embedding;
  constructor(
    readonly numClasses: number,
    readonly hidden: number,
    readonly dropoutProb: number,
    opts: { dtype?: DType } = {},
  ) {
    super();
    this.embedding_table = new Embedding(numClasses + (dropoutProb > 0 ? 1 : 0), hidden, {
      init: { kind: 'normal', std: 0.02 },
      dtype: opts.dtype,
    });
  }

  /** Labels with dropped entries replaced by the null class `numClasses`. */
  tokenDrop(labels: Tensor, forceDrop?: Tensor): Tensor {
    if (this.dropoutProb <= 0)
      throw dslError('LabelEmbedder', [labels], 'label dropout needs dropout_prob > 0 (the table has no null-class row)');
    const drop = forceDrop ? (forceDrop.dtype === 'bool' ? forceDrop : forceDrop.eq(1)) : rand([labels.size(0)]).lt(this.dropoutProb);
    return where(drop, this.numClasses, labels);
  }

  /** labels i32 [B] → [B, hidden]. */
  forward(labels: Tensor, opts: LabelForwardOptions = {}): Tensor {
    if (labels.rank !== 1 || labels.dtype !== 'i32') throw dslError('LabelEmbedder', [labels], 'expects i32 labels [B]');
    const useDropout = this.dropoutProb > 0;
    const l = (opts.train && useDropout) || opts.forceDrop ? this.tokenDrop(labels, opts.forceDrop) : labels;
    return this.embedding_table.forward(l);
  }
}

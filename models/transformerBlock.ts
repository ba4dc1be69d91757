/**
 * @file The pre-LN transformer block (timm style, tanh GELU, LayerNorm eps 1e-5): the unit of the
 * fusion pins, the CUDA benchmarks and the `block` program of the CLI.
 */
import { nn } from '../compiler/dsl/index.ts';

export class TransformerBlock extends nn.ViTBlock {
  constructor(dim: number, heads: number) {
    super(dim, heads, { eps: 1e-5, act: 'gelu_tanh' });
  }
}

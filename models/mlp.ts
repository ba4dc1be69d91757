/**
 * @file A multilayer-perceptron classifier (Linear → GELU → ... → Linear), the first model Kiln
 * trains end to end (Fashion-MNIST). Parameter names match torch.nn.Sequential-free PyTorch code
 * with `layers.<i>.weight` / `layers.<i>.bias`.
 */
import { Module, type Tensor, nn } from '../compiler/dsl/index.ts';

export interface MlpConfig {
  inputs: number;
  hidden: readonly number[];
  classes: number;
}

export class MlpClassifier extends Module {
  readonly layers: nn.Linear[];
  constructor(readonly config: MlpConfig) {
    super();
    const dims = [config.inputs, ...config.hidden, config.classes];
    this.layers = dims.slice(1).map((d, i) => new nn.Linear(dims[i]!, d));
  }
  /** x: [B, inputs] → logits [B, classes]. */
  forward(x: Tensor): Tensor {
    let h = x;
    this.layers.forEach((l, i) => {
      h = l.forward(h);
      if (i < this.layers.length - 1) h = h.gelu();
    });
    return h;
  }
}

/**
 * @file An example of a user's model file for `kiln compile ./examples/my-model.ts --report` and
 * `kiln train ./examples/my-model.ts`: it exports `model` (a Module), `program` (the traced
 * computation: inputs x and y, outputs loss and accuracy) and, optionally, `job` (training defaults).
 */
import { Module, type Tensor, type TraceContext, accuracy, crossEntropy, nn } from '../compiler/dsl/index.ts';

class TinyConvNet extends Module {
  patch = new nn.PatchEmbed(1, 32, 4); // 28x28 image → 7x7 tokens of 32 (a strided 4x4 convolution)
  norm = new nn.LayerNorm(32);
  head = new nn.Linear(32, 10);
  forward(x: Tensor): Tensor {
    const tokens = this.patch.forward(x).gelu(); // [B, 49, 32]
    return this.head.forward(this.norm.forward(tokens.mean(1)));
  }
}

export const model = new TinyConvNet();

export function program(t: TraceContext, o: { batch: number }) {
  const x = t.input('x', [o.batch, 1, 28, 28]);
  const y = t.input('y', [o.batch], 'i32');
  const logits = model.forward(x);
  return { loss: crossEntropy(logits, y), accuracy: accuracy(logits, y) };
}

export const job = {
  data: { kind: 'fashion_mnist', size: 28, normalize: { mean: 0.286, std: 0.353 } },
  schedule: { kind: 'warmup_cosine', lr: 3e-3, warmup: 20 },
  batchSize: 32,
  steps: 300,
};

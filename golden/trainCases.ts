/**
 * @file The loss and optimizer golden cases (golden/losses_golden.py → golden/data/losses.safetensors,
 * golden/optim_golden.py → golden/data/optim/*.safetensors): each loss's inputs and Kiln function, and
 * each optimizer file's torch.optim settings; shared by test/train/{losses,optimizerGolden}.test.ts and
 * `kiln golden check` (golden/checks.ts).
 */
import { type Tensor, cosineSimilarityLoss, crossEntropy, klDiagonalGaussian, l1Loss, mseLoss, trace } from '../compiler/dsl/index.ts';
import type { OptimizerOptions } from '../compiler/transforms/optimizers.ts';
import { grad } from '../compiler/transforms/grad.ts';
import type { Graph } from '../ir/graph.ts';
import type { HostTensor } from '../ir/tensor.ts';

export interface LossCase {
  args: string[];
  f: (x: Record<string, Tensor>) => Tensor;
}

export const LOSS_CASES: Record<string, LossCase> = {
  mse: { args: ['a', 'b'], f: (x) => mseLoss(x.a!, x.b!) },
  l1: { args: ['a', 'b'], f: (x) => l1Loss(x.a!, x.b!) },
  ce: { args: ['logits', 'y'], f: (x) => crossEntropy(x.logits!, x.y!) },
  ce_smooth: { args: ['logits', 'y'], f: (x) => crossEntropy(x.logits!, x.y!, { labelSmoothing: 0.1 }) },
  ce_seq: { args: ['logits', 'y'], f: (x) => crossEntropy(x.logits!, x.y!) },
  kl: { args: ['mean', 'logvar'], f: (x) => klDiagonalGaussian(x.mean!, x.logvar!) },
  cos: { args: ['a', 'b'], f: (x) => cosineSimilarityLoss(x.a!, x.b!) },
};

/** The loss graph of case `name` on the golden's inputs, its gradient w.r.t. every float input, and the feeds. */
export function lossProgram(name: string, golden: ReadonlyMap<string, HostTensor>): { forward: Graph; graph: Graph; feeds: Record<string, HostTensor>; floats: string[] } {
  const c = LOSS_CASES[name]!;
  const feeds: Record<string, HostTensor> = {};
  for (const a of c.args) {
    const v = golden.get(`${name}.in.${a}`);
    if (!v) throw new Error(`losses golden: no tensor ${name}.in.${a}`);
    feeds[a] = v;
  }
  const forward = trace(name, (t) => {
    const xs: Record<string, Tensor> = {};
    for (const a of c.args) xs[a] = t.input(a, feeds[a]!.shape, feeds[a]!.dtype);
    return { loss: c.f(xs) };
  });
  const floats = c.args.filter((a) => feeds[a]!.dtype === 'f32');
  return { forward, graph: grad(forward, { loss: 'loss', wrt: floats }), feeds, floats };
}

/** The torch.optim settings of each optimizer golden (10 steps of an MLP classifier, hidden [8], 3 classes). */
export const OPTIMIZER_CASES: Array<{ file: string; optimizer: OptimizerOptions; clip?: number; ema?: number }> = [
  { file: 'adamw', optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 } },
  { file: 'adamw_clip_ema', optimizer: { kind: 'adamw', weightDecay: 0.01 }, clip: 0.5, ema: 0.9 },
  { file: 'sgd_momentum', optimizer: { kind: 'sgd', momentum: 0.9, weightDecay: 0.01 } },
  { file: 'sgd_nesterov', optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true } },
  { file: 'sgd_plain', optimizer: { kind: 'sgd' } },
];

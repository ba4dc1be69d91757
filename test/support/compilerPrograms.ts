/**
 * @file Programs shared by the compiler tests (test/compiler): the one-step training graph of every
 * nn-layer golden that has cotangents and parameters (loss = Σ_outputs sum(out · cotangent), as in
 * test/autodiff/layerGrads.test.ts, then AdamW with gradient clipping and EMA) together with the
 * feeds of its first step; the training step of the MLP classifier (models/mlp.ts); and a tiny
 * LightningDiT flow-matching training step. Also a float comparison helper for fused vs op-by-op
 * results.
 */
import { crossEntropy, trace } from '../../compiler/dsl/index.ts';
import { withTrace } from '../../compiler/dsl/trace.ts';
import { copyGraph } from '../../compiler/transforms/rewrite.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import type { Graph } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { MlpClassifier, type MlpConfig } from '../../models/mlp.ts';
import { goldenFiles, loadGolden, traceGolden } from './nnGoldens.ts';
import { mulberry32 } from '../../runtime/prng.ts';

/** Learning rate fed to every training step built here. */
export const LR = 1e-2;

/** Extend `g` with cotangent inputs and a scalar output `loss` = Σ sum(out_k · cotangent.out_k). */
export function withCotangentLoss(g: Graph, outs: readonly string[]): Graph {
  const c = copyGraph(g, `${g.name}_loss`);
  return withTrace(c.ctx, () => {
    let loss;
    for (const o of outs) {
      const y = c.out(o);
      const term = y.mul(c.ctx.input(`cotangent.${o}`, y.shape, y.dtype)).sum();
      loss = loss ? loss.add(term) : term;
    }
    c.builder.output('loss', loss!.id);
    return c.builder.build();
  });
}

/** Golden files whose layer has parameters and cotangents (so it has a training step). */
export const layerTrainFiles: readonly string[] = goldenFiles.filter((f) => {
  const g = loadGolden(f);
  return g.byPrefix('cotangent.').size > 0 && g.byPrefix('param.').size > 0;
});

/** Golden files with cotangents but no parameters (nothing to train). */
export const paramlessCotangentFiles: readonly string[] = goldenFiles.filter((f) => {
  const g = loadGolden(f);
  return g.byPrefix('cotangent.').size > 0 && g.byPrefix('param.').size === 0;
});

export interface LayerStep {
  /** The golden's loss graph (before trainStep). */
  loss: Graph;
  /** The training step: AdamW, clipGradNorm 1, EMA 0.9. */
  graph: Graph;
  /** Every input of the first step: golden params, inputs, cotangents, lr, zero state, ema = params. */
  feeds: Record<string, HostTensor>;
  params: string[];
}

export function layerTrainStep(file: string): LayerStep {
  const gold = loadGolden(file);
  const cots = gold.byPrefix('cotangent.');
  const { graph } = traceGolden(gold);
  const loss = withCotangentLoss(graph, [...cots.keys()]);
  const step = trainStep(loss, { loss: 'loss', optimizer: { kind: 'adamw' }, clipGradNorm: 1, ema: { decay: 0.9 } });
  const params = gold.byPrefix('param.');
  const inputs = gold.byPrefix('input.');
  const feeds: Record<string, HostTensor> = {};
  for (const i of step.inputs) {
    const n = i.name;
    let t: HostTensor | undefined;
    if (n === 'lr') t = hostTensor('f32', [], [LR]);
    else if (n === 'optim.step') t = hostTensor('f32', [], [0]);
    else if (n.startsWith('ema.')) t = params.get(n.slice(4));
    else if (n.startsWith('optim.')) t = hostTensor(i.type.dtype, i.type.shape);
    else if (n.startsWith('cotangent.')) t = cots.get(n.slice('cotangent.'.length));
    else if (i.kind === 'param' || i.kind === 'frozen') t = params.get(n);
    else t = inputs.get(n);
    if (!t) throw new Error(`${file}: no value for input '${n}'`);
    feeds[n] = t;
  }
  return { loss, graph: step, feeds, params: step.inputs.filter((i) => i.kind === 'param').map((i) => i.name) };
}

/** The MLP classifier's AdamW training step (cross-entropy on logits) for batches of `batch`. */
export function mlpTrainStep(config: MlpConfig, batch: number): { model: MlpClassifier; graph: Graph } {
  const model = new MlpClassifier(config);
  const fwd = trace('mlp', (t) => {
    const x = t.input('x', [batch, config.inputs]);
    const y = t.input('y', [batch], 'i32');
    return { loss: crossEntropy(model.forward(x), y) };
  }, { params: model });
  return { model, graph: trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw' } }) };
}

/** Fixed random MLP data: x uniform in [-1, 1), labels uniform over the classes. */
export function mlpData(config: MlpConfig, batch: number, seed: number): { x: HostTensor; y: HostTensor } {
  const r = mulberry32(seed);
  return {
    x: hostTensor('f32', [batch, config.inputs], Array.from({ length: batch * config.inputs }, () => 2 * r() - 1)),
    y: hostTensor('i32', [batch], Array.from({ length: batch }, () => Math.floor(r() * config.classes))),
  };
}

/** A tiny LightningDiT: 1 block, hidden 32, 2 heads, 4x4x4 latents, 4 classes. */
export function ditModel(): LightningDiT {
  return new LightningDiT(lightningDiTConfig('B/1', { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 4 }));
}

/** The tiny LightningDiT's flow-matching training step (AdamW and EMA as LightningDiT trains). */
export function ditTrainStep(batch = 2): Graph {
  const model = ditModel();
  const fwd = flowMatchingLossGraph(model, batch);
  return trainStep(fwd, {
    loss: 'loss', metrics: ['mse', 'cos'], params: model.trainableParameterNames(),
    optimizer: LIGHTNINGDIT_TRAINING.optimizer, ema: LIGHTNINGDIT_TRAINING.ema,
  });
}

/**
 * @file Named programs the CLI can trace, print and compile (`kiln ir NAME`, `kiln compile NAME`):
 * the models of models/ at a chosen size and batch, as a forward pass or a whole training step.
 */
import { type Tensor, crossEntropy, trace } from '../compiler/dsl/index.ts';
import { trainStep } from '../compiler/transforms/trainStep.ts';
import { KilnError } from '../ir/errors.ts';
import type { Graph } from '../ir/graph.ts';
import { Dinov2Model, type Dinov2Size, dinov2Config, traceDinov2 } from '../models/dinov2.ts';
import { FAE, ViTFeatureEncoder, faeConfigs, stageIaTrainStep, traceStageIa } from '../models/fae.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph } from '../models/flowMatching.ts';
import { type DiTName, LightningDiT, lightningDiTConfig } from '../models/lightningdit.ts';
import { INCEPTION_FID, InceptionV3, traceInceptionFeatures } from '../models/inception.ts';
import { MlpClassifier } from '../models/mlp.ts';
import { DinoNetwork, dinoConfig, dinoForward, dinoStateOutputs } from '../models/ssl/dino.ts';
import { TarFlow, forwardGraph, tarflowConfigs, trainLossGraph } from '../models/tarflow.ts';
import { TransformerBlock } from '../models/transformerBlock.ts';

export interface ProgramOptions {
  /** A whole training step (forward, backward, optimizer) instead of the forward pass. */
  train: boolean;
  batch: number;
  /** Model size or preset (per model: see PROGRAMS). */
  size?: string;
}

const adamw = { kind: 'adamw' } as const;

export const PROGRAMS: Record<string, { help: string; build: (o: ProgramOptions) => Graph }> = {
  mlp: {
    help: 'MLP classifier 784-256-128-10 (cross-entropy when --train)',
    build: (o) => {
      const m = new MlpClassifier({ inputs: 784, hidden: [256, 128], classes: 10 });
      if (!o.train) return trace('mlp', (t) => ({ logits: m.forward(t.input('x', [o.batch, 784])) }), { params: m });
      const fwd = trace('mlp', (t) => ({ loss: crossEntropy(m.forward(t.input('x', [o.batch, 784])), t.input('y', [o.batch], 'i32')) }), { params: m });
      return trainStep(fwd, { loss: 'loss', optimizer: adamw });
    },
  },
  block: {
    help: 'pre-LN transformer block, --size WIDTHxHEADSxTOKENS (default 768x12x256)',
    build: (o) => {
      const [w, h, n] = (o.size ?? '768x12x256').split('x').map(Number) as [number, number, number];
      const m = new TransformerBlock(w, h);
      const fwd = trace('block', (t): Record<string, Tensor> => {
        const y = m.forward(t.input('x', [o.batch, n, w]));
        return o.train ? { loss: y.square().mean() } : { y };
      }, { params: m });
      return o.train ? trainStep(fwd, { loss: 'loss', optimizer: adamw }) : fwd;
    },
  },
  dino: {
    help: 'DINO step of the SSL encoder (jobs/ssl-encoder.json: 64-d depth-4 ViT, patch 4, 28 px, 2 global views, views cut in the program), --size LOCALVIEWSxLOCALSIZE (default 6x12); needs --train',
    build: (o) => {
      if (!o.train) throw new KilnError('dino is a training step: add --train');
      const [lv, ls] = (o.size ?? '6x12').split('x').map(Number) as [number, number];
      const cfg = dinoConfig({ dim: 64, depth: 4, heads: 4, patchSize: 4, imageSize: 28, channels: 1 }, { prototypes: 1024, globalViews: 2, localViews: lv, localSize: ls });
      const student = new DinoNetwork(cfg), teacher = new DinoNetwork(cfg);
      return trainStep(dinoForward(student, teacher, o.batch, { deviceCrops: true }), { loss: 'loss', metrics: ['teacher_entropy', 'student_entropy', ...dinoStateOutputs(teacher)], optimizer: { kind: 'adamw', weightDecay: 0.04 }, clipGradNorm: 3 });
    },
  },
  lightningdit: {
    help: 'LightningDiT on 16x16x32 latents, --size B/1 | L/1 | XL/1 ... (default B/1); flow-matching step when --train',
    build: (o) => {
      const model = new LightningDiT(lightningDiTConfig((o.size ?? 'B/1') as DiTName));
      if (o.train) {
        const fwd = flowMatchingLossGraph(model, o.batch);
        return trainStep(fwd, { loss: 'loss', metrics: ['mse', 'cos'], optimizer: LIGHTNINGDIT_TRAINING.optimizer, ema: LIGHTNINGDIT_TRAINING.ema });
      }
      const [c, hh, ww] = [model.config.inChannels, model.config.inputSize, model.config.inputSize];
      return trace('lightningdit', (t) => ({ v: model.forward(t.input('x', [o.batch, c, hh, ww]), t.input('t', [o.batch]), t.input('y', [o.batch], 'i32')) }), { params: model });
    },
  },
  dinov2: {
    help: 'DINOv2 encoder at 224 px, --size s | b | l | g (default b); forward only',
    build: (o) => {
      if (o.train) throw new KilnError('dinov2 is a frozen encoder: there is no training step (drop --train)');
      const model = new Dinov2Model(dinov2Config((o.size ?? 'b') as Dinov2Size));
      return traceDinov2(model, { batch: o.batch, height: 224, width: 224 });
    },
  },
  tarflow: {
    help: 'TarFlow/STARFlow, --size tiny | tinyCond | faeLatentP1 | fashionMnist28 ... (default fashionMnist28)',
    build: (o) => {
      const name = (o.size ?? 'fashionMnist28') as keyof typeof tarflowConfigs;
      if (!tarflowConfigs[name]) throw new KilnError(`tarflow: unknown preset '${name}' (${Object.keys(tarflowConfigs).join(', ')})`);
      const flow = new TarFlow(tarflowConfigs[name]);
      if (!o.train) return forwardGraph(flow, { batch: o.batch });
      return trainStep(trainLossGraph(flow, { batch: o.batch }), { loss: 'loss', optimizer: adamw });
    },
  },
  fae: {
    help: 'FAE stage Ia (adapter + feature decoder on encoder features), --size tiny | fashionMnist (default fashionMnist)',
    build: (o) => {
      const name = (o.size ?? 'fashionMnist') as keyof typeof faeConfigs;
      if (!faeConfigs[name] || name === 'paper') throw new KilnError(`fae: unknown or unsupported size '${name}' (tiny, fashionMnist)`);
      const cfg = faeConfigs[name]();
      const { dim, grid } = cfg.encoder;
      const patch = 4;
      const enc = new ViTFeatureEncoder({ dim, depth: 2, heads: 4, mlpHidden: 4 * dim, patchSize: patch, imageSize: grid * patch, channels: cfg.pixelDecoder.channels });
      const fae = new FAE(cfg, enc);
      return o.train ? stageIaTrainStep(fae, { batch: o.batch, optimizer: adamw }) : traceStageIa(fae, { batch: o.batch });
    },
  },
  inception: {
    help: 'Inception-v3 FID features (299 px input → 2048-d), --size fid | torchvision, optionally /WIDTH to divide the channels (default fid); evaluation only',
    build: (o) => {
      const [variant, w] = (o.size ?? 'fid').split('/') as [string, string | undefined];
      if (variant !== 'fid' && variant !== 'torchvision') throw new KilnError(`inception: unknown size '${o.size}' (fid, torchvision, optionally /WIDTH, e.g. fid/8)`);
      if (o.train) throw new KilnError('inception: an evaluation network (FID features) has no training step: drop --train');
      const model = new InceptionV3({ ...INCEPTION_FID, variant, width: w === undefined ? 1 : Number(w) });
      return traceInceptionFeatures(model, { batch: o.batch, height: 299, width: 299 });
    },
  },
};

export function buildProgram(name: string, o: ProgramOptions): Graph {
  const p = PROGRAMS[name];
  if (!p) throw new KilnError(`unknown program '${name}' (available: ${Object.keys(PROGRAMS).join(', ')})`);
  return p.build(o);
}

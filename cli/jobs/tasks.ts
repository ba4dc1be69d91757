/**
 * @file From a job to a TrainTask (runtime/train/trainer.ts): the model, its training-step program,
 * initial weights, and how a data batch becomes the step's feeds, for every model kind of a job file.
 *
 *   mlp                  classifier on flattened images; test accuracy at the end (Fashion-MNIST)
 *   fae_stage_ia         adapter + feature decoder on the frozen encoder's features (encoder run per batch)
 *   fae_stage_ib         pixel decoder on (noisy) encoder features of the images; with model.gan the
 *                        patch discriminator trains in alternation (the trainer's adversary)
 *   fae_pixel_finetune   pixel decoder on the feature decoder's reconstructed features
 *   lightningdit         flow matching on FAE latents (images → frozen encoder → adapter mean, normalized),
 *                        or on the images themselves (model.latents null: the pixel-space baseline)
 *   tarflow              TarFlow/STARFlow NLL on the same latents
 *   user                 the program of a user's model file (cli/userModel.ts)
 *   ssl_encoder          DINO self-distillation of the small ViT (models/ssl/dino.ts) on multi-crop views
 *                        (runtime/data/multiCrop.ts); linear probe + kNN at the end (method 'mim': not yet)
 */
import type { Backend } from '../../backends/backend.ts';
import { type Tensor, crossEntropy, accuracy, trace } from '../../compiler/dsl/index.ts';
import type { OptimizerOptions } from '../../compiler/transforms/optimizers.ts';
import { type TrainStepOptions, trainStep } from '../../compiler/transforms/trainStep.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import type { Precision } from '../../runtime/compile.ts';
import { loadFashionMnist } from '../../runtime/data/fashionMnist.ts';
import { FashionSource } from '../../runtime/data/fashionSource.ts';
import type { BatchSource, SourceBatch } from '../../runtime/data/source.ts';
import { Session } from '../../runtime/session.ts';
import type { TrainTask } from '../../runtime/train/trainer.ts';
import { LatentDecoder, denormalizeLatents } from '../../models/sampling/faeDecoders.ts';
import { FAE, type FaeConfig, ViTFeatureEncoder, discriminatorTrainStep, faeConfigs, stageIaTrainStep, stageIbTrainStep } from '../../models/fae.ts';
import { flowMatchingLossGraph } from '../../models/flowMatching.ts';
import { type DiTName, LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { MlpClassifier } from '../../models/mlp.ts';
import { TarFlow, trainLossGraph } from '../../models/tarflow.ts';
import { CROP_PARAMS_INPUT, DinoNetwork, IMAGES_INPUT, MOMENTUM_INPUT, TEACHER_PREFIX, dinoConfig, dinoForward, dinoStateOutputs, teacherMomentum } from '../../models/ssl/dino.ts';
import { evaluateEncoder } from '../../models/ssl/evaluate.ts';
import { CROP_PARAMS, MultiCropSource, cropParams } from '../../runtime/data/multiCrop.ts';
import { type UserModel, loadUserModel, traceUserModel } from '../userModel.ts';
import { previewHook } from './preview.ts';
import type { Job, JobModel } from './schema.ts';
import { applyWeights, loadWeights } from './weights.ts';

export class NotImplementedError extends KilnError {
  override name = 'NotImplementedError';
}

export interface TaskContext {
  job: Job;
  backend: Backend;
  /** undefined: the backend's default. */
  precision: Precision | undefined;
  source: BatchSource;
  log: (s: string) => void;
  warn: (s: string) => void;
  /** The model file of a `user` model (resolved relative to the job). */
  userModel?: UserModel;
}

export interface BuiltTask {
  task: TrainTask;
  summary: string;
}

function stepOptions(job: Job): Omit<TrainStepOptions, 'loss' | 'metrics' | 'params'> {
  const optimizer: OptimizerOptions = job.optimizer.kind === 'adamw' ? { ...job.optimizer } : { ...job.optimizer };
  return { optimizer, clipGradNorm: job.clipGradNorm ?? undefined, ema: job.ema ?? undefined };
}

function scalarOutputs(g: Graph, first: string): string[] {
  return [first, ...g.outputs.filter((o) => o.name !== first && !o.name.startsWith('next.') && numel(g.typeOf(o.id).shape) === 1).map((o) => o.name)];
}

function reshape(t: HostTensor, shape: readonly number[]): HostTensor {
  if (numel(shape) !== t.data.length) throw new KilnError(`a batch of ${t.shape.join('x')} cannot feed an input of shape [${shape.join(', ')}]`);
  return { dtype: t.dtype, shape: [...shape], data: t.data };
}

function expectImages(ctx: TaskContext, shape: readonly number[], who: string): void {
  const [c, h, w] = ctx.source.imageShape;
  if (c !== shape[0] || h !== shape[1] || w !== shape[2])
    throw new KilnError(`${who} takes ${shape.join('x')} images (C x H x W) but the job's data gives ${c}x${h}x${w}: set data.size${c !== shape[0] ? ' and data.channels' : ''}`);
}

// ───────────────────────────── MLP ─────────────────────────────

function mlpTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'mlp' }>): BuiltTask {
  const { job, source } = ctx;
  const B = job.batchSize, inputs = numel(source.imageShape);
  const model = new MlpClassifier({ inputs, hidden: m.hidden, classes: source.classes.length });
  const forward = trace('mlp', (t) => {
    const x = t.input('x', [B, inputs]);
    const logits = model.forward(x);
    const y = t.input('y', [B], 'i32');
    return { loss: crossEntropy(logits, y), accuracy: accuracy(logits, y) };
  }, { params: model });
  const graph = trainStep(forward, { ...stepOptions(job), loss: 'loss', metrics: ['accuracy'] });
  const evaluate = job.data.kind !== 'fashion_mnist' ? undefined : async (session: Session) => {
    const d = job.data as Extract<Job['data'], { kind: 'fashion_mnist' }>;
    const test = new FashionSource(loadFashionMnist('test', d.dir ?? undefined), { batchSize: B, seed: 0, shuffle: false, size: d.size, fit: d.fit ?? undefined, normalize: d.normalize, layout: 'flat' });
    const evalGraph = trace('mlp_eval', (t) => ({ correct: model.forward(t.input('x', [B, inputs])).argmax(-1).eq(t.input('y', [B], 'i32')).cast('f32').sum() }), { params: model });
    const es = await Session.open(ctx.backend, evalGraph, await session.read(['param']), { precision: ctx.precision });
    let correct = 0;
    for (let b = 0; b < test.batchesPerEpoch; b++) {
      const batch = await test.load(0, b);
      correct += (await es.run({ x: batch.x, y: batch.y })).correct!.data[0]!;
    }
    es.dispose();
    return { test_accuracy: correct / (test.batchesPerEpoch * B) };
  };
  return {
    task: {
      graph, initial: model.initState(job.seed), paramNames: model.namedParameters().map(([n]) => n), source, outputs: ['loss', 'accuracy'],
      feeds: (b) => ({ x: reshape(b.x, [B, inputs]), y: b.y }), evaluate,
    },
    summary: `MLP ${inputs}-${m.hidden.join('-')}-${source.classes.length}, ${model.numParams().toLocaleString()} parameters`,
  };
}

// ───────────────────────────── FAE and its latents ─────────────────────────────

interface FaeParts {
  fae: FAE;
  state: Map<string, HostTensor>;
  /** The top-level parts (adapter, feature_decoder, pixel_decoder, ...) whose weights `init` gave. */
  loaded: Set<string>;
}

function makeFae(ctx: TaskContext, preset: 'fashionMnist' | 'fashionTiny' | 'tiny', enc: { depth: number; heads: number; checkpoint: string | null; weights: 'student' | 'teacher' }, init: string | null): FaeParts {
  const cfg: FaeConfig = faeConfigs[preset]();
  const { dim, grid } = cfg.encoder;
  const patch = cfg.pixelDecoder.patchSize;
  const encoder = new ViTFeatureEncoder({ dim, depth: enc.depth, heads: enc.heads, mlpHidden: 4 * dim, patchSize: patch, imageSize: grid * patch, channels: cfg.pixelDecoder.channels });
  const fae = new FAE(cfg, encoder);
  const state = fae.initState(ctx.job.seed);
  if (enc.checkpoint) ctx.log(`frozen encoder: ${applyWeights(state, loadWeights(enc.checkpoint, ctx.warn, enc.weights === 'teacher' ? 'ema' : 'model'), enc.checkpoint, 'encoder.')} tensors from ${enc.checkpoint}${enc.weights === 'teacher' ? ' (EMA teacher)' : ''}`);
  else ctx.warn('no encoder checkpoint (model.encoder.checkpoint): the frozen encoder is randomly initialized');
  const loaded = new Set<string>();
  for (const from of init ? init.split(',').filter(Boolean) : []) {
    const weights = loadWeights(from, ctx.warn);
    ctx.log(`FAE weights: ${applyWeights(state, weights, from)} tensors from ${from}`);
    for (const k of weights.keys()) loaded.add(k.split('.')[0]!);
  }
  return { fae, state, loaded };
}

/**
 * The fine-tuning trains the pixel decoder on the feature decoder's output: both the adapter and the feature
 * decoder must come from `model.init` (a stage-Ib checkpoint holds only the pixel decoder, so `init` = the Ib
 * run alone would fine-tune on a random feature decoder's output).
 */
function requireTrainedParts(parts: FaeParts, init: string | null, need: readonly string[], kind: string): void {
  const missing = need.filter((p) => !parts.loaded.has(p));
  if (missing.length) {
    throw new KilnError(`${kind}: model.init (${init ?? 'null'}) holds no ${missing.join(', ')} weights; give the stage-Ia run too, e.g. model.init=runs/fae-stage-ia,runs/fae-stage-ib`);
  }
}

/** A session computing encoder features [B, N, D] from images. */
async function featureSession(ctx: TaskContext, p: FaeParts, B: number): Promise<Session> {
  const { fae } = p;
  const g = trace('fae_features', (t) => ({ features: fae.encoder.forward(t.input('images', [B, fae.config.pixelDecoder.channels, fae.imageSize, fae.imageSize])) }), { params: fae });
  return Session.open(ctx.backend, g, p.state, { precision: ctx.precision });
}

/** A session computing FAE latents [B, C, g, g] (the adapter's posterior mean) from images. */
async function latentSession(ctx: TaskContext, p: FaeParts, B: number): Promise<{ session: Session; shape: [number, number, number] }> {
  const { fae } = p;
  const [C, g] = [fae.config.adapter.latentChannels, fae.grid];
  const graph = trace('fae_latents', (t): Record<string, Tensor> => {
    const x = t.input('images', [B, fae.config.pixelDecoder.channels, fae.imageSize, fae.imageSize]);
    const mean = fae.adapter.forward(fae.encoder.forward(x)).mean; // [B, N, C]
    return { latents: mean.permute(0, 2, 1).reshape(B, C, g, g) };
  }, { params: fae });
  return { session: await Session.open(ctx.backend, graph, p.state, { precision: ctx.precision }), shape: [C, g, g] };
}

/** Per-channel mean and std of latents over the first batches of epoch 0 (deterministic: same on resume). */
async function latentStats(ctx: TaskContext, s: Session, C: number, batches = 4): Promise<{ mean: Float64Array; std: Float64Array }> {
  const sum = new Float64Array(C), sq = new Float64Array(C);
  let n = 0;
  for (let b = 0; b < Math.min(batches, ctx.source.batchesPerEpoch); b++) {
    const z = (await s.run({ images: (await ctx.source.load(0, b)).x })).latents!;
    const per = z.data.length / (z.shape[0]! * C);
    for (let i = 0; i < z.data.length; i++) {
      const c = Math.floor(i / per) % C, v = Number(z.data[i]);
      sum[c]! += v;
      sq[c]! += v * v;
    }
    n += z.shape[0]! * per;
  }
  const mean = sum.map((v) => v / n), std = sq.map((v, c) => Math.sqrt(Math.max(v / n - mean[c]! ** 2, 1e-12)));
  return { mean, std };
}

function normalizeLatents(z: HostTensor, st: { mean: Float64Array; std: Float64Array }): HostTensor {
  const C = st.mean.length, per = z.data.length / (z.shape[0]! * C);
  const out = new Float32Array(z.data.length);
  for (let i = 0; i < out.length; i++) {
    const c = Math.floor(i / per) % C;
    out[i] = (Number(z.data[i]) - st.mean[c]!) / st.std[c]!;
  }
  return { dtype: 'f32', shape: z.shape, data: out };
}

async function faeStageTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'fae_stage_ia' | 'fae_stage_ib' | 'fae_pixel_finetune' }>): Promise<BuiltTask> {
  const { job } = ctx;
  const B = job.batchSize;
  const parts = makeFae(ctx, m.preset, m.encoder, m.init);
  const { fae } = parts;
  expectImages(ctx, [fae.config.pixelDecoder.channels, fae.imageSize, fae.imageSize], `FAE preset '${m.preset}'`);
  if (m.kind === 'fae_stage_ia') {
    const graph = stageIaTrainStep(fae, { batch: B, ...stepOptions(job) });
    const features = await featureSession(ctx, parts, B);
    return {
      task: {
        graph, initial: parts.state, paramNames: fae.paramNames('adapter', 'feature_decoder'), source: ctx.source, outputs: scalarOutputs(graph, 'loss'),
        feeds: async (b: SourceBatch) => ({ features: (await features.run({ images: b.x })).features! }),
      },
      summary: `FAE stage Ia (${m.preset}): adapter + feature decoder, ${fae.paramNames('adapter', 'feature_decoder').length} tensors trained`,
    };
  }
  const source = m.kind === 'fae_stage_ib' ? 'encoder' : 'feature_decoder';
  if (source === 'feature_decoder') requireTrainedParts(parts, m.init, ['adapter', 'feature_decoder', 'pixel_decoder'], m.kind);
  if (m.gan) return ganStageTask(ctx, m, parts, source);
  const graph = stageIbTrainStep(fae, { batch: B, source, gan: false, ...stepOptions(job) });
  return {
    task: {
      graph, initial: parts.state, paramNames: fae.paramNames('pixel_decoder'), source: ctx.source, outputs: scalarOutputs(graph, 'loss'),
      feeds: (b: SourceBatch) => ({ images: b.x }),
    },
    summary: `FAE ${m.kind === 'fae_stage_ib' ? 'stage Ib' : 'pixel-decoder fine-tuning'} (${m.preset}): pixel decoder on ${source === 'encoder' ? 'noisy encoder features' : 'reconstructed features'}`,
  };
}

/**
 * Stage Ib (or the fine-tuning) with the GAN term: the pixel decoder's step (rec_loss + adaptive
 * λ·discriminator_weight·disc_factor·g_loss, models/fae/programs.ts) and the discriminator's hinge step
 * alternate on every batch (the trainer's adversary); disc_factor (input `gan_factor`) is 0 before step
 * `model.ganStart` and 1 from it on, for both. The discriminator has its own optimizer state, with the
 * job's optimizer settings and learning-rate schedule, as taming-transformers' two optimizers.
 */
function ganStageTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'fae_stage_ia' | 'fae_stage_ib' | 'fae_pixel_finetune' }>, parts: FaeParts, source: 'encoder' | 'feature_decoder'): BuiltTask {
  const { job } = ctx;
  const { fae } = parts;
  const B = job.batchSize;
  if (!fae.discriminator) throw new KilnError(`model.gan: FAE preset '${m.preset}' has no discriminator (config.discriminator is null)`);
  const graph = stageIbTrainStep(fae, { batch: B, source, gan: true, ...stepOptions(job) });
  const dGraph = discriminatorTrainStep(fae, { batch: B, ...stepOptions(job) });
  const factor = (step: number) => hostTensor('f32', [], [step >= m.ganStart ? 1 : 0]);
  const dParams = fae.paramNames('discriminator');
  return {
    task: {
      graph, initial: parts.state, paramNames: fae.paramNames('pixel_decoder'), source: ctx.source, outputs: scalarOutputs(graph, 'loss'),
      feeds: (b: SourceBatch, step: number) => ({ images: b.x, gan_factor: factor(step) }),
      adversary: {
        graph: dGraph, initial: new Map(dParams.map((n) => [n, parts.state.get(n)!])), paramNames: dParams,
        fromMain: ['reconstruction'], outputs: scalarOutputs(dGraph, 'loss'), metricPrefix: 'd_',
        feeds: (b: SourceBatch, step: number, main) => ({ images: b.x, reconstruction: main.reconstruction!, gan_factor: factor(step) }),
      },
    },
    summary: `FAE ${m.kind === 'fae_stage_ib' ? 'stage Ib' : 'pixel-decoder fine-tuning'} (${m.preset}) with the GAN term: pixel decoder and patch discriminator in alternation (GAN from step ${m.ganStart})`,
  };
}

/** LightningDiT flow matching on the images themselves (model.latents null): the baseline FAE latents are compared against. */
function pixelDiTTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'lightningdit' }>): BuiltTask {
  const { job, source } = ctx;
  const B = job.batchSize;
  const [c, h, w] = source.imageShape;
  if (h !== w) throw new KilnError(`lightningdit on pixels (model.latents null) takes square images, the job's data gives ${h}x${w}`);
  const model = new LightningDiT(lightningDiTConfig(m.size as DiTName, { inputSize: h, inChannels: c, numClasses: source.classes.length, ...m.config }));
  const graph = trainStep(flowMatchingLossGraph(model, B), { ...stepOptions(job), loss: 'loss', metrics: ['mse', 'cos'] });
  return {
    task: {
      graph, initial: model.initState(job.seed), paramNames: model.namedParameters().map(([n]) => n), source, outputs: scalarOutputs(graph, 'loss'),
      feeds: (b: SourceBatch) => ({ x1: reshape(b.x, [B, c, h, w]), y: b.y }),
      sample: previewHook({ kind: 'lightningdit', model }, { backend: ctx.backend, classes: source.classes, seed: job.seed, log: ctx.log }),
    },
    summary: `LightningDiT ${m.size} on ${c}x${h}x${w} pixels (patch ${model.config.patchSize}: ${(h / model.config.patchSize) ** 2} tokens), ${model.numParams().toLocaleString()} parameters`,
  };
}

async function latentGeneratorTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'lightningdit' | 'tarflow' }>): Promise<BuiltTask> {
  const { job } = ctx;
  const B = job.batchSize;
  if (m.latents === null) {
    if (m.kind !== 'lightningdit') throw new KilnError('model.latents: a tarflow job needs the FAE whose latents it models');
    return pixelDiTTask(ctx, m);
  }
  const parts = makeFae(ctx, m.latents.preset, m.latents.encoder, m.latents.checkpoint);
  expectImages(ctx, [parts.fae.config.pixelDecoder.channels, parts.fae.imageSize, parts.fae.imageSize], `FAE preset '${m.latents.preset}'`);
  const { session: enc, shape: [C, g] } = await latentSession(ctx, parts, B);
  const stats = await latentStats(ctx, enc, C);
  ctx.log(`FAE latents ${C}x${g}x${g}, normalized per channel (mean ${Array.from(stats.mean, (v) => v.toFixed(3)).join(',')}; std ${Array.from(stats.std, (v) => v.toFixed(3)).join(',')})`);
  const classes = ctx.source.classes.length;
  let graph: Graph, initial: Map<string, HostTensor>, paramNames: string[], summary: string, preview: Parameters<typeof previewHook>[0];
  if (m.kind === 'lightningdit') {
    const model = new LightningDiT(lightningDiTConfig(m.size as DiTName, { inputSize: g, inChannels: C, numClasses: classes, ...m.config }));
    graph = trainStep(flowMatchingLossGraph(model, B), { ...stepOptions(job), loss: 'loss', metrics: ['mse', 'cos'] });
    [initial, paramNames] = [model.initState(job.seed), model.namedParameters().map(([n]) => n)];
    summary = `LightningDiT ${m.size} on FAE latents, ${model.numParams().toLocaleString()} parameters`;
    preview = { kind: 'lightningdit', model };
  } else {
    const flow = new TarFlow({ inChannels: C, imgSize: g, patchSize: 1, channels: 128, headDim: 32, layersPerBlock: [2, 2, 2, 2], numClasses: classes, ...m.config });
    graph = trainStep(trainLossGraph(flow, { batch: B, noise: m.noiseStd > 0 ? { kind: 'gaussian', sigma: m.noiseStd } : undefined, labelDrop: m.labelDrop }), { ...stepOptions(job), loss: 'loss', metrics: ['loss_z', 'loss_logdet'] });
    [initial, paramNames] = [flow.initState(job.seed), flow.namedParameters().map(([n]) => n)];
    summary = `TarFlow on FAE latents, ${flow.numParams().toLocaleString()} parameters`;
    preview = { kind: 'tarflow', model: flow };
  }
  const xName = m.kind === 'lightningdit' ? 'x1' : 'x';
  return {
    task: {
      graph, initial, paramNames, source: ctx.source, outputs: scalarOutputs(graph, 'loss'),
      feeds: async (b: SourceBatch) => ({ [xName]: normalizeLatents((await enc.run({ images: b.x })).latents!, stats), y: b.y }),
      // Sample grids decoded through this job's FAE decoders (a trained pixel decoder from latents.checkpoint), else the latents' first channels.
      sample: previewHook(preview, { backend: ctx.backend, classes: ctx.source.classes, seed: job.seed, log: ctx.log, toImages: await previewDecoder(ctx, parts, stats) }),
      // `kiln sample` undoes the normalization before decoding (cli/commands/sample.ts reads latent_stats).
      meta: { latent_stats: JSON.stringify({ mean: Array.from(stats.mean), std: Array.from(stats.std) }) },
    },
    summary,
  };
}

/**
 * Preview samples → images: denormalized and decoded through the FAE's feature and pixel decoders when the job's
 * FAE weights hold a trained pixel decoder (the decoder session opens at the first preview); undefined otherwise.
 */
async function previewDecoder(ctx: TaskContext, p: FaeParts, stats: { mean: Float64Array; std: Float64Array }): Promise<((x: HostTensor) => Promise<HostTensor>) | undefined> {
  if (!p.loaded.has('feature_decoder') || !p.loaded.has('pixel_decoder')) {
    if (ctx.job.intervals.sample) ctx.warn(`sample grids show the latents' first channels: the FAE weights (model.latents.checkpoint) hold no trained ${p.loaded.has('feature_decoder') ? 'pixel' : 'feature'} decoder to decode them`);
    return undefined;
  }
  let dec: LatentDecoder | undefined;
  return async (x) => {
    dec ??= await LatentDecoder.open(ctx.backend, p.fae.config, p.state, x.shape[0]!);
    return dec.decode(denormalizeLatents(x, stats));
  };
}

// ───────────────────────────── SSL encoder ─────────────────────────────

/** The job's DINO network config (also read back by `kiln eval probe` and the FAE jobs). */
export function sslDinoConfig(m: Extract<JobModel, { kind: 'ssl_encoder' }>, imageShape: readonly [number, number, number]) {
  const [C, H, W] = imageShape;
  if (H !== W) throw new KilnError(`ssl_encoder takes square images, the job's data gives ${H}x${W}`);
  return dinoConfig({ dim: m.dim, depth: m.depth, heads: m.heads, patchSize: m.patchSize, imageSize: H, channels: C }, {
    prototypes: m.prototypes, globalViews: m.globalViews, localViews: m.localViews, studentTemp: m.studentTemp, teacherTemp: m.teacherTemp,
    localSize: m.localSize ?? undefined, centerMomentum: m.centerMomentum, headHidden: m.headHidden, bottleneck: m.bottleneck,
  });
}

function sslEncoderTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'ssl_encoder' }>): BuiltTask {
  if (m.method !== 'dino') throw new NotImplementedError(`model.method '${m.method}': only 'dino' self-distillation is implemented (set model.method to 'dino')`);
  const { job } = ctx;
  const B = job.batchSize;
  const cfg = sslDinoConfig(m, ctx.source.imageShape);
  const student = new DinoNetwork(cfg), teacher = new DinoNetwork(cfg);
  const { ema, ...opts } = stepOptions(job); // the teacher is the EMA, updated by the program itself
  const graph = trainStep(dinoForward(student, teacher, B, { deviceCrops: m.deviceCrops }), { ...opts, loss: 'loss', metrics: ['teacher_entropy', 'student_entropy', ...dinoStateOutputs(teacher)] });
  const crops = { globalViews: m.globalViews, localViews: m.localViews, globalScale: m.globalScale, localScale: m.localScale, jitter: m.jitter, seed: job.seed };
  // deviceCrops: the source gives the plain images and the feeds add each view's crop parameters
  // (the same random choices MultiCropSource would apply on the host).
  const source = m.deviceCrops ? ctx.source : new MultiCropSource(ctx.source, crops);
  const [, H, W] = ctx.source.imageShape;
  const V = m.globalViews + m.localViews;
  const viewFeeds = (b: SourceBatch): Record<string, HostTensor> => !m.deviceCrops ? { views: b.x }
    : { [IMAGES_INPUT]: b.x, [CROP_PARAMS_INPUT]: hostTensor('f32', [V * B, CROP_PARAMS], cropParams(crops, H, W, b.epoch, b.batch, B)) };
  const total = job.steps ?? Math.ceil(job.epochs! * source.batchesPerEpoch);
  const base = ema?.decay ?? 0.996;
  const d = job.data;
  const probe = m.probe;
  const evaluate = d.kind !== 'fashion_mnist' || !probe ? undefined : async (session: Session) => {
    const t0 = performance.now();
    // The EMA teacher (DINO's evaluated network) is the `ema.*` state; the student is the params.
    const state = !probe.teacher ? await session.read(['param'])
      : new Map([...(await session.read(['state']))].filter(([n]) => n.startsWith(TEACHER_PREFIX)).map(([n, v]) => [n.slice(TEACHER_PREFIX.length), v]));
    const who = probe.teacher ? 'teacher' : 'student';
    const train = loadFashionMnist('train', d.dir ?? undefined), test = loadFashionMnist('test', d.dir ?? undefined);
    const metrics: Record<string, number> = {};
    for (const [i, features] of probe.features.entries()) {
      const t1 = performance.now();
      const r = await evaluateEncoder(ctx.backend, student, state, train, test, {
        probe: { epochs: probe.epochs, lr: probe.lr, weightDecays: probe.weightDecays }, noKnn: !probe.knn || i > 0, trainLimit: probe.trainLimit ?? undefined, testLimit: probe.testLimit ?? undefined, features,
      });
      ctx.log(`SSL encoder evaluation (${who}, ${r.features}-d ${({ mean: 'mean-pooled', last4: 'last-4-blocks mean-pooled', tokens: 'token-map' } as const)[features]} features, ${((performance.now() - t1) / 1000).toFixed(1)} s): linear probe ${(100 * r.linear_probe).toFixed(2)}% test (${(100 * r.linear_probe_train).toFixed(2)}% train)${r.validation.length === 0 ? '' : `, weight decay ${r.weight_decay} (held-out: ${r.validation.map((c) => `${c.weightDecay} ${(100 * c.accuracy).toFixed(2)}%`).join(', ')})`}${r.knn === undefined ? '' : `, kNN ${(100 * r.knn).toFixed(2)}%`}`);
      if (i === 0) Object.assign(metrics, { linear_probe: r.linear_probe, ...(r.knn === undefined ? {} : { knn: r.knn }) });
      metrics[`linear_probe_${features}`] = r.linear_probe;
    }
    ctx.log(`SSL encoder evaluation: ${((performance.now() - t0) / 1000).toFixed(1)} s in all`);
    return metrics;
  };
  return {
    task: {
      graph, initial: student.initState(job.seed), paramNames: student.namedParameters().map(([n]) => n), source, outputs: ['loss', 'teacher_entropy', 'student_entropy'],
      feeds: (b: SourceBatch, step: number) => ({ ...viewFeeds(b), [MOMENTUM_INPUT]: hostTensor('f32', [], [teacherMomentum(base, step, total)]) }),
      evaluate,
    },
    summary: `DINO SSL encoder: ViT ${m.dim}-d, depth ${m.depth}, ${m.heads} heads, patch ${m.patchSize}; ${cfg.globalViews}+${cfg.localViews} views (local ${cfg.localSize} px, cut ${m.deviceCrops ? 'in the program' : 'on the host'}), ${cfg.prototypes} prototypes; ${student.numParams().toLocaleString()} parameters`,
  };
}

// ───────────────────────────── user models ─────────────────────────────

async function userTask(ctx: TaskContext, m: Extract<JobModel, { kind: 'user' }>): Promise<BuiltTask> {
  const u = ctx.userModel ?? (await loadUserModel(m.file));
  const fwd = traceUserModel(u, ctx.job.batchSize);
  const lossOut = fwd.output('loss');
  if (!lossOut) throw new KilnError(`${u.file}: program() must return a scalar \`loss\` to be trained (it returns ${fwd.outputs.map((o) => o.name).join(', ')})`);
  const metrics = fwd.outputs.filter((o) => o.name !== 'loss' && numel(fwd.typeOf(o.id).shape) === 1).map((o) => o.name);
  const graph = trainStep(fwd, { ...stepOptions(ctx.job), loss: 'loss', metrics });
  const data = fwd.inputs.filter((i) => i.kind === 'data');
  for (const i of data) if (i.name !== 'x' && i.name !== 'y' && i.name !== 'rng_seed') throw new KilnError(`${u.file}: input '${i.name}' cannot be fed: the trainer feeds \`x\` (images) and \`y\` (labels)`);
  const xIn = fwd.inputByName('x');
  return {
    task: {
      graph, initial: u.model.initState(ctx.job.seed), paramNames: u.model.namedParameters().map(([n]) => n), source: ctx.source, outputs: ['loss', ...metrics],
      feeds: (b: SourceBatch) => {
        const f: Record<string, HostTensor> = {};
        if (xIn) f.x = reshape(b.x, xIn.type.shape);
        if (fwd.inputByName('y')) f.y = b.y;
        return f;
      },
    },
    summary: `${u.file}: ${u.model.numParams().toLocaleString()} parameters`,
  };
}

export async function buildTask(ctx: TaskContext): Promise<BuiltTask> {
  const m = ctx.job.model;
  switch (m.kind) {
    case 'mlp': return mlpTask(ctx, m);
    case 'fae_stage_ia': case 'fae_stage_ib': case 'fae_pixel_finetune': return faeStageTask(ctx, m);
    case 'lightningdit': case 'tarflow': return latentGeneratorTask(ctx, m);
    case 'user': return userTask(ctx, m);
    case 'ssl_encoder': return sslEncoderTask(ctx, m);
  }
}

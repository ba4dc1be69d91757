/**
 * @file The job file format (`kiln train job.json`), as a zod schema: model and its config, data,
 * precision, optimizer, learning-rate schedule, batch size, steps or epochs, EMA, log / eval / sample /
 * checkpoint intervals, seed, output directory. Objects are strict: an unknown field is an error.
 * `parseJob` turns zod's issues into one line naming the file, the field, what was expected and what
 * was there. Defaults are filled in, so the parsed job is the resolved config that `kiln train` prints.
 */
import { z } from 'zod';
import { KilnError } from '../../ir/errors.ts';

export class JobConfigError extends KilnError {
  override name = 'JobConfigError';
}

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().min(0);
const channelValues = z.union([z.number(), z.array(z.number()).min(1)]);
const normalize = z.strictObject({ mean: channelValues, std: channelValues });

const fashionData = z.strictObject({
  kind: z.literal('fashion_mnist'),
  /** Folder of the .gz files (default: KILN_FASHION_MNIST_DIR, else the Debian package's). */
  dir: z.string().nullable().default(null),
  size: z.number().int().min(4).default(28),
  fit: z.enum(['pad', 'resize']).nullable().default(null),
  normalize: normalize.default({ mean: 0.5, std: 0.5 }),
  limit: posInt.nullable().default(null),
});
const imageFolderData = z.strictObject({
  kind: z.literal('image_folder'),
  root: z.string(),
  size: z.number().int().min(4),
  channels: z.union([z.literal(1), z.literal(3)]).default(3),
  flip: z.boolean().default(true),
  normalize: normalize.default({ mean: 0.5, std: 0.5 }),
  onError: z.enum(['skip', 'fail']).default('fail'),
  /** Image decode worker processes (default: one per core but the main thread's, at most 32); 0 decodes on the main thread. */
  workers: z.number().int().min(0).max(64).optional(),
  /** A file of decoded crops (runtime/data/cropCache.ts): read instead of decoding when it holds this folder's
   * crops at this size, else written during epoch 1 (later runs skip decoding). */
  cacheFile: z.string().optional(),
});

const encoder = z.strictObject({
  /** The frozen SSL encoder (ViTFeatureEncoder): width and patch grid come from the FAE preset. */
  depth: posInt.default(2),
  heads: posInt.default(4),
  /** A run directory or checkpoint directory holding its weights; null: random init (a warning says so). */
  checkpoint: z.string().nullable().default(null),
  /** An SSL run's student (its model weights) or its EMA teacher. */
  weights: z.enum(['student', 'teacher']).default('student'),
});
const faeRef = z.strictObject({
  preset: z.enum(['fashionMnist', 'fashionTiny', 'tiny']).default('fashionMnist'),
  encoder: encoder.default({ depth: 2, heads: 4, checkpoint: null, weights: 'student' }),
  /** Checkpoint of the trained FAE parts (adapter, decoders); null: random init (a warning says so). */
  checkpoint: z.string().nullable().default(null),
});
const faeStage = (kind: 'fae_stage_ia' | 'fae_stage_ib' | 'fae_pixel_finetune') =>
  z.strictObject({
    kind: z.literal(kind),
    preset: z.enum(['fashionMnist', 'fashionTiny', 'tiny']).default('fashionMnist'),
    encoder: encoder.default({ depth: 2, heads: 4, checkpoint: null, weights: 'student' }),
    /**
     * Start from these runs' FAE weights, comma-separated, later ones win (a checkpoint holds only the parts its
     * stage trained): stage Ib the stage-Ia run; the fine-tuning the stage-Ia run (adapter, feature decoder) and
     * the stage-Ib run (pixel decoder).
     */
    init: z.string().nullable().default(null),
    /** Stage Ib: include the GAN term, training the discriminator in alternation (runtime/train/trainer.ts). */
    gan: z.boolean().default(false),
    /** Stage Ib with gan: the step from which the GAN term counts (taming's disc_start: disc_factor 0 before, 1 after). */
    ganStart: nonNegInt.default(0),
  });

const ditOverrides = z.strictObject({
  depth: posInt.optional(), hiddenSize: posInt.optional(), numHeads: posInt.optional(), mlpRatio: z.number().positive().optional(),
  classDropoutProb: z.number().min(0).max(1).optional(),
});
const tarflowOverrides = z.strictObject({
  channels: posInt.optional(), headDim: posInt.optional(), layersPerBlock: z.array(posInt).min(1).optional(), patchSize: posInt.optional(),
  expansion: posInt.optional(),
  // STARFlow's options (models/tarflow/config.ts): softplus scale, soft clip, learned start token, patch layout, order.
  scale: z.enum(['exp', 'softplus']).optional(), softClip: z.number().min(0).optional(), sos: z.boolean().optional(),
  patchLayout: z.enum(['unfold', 'channels_last']).optional(), seqOrder: z.enum(['R2L', 'L2R']).optional(),
});

export const modelSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('mlp'), hidden: z.array(posInt).default([256, 128]) }),
  z.strictObject({
    kind: z.literal('ssl_encoder'),
    method: z.enum(['dino', 'mim']).default('dino'),
    dim: posInt.default(64), depth: posInt.default(4), heads: posInt.default(4), patchSize: posInt.default(4),
    /** DINO: prototypes K, views per image (global crops: the teacher's), crop scales, intensity jitter, temperatures. */
    prototypes: posInt.default(1024),
    globalViews: posInt.default(2),
    localViews: nonNegInt.default(2),
    globalScale: z.tuple([z.number().gt(0).max(1), z.number().gt(0).max(1)]).default([0.4, 1]),
    localScale: z.tuple([z.number().gt(0).max(1), z.number().gt(0).max(1)]).default([0.1, 0.4]),
    jitter: z.number().min(0).lt(1).default(0.2),
    /** Side of the local crops in pixels (default: the image size); smaller ones need deviceCrops. */
    localSize: posInt.nullable().default(null),
    /** Cut the views in the training program from the images and 7 numbers per view (no host pixel work), or on the host. */
    deviceCrops: z.boolean().default(true),
    studentTemp: z.number().positive().default(0.1),
    teacherTemp: z.number().positive().default(0.04),
    centerMomentum: z.number().min(0).lt(1).default(0.9),
    /** The projection head: MLP hidden width and the L2-normalized bottleneck before the prototypes. */
    headHidden: posInt.default(256),
    bottleneck: posInt.default(64),
    /** Evaluation at the end: linear probe (epochs) and kNN on Fashion-MNIST; null: none. */
    /** features: the readouts probed (the first is `linear_probe` and the kNN's; see models/ssl/evaluate.ts ProbeFeatures); teacher: probe the EMA teacher (DINO evaluates it), else the student; lr, weightDecays: the probe's optimizer (several weight decays: chosen on held-out train rows). */
    probe: z.strictObject({ epochs: posInt.default(30), knn: z.boolean().default(true), trainLimit: posInt.nullable().default(null), testLimit: posInt.nullable().default(null), features: z.array(z.enum(['mean', 'last4', 'tokens'])).min(1).default(['mean']), teacher: z.boolean().default(true), lr: z.number().positive().default(1e-2), weightDecays: z.array(z.number().nonnegative()).min(1).default([1e-4]) }).nullable().default({ epochs: 30, knn: true, trainLimit: null, testLimit: null, features: ['mean'], teacher: true, lr: 1e-2, weightDecays: [1e-4] }),
  }),
  faeStage('fae_stage_ia'),
  faeStage('fae_stage_ib'),
  faeStage('fae_pixel_finetune'),
  z.strictObject({
    kind: z.literal('lightningdit'),
    size: z.string().regex(/^(S|B|L|XL|1p0B|1p6B)\/\d+$/, 'a DiT name such as B/1 or XL/2').default('B/1'),
    config: ditOverrides.default({}),
    /**
     * Train on the latents of this FAE (images → frozen encoder → adapter mean, normalized per channel);
     * null: on the images themselves (pixel space, the data's normalization; the DiT's patch size, e.g.
     * size S/4, sets the tokens: 28x28 at patch 4 gives the 7x7 grid of the FAE latents).
     */
    latents: faeRef.nullable(),
  }),
  z.strictObject({
    kind: z.literal('tarflow'),
    config: tarflowOverrides.default({}),
    labelDrop: z.number().min(0).max(1).default(0.1),
    noiseStd: z.number().min(0).default(0.05),
    latents: faeRef,
  }),
  z.strictObject({ kind: z.literal('user'), file: z.string() }),
]);

const optimizer = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('adamw'), beta1: z.number().min(0).lt(1).default(0.9), beta2: z.number().min(0).lt(1).default(0.999),
    eps: z.number().positive().default(1e-8), weightDecay: z.number().min(0).default(0.01),
  }),
  z.strictObject({ kind: z.literal('sgd'), momentum: z.number().min(0).default(0), nesterov: z.boolean().default(false), weightDecay: z.number().min(0).default(0) }),
]);

const schedule = z.strictObject({
  kind: z.enum(['constant', 'warmup_cosine', 'warmup_linear']).default('warmup_cosine'),
  lr: z.number().positive(),
  warmup: nonNegInt.default(0),
  minLr: z.number().min(0).default(0),
});

const intervals = z.strictObject({
  log: posInt.default(50),
  checkpoint: posInt.default(500),
  plot: posInt.default(100),
  eval: posInt.nullable().default(null),
  sample: posInt.nullable().default(null),
});

export const jobSchema = z
  .strictObject({
    name: z.string().regex(/^[\w.-]+$/, 'letters, digits, _ . -'),
    description: z.string().optional(),
    model: modelSchema,
    data: z.discriminatedUnion('kind', [fashionData, imageFolderData]),
    /** null: the backend's default (runtime/compile.ts defaultPrecision: bf16 on cuda, f32 elsewhere). */
    precision: z.enum(['f32', 'bf16', 'f16']).nullable().default(null),
    backend: z.enum(['auto', 'cpu', 'kernel-cpu', 'cuda', 'wgsl']).default('auto'),
    optimizer: optimizer.default({ kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }),
    schedule,
    clipGradNorm: z.number().positive().nullable().default(null),
    batchSize: posInt,
    steps: posInt.nullable().default(null),
    epochs: z.number().positive().nullable().default(null),
    ema: z.strictObject({ decay: z.number().gt(0).lt(1) }).nullable().default(null),
    intervals: intervals.default({ log: 50, checkpoint: 500, plot: 100, eval: null, sample: null }),
    keepCheckpoints: posInt.default(3),
    seed: nonNegInt.default(0),
    /** Run directory (default runs/<name>). */
    outputDir: z.string().nullable().default(null),
  })
  .refine((j) => (j.steps === null) !== (j.epochs === null), { message: 'give exactly one of steps and epochs', path: ['steps'] });

export type Job = z.infer<typeof jobSchema>;
export type JobModel = Job['model'];
export type JobData = Job['data'];

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 30 ? `${v.slice(0, 30)}…` : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function at(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/** Validate `raw` (parsed JSON) as a job; errors name `file`, the field, the expected type and the value. */
export function parseJob(raw: unknown, file: string): Job {
  const r = jobSchema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map(String).join('.');
  const field = path || '(top level)';
  let what: string;
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    return failUnknown(file, path, keys, raw);
  } else if (issue.code === 'invalid_type') {
    const got = at(raw, issue.path);
    what = got === undefined ? `missing (expected ${(issue as { expected: string }).expected})` : `expected ${(issue as { expected: string }).expected}, got ${describeValue(got)}`;
  } else if (issue.code === 'invalid_union' && (issue as { note?: string }).note === 'No matching discriminator') {
    what = `${issue.message.replace('Invalid discriminator value. Expected', 'expected one of')}, got ${describeValue(at(raw, issue.path))}`;
  } else what = `${issue.message}, got ${describeValue(at(raw, issue.path))}`;
  throw new JobConfigError(`${file}: field '${field}': ${what}`);
}

function failUnknown(file: string, path: string, keys: readonly string[], raw: unknown): never {
  const obj = path ? at(raw, path.split('.')) : raw;
  const known = obj && typeof obj === 'object' ? Object.keys(obj).filter((k) => !keys.includes(k)) : [];
  throw new JobConfigError(`${file}: unknown field '${path ? `${path}.` : ''}${keys[0]}'${known.length ? ` (the other fields here: ${known.join(', ')})` : ''}`);
}

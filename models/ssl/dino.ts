/**
 * @file DINO self-distillation (Caron et al. 2021) for the small ViT that stands in for DINOv2 in the
 * Fashion-MNIST FAE pipeline (FAE.md, step 1).
 *
 * A student (ViTFeatureEncoder + projection head) sees every view of a batch (global and local crops,
 * made by runtime/data/multiCrop.ts); a teacher of the same architecture sees the global views only.
 * The teacher's parameters are the student's exponential moving average: they are resident `state`
 * inputs named `ema.<student parameter>` (so a checkpoint keeps them as the run's EMA) and the
 * program itself writes `next.ema.<p> = m·ema.<p> + (1 − m)·p` with the momentum `m` fed each step
 * (the cosine schedule of the paper, 0.996 → 1). The teacher's outputs are centered (a running mean
 * `dino.center`, momentum 0.9, also written by the program) and sharpened (temperature 0.04); the
 * loss is the cross-entropy between the teacher's distribution on each global view and the student's
 * (temperature 0.1) on every other view. No gradient reaches the teacher: its inputs are not params.
 *
 * The image embedding is the mean of the encoder's final normalized patch tokens (the encoder has no
 * CLS token), which is also what the linear probe reads by default (models/ssl/probe.ts).
 * Head: 3-layer MLP (GELU) → L2-normalized bottleneck → weight-normalized prototypes (no bias).
 *
 * Views come either from the host (`views`, made by runtime/data/multiCrop.ts MultiCropSource) or are
 * cut by the program itself (`deviceCrops`: inputs `images` and `crop_params`, models/ssl/cropViews.ts),
 * which also allows local crops smaller than the global ones (`localSize`, as DINO's 96 px local crops
 * of 224 px images): the encoder then sees a smaller patch grid, with its position embedding
 * bilinearly resampled to that grid (DINO interpolates it too, bicubically).
 */
import { Module, Parameter, type Tensor, concat, constant, nn, trace } from '../../compiler/dsl/index.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { ViTFeatureEncoder, type ViTFeatureEncoderConfig } from '../fae/encoder.ts';
import { cropViews } from './cropViews.ts';

export interface DinoConfig {
  encoder: ViTFeatureEncoderConfig;
  /** Hidden width of the head's MLP. */
  headHidden: number;
  /** Bottleneck width (L2-normalized) before the prototypes. */
  bottleneck: number;
  /** Number of prototypes K (output dimension). */
  prototypes: number;
  studentTemp: number;
  teacherTemp: number;
  centerMomentum: number;
  /** Views per image: the first `globalViews` are global crops (the teacher's), then `localViews`. */
  globalViews: number;
  localViews: number;
  /** Side of the local crops in pixels (a multiple of the patch size; default the image size). */
  localSize: number;
}

export function dinoConfig(enc: { dim: number; depth: number; heads: number; patchSize: number; imageSize: number; channels: number }, o: Partial<Omit<DinoConfig, 'encoder'>> = {}): DinoConfig {
  return {
    encoder: { ...enc, mlpHidden: 4 * enc.dim },
    headHidden: o.headHidden ?? 256,
    bottleneck: o.bottleneck ?? 64,
    prototypes: o.prototypes ?? 1024,
    studentTemp: o.studentTemp ?? 0.1,
    teacherTemp: o.teacherTemp ?? 0.04,
    centerMomentum: o.centerMomentum ?? 0.9,
    globalViews: o.globalViews ?? 2,
    localViews: o.localViews ?? 2,
    localSize: o.localSize ?? enc.imageSize,
  };
}

/** Bilinear resampling matrix [to, from] of a 1-D grid (pixel centers, align_corners=False, edges clamped). */
export function resampleMatrix(from: number, to: number): Float64Array {
  const m = new Float64Array(to * from);
  for (let i = 0; i < to; i++) {
    const s = Math.min(Math.max(((i + 0.5) * from) / to - 0.5, 0), from - 1);
    for (let j = 0; j < from; j++) m[i * from + j] = Math.max(0, 1 - Math.abs(s - j));
  }
  return m;
}

export class DinoHead extends Module {
  readonly fc1: nn.Linear;
  readonly fc2: nn.Linear;
  readonly fc3: nn.Linear;
  /** Prototypes [K, bottleneck]; each row is normalized in forward (weight norm with g = 1). */
  readonly prototypes: Parameter;

  constructor(dim: number, hidden: number, bottleneck: number, k: number) {
    super();
    const tn = (fanOut: number, fanIn: number) => new nn.Linear(fanIn, fanOut, { weightInit: { kind: 'trunc_normal', std: 0.02, a: -0.04, b: 0.04 }, biasInit: { kind: 'zeros' } });
    this.fc1 = tn(hidden, dim);
    this.fc2 = tn(hidden, hidden);
    this.fc3 = tn(bottleneck, hidden);
    this.prototypes = new Parameter([k, bottleneck], { kind: 'trunc_normal', std: 0.02, a: -0.04, b: 0.04 });
  }

  /** [B, dim] → logits [B, K] (cosine similarities to the prototypes, in [−1, 1]). */
  forward(x: Tensor): Tensor {
    const h = this.fc3.forward(this.fc2.forward(this.fc1.forward(x).gelu()).gelu());
    const hn = h.div(h.square().sum(-1, true).add(1e-12).sqrt());
    const w = this.prototypes.div(this.prototypes.square().sum(-1, true).add(1e-12).sqrt());
    return hn.matmul(w.mT);
  }
}

/** Student or teacher: the encoder and the projection head. Parameter names: `encoder.*`, `head.*`. */
export class DinoNetwork extends Module {
  readonly encoder: ViTFeatureEncoder;
  readonly head: DinoHead;

  constructor(readonly config: DinoConfig) {
    super();
    this.encoder = new ViTFeatureEncoder(config.encoder, { trainable: true });
    this.head = new DinoHead(config.encoder.dim, config.headHidden, config.bottleneck, config.prototypes);
  }

  /** Images [B, C, H, W] → embedding [B, dim]: the mean of the final normalized patch tokens. */
  embed(images: Tensor): Tensor {
    return this.tokens(images).mean(1);
  }

  /**
   * Final normalized tokens of images at the encoder's size, or at a smaller side (local crops): then
   * the position embedding is resampled bilinearly to the smaller patch grid.
   */
  tokens(images: Tensor): Tensor {
    const e = this.encoder, side = images.size(-1);
    if (side === e.imageSize) return e.forward(images);
    const p = e.config.patchSize, g = e.grid;
    if (side % p !== 0 || images.size(-2) !== side) throw new KilnError(`DINO: a ${images.size(-2)}x${side} view is not square or not a multiple of the patch size ${p}`);
    const g2 = side / p, r = resampleMatrix(g, g2);
    const m = new Float32Array(g2 * g2 * g * g); // kron(r, r): token (a, b) of the small grid from (c, d)
    for (let a = 0; a < g2; a++) for (let b = 0; b < g2; b++) for (let c = 0; c < g; c++) for (let d = 0; d < g; d++)
      m[(a * g2 + b) * g * g + c * g + d] = r[a * g + c]! * r[b * g + d]!;
    const pos = constant(m, [g2 * g2, g * g]).matmul(e.pos_embed.reshape(g * g, e.dim));
    let x = e.patch_embed.forward(images).add(pos);
    for (const blk of e.blocks) x = blk.forward(x);
    return e.norm.forward(x);
  }

  /**
   * DINO's linear-evaluation readout (its eval_linear's n_last_blocks): the outputs of the last `n`
   * blocks, each through the final LayerNorm, mean-pooled over the tokens (this encoder has no CLS
   * token, whose place the mean takes) and concatenated: [B, n·dim].
   */
  lastBlocks(images: Tensor, n: number): Tensor {
    const e = this.encoder;
    if (n < 1 || n > e.blocks.length) throw new KilnError(`DINO: cannot read the last ${n} blocks of a depth-${e.blocks.length} encoder`);
    let x = e.patch_embed.forward(images).add(e.pos_embed);
    const outs: Tensor[] = [];
    e.blocks.forEach((blk, i) => {
      x = blk.forward(x);
      if (i >= e.blocks.length - n) outs.push(e.norm.forward(x).mean(1));
    });
    return concat(outs, -1);
  }

  logits(images: Tensor): Tensor {
    return this.head.forward(this.embed(images));
  }
}

export const TEACHER_PREFIX = 'ema.';
export const CENTER_STATE = 'dino.center';
export const MOMENTUM_INPUT = 'teacher_momentum';
/** Inputs of a program that cuts its own views: the batch's images and each view's crop parameters. */
export const IMAGES_INPUT = 'images';
export const CROP_PARAMS_INPUT = 'crop_params';

export interface DinoForwardOptions {
  /** Cut the views in the program (inputs `images` [B, C, H, W], `crop_params` [V·B, 7]) instead of feeding `views`. */
  deviceCrops?: boolean;
}

/**
 * The DINO forward program for `batch` images per step: data inputs `views` [V·batch, C, H, W]
 * (view-major: rows v·batch … v·batch + batch − 1 are view v) and `teacher_momentum` f32[];
 * params = the student; state = the teacher (`ema.*`) and `dino.center` [1, K].
 * With `deviceCrops` the program takes `images` and `crop_params` instead of `views` (see above).
 * Outputs: `loss`, `teacher_entropy` and `student_entropy` (mean entropies; a collapsing run shows
 * the teacher's going to 0 or to log K), and the `next.` updates of the teacher and the center.
 */
export function dinoForward(student: DinoNetwork, teacher: DinoNetwork, batch: number, o: DinoForwardOptions = {}): Graph {
  const c = student.config;
  const V = c.globalViews + c.localViews, G = c.globalViews, K = c.prototypes;
  const { channels, imageSize: S } = c.encoder;
  if (c.localSize !== S && !o.deviceCrops) throw new KilnError(`DINO: local crops of ${c.localSize} px (not the image size ${S}) need the views cut in the program (deviceCrops)`);
  const studentParams = student.namedParameters();
  const teacherParams = teacher.namedParameters(TEACHER_PREFIX.slice(0, -1));
  return trace('dino', (t) => {
    t.registerParams(teacherParams, 'state');
    let globalViews: Tensor, localViews: Tensor | undefined;
    if (o.deviceCrops) {
      const images = t.input(IMAGES_INPUT, [batch, channels, S, S]);
      const params = t.input(CROP_PARAMS_INPUT, [V * batch, 7]);
      globalViews = cropViews(images, params.narrow(0, 0, G * batch), G, S);
      if (c.localViews > 0) localViews = cropViews(images, params.narrow(0, G * batch, c.localViews * batch), c.localViews, c.localSize);
    } else {
      const views = t.input('views', [V * batch, channels, S, S]);
      globalViews = views.narrow(0, 0, G * batch);
      if (c.localViews > 0) localViews = views.narrow(0, G * batch, c.localViews * batch);
    }
    const m = t.input(MOMENTUM_INPUT, []);
    const center = t.input(CENTER_STATE, [1, K], 'f32', 'state');
    const sLogits = !localViews ? student.logits(globalViews)
      : c.localSize === S ? student.logits(concat([globalViews, localViews], 0))
      : concat([student.logits(globalViews), student.logits(localViews)], 0);
    const studentLogp = sLogits.div(c.studentTemp).logSoftmax(-1).reshape(V, batch, K);
    const tLogits = teacher.logits(globalViews);
    const tProb = tLogits.sub(center).div(c.teacherTemp).softmax(-1).reshape(G, batch, K);
    let loss: Tensor | undefined;
    let pairs = 0;
    for (let i = 0; i < G; i++) {
      const ti = tProb.select(0, i);
      for (let j = 0; j < V; j++) {
        if (j === i) continue;
        const ce = ti.mul(studentLogp.select(0, j)).sum(-1).mean().neg();
        loss = loss ? loss.add(ce) : ce;
        pairs++;
      }
    }
    const entropy = (p: Tensor) => p.mul(p.add(1e-12).log()).sum(-1).mean().neg();
    const out: Record<string, Tensor> = {
      loss: loss!.div(pairs),
      teacher_entropy: entropy(tProb),
      student_entropy: entropy(studentLogp.exp()),
      [`next.${CENTER_STATE}`]: center.mul(c.centerMomentum).add(tLogits.mean(0, true).mul(1 - c.centerMomentum)),
    };
    const byName = new Map(studentParams);
    for (const [name, tp] of teacherParams) {
      const sp = byName.get(name.slice(TEACHER_PREFIX.length))!;
      out[`next.${name}`] = tp.mul(m).add(sp.mul(m.rsub(1)));
    }
    return out;
  }, { params: student });
}

/** Names of the forward's `next.` outputs (to keep through the training-step transform). */
export function dinoStateOutputs(teacher: DinoNetwork): string[] {
  return [`next.${CENTER_STATE}`, ...teacher.namedParameters(TEACHER_PREFIX.slice(0, -1)).map(([n]) => `next.${n}`)];
}

/** The teacher's EMA momentum at `step` of `total`: base → 1 on a half cosine (DINO). */
export function teacherMomentum(base: number, step: number, total: number): number {
  if (total <= 1) return base;
  return 1 - (1 - base) * (Math.cos((Math.PI * step) / (total - 1)) + 1) / 2;
}

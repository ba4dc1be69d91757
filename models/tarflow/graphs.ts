/**
 * @file The traced programs of a TarFlow (static shapes; batch B fixed per program):
 *
 *   forward      x [B, C, S, S] (+ y) → z, logdet, loss, nll, bpd              (evaluation, goldens)
 *   trainLoss    x (+ y), rng_seed → loss, loss_z, loss_logdet                  (→ trainStep)
 *                (noise augmentation / dequantization and label dropout inside the graph)
 *   logDensity   x (+ y) → log_p = Σ_b log p(x_b)                               (→ grad() → score)
 *   blockParams  block k, x [B, T, C'] in the block's token order (+ y, guidance)
 *                → scale σ, shift μ [B, T, C'] for every token                  (non-cached sampler)
 *   blockStep    block k, token [B, 1, C'], pos (i32 []) (+ y, guidance), KV cache state
 *                → scale σ, shift μ [B, 1, C'] of the produced token, next cache (KV-cached sampler)
 *   unpatchify   tokens [B, T, C'] → image [B, C, S, S]
 *
 * Inputs are named `x`, `y` (i32 [B], −1 = no class), `guidance` (f32 []), `token`, `pos`; the KV cache
 * of attention layer j is the state pair `cache.<j>.k` / `cache.<j>.v` [B', H, T, hd] (B' = 2B when
 * guided), updated in place through `next.cache.<j>.*` outputs, so it stays resident on the backend.
 *
 * Guidance (TarFlow's, on the raw outputs before exp / softplus): the guided programs run the
 * conditional and the unconditional (y = −1) passes as one batch of 2B and return
 *   α = α_c + w(α_c − α_u),  μ = μ_c + w(μ_c − μ_u)   (w = 0: the plain conditional result).
 */
import { type Tensor, type TraceContext, concat, full, trace } from '../../compiler/dsl/index.ts';
import type { Graph } from '../../ir/graph.ts';
import { NEXT_PREFIX } from '../../ir/graph.ts';
import type { KV } from './layers.ts';
import type { MetaBlock } from './metaBlock.ts';
import { cacheName } from './reverseLoop.ts';
import { type BpdOptions, type NoiseSpec, TarFlow, quantizationBin } from './model.ts';

export interface ForwardGraphOptions {
  batch: number;
  /** Bits-per-dimension convention of the `bpd` output (default: 8-bit images in [−1, 1]). */
  bpd?: BpdOptions;
}

function imageInput(t: TraceContext, flow: TarFlow, batch: number): Tensor {
  const { inChannels: c, imgSize: s } = flow.cfg;
  return t.input('x', [batch, c, s, s]);
}
function labelInput(t: TraceContext, flow: TarFlow, batch: number): Tensor | undefined {
  return flow.cfg.numClasses > 0 ? t.input('y', [batch], 'i32') : undefined;
}

export function forwardGraph(flow: TarFlow, opts: ForwardGraphOptions): Graph {
  return trace('tarflow_forward', (t) => {
    const x = imageInput(t, flow, opts.batch);
    const y = labelInput(t, flow, opts.batch);
    const { z, logdet } = flow.forward(x, y);
    const nll = flow.nllPerDim(z, logdet);
    return { z, logdet, loss: flow.loss(z, logdet), nll, bpd: flow.bitsPerDim(nll, opts.bpd ?? { binWidth: quantizationBin(8) }) };
  }, { params: flow });
}

export interface TrainLossOptions {
  batch: number;
  /** Input corruption (default none). */
  noise?: NoiseSpec;
  /** Probability of replacing a label by −1 (conditional flows; default 0). */
  labelDrop?: number;
}

export function trainLossGraph(flow: TarFlow, opts: TrainLossOptions): Graph {
  return trace('tarflow_train', (t) => {
    let x = imageInput(t, flow, opts.batch);
    let y = labelInput(t, flow, opts.batch);
    if (opts.noise) x = flow.augment(x, opts.noise);
    if (y && opts.labelDrop) y = flow.dropLabels(y, opts.labelDrop);
    const { z, logdet } = flow.forward(x, y);
    const lossZ = z.square().mean().mul(0.5);
    const lossLogdet = logdet.mean().neg();
    return { loss: lossZ.add(lossLogdet), loss_z: lossZ, loss_logdet: lossLogdet };
  }, { params: flow });
}

/** log_p = Σ_b log p(x_b | y_b); differentiate it w.r.t. `x` for the score ∇ log p. */
export function logDensityGraph(flow: TarFlow, opts: { batch: number }): Graph {
  return trace('tarflow_log_density', (t) => {
    const x = imageInput(t, flow, opts.batch);
    const y = labelInput(t, flow, opts.batch);
    return { log_p: flow.logDensity(x, y) };
  }, { params: flow });
}

export interface SamplingGraphOptions {
  batch: number;
  /** Conditional + unconditional passes with a `guidance` input (conditional flows only). */
  guided?: boolean;
}

/** Labels of the guided double batch: [y, −1 … −1]. */
function guidedLabels(y: Tensor): Tensor {
  return concat([y, full(y.shape, -1, 'i32')], 0);
}
function doubled(x: Tensor): Tensor {
  return concat([x, x], 0);
}
/** Combine the conditional and unconditional halves of a 2B batch: c + w(c − u). */
function guide(v: Tensor, w: Tensor): Tensor {
  const b = v.size(0) / 2;
  const c = v.narrow(0, 0, b);
  return c.add(c.sub(v.narrow(0, b, b)).mul(w));
}

function samplingInputs(t: TraceContext, flow: TarFlow, opts: SamplingGraphOptions) {
  const guided = opts.guided ?? false;
  if (guided && flow.cfg.numClasses === 0) throw new Error('TarFlow: guidance needs a class-conditional flow');
  const y = labelInput(t, flow, opts.batch);
  const w = guided ? t.input('guidance', [], 'f32') : undefined;
  return { guided, y: y && guided ? guidedLabels(y) : y, w };
}

function scaleShift(blk: MetaBlock, a: Tensor, mu: Tensor, w: Tensor | undefined) {
  const [ga, gmu] = w ? [guide(a, w), guide(mu, w)] : [a, mu];
  return { scale: blk.scaleOf(ga), shift: gmu };
}

export function blockParamsGraph(flow: TarFlow, k: number, opts: SamplingGraphOptions): Graph {
  const blk = flow.blocks[k]!;
  const { tokens, tokenChannels } = flow.cfg;
  return trace(`tarflow_block${k}_params`, (t) => {
    const xp = t.input('x', [opts.batch, tokens, tokenChannels]);
    const { guided, y, w } = samplingInputs(t, flow, opts);
    const [a, mu] = blk.params(guided ? doubled(xp) : xp, y);
    return scaleShift(blk, a, mu, w);
  }, { params: flow });
}

export { cacheName } from './reverseLoop.ts';

export function blockStepGraph(flow: TarFlow, k: number, opts: SamplingGraphOptions): Graph {
  const blk = flow.blocks[k]!;
  const { tokens, tokenChannels, numHeads, headDim } = flow.cfg;
  return trace(`tarflow_block${k}_step`, (t) => {
    const token = t.input('token', [opts.batch, 1, tokenChannels]);
    const pos = t.input('pos', [], 'i32');
    const { guided, y, w } = samplingInputs(t, flow, opts);
    const rows = guided ? 2 * opts.batch : opts.batch;
    const caches: KV[] = blk.attn_blocks.map((_, j) => ({
      k: t.input(cacheName(j, 'k'), [rows, numHeads, tokens, headDim], 'f32', 'state'),
      v: t.input(cacheName(j, 'v'), [rows, numHeads, tokens, headDim], 'f32', 'state'),
    }));
    const r = blk.step(guided ? doubled(token) : token, pos, caches, y);
    const out: Record<string, Tensor> = scaleShift(blk, r.a, r.mu, w);
    r.caches.forEach((c, j) => {
      out[NEXT_PREFIX + cacheName(j, 'k')] = c.k;
      out[NEXT_PREFIX + cacheName(j, 'v')] = c.v;
    });
    return out;
  }, { params: flow });
}

export function unpatchifyGraph(flow: TarFlow, opts: { batch: number }): Graph {
  const { tokens, tokenChannels } = flow.cfg;
  return trace('tarflow_unpatchify', (t) => ({ x: flow.unpatchify(t.input('tokens', [opts.batch, tokens, tokenChannels])) }));
}

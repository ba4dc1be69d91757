/**
 * @file The real-model golden cases (DINOv2, LightningDiT + flow matching, TarFlow/STARFlow, FAE), each with the feeds and the PyTorch
 * golden tensors its outputs must match: the same goldens, graphs and feeds as the CPU-interpreter
 * tests test/models/{dinov2,lightningdit,tarflow,fae}.test.ts, packaged so that one runner can compile
 * them on any backend and compare: test/models/compiled.test.ts (kernel interpreter) and `kiln golden
 * check` (golden/checks.ts). `setModelGoldenDir` points them at another copy of golden/data.
 */
import { join } from 'node:path';
import { trace } from '../compiler/dsl/index.ts';
import { grad } from '../compiler/transforms/grad.ts';
import type { Graph } from '../ir/graph.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { Dinov2Model, bicubicResample, loadDinov2Config, loadDinov2State, traceDinov2 } from '../models/dinov2.ts';
import { FAE, type FaeConfig, ViTFeatureEncoder, type ViTFeatureEncoderConfig, stageIbGradients, traceDiscriminatorStep, traceStageIa } from '../models/fae.ts';
import { flowMatchingLoss } from '../models/flowMatching.ts';
import { LightningDiT, type LightningDiTConfig } from '../models/lightningdit.ts';
import { TarFlow, type TarFlowConfig, forwardGraph } from '../models/tarflow.ts';
import { loadSafetensors } from '../runtime/safetensors.ts';
import { ROOT } from './nnCases.ts';

/** One output compared with its golden: normwise max|got − want| / max(max|want|, floor). */
export interface GoldenCheck {
  output: string;
  want: HostTensor;
  floor: number;
  kind: 'forward' | 'grad';
}

export interface ModelCase {
  name: string;
  /** The normwise tolerance of its test, where it is not the model tests' 1e-4. */
  tol?: number;
  graph: Graph;
  feeds: Record<string, HostTensor>;
  checks: GoldenCheck[];
}


let dataDir = join(ROOT, 'golden', 'data');
/** Read the goldens from `dir` (a copy of golden/data) instead of the repository's. */
export function setModelGoldenDir(dir: string): void {
  dataDir = dir;
}
/** The folder the model goldens are read from. */
export function modelGoldenDir(): string {
  return dataDir;
}
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function load(path: string): { t: Map<string, HostTensor>; meta: any } {
  const { tensors, metadata } = loadSafetensors(join(dataDir, path));
  return { t: tensors, meta: JSON.parse(metadata.golden!) };
}
function byPrefix(t: Map<string, HostTensor>, p: string): Map<string, HostTensor> {
  return new Map([...t].filter(([k]) => k.startsWith(p)).map(([k, v]) => [k.slice(p.length), v]));
}
function get(t: Map<string, HostTensor>, k: string): HostTensor {
  const v = t.get(k);
  if (!v) throw new Error(`no golden tensor ${k}`);
  return v;
}
/** Gradient checks `grad.<p>` against `refs`, with the floor 0.01 × the largest reference gradient magnitude. */
function gradChecks(refs: ReadonlyMap<string, HostTensor>, outName = (p: string) => `grad.${p}`): GoldenCheck[] {
  const floor = 0.01 * Math.max(...[...refs.values()].map((r) => maxAbs(r.data)));
  return [...refs].map(([p, want]) => ({ output: outName(p), want, floor, kind: 'grad' as const }));
}
const fwd = (output: string, want: HostTensor): GoldenCheck => ({ output, want, floor: 0, kind: 'forward' });

// ---- DINOv2 (golden/data/dinov2, HF transformers) ----

/** x[:, start:end] of a [B, N, D] tensor. */
function sliceTokens(t: HostTensor, start: number, end?: number): HostTensor {
  const [b, n, d] = t.shape as [number, number, number];
  const e = end ?? n;
  const out = new Float32Array(b * (e - start) * d);
  for (let i = 0; i < b; i++) out.set(t.data.subarray((i * n + start) * d, (i * n + e) * d) as Float32Array, i * (e - start) * d);
  return hostTensor('f32', [b, e - start, d], out);
}

/** A DINOv2 forward pass (`model`: tiny | tiny_reg | tiny_swiglu, weights from the golden's safetensors) on golden run `run`. */
export function dinov2Case(model: 'tiny' | 'tiny_reg' | 'tiny_swiglu', run: string): ModelCase {
  const dir = join(dataDir, 'dinov2');
  const config = loadDinov2Config(join(dir, `${model}.config.json`));
  const m = new Dinov2Model(config);
  const { t, meta } = load(`dinov2/${model}.io.safetensors`);
  const r = (meta.runs as Array<{ name: string; batch: number; height: number; width: number; input: 'pixel_values' | 'images'; masked: boolean }>).find((x) => x.name === run)!;
  const graph = traceDinov2(m, { batch: r.batch, height: r.height, width: r.width, input: r.input, masked: r.masked });
  const feeds: Record<string, HostTensor> = Object.fromEntries(loadDinov2State(join(dir, `${model}.safetensors`), config));
  feeds[r.input] = get(t, `${run}.${r.input}`);
  if (r.masked) feeds.bool_masked_pos = get(t, `${run}.bool_masked_pos`);
  const last = get(t, `${run}.last_hidden_state`);
  const regs = m.numRegisters;
  const checks = [fwd('last_hidden_state', last), fwd('patch_tokens', sliceTokens(last, 1 + regs)), fwd('pooler_output', get(t, `${run}.pooler_output`))];
  if (regs > 0) checks.push(fwd('register_tokens', sliceTokens(last, 1, 1 + regs)));
  return { name: `dinov2 ${model} ${run} (${r.batch}x${r.height}x${r.width}${r.masked ? ', masked' : ''})`, graph, feeds, checks };
}

/** A case of golden/data/dinov2/interp.safetensors (F.interpolate bicubic, align_corners=False). */
export interface InterpGolden {
  name: string;
  in: [number, number];
  out: [number, number];
  antialias: boolean;
  scale_factor: [number, number] | null;
}

/** The bicubic position-embedding resampling goldens: the cases and their tensors. */
export function interpGolden(): { cases: InterpGolden[]; t: Map<string, HostTensor> } {
  const { t, meta } = load('dinov2/interp.safetensors');
  return { cases: meta.cases as InterpGolden[], t };
}

/** Channels-first [C, n] → channels-last [n, C] data. */
function channelsLast(data: ArrayLike<number>, C: number, n: number): Float32Array {
  const out = new Float32Array(n * C);
  for (let ch = 0; ch < C; ch++) for (let i = 0; i < n; i++) out[i * C + ch] = data[ch * n + i]!;
  return out;
}

/** bicubicResample of a golden's 2-channel input (on a channels-last grid) against F.interpolate's output; tolerance 1e-5. */
export function interpCase(name: string): ModelCase {
  const { cases, t } = interpGolden();
  const c = cases.find((x) => x.name === name);
  if (!c) throw new Error(`dinov2/interp.safetensors: no case ${name}`);
  const [h, w] = c.in;
  const opts = { antialias: c.antialias, scaleFactors: c.scale_factor ?? undefined };
  const graph = trace('resample', (tc) => ({ out: bicubicResample(tc.input('x', [h, w, 2]), c.out[0], c.out[1], opts) }));
  const n = c.out[0] * c.out[1];
  const want = hostTensor('f32', [c.out[0], c.out[1], 2], channelsLast(get(t, `${name}.output`).data, 2, n));
  return { name: `dinov2 interp ${name}`, tol: 1e-5, graph, feeds: { x: hostTensor('f32', [h, w, 2], channelsLast(get(t, `${name}.input`).data, 2, h * w)) }, checks: [fwd('out', want)] };
}

// ---- LightningDiT and flow matching (golden/data/lightningdit) ----

/** The Kiln config of a LightningDiT golden's (reference-named) config. */
export function ditConfigOf(py: Record<string, any>): LightningDiTConfig {
  return {
    inputSize: py.input_size, patchSize: py.patch_size, inChannels: py.in_channels, hiddenSize: py.hidden_size,
    depth: py.depth, numHeads: py.num_heads, mlpRatio: 4, classDropoutProb: py.class_dropout_prob ?? 0.1,
    numClasses: py.num_classes, learnSigma: py.learn_sigma ?? false, useQknorm: py.use_qknorm ?? false,
    useSwiglu: py.use_swiglu ?? false, useRope: py.use_rope ?? false, useRmsnorm: py.use_rmsnorm ?? false,
    woShift: py.wo_shift ?? false,
  };
}

/** Forward (raw, out) and the gradients of loss = Σ raw · cotangent w.r.t. every trainable parameter and x. */
export function ditCase(name: 'lightningdit_p1' | 'lightningdit_p2_mixed' | 'dit_p2'): ModelCase {
  const { t, meta } = load(`lightningdit/${name}.safetensors`);
  const model = new LightningDiT(ditConfigOf(meta.config));
  const x = get(t, 'input.x');
  const R = get(t, 'cotangent.raw');
  const g = trace(name, (tc) => {
    const xi = tc.input('x', x.shape);
    const ti = tc.input('t', get(t, 'input.t').shape);
    const yi = tc.input('y', get(t, 'input.y').shape, 'i32');
    const raw = model.forwardRaw(xi, ti, yi);
    const out = model.forward(xi, ti, yi);
    return { raw, out, loss: raw.mul(tc.input('cotangent', R.shape)).sum() };
  }, { params: model });
  const graph = grad(g, { loss: 'loss', wrt: [...model.trainableParameterNames(), 'x'] });
  const feeds: Record<string, HostTensor> = { x, t: get(t, 'input.t'), y: get(t, 'input.y'), cotangent: R, ...Object.fromEntries(byPrefix(t, 'param.')) };
  const refs = new Map([...byPrefix(t, 'grad.'), ['x', get(t, 'gradin.x')]]);
  return { name, graph, feeds, checks: [fwd('raw', get(t, 'output.raw')), fwd('out', get(t, 'output.out')), ...gradChecks(refs)] };
}

/** The flow-matching loss of lightningdit_p1 for the golden's x1, x0, t, y (no label dropout): loss terms and gradients. */
export function flowMatchingCase(): ModelCase {
  const { t, meta } = load('lightningdit/lightningdit_p1.safetensors');
  const model = new LightningDiT(ditConfigOf(meta.config));
  const ins = byPrefix(t, 'fm.input.');
  const g = trace('fm', (tc) => {
    const i = (k: string) => tc.input(k, ins.get(k)!.shape, ins.get(k)!.dtype);
    const r = flowMatchingLoss(model, i('x1'), i('y'), { x0: i('x0'), t: i('t'), train: false });
    return { loss: r.loss, mse: r.mse, cos: r.cos };
  }, { params: model });
  const graph = grad(g, { loss: 'loss', wrt: model.trainableParameterNames() });
  const feeds: Record<string, HostTensor> = Object.fromEntries([...ins, ...byPrefix(t, 'param.')]);
  // The golden's scalars are [1]; the graph's are [].
  const scalar = (k: string) => hostTensor('f32', [], get(t, `fm.output.${k}`).data);
  return { name: 'flow matching (lightningdit_p1)', graph, feeds, checks: [...['loss', 'mse', 'cos'].map((k) => fwd(k, scalar(k))), ...gradChecks(byPrefix(t, 'fm.grad.'))] };
}

// ---- TarFlow / STARFlow (golden/data/tarflow) ----

/** The Kiln config of a TarFlow golden's (reference-named) config. */
export function tarflowConfigOf(c: Record<string, any>): TarFlowConfig {
  return {
    inChannels: c.in_channels, imgSize: c.img_size, patchSize: c.patch_size, channels: c.channels, headDim: c.head_dim,
    expansion: c.expansion, layersPerBlock: c.layers_per_block, numClasses: c.num_classes, nvp: c.nvp,
    scale: c.use_softplus ? 'softplus' : 'exp', softClip: c.soft_clip, sos: c.use_sos, patchLayout: c.patch_layout,
    seqOrder: c.seq_order,
  };
}

export type TarFlowGoldenName = 'tiny_uncond' | 'tiny_cond_p2' | 'tiny_starflow';

/** A TarFlow golden: the flow, its tensors, parameters, sampling guidance and denoising σ. */
export function tarflowGolden(name: TarFlowGoldenName) {
  const { t, meta } = load(`tarflow/${name}.safetensors`);
  return {
    flow: new TarFlow(tarflowConfigOf(meta.config)), t, meta, params: byPrefix(t, 'param.'),
    guidance: meta.guidance as number, sigma: meta.sigma as number, batch: get(t, 'input.x').shape[0]!,
  };
}

/** The forward program (z, logdet, loss, nll, bpd) plus the gradient of the loss w.r.t. every parameter. */
export function tarflowCase(name: TarFlowGoldenName): ModelCase {
  const { t, meta, flow } = tarflowGolden(name);
  const x = get(t, 'input.x');
  const f = forwardGraph(flow, { batch: x.shape[0]! });
  const order = meta.param_order as string[];
  const graph = grad(f, { loss: 'loss', wrt: order });
  const feeds: Record<string, HostTensor> = { x, ...Object.fromEntries(byPrefix(t, 'param.')) };
  if (t.has('input.y')) feeds.y = get(t, 'input.y');
  const refs = new Map(order.map((p) => [p, get(t, `grad.${p}`)]));
  return { name, graph, feeds, checks: [...['z', 'logdet', 'loss', 'nll', 'bpd'].map((k) => fwd(k, get(t, `output.${k}`))), ...gradChecks(refs)] };
}

// ---- FAE (golden/data/fae/tiny.safetensors) ----

export function faeGolden() {
  const { t, meta } = load('fae/tiny.safetensors');
  const fae = new FAE(meta.config as FaeConfig, new ViTFeatureEncoder(meta.encoder as ViTFeatureEncoderConfig));
  const params = byPrefix(t, 'param.');
  const paramFeeds = (g: Graph) => Object.fromEntries(g.inputs.filter((i) => i.kind === 'param' || i.kind === 'frozen').map((i) => [i.name, params.get(i.name)!]));
  return { t, meta, fae, paramFeeds };
}

/** Stage Ia with explicit latent noise: posterior, decoded features, loss terms; adapter + feature-decoder gradients. */
export function faeStageIaCase(): ModelCase {
  const { t, meta, fae, paramFeeds } = faeGolden();
  const f = traceStageIa(fae, { batch: meta.batch, explicitNoise: true, outputs: 'all' });
  const graph = grad(f, { loss: 'loss', wrt: fae.paramNames('adapter', 'feature_decoder') });
  const feeds = { ...paramFeeds(f), features: get(t, 'input.features'), 'noise.latent': get(t, 'input.noise.latent') };
  const outs = ['mean', 'logvar', 'z', 'decoded', 'feature_mse', 'kl', 'loss'];
  return { name: 'fae stage Ia', graph, feeds, checks: [...outs.map((k) => fwd(k, get(t, `output.ia.${k}`))), ...gradChecks(byPrefix(t, 'grad.ia.'))] };
}

/**
 * Stage Ib with the adaptive GAN weight bound in-graph (two gradients w.r.t. the last decoder layer,
 * their norms, the clamp): every loss term and the pixel-decoder gradients.
 */
export function faeStageIbCase(): ModelCase {
  const { t, meta, fae, paramFeeds } = faeGolden();
  const graph = stageIbGradients(fae, { batch: meta.batch, explicitNoise: true });
  const feeds = { ...paramFeeds(graph), images: get(t, 'input.images'), 'noise.features': get(t, 'input.noise.features'), gan_factor: hostTensor('f32', [], [1]) };
  const outs = ['features', 'reconstruction', 'l1', 'mse', 'perceptual', 'rec_loss', 'logits_fake', 'g_loss', 'adaptive_weight', 'gan_weight', 'loss'];
  return { name: 'fae stage Ib', graph, feeds, checks: [...outs.map((k) => fwd(k, get(t, `output.ib.${k}`))), ...gradChecks(byPrefix(t, 'grad.ib.'))] };
}

/** The discriminator's hinge loss on the images vs the golden's (detached) reconstruction: logits, loss, gradients. */
export function faeDiscriminatorCase(): ModelCase {
  const { t, meta, fae, paramFeeds } = faeGolden();
  const f = traceDiscriminatorStep(fae, { batch: meta.batch, outputs: 'all' });
  const graph = grad(f, { loss: 'loss', wrt: fae.paramNames('discriminator') });
  const feeds = { ...paramFeeds(f), images: get(t, 'input.images'), reconstruction: get(t, 'output.ib.reconstruction'), gan_factor: hostTensor('f32', [], [1]) };
  const outs = ['logits_real', 'logits_fake', 'loss'];
  return { name: 'fae discriminator', graph, feeds, checks: [...outs.map((k) => fwd(k, get(t, `output.d.${k}`))), ...gradChecks(byPrefix(t, 'grad.d.'))] };
}

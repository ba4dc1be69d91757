/**
 * FAE (models/fae/*.ts) against the PyTorch reference golden/fae_golden.py → golden/data/fae/tiny.safetensors,
 * on the CPU backend (f32):
 * - forward outputs and every loss term within 1e-4 normwise relative error: max|kiln − ref| / max|ref|;
 * - parameter gradients of the stage-Ia, stage-Ib (adaptive GAN weight bound in-graph) and discriminator
 *   losses within 1e-4 of the same norm, with the floor max(max|ref|, 0.01·G), G the largest gradient
 *   magnitude of that loss;
 * - parameter names (set and order) equal to the PyTorch state_dict;
 * plus reparameterization statistics with Philox noise, config validation, the latent layout, and
 * short training runs of the stage programs.
 * KILN_FAE_ERR=1 prints every measured error.
 */
import { maxAbs, relErr } from '../support/compare.ts';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { Module, type Tensor, trace } from '../../compiler/dsl/index.ts';
import { bindInput } from '../../compiler/transforms/bindInput.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { fillNormal } from '../../ir/philox.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import {
  FAE,
  FaeConfigError,
  type FaeConfig,
  type FeatureEncoder,
  LAST_LAYER,
  ViTFeatureEncoder,
  type ViTFeatureEncoderConfig,
  discriminatorTrainStep,
  encodeLatent,
  faeConfigs,
  faeScope,
  latentGridToTokens,
  latentNCHWToTokens,
  latentTokensToGrid,
  latentTokensToNCHW,
  paperFaeConfig,
  stageIaTrainStep,
  stageIbGradients,
  stageIbTrainStep,
  traceDiscriminatorStep,
  traceStageIa,
  traceStageIb,
  validateFaeConfig,
} from '../../models/fae.ts';
import { tinyDinov2Config } from '../../models/dinov2/config.ts';
import { Dinov2Model, traceDinov2 } from '../../models/dinov2/model.ts';
import { Dinov2FeatureEncoder, resizeImages } from '../../models/fae/dinov2Encoder.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { Session } from '../../runtime/session.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GOLD = loadSafetensors(join(ROOT, 'golden', 'data', 'fae', 'tiny.safetensors'));
const META = JSON.parse(GOLD.metadata.golden!) as { config: FaeConfig; encoder: ViTFeatureEncoderConfig; batch: number; uniform_max: number; param_order: string[] };
const B = META.batch;
const TOL = 1e-4;
const LOG = !!process.env.KILN_FAE_ERR;

function g(name: string): HostTensor {
  const t = GOLD.tensors.get(name);
  if (!t) throw new Error(`golden has no tensor ${name}`);
  return t;
}
function byPrefix(prefix: string): Map<string, HostTensor> {
  return new Map([...GOLD.tensors].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}
function expectClose(what: string, got: HostTensor | undefined, want: HostTensor, floor = 0): number {
  expect(got, `${what} missing`).toBeDefined();
  expect(got!.data.length, what).toBe(want.data.length);
  const e = relErr(got!.data, want.data, floor);
  if (LOG) console.log(`${what}: ${e.toExponential(2)}`);
  expect(e, `${what}: normwise relative error ${e.toExponential(2)}`).toBeLessThanOrEqual(TOL);
  return e;
}
function feedsFor(graph: { inputs: readonly { name: string; kind: string }[] }, extra: Record<string, HostTensor>): Record<string, HostTensor> {
  const params = byPrefix('param.');
  const f: Record<string, HostTensor> = { ...extra };
  for (const i of graph.inputs) if (isParam(i.kind)) f[i.name] = params.get(i.name)!;
  return f;
}
/** Trainable ('param') or frozen parameter inputs (the encoder's are frozen). */
const isParam = (kind: string) => kind === 'param' || kind === 'frozen';
const scalar = (v: number) => hostTensor('f32', [], [v]);
const seed = (a: number, b = 0) => hostTensor('u32', [2], [a, b]);

function makeFae(cfg: FaeConfig = faeConfigs.tiny()): FAE {
  return new FAE(cfg, new ViTFeatureEncoder(META.encoder));
}
/** Compare the gradient outputs `grad.<p>` of `r` for every golden `grad.<stage>.<p>`, with the floor 0.01·G. */
function expectGrads(stage: string, r: Record<string, HostTensor>): void {
  const refs = byPrefix(`grad.${stage}.`);
  expect(refs.size).toBeGreaterThan(0);
  const floor = 0.01 * Math.max(...[...refs.values()].map((t) => maxAbs(t.data)));
  let worst = 0;
  for (const [p, ref] of refs) worst = Math.max(worst, expectClose(`${stage} grad ${p}`, r[`grad.${p}`], ref, floor));
  if (LOG) console.log(`${stage}: worst gradient error ${worst.toExponential(2)} over ${refs.size} parameters`);
}

describe('FAE configs', () => {
  it('the tiny config is the golden’s, and every shipped config validates', () => {
    expect(faeConfigs.tiny()).toEqual(META.config);
    for (const make of Object.values(faeConfigs)) expect(validateFaeConfig(make())).toBeTruthy();
  });

  it('paper sizes: 1536-wide encoder, 24×256 adapter, 6-layer feature decoder, ViT-L pixel decoder to 256 px', () => {
    const c = paperFaeConfig();
    // A parameterless stand-in with DINOv2-g's interface (the real wrapper resizes 256 → 224 px itself).
    class Stub extends Module implements FeatureEncoder {
      readonly dim = 1536;
      readonly grid = 16;
      readonly channels = 3;
      readonly imageSize = 256;
      forward(x: Tensor): Tensor {
        return x;
      }
    }
    const fae = new FAE(c, new Stub());
    expect(fae.imageSize).toBe(256);
    expect(fae.tokens).toBe(256);
    const shapes = new Map(fae.namedParameters().map(([n, p]) => [n, p.shape]));
    expect(shapes.get('adapter.attn.qkv.weight')).toEqual([3 * 24 * 256, 1536]);
    expect(shapes.get('adapter.attn.proj.weight')).toEqual([1536, 6144]);
    expect(shapes.get('adapter.head.weight')).toEqual([64, 1536]);
    expect(shapes.get('feature_decoder.blocks.5.mlp.w12.weight')).toEqual([2 * 4096, 1536]);
    expect(shapes.has('feature_decoder.blocks.6.norm1.weight')).toBe(false);
    expect(shapes.get('pixel_decoder.input_proj.weight')).toEqual([1024, 1536]);
    expect(shapes.get('pixel_decoder.blocks.23.mlp.fc1.weight')).toEqual([4096, 1024]);
    expect(shapes.get('pixel_decoder.output_proj.weight')).toEqual([16 * 16 * 3, 1024]);
    const fm = faeConfigs.fashionMnist();
    expect(fm.encoder.grid * fm.pixelDecoder.patchSize).toBe(28);
    expect(fm.pixelDecoder.channels).toBe(1);
  });

  it('validation errors name the bad field', () => {
    const bad = (mut: (c: any) => void, field: string) => {
      const c = faeConfigs.tiny() as any;
      mut(c);
      let err: unknown;
      try {
        validateFaeConfig(c);
      } catch (e) {
        err = e;
      }
      expect(err, field).toBeInstanceOf(FaeConfigError);
      expect((err as FaeConfigError).field).toBe(field);
      expect((err as Error).message).toContain(field);
    };
    bad((c) => (c.adapter.headDim = 0), 'adapter.headDim');
    bad((c) => (c.adapter.latentChannels = 2.5), 'adapter.latentChannels');
    bad((c) => (c.adapter.activation = 'relu'), 'adapter.activation');
    bad((c) => (c.adapter.logvarClamp = [5, -5]), 'adapter.logvarClamp');
    bad((c) => delete c.encoder, 'encoder');
    bad((c) => (c.encoder.dim = -16), 'encoder.dim');
    bad((c) => (c.featureDecoder.heads = 3), 'featureDecoder.heads'); // 16 % 3 ≠ 0
    bad((c) => (c.featureDecoder.heads = 8), 'featureDecoder.heads'); // head dim 2: not a multiple of 4 (RoPE)
    bad((c) => (c.featureDecoder.depth = 0), 'featureDecoder.depth');
    bad((c) => (c.pixelDecoder.dim = 26), 'pixelDecoder.dim');
    bad((c) => (c.pixelDecoder.heads = 5), 'pixelDecoder.heads');
    bad((c) => (c.discriminator.patchSizes = [2]), 'discriminator.patchSizes');
    bad((c) => (c.discriminator.patchSizes = [3, 2]), 'discriminator.patchSizes');
    bad((c) => (c.featureNoise = { kind: 'gaussian' }), 'featureNoise.kind');
    bad((c) => (c.featureNoise.sigma = -0.4), 'featureNoise.sigma');
    bad((c) => (c.loss.klWeight = Number.NaN), 'loss.klWeight');
    const none = faeConfigs.tiny();
    none.discriminator = null;
    expect(validateFaeConfig(none).discriminator).toBeNull();
  });

  it('the model checks the frozen encoder against the config', () => {
    const c = faeConfigs.tiny();
    c.encoder.dim = 32;
    c.featureDecoder.heads = 4;
    expect(() => makeFae(c)).toThrow(/encoder\.dim/);
  });
});

describe('FAE vs the PyTorch reference', () => {
  const fae = makeFae();

  it('parameter names and shapes equal the PyTorch state_dict (set and order)', () => {
    const named = fae.namedParameters();
    expect(named.map(([n]) => n)).toEqual(META.param_order);
    const params = byPrefix('param.');
    for (const [n, p] of named) expect(p.shape, n).toEqual(params.get(n)!.shape);
    expect(fae.paramNames('discriminator')[0]).toBe('discriminator.layers.0.conv.weight');
  });

  it('stage Ia: mean, logvar, z, decoded features, MSE, KL and loss; gradients of adapter and feature decoder', () => {
    const graph = traceStageIa(fae, { batch: B, explicitNoise: true, outputs: 'all' });
    expect(graph.inputs.filter((i) => i.kind === 'param').map((i) => i.name)).toEqual(fae.paramNames('adapter', 'feature_decoder'));
    const wrt = fae.paramNames('adapter', 'feature_decoder');
    const r = runGraph(grad(graph, { loss: 'loss', wrt }), feedsFor(graph, { features: g('input.features'), 'noise.latent': g('input.noise.latent') }));
    for (const k of ['mean', 'logvar', 'z', 'decoded', 'feature_mse', 'kl', 'loss']) expectClose(`ia ${k}`, r[k], g(`output.ia.${k}`));
    expectGrads('ia', r);
  });

  it('stage Ia in mode (z = mean) for evaluation', () => {
    const graph = traceStageIa(fae, { batch: B, mode: 'mode', outputs: 'all' });
    expect(graph.inputs.map((i) => i.name)).not.toContain('rng_seed');
    const r = runGraph(graph, feedsFor(graph, { features: g('input.features') }));
    expect(Array.from(r.z!.data)).toEqual(Array.from(r.mean!.data));
    expectClose('ia_mode decoded', r.decoded, g('output.ia_mode.decoded'));
    expectClose('ia_mode loss', r.loss, g('output.ia_mode.loss'));
  });

  it('stage Ib: features, reconstruction, L1, MSE, perceptual, GAN term, adaptive weight, loss; pixel-decoder gradients', () => {
    const graph = stageIbGradients(fae, { batch: B, explicitNoise: true });
    const names = graph.inputs.map((i) => i.name);
    expect(names).not.toContain('gan_weight'); // bound in-graph
    expect(names).toContain('gan_factor');
    const r = runGraph(graph, feedsFor(graph, { images: g('input.images'), 'noise.features': g('input.noise.features'), gan_factor: scalar(1) }));
    for (const k of ['features', 'reconstruction', 'l1', 'mse', 'perceptual', 'rec_loss', 'logits_fake', 'g_loss', 'adaptive_weight', 'gan_weight', 'loss'])
      expectClose(`ib ${k}`, r[k], g(`output.ib.${k}`));
    expectGrads('ib', r);
  });

  it('the adaptive weight is taming’s: ‖∇W rec‖ / (‖∇W g‖ + 1e-4), clamped, times discriminator_weight and disc_factor', () => {
    const rn = g('output.ib.rec_grad_norm').data[0]!;
    const gn = g('output.ib.gan_grad_norm').data[0]!;
    expect(g('output.ib.adaptive_weight').data[0]).toBeCloseTo(rn / (gn + 1e-4), 5);
    // Kiln's two in-graph gradients w.r.t. the last layer, checked through their norms.
    const f = traceStageIb(fae, { batch: B, explicitNoise: true });
    const both = grad(grad(f, { loss: 'rec_loss', wrt: [LAST_LAYER], prefix: 'r.' }), { loss: 'g_loss', wrt: [LAST_LAYER], prefix: 'q.' });
    const withNorms = bindInput(both, 'gan_weight', ({ output, input }) => ({
      value: input('gan_factor').mul(0),
      outputs: { rn: output(`r.${LAST_LAYER}`).square().sum().sqrt(), gn: output(`q.${LAST_LAYER}`).square().sum().sqrt() },
    }));
    const r = runGraph(withNorms, feedsFor(withNorms, { images: g('input.images'), 'noise.features': g('input.noise.features'), gan_factor: scalar(1) }));
    expectClose('‖∇W rec_loss‖', r.rn, g('output.ib.rec_grad_norm'));
    expectClose('‖∇W g_loss‖', r.gn, g('output.ib.gan_grad_norm'));
    // With gan_weight bound to 0 the loss is the reconstruction loss alone.
    expect(r.loss!.data[0]).toBeCloseTo(g('output.ib.rec_loss').data[0]!, 5);
  });

  it('stage Ib with the RAE-style per-sample σ ~ U(0, 0.8)', () => {
    const graph = traceStageIb(fae, { batch: B, explicitNoise: true, gan: false, featureNoise: { kind: 'uniform', max: META.uniform_max } });
    expect(graph.inputs.map((i) => i.name)).not.toContain('discriminator.head.weight');
    const r = runGraph(graph, feedsFor(graph, { images: g('input.images'), 'noise.features': g('input.noise.features'), 'noise.sigma': g('input.noise.sigma') }));
    expectClose('ib_uniform reconstruction', r.reconstruction, g('output.ib_uniform.reconstruction'));
  });

  it('discriminator step: hinge loss on real vs detached fake, logits and gradients', () => {
    const graph = traceDiscriminatorStep(fae, { batch: B, outputs: 'all' });
    expect(graph.inputs.filter((i) => i.kind === 'param').map((i) => i.name)).toEqual(fae.paramNames('discriminator'));
    const r = runGraph(grad(graph, { loss: 'loss', wrt: fae.paramNames('discriminator') }),
      feedsFor(graph, { images: g('input.images'), reconstruction: g('output.ib.reconstruction'), gan_factor: scalar(1) }));
    expectClose('d logits_real', r.logits_real, g('output.d.logits_real'));
    expectClose('d logits_fake', r.logits_fake, g('output.d.logits_fake'));
    expectClose('d loss', r.loss, g('output.d.loss'));
    expectGrads('d', r);
  });
});

describe('FAE latent: reparameterization and layout', () => {
  const fae = makeFae();
  const n = 64; // batch of the statistics run: 64 · 16 tokens · 4 channels = 4096 samples
  const graph = trace('fae_reparam', (t) => {
    const f = t.input('features', [n, fae.tokens, fae.config.encoder.dim]);
    const { mean, logvar, z } = encodeLatent(fae, f);
    return { mean, logvar, z };
  }, { params: faeScope(fae, ['adapter']) });
  const feats = new Float64Array(n * fae.tokens * fae.config.encoder.dim);
  fillNormal(feats, 7, 0, 0);
  const run = (s: HostTensor) => runGraph(graph, feedsFor(graph, { features: hostTensor('f32', [n, fae.tokens, fae.config.encoder.dim], feats), rng_seed: s }));

  it('z − mean = exp(0.5·logvar)·ε with ε ~ N(0, 1) from Philox: deterministic per seed, fresh per seed', () => {
    const a = run(seed(1));
    const { mean, logvar, z } = a as Record<string, HostTensor>;
    const m = z!.data.length;
    let s1 = 0, s2 = 0, d2 = 0, v = 0;
    for (let i = 0; i < m; i++) {
      const d = z!.data[i]! - mean!.data[i]!;
      const e = d / Math.exp(0.5 * logvar!.data[i]!);
      s1 += e;
      s2 += e * e;
      d2 += d * d;
      v += Math.exp(logvar!.data[i]!);
    }
    const eMean = s1 / m, eVar = s2 / m - eMean ** 2;
    if (LOG) console.log(`ε mean ${eMean.toFixed(4)} var ${eVar.toFixed(4)}; E(z−mean)² / E exp(logvar) = ${(d2 / v).toFixed(4)} over ${m}`);
    expect(Math.abs(eMean)).toBeLessThan(4 / Math.sqrt(m));
    expect(Math.abs(eVar - 1)).toBeLessThan(4 * Math.sqrt(2 / m));
    expect(Math.abs(d2 / v - 1)).toBeLessThan(0.1);
    const again = run(seed(1));
    expect(Array.from(again.z!.data)).toEqual(Array.from(z!.data));
    const other = run(seed(2));
    let same = 0;
    for (let i = 0; i < m; i++) if (other.z!.data[i] === z!.data[i]) same++;
    expect(same).toBeLessThan(m / 100);
    expect(Array.from(other.mean!.data)).toEqual(Array.from(mean!.data));
  });

  it('tokens [B, g², C] ↔ grid [B, g, g, C] ↔ NCHW [B, C, g, g], token n = row·g + col', () => {
    const [b, gr, c] = [2, 3, 4];
    const lg = trace('layout', (t) => {
      const z = t.input('z', [b, gr * gr, c]);
      const grid = latentTokensToGrid(z, gr);
      const nchw = latentTokensToNCHW(z, gr);
      return { grid, nchw, back1: latentGridToTokens(grid), back2: latentNCHWToTokens(nchw) };
    });
    const vals = Array.from({ length: b * gr * gr * c }, (_, i) => i);
    const r = runGraph(lg, { z: hostTensor('f32', [b, gr * gr, c], vals) });
    expect(r.grid!.shape).toEqual([b, gr, gr, c]);
    expect(r.nchw!.shape).toEqual([b, c, gr, gr]);
    const at = (bi: number, row: number, col: number, k: number) => ((bi * gr * gr + row * gr + col) * c + k);
    expect(r.nchw!.data[((1 * c + 2) * gr + 1) * gr + 0]).toBe(at(1, 1, 0, 2));
    expect(r.grid!.data[((1 * gr + 2) * gr + 1) * c + 3]).toBe(at(1, 2, 1, 3));
    expect(Array.from(r.back1!.data)).toEqual(vals);
    expect(Array.from(r.back2!.data)).toEqual(vals);
  });
});

describe('FAE stage programs train', () => {
  it('stage Ia: a few AdamW steps on fixed random encoder features lower the loss', async () => {
    const fae = makeFae();
    const step = stageIaTrainStep(fae, { batch: B, optimizer: { kind: 'adamw', weightDecay: 0 } });
    const params = byPrefix('param.');
    const initial = new Map(fae.paramNames('adapter', 'feature_decoder').map((p) => [p, params.get(p)!]));
    const s = await Session.open(cpuBackend, step, initial);
    const feats = new Float64Array(B * fae.tokens * fae.config.encoder.dim);
    fillNormal(feats, 3, 0, 0);
    const features = hostTensor('f32', [B, fae.tokens, fae.config.encoder.dim], feats);
    const losses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await s.run({ features, rng_seed: seed(100 + i), lr: scalar(3e-3) }, ['loss', 'feature_mse', 'kl']);
      expect(Number.isFinite(r.loss!.data[0]!)).toBe(true);
      losses.push(r.loss!.data[0]!);
    }
    if (LOG) console.log(`stage Ia losses: ${losses.map((l) => l.toFixed(4)).join(' ')}`);
    expect(losses[9]!).toBeLessThan(0.8 * losses[0]!);
    const st = await s.read(['state']);
    expect(st.get('optim.step')!.data[0]).toBe(10);
  });

  it('stage Ib generator step (adaptive weight in-graph) and discriminator step run and update only their parameters', async () => {
    const fae = makeFae();
    const params = byPrefix('param.');
    const gen = stageIbTrainStep(fae, { batch: B, optimizer: { kind: 'adamw' } });
    expect(gen.inputs.map((i) => i.name)).not.toContain('gan_weight');
    const gs = await Session.open(cpuBackend, gen, new Map(gen.inputs.filter((i) => isParam(i.kind)).map((i) => [i.name, params.get(i.name)!])));
    const feeds = { images: g('input.images'), rng_seed: seed(5), gan_factor: scalar(1), lr: scalar(1e-3) };
    const r1 = await gs.run(feeds);
    for (const k of ['loss', 'rec_loss', 'g_loss', 'gan_weight', 'adaptive_weight']) expect(Number.isFinite(r1[k]!.data[0]!), k).toBe(true);
    expect(r1.reconstruction!.shape).toEqual([B, 3, 16, 16]);
    const after = await gs.read();
    expect(after.get(LAST_LAYER)!.data).not.toEqual(params.get(LAST_LAYER)!.data);
    expect(after.get('encoder.norm.weight')!.data).toEqual(params.get('encoder.norm.weight')!.data);
    expect(after.get('discriminator.head.weight')!.data).toEqual(params.get('discriminator.head.weight')!.data);
    // disc_factor 0: no GAN contribution, loss = rec_loss.
    const r0 = await gs.run({ ...feeds, gan_factor: scalar(0) }, ['loss', 'rec_loss', 'gan_weight']);
    expect(r0.gan_weight!.data[0]).toBe(0);
    expect(r0.loss!.data[0]).toBeCloseTo(r0.rec_loss!.data[0]!, 6);

    const disc = discriminatorTrainStep(fae, { batch: B, optimizer: { kind: 'adamw', beta1: 0.5, beta2: 0.9 } });
    const ds = await Session.open(cpuBackend, disc, new Map(fae.paramNames('discriminator').map((p) => [p, params.get(p)!])));
    const dfeeds = { images: g('input.images'), reconstruction: r1.reconstruction!, gan_factor: scalar(1), lr: scalar(1e-2) };
    const d1 = await ds.run(dfeeds);
    for (let i = 0; i < 4; i++) await ds.run(dfeeds);
    const d5 = await ds.run(dfeeds);
    if (LOG) console.log(`discriminator loss ${d1.loss!.data[0]} → ${d5.loss!.data[0]}`);
    expect(d5.loss!.data[0]!).toBeLessThan(d1.loss!.data[0]!);
  });
});

describe('FAE with DINOv2 as the frozen encoder (random weights)', () => {
  const model = new Dinov2Model(tinyDinov2Config()); // width 32, patch 14, trained grid 3×3 (42 px)
  const hf = model.initState(11);
  const rand = (shape: number[], s: number, scale = 1) => {
    const v = new Float64Array(shape.reduce((a, b) => a * b, 1));
    fillNormal(v, s, 0, 0);
    return hostTensor('f32', shape, v.map((x) => Math.max(-1, Math.min(1, scale * x))));
  };

  it('the wrapper keeps the HF keys and returns DINOv2’s patch tokens of the [0, 1] images', () => {
    const enc = new Dinov2FeatureEncoder(model, { imageSize: 42 });
    expect(enc.namedParameters().map(([n]) => n)).toEqual(model.namedParameters().map(([n]) => n));
    expect([enc.dim, enc.grid, enc.channels]).toEqual([32, 3, 3]);
    const images = rand([2, 3, 42, 42], 21, 0.6);
    const wrapped = trace('dinov2_fae', (t) => ({ tokens: enc.forward(t.input('images', [2, 3, 42, 42])) }), { params: enc });
    const feeds: Record<string, HostTensor> = Object.fromEntries(hf);
    const a = runGraph(wrapped, { ...feeds, images });
    const ref = traceDinov2(model, { batch: 2, height: 42, width: 42, input: 'images', outputs: ['patch_tokens'] });
    const b = runGraph(ref, { ...feeds, images: hostTensor('f32', [2, 3, 42, 42], Array.from(images.data, (x) => (x + 1) / 2)) });
    expect(a.tokens!.shape).toEqual([2, 9, 32]);
    expect(relErr(a.tokens!.data, b.patch_tokens!.data)).toBeLessThan(1e-5);
  });

  it('image resizing matches F.interpolate(bicubic, align_corners=False[, antialias])', () => {
    for (const [name, size, aa] of [['bicubic_12', 12, false], ['bicubic_aa_12', 12, true], ['bicubic_20', 20, false]] as const) {
      const r = runGraph(trace('resize', (t) => ({ y: resizeImages(t.input('x', [B, 3, 16, 16]), size, aa) })), { x: g('input.images') });
      expect(r.y!.shape).toEqual([B, 3, size, size]);
      expectClose(`resize ${name}`, r.y, g(`output.resize.${name}`));
    }
  });

  it('bicubic resizing keeps constant images constant', () => {
    for (const aa of [false, true]) {
      const r = runGraph(trace('resize', (t) => ({ y: resizeImages(t.input('x', [1, 3, 48, 48]), 42, aa) })), { x: hostTensor('f32', [1, 3, 48, 48], new Array(3 * 48 * 48).fill(0.25)) });
      expect(r.y!.shape).toEqual([1, 3, 42, 42]);
      expect(maxAbs(Array.from(r.y!.data, (x) => x - 0.25))).toBeLessThan(1e-6);
    }
  });

  it('stage Ib on 48 px images with DINOv2 features and perceptual loss (resized to 42 px): finite, gradients reach the decoder', () => {
    const enc = new Dinov2FeatureEncoder(model, { imageSize: 48, encoderImageSize: 42 });
    const cfg: FaeConfig = {
      ...faeConfigs.tiny(),
      encoder: { dim: 32, grid: 3 },
      adapter: { ...faeConfigs.tiny().adapter, headDim: 8 },
      featureDecoder: { depth: 1, heads: 2, mlpHidden: 32, normEps: 1e-6, ropeTheta: 10000 },
      pixelDecoder: { dim: 16, depth: 1, heads: 2, mlpHidden: 32, patchSize: 16, channels: 3, normEps: 1e-6 },
      discriminator: { channels: [8], patchSizes: [4], leakySlope: 0.2 },
    };
    const fae = new FAE(cfg, enc);
    expect(fae.paramNames('encoder')[0]).toBe('encoder.embeddings.cls_token');
    const graph = stageIbGradients(fae, { batch: 1 });
    const state = fae.initState(3);
    const params = Object.fromEntries(graph.inputs.filter((i) => isParam(i.kind)).map((i) => [i.name, state.get(i.name)!]));
    const r = runGraph(graph, { ...params, images: rand([1, 3, 48, 48], 22, 0.6), rng_seed: seed(9), gan_factor: scalar(1) });
    expect(r.features!.shape).toEqual([1, 9, 32]);
    for (const k of ['perceptual', 'rec_loss', 'g_loss', 'adaptive_weight', 'loss']) expect(Number.isFinite(r[k]!.data[0]!), k).toBe(true);
    expect(r.perceptual!.data[0]).toBeGreaterThan(0);
    expect(maxAbs(r[`grad.${LAST_LAYER}`]!.data)).toBeGreaterThan(0);
    expect(maxAbs(r['grad.pixel_decoder.input_proj.weight']!.data)).toBeGreaterThan(0);
  });
});

describe('FAE: helpers', () => {
  it('bindInput refuses a value that depends on the input it defines', () => {
    const gr = trace('b', (t) => {
      const x = t.input('x', []);
      const w = t.input('w', []);
      return { y: x.mul(w), x2: x.add(1) };
    });
    expect(() => bindInput(gr, 'w', ({ output }) => ({ value: output('y') }))).toThrow(/depends on input 'w'/);
    const bound = bindInput(gr, 'w', ({ output }: { output: (n: string) => Tensor }) => ({ value: output('x2') }));
    expect(bound.inputs.map((i) => i.name)).toEqual(['x']);
    expect(runGraph(bound, { x: scalar(3) }).y!.data[0]).toBe(12);
  });
});

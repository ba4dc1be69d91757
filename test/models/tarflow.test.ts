/**
 * TarFlow / STARFlow (models/tarflow.ts) against the PyTorch goldens of golden/tarflow_golden.py
 * (tiny configs: TarFlow unconditional patch 1; TarFlow class-conditional patch 2; STARFlow options
 * with class embedding), on the CPU backend in f32:
 * - parameter names = the reference state_dict keys (set and order);
 * - forward z, logdet, loss, nll, bpd and every parameter gradient of the loss within 1e-4 normwise
 *   relative error max|a − b| / max|b| (gradients: floor 0.01 × the largest gradient magnitude);
 * - the KV-cached sampler = the non-cached sampler = the golden (with and without guidance); the
 *   denoising score step; inverse(forward(x)) = x;
 * and without goldens: the log-determinant against log|det| of the finite-difference Jacobian of
 * the whole flow (f64), bits per dimension on a hand-computable flow, a short AdamW training run.
 */
import { tarflowConfigOf } from '../support/compiledModels.ts';
import { maxAbs, relErr } from '../support/compare.ts';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { init, trace } from '../../compiler/dsl/index.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import type { Graph } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import {
  TarFlow, TarFlowDenoiser, TarFlowSampler, bitsPerDim, deepShallow, dropReferenceBuffers, forwardGraph,
  quantizationBin, tarflowConfigs, trainLossGraph, withReferenceBuffers,
} from '../../models/tarflow.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { Session } from '../../runtime/session.ts';
import { ROOT } from '../support/nnGoldens.ts';

const DIR = join(ROOT, 'golden', 'data', 'tarflow');


interface Golden {
  flow: TarFlow;
  t: Map<string, HostTensor>;
  params: Map<string, HostTensor>;
  order: string[];
  guidance: number;
  sigma: number;
  batch: number;
}


function loadGolden(name: string): Golden {
  const { tensors, metadata } = loadSafetensors(join(DIR, `${name}.safetensors`));
  const info = JSON.parse(metadata.golden!) as { config: Record<string, any>; param_order: string[]; guidance: number; sigma: number };
  const params = new Map<string, HostTensor>();
  for (const [k, v] of tensors) if (k.startsWith('param.')) params.set(k.slice(6), v);
  return {
    flow: new TarFlow(tarflowConfigOf(info.config)), t: tensors, params, order: info.param_order,
    guidance: info.guidance, sigma: info.sigma, batch: tensors.get('input.x')!.shape[0]!,
  };
}

function feedsOf(g: Golden): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = { x: g.t.get('input.x')! };
  if (g.t.has('input.y')) f.y = g.t.get('input.y')!;
  for (const [k, v] of g.params) f[k] = v;
  return f;
}

const compile = (gr: Graph) => cpuBackend.compile(gr);
const GOLDENS = ['tiny_uncond', 'tiny_cond_p2', 'tiny_starflow'] as const;

describe('TarFlow vs PyTorch goldens', () => {
  for (const name of GOLDENS) {
    describe(name, () => {
      const g = loadGolden(name);
      const fwd = forwardGraph(g.flow, { batch: g.batch });

      it('has the reference state_dict keys, in order', () => {
        expect(g.flow.namedParameters().map(([k]) => k)).toEqual(g.order);
        for (const [k, p] of g.flow.namedParameters()) expect(p.shape, k).toEqual(g.params.get(k)!.shape);
        expect(fwd.inputs.filter((i) => i.kind === 'param').map((i) => i.name)).toEqual(g.order);
      });

      it('forward: z, logdet, loss, nll, bpd within 1e-4', () => {
        const r = runGraph(fwd, feedsOf(g));
        for (const o of ['z', 'logdet', 'loss', 'nll', 'bpd']) {
          const e = relErr(r[o]!.data, g.t.get(`output.${o}`)!.data);
          expect(e, o).toBeLessThan(1e-4);
        }
      });

      it('parameter gradients of the loss within 1e-4', () => {
        const r = runGraph(grad(fwd, { loss: 'loss', wrt: g.order, outputs: ['loss'] }), feedsOf(g));
        const floor = 0.01 * Math.max(...g.order.map((k) => maxAbs(g.t.get(`grad.${k}`)!.data)));
        let worst = 0;
        for (const k of g.order) {
          const e = relErr(r[`grad.${k}`]!.data, g.t.get(`grad.${k}`)!.data, floor);
          worst = Math.max(worst, e);
          expect(e, `grad.${k}`).toBeLessThan(1e-4);
        }
        expect(worst).toBeLessThan(1e-4);
      });

      it('sampling: KV-cached = non-cached = golden (with and without guidance); inverse(forward(x)) = x', async () => {
        const guided = g.flow.cfg.numClasses > 0;
        const y = g.t.get('input.sample_y');
        const noise = g.t.get('input.noise')!;
        const cached = await TarFlowSampler.open(g.flow, compile, g.params, { batch: g.batch, guided });
        const full = await TarFlowSampler.open(g.flow, compile, g.params, { batch: g.batch, guided, kvCache: false });
        const ws = guided ? [0, g.guidance] : [0];
        for (const w of ws) {
          const a = await cached.sampleTokens(noise, { y, guidance: w });
          const b = await full.sampleTokens(noise, { y, guidance: w });
          expect(relErr(a.data, b.data), `cached vs non-cached, w=${w}`).toBeLessThan(1e-5);
          const img = await cached.sample(noise, { y, guidance: w });
          const want = g.t.get(w === 0 ? 'output.sample' : 'output.sample_guided')!;
          expect(img.shape).toEqual(want.shape);
          expect(relErr(img.data, want.data), `sample vs golden, w=${w}`).toBeLessThan(1e-4);
        }
        // inverse(forward(x)) = x, with the forward batch's labels (a dropped label included)
        const z = runGraph(fwd, feedsOf(g)).z!;
        const x = g.t.get('input.x')!;
        const back = await cached.sample(z, { y: g.t.get('input.y') });
        expect(relErr(back.data, x.data), 'inverse(forward(x))').toBeLessThan(1e-5);
        cached.dispose();
        full.dispose();
      });

      it('denoising step x + σ²∇log p(x) matches the golden', async () => {
        const d = await TarFlowDenoiser.open(g.flow, compile, grad, g.params, { batch: g.batch });
        const r = await d.denoise(g.t.get('output.sample')!, g.sigma, g.t.get('input.sample_y'));
        const want = g.t.get('output.denoised')!;
        const x0 = g.t.get('output.sample')!;
        // compare the update itself, which is small next to x
        const upd = Float64Array.from(r.x.data, (v, i) => v - x0.data[i]!);
        const updWant = Float64Array.from(want.data, (v, i) => v - x0.data[i]!);
        expect(maxAbs(updWant)).toBeGreaterThan(1e-3);
        expect(relErr(upd, updWant), 'denoising update').toBeLessThan(1e-4);
        d.dispose();
      });
    });
  }
});

/** log|det A| by LU with partial pivoting. */
function logAbsDet(a: Float64Array, n: number): number {
  const m = Float64Array.from(a);
  let s = 0;
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(m[i * n + k]!) > Math.abs(m[p * n + k]!)) p = i;
    if (p !== k) for (let j = 0; j < n; j++) [m[k * n + j], m[p * n + j]] = [m[p * n + j]!, m[k * n + j]!];
    const piv = m[k * n + k]!;
    s += Math.log(Math.abs(piv));
    for (let i = k + 1; i < n; i++) {
      const f = m[i * n + k]! / piv;
      for (let j = k; j < n; j++) m[i * n + j]! -= f * m[k * n + j]!;
    }
  }
  return s;
}

/** Jacobian ∂z/∂x of the whole flow at x (batch 1) by central differences in f64; returns D·logdet and log|det J|. */
function jacobianCheck(flow: TarFlow, params: Map<string, HostTensor>, x: Float64Array, y?: number) {
  const g = forwardGraph(flow, { batch: 1 });
  const d = flow.dims;
  const feeds: Record<string, HostTensor> = {};
  for (const [k, v] of params) feeds[k] = { ...v, data: Float64Array.from(v.data) };
  if (y !== undefined) feeds.y = hostTensor('i32', [1], [y]);
  const { inChannels: c, imgSize: s } = flow.cfg;
  const run = (v: Float64Array) => runGraph(g, { ...feeds, x: { dtype: 'f32', shape: [1, c, s, s], data: v } }, { precision: 'f64' });
  const base = run(x);
  const jac = new Float64Array(d * d);
  const h = 1e-5;
  for (let j = 0; j < d; j++) {
    const up = Float64Array.from(x);
    const dn = Float64Array.from(x);
    up[j]! += h;
    dn[j]! -= h;
    const zu = run(up).z!.data;
    const zd = run(dn).z!.data;
    for (let i = 0; i < d; i++) jac[i * d + j] = (zu[i]! - zd[i]!) / (2 * h);
  }
  return { model: d * base.logdet!.data[0]!, numeric: logAbsDet(jac, d) };
}

function randomInput(n: number, seed: number): Float64Array {
  const v = init.initValues({ kind: 'normal', std: 0.7 }, [n], 'f32', seed, 0).data;
  return Float64Array.from(v);
}

describe('TarFlow log-determinant vs the numerical Jacobian (f64)', () => {
  it('TarFlow (tiny_uncond golden, D = 32)', () => {
    const g = loadGolden('tiny_uncond');
    const r = jacobianCheck(g.flow, g.params, randomInput(g.flow.dims, 11));
    expect(Math.abs(r.model)).toBeGreaterThan(0.5);
    expect(Math.abs(r.model - r.numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(r.numeric)));
  });

  it('STARFlow options (softplus, soft clip, SOS, deep-shallow, channels-last, class embedding; D = 16)', () => {
    const flow = new TarFlow({
      inChannels: 1, imgSize: 4, patchSize: 2, channels: 8, headDim: 4, layersPerBlock: deepShallow(3, 2, 1), numClasses: 2,
      scale: 'softplus', softClip: 4, sos: true, patchLayout: 'channels_last', seqOrder: 'L2R',
    });
    const params = flow.initState(5);
    flow.namedParameters().forEach(([k, p], i) => {
      if (k.includes('proj_out')) params.set(k, init.initValues({ kind: 'normal', std: 0.5 }, p.shape, 'f32', 7, i));
    });
    const r = jacobianCheck(flow, params, randomInput(flow.dims, 12), 1);
    expect(Math.abs(r.model)).toBeGreaterThan(0.5);
    expect(Math.abs(r.model - r.numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(r.numeric)));
  });
});

describe('TarFlow NLL and bits per dimension', () => {
  it('hand-computable flow: α = c on every shifted token, μ = 0, x = 1', () => {
    // 2 blocks (identity, flip), weights of proj_out zero and its bias (α part) = c: each block scales
    // every token but its first by e^{−c}. Natural token 0 is first in block 0, token T−1 first in block 1.
    const flow = new TarFlow(tarflowConfigs.tiny);
    const { tokens: T, tokenChannels: C } = flow.cfg;
    const c = 0.3;
    const params = flow.initState(1);
    for (const k of ['blocks.0.proj_out.bias', 'blocks.1.proj_out.bias'])
      params.set(k, hostTensor('f32', [2 * C], [...Array(C).fill(c), ...Array(C).fill(0)]));
    const B = 2;
    const x = hostTensor('f32', [B, flow.cfg.inChannels, flow.cfg.imgSize, flow.cfg.imgSize], new Array(B * flow.dims).fill(1));
    const r = runGraph(forwardGraph(flow, { batch: B }), { ...Object.fromEntries(params), x });
    const logdet = (-2 * c * (T - 1)) / T;
    const meanZ2 = (2 * Math.exp(-2 * c) + (T - 2) * Math.exp(-4 * c)) / T;
    const nll = 0.5 * meanZ2 + 0.5 * Math.log(2 * Math.PI) - logdet;
    const bpd8 = (nll + Math.log(128)) / Math.LN2;
    for (let b = 0; b < B; b++) {
      expect(r.logdet!.data[b]).toBeCloseTo(logdet, 6);
      expect(r.nll!.data[b]).toBeCloseTo(nll, 5);
      expect(r.bpd!.data[b]).toBeCloseTo(bpd8, 5);
    }
    expect(r.loss!.data[0]).toBeCloseTo(0.5 * meanZ2 - logdet, 5);
    // host conversions: 8-bit images in [−1, 1] add log2(128) = 7 bits; a data scale s subtracts log2(s)
    expect(quantizationBin(8)).toBe(2 / 256);
    expect(bitsPerDim(nll, { binWidth: quantizationBin(8) })).toBeCloseTo(nll / Math.LN2 + 7, 12);
    expect(bitsPerDim(nll, { dataScale: 4 })).toBeCloseTo(nll / Math.LN2 - 2, 12);
    expect(bitsPerDim(0.5 * Math.log(2 * Math.PI * Math.E))).toBeCloseTo(Math.log2(2 * Math.PI * Math.E) / 2, 12);
  });
});

describe('TarFlow training-input corruption', () => {
  const flow = new TarFlow(tarflowConfigs.tinyCond);
  const B = 256;
  const { inChannels: c, imgSize: s } = flow.cfg;
  const n = c * s * s;
  const seed = hostTensor('u32', [2], [5, 6]);
  const run = (fn: Parameters<typeof trace>[1], x: HostTensor, extra: Record<string, HostTensor> = {}) =>
    runGraph(trace('t', fn), { x, rng_seed: seed, ...extra });
  const xs = (v: (i: number) => number) => hostTensor('f32', [B, c, s, s], Array.from({ length: B * n }, (_, i) => v(i)));
  const stds = (d: ArrayLike<number>) =>
    Array.from({ length: B }, (_, b) => Math.sqrt(Array.from({ length: n }, (_, j) => d[b * n + j]! ** 2).reduce((p, q) => p + q) / n));

  it('Gaussian noise: fixed σ, and σ ~ U(lo, hi) per sample', () => {
    const fixed = run((t) => ({ y: flow.augment(t.input('x', [B, c, s, s]), { kind: 'gaussian', sigma: 0.2 }) }), xs(() => 0)).y!.data;
    const all = Math.sqrt(Array.from(fixed, (v) => v * v).reduce((p, q) => p + q) / fixed.length);
    expect(all).toBeGreaterThan(0.19);
    expect(all).toBeLessThan(0.21);
    const per = stds(run((t) => ({ y: flow.augment(t.input('x', [B, c, s, s]), { kind: 'gaussian', sigma: [0.05, 0.3] }) }), xs(() => 0)).y!.data);
    expect(Math.min(...per)).toBeLessThan(0.08);
    expect(Math.max(...per)).toBeGreaterThan(0.27);
    expect(Math.min(...per)).toBeGreaterThan(0.05 * 0.6);
    expect(Math.max(...per)).toBeLessThan(0.3 * 1.4);
  });

  it('uniform dequantization keeps each 8-bit value inside its bin; label dropout', () => {
    const x = xs((i) => (i % 2 ? 1 : -1));
    const d = run((t) => ({ y: flow.augment(t.input('x', [B, c, s, s]), { kind: 'uniform' }) }), x).y!.data;
    for (let i = 0; i < d.length; i++) {
      const lo = i % 2 ? 1 - 2 / 256 : -1;
      expect(d[i]! >= lo - 1e-6 && d[i]! < lo + 2 / 256 + 1e-6).toBe(true);
    }
    const y = hostTensor('i32', [B], new Array(B).fill(2));
    const dropped = runGraph(trace('t', (t) => ({ y: flow.dropLabels(t.input('y', [B], 'i32'), 0.25) })), { y, rng_seed: seed }).y!.data;
    const k = Array.from(dropped).filter((v) => v === -1).length;
    expect(Array.from(dropped).every((v) => v === -1 || v === 2)).toBe(true);
    expect(k).toBeGreaterThan(0.15 * B);
    expect(k).toBeLessThan(0.35 * B);
  });
});

describe('TarFlow training smoke test', () => {
  it('AdamW steps on fixed data (noise augmentation σ ~ U(0.05, 0.3), label drop): the loss falls', async () => {
    const flow = new TarFlow(tarflowConfigs.tinyCond);
    const B = 4;
    const step = trainStep(trainLossGraph(flow, { batch: B, noise: { kind: 'gaussian', sigma: [0.05, 0.3] }, labelDrop: 0.25 }), {
      loss: 'loss', metrics: ['loss_z', 'loss_logdet'], optimizer: { kind: 'adamw', beta2: 0.95, weightDecay: 1e-4 },
    });
    const s = await Session.open(cpuBackend, step, flow.initState(3));
    const { inChannels: c, imgSize: sz } = flow.cfg;
    const xs = init.initValues({ kind: 'uniform', low: -1, high: 1 }, [B, c, sz, sz], 'f32', 9, 0);
    // structured data: a smooth ramp plus a little noise, so the flow has something to learn
    const data = Float32Array.from(xs.data, (v, i) => 0.8 * Math.sin(i / 7) + 0.1 * v);
    const feeds = {
      x: hostTensor('f32', [B, c, sz, sz], data),
      y: hostTensor('i32', [B], [0, 1, 2, 1]),
      lr: hostTensor('f32', [], [3e-3]),
      rng_seed: hostTensor('u32', [2], [1, 2]),
    };
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) losses.push((await s.run(feeds, ['loss'])).loss!.data[0]!);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! - 0.05);
    s.dispose();
  });
});

describe('TarFlow configs', () => {
  it('presets build with the expected geometry and parameter names', () => {
    const fae = new TarFlow(tarflowConfigs.faeLatentP1);
    expect([fae.cfg.tokens, fae.cfg.tokenChannels, fae.blocks.length]).toEqual([256, 32, 6]);
    expect(fae.blocks.map((b) => b.attn_blocks.length)).toEqual([2, 2, 2, 2, 2, 16]);
    expect(fae.blocks.map((b) => b.flip)).toEqual([false, true, false, true, false, true]);
    expect(new TarFlow(tarflowConfigs.faeLatentP2).cfg.tokenChannels).toBe(128);
    const fm = new TarFlow(tarflowConfigs.fashionMnist28);
    expect([fm.cfg.tokens, fm.cfg.tokenChannels]).toEqual([196, 4]);
    expect(new TarFlow(tarflowConfigs.fashionMnist32).cfg.tokens).toBe(64);
    const names = fm.namedParameters().map(([k]) => k);
    expect(names.slice(0, 4)).toEqual(['blocks.0.pos_embed', 'blocks.0.class_embed', 'blocks.0.proj_in.weight', 'blocks.0.proj_in.bias']);
    expect(names).toContain('blocks.3.attn_blocks.3.mlp.main.2.weight');
    expect(names).toContain('blocks.0.attn_blocks.0.attention.qkv.bias');
    expect(fae.namedParameters().map(([k]) => k)).toContain('blocks.5.sos_embed');
    expect(() => new TarFlow({ ...tarflowConfigs.tiny, imgSize: 5, patchSize: 2 })).toThrow(/multiple of patchSize/);
    // proj_out starts at zero weight: the initial flow only shifts/scales by proj_out's bias
    const st = new TarFlow(tarflowConfigs.tiny).initState(0);
    expect(maxAbs(st.get('blocks.0.proj_out.weight')!.data)).toBe(0);
    // reference buffers round trip: var (ones) and the causal masks, added for strict PyTorch loading
    const withBuffers = withReferenceBuffers(new TarFlow(tarflowConfigs.tiny), st);
    expect(withBuffers.get('var')!.shape).toEqual([16, 2]);
    expect(Array.from(withBuffers.get('blocks.1.attn_mask')!.data.slice(0, 18))).toEqual([1, ...Array(15).fill(0), 1, 1]);
    expect([...dropReferenceBuffers(withBuffers).keys()]).toEqual([...st.keys()]);
  });
});

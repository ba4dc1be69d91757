/**
 * LightningDiT / DiT (models/lightningdit.ts) and flow matching (models/flowMatching.ts) against the
 * PyTorch goldens of golden/lightningdit_golden.py (golden/data/lightningdit/*.safetensors), on the CPU
 * backend in f32.
 *
 * Tolerances (normwise relative: max|kiln − ref| / max|ref|):
 * - forward outputs, the flow-matching loss terms and the sampler results: 1e-4;
 * - gradients: 1e-4, against max(max|ref|, 0.01·G) with G the largest gradient magnitude of the case
 *   (the floor only matters for gradients that are zero in exact arithmetic; see test/autodiff/layerGrads).
 * KILN_DIT_ERR=1 prints every measured error.
 */
import { ditConfigOf } from '../support/compiledModels.ts';
import { maxAbs, relErr as compareRel } from '../support/compare.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { trace } from '../../compiler/dsl/index.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import {
  FlowSampler,
  LIGHTNINGDIT_TRAINING,
  buildStepGraph,
  flowMatchingLoss,
  flowMatchingLossGraph,
  gaussianNoise,
  guidedVelocity,
  linspace,
  sampleTime,
  samplingGrid,
  shiftTime,
} from '../../models/flowMatching.ts';
import {
  LIGHTNINGDIT_BUFFERS,
  LightningDiT,
  ditConfig,
  lightningDiTConfig,
  loadLightningDiTState,
} from '../../models/lightningdit.ts';
import { loadSafetensors, saveSafetensors } from '../../runtime/safetensors.ts';
import { Session } from '../../runtime/session.ts';
import { ROOT } from '../support/nnGoldens.ts';

const DIR = join(ROOT, 'golden', 'data', 'lightningdit');
const TOL = 1e-4;
const CASES = ['lightningdit_p1', 'lightningdit_p2_mixed', 'dit_p2'] as const;

/** max|a − b| / max(max|b|, floor). */
function relErr(a: HostTensor, b: HostTensor, floor = 0): number {
  expect(a.shape).toEqual(b.shape);
  return compareRel(a.data, b.data, floor);
}
function report(what: string, err: number): number {
  if (process.env.KILN_DIT_ERR) console.log(`${what}: ${err.toExponential(2)}`);
  return err;
}

interface Case {
  name: string;
  t: Map<string, HostTensor>;
  info: { config: Record<string, any>; param_order: string[]; buffers: string[]; flow?: Record<string, number> };
  get(k: string): HostTensor;
  byPrefix(p: string): Map<string, HostTensor>;
}
const cache = new Map<string, Case>();
function loadCase(name: string): Case {
  let c = cache.get(name);
  if (!c) {
    const { tensors, metadata } = loadSafetensors(join(DIR, `${name}.safetensors`));
    c = {
      name, t: tensors, info: JSON.parse(metadata.golden!),
      get: (k) => {
        const v = tensors.get(k);
        if (!v) throw new Error(`${name}: no golden tensor ${k}`);
        return v;
      },
      byPrefix: (p) => new Map([...tensors].filter(([k]) => k.startsWith(p)).map(([k, v]) => [k.slice(p.length), v])),
    };
    cache.set(name, c);
  }
  return c;
}


describe('LightningDiT vs PyTorch', () => {
  for (const name of CASES) {
    it(`${name}: parameter names, forward and gradients`, () => {
      const g = loadCase(name);
      const model = new LightningDiT(ditConfigOf(g.info.config));
      const params = g.byPrefix('param.');
      const named = model.namedParameters();
      expect(named.map(([n]) => n)).toEqual(g.info.param_order);
      expect(new Set(named.map(([n]) => n))).toEqual(new Set(params.keys()));
      for (const [n, p] of named) expect(p.shape, n).toEqual(params.get(n)!.shape);
      expect(g.info.buffers).toEqual(model.config.useRope ? [...LIGHTNINGDIT_BUFFERS] : []);
      // Everything but the frozen pos_embed has a gradient in the golden.
      expect(new Set(model.trainableParameterNames())).toEqual(new Set(g.byPrefix('grad.').keys()));

      const x = g.get('input.x');
      const R = g.get('cotangent.raw');
      const graph = trace(name, (tc) => {
        const xi = tc.input('x', x.shape);
        const ti = tc.input('t', g.get('input.t').shape);
        const yi = tc.input('y', g.get('input.y').shape, 'i32');
        const raw = model.forwardRaw(xi, ti, yi);
        const out = model.forward(xi, ti, yi);
        return { raw, out, loss: raw.mul(tc.input('cotangent', R.shape)).sum() };
      }, { params: model });
      const feeds: Record<string, HostTensor> = { x, t: g.get('input.t'), y: g.get('input.y'), cotangent: R };
      for (const [k, v] of params) feeds[k] = v;
      const wrt = [...model.trainableParameterNames(), 'x'];
      const r = runGraph(grad(graph, { loss: 'loss', wrt }), feeds);
      for (const o of ['raw', 'out']) expect(report(`${name} ${o}`, relErr(r[o]!, g.get(`output.${o}`))), o).toBeLessThan(TOL);

      const refs = new Map([...g.byPrefix('grad.'), ['x', g.get('gradin.x')]]);
      const floor = 0.01 * Math.max(...[...refs.values()].map((t) => maxAbs(t.data)));
      let worst = 0;
      for (const [k, ref] of refs) {
        const e = relErr(r[`grad.${k}`]!, ref, floor);
        worst = Math.max(worst, e);
        expect(e, `grad ${k}`).toBeLessThan(TOL);
      }
      report(`${name} worst gradient`, worst);
    });
  }
});

describe('LightningDiT configs and initialization', () => {
  it('presets: sizes, LightningDiT flags, plain DiT/SiT flags, hidden sizes', () => {
    const xl = lightningDiTConfig('XL/1');
    expect([xl.depth, xl.hiddenSize, xl.numHeads, xl.patchSize, xl.inChannels, xl.inputSize]).toEqual([28, 1152, 16, 1, 32, 16]);
    expect([xl.useSwiglu, xl.useRope, xl.useRmsnorm, xl.useQknorm, xl.learnSigma, xl.woShift]).toEqual([true, true, true, false, false, false]);
    const b = lightningDiTConfig('B/1');
    expect([b.depth, b.hiddenSize, b.numHeads]).toEqual([12, 768, 12]);
    const l = lightningDiTConfig('L/1');
    expect([l.depth, l.hiddenSize, l.numHeads]).toEqual([24, 1024, 16]);
    const dit = ditConfig('XL/2');
    expect([dit.useSwiglu, dit.useRope, dit.useRmsnorm, dit.useQknorm, dit.learnSigma, dit.patchSize]).toEqual([false, false, false, false, true, 2]);
    expect(() => lightningDiTConfig('XXL/1' as never)).toThrow(/unknown DiT model name 'XXL\/1'/);
    // Parameter count of LightningDiT-XL/1 on 32 channels (SwiGLU hidden 3072): computed from the reference shapes.
    const d = 1152, h = 3072, p = 32;
    const block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * h * d + 2 * h) + (d * h + d) + (6 * d * d + 6 * d);
    const expected = 256 * d + (p * d + d) + (256 * d + d + d * d + d) + 1001 * d + 28 * block + d + (d * p + p) + (2 * d * d + 2 * d);
    expect(new LightningDiT(xl).numParams()).toBe(expected);
    const blk = new LightningDiT({ ...b, depth: 1 }).blocks[0]!;
    expect(blk.mlp.namedParameters().map(([n, t]) => `${n}:${t.shape.join('x')}`)).toEqual(['w12.weight:4096x768', 'w12.bias:4096', 'w3.weight:768x2048', 'w3.bias:768']);
  });

  it('initState follows initialize_weights: sin-cos pos_embed, zero adaLN and final layer, xavier bounds, N(0, 0.02) tables', () => {
    const g = loadCase('lightningdit_p1');
    const model = new LightningDiT(ditConfigOf(g.info.config));
    const s = model.initState(3);
    expect(relErr(s.get('pos_embed')!, g.get('param.pos_embed'))).toBeLessThan(1e-6);
    const zero = [...s].filter(([k]) => /adaLN_modulation|final_layer\.linear|\.bias$/.test(k));
    expect(zero.length).toBeGreaterThan(10);
    for (const [k, v] of zero) expect(maxAbs(v.data), k).toBe(0);
    for (const [k, v] of s) if (/norm.*\.weight$/.test(k)) expect([...v.data].every((e) => e === 1), k).toBe(true);
    const xavier = (k: string, fanIn: number, fanOut: number) => {
      const v = s.get(k)!.data;
      const bound = Math.sqrt(6 / (fanIn + fanOut));
      expect(maxAbs(v), k).toBeLessThanOrEqual(bound);
      expect(maxAbs(v), k).toBeGreaterThan(0.8 * bound);
    };
    xavier('blocks.0.attn.qkv.weight', 32, 96);
    xavier('blocks.1.mlp.w12.weight', 32, 2 * 85);
    xavier('x_embedder.proj.weight', 4, 32); // xavier on the [D, C·p·p] view
    const std = (k: string) => {
      const v = s.get(k)!.data;
      return Math.sqrt([...v].reduce((a, e) => a + e * e, 0) / v.length);
    };
    for (const k of ['y_embedder.embedding_table.weight', 't_embedder.mlp.0.weight', 't_embedder.mlp.2.weight'])
      expect(std(k), k).toBeGreaterThan(0.017), expect(std(k), k).toBeLessThan(0.023);
    expect(model.trainableParameterNames()).not.toContain('pos_embed');
    expect(model.trainableParameterNames().length).toBe(model.namedParameters().length - 1);
  });

  it('rejects bad inputs with the model line', () => {
    const model = new LightningDiT(ditConfigOf(loadCase('dit_p2').info.config));
    expect(() => trace('bad', (tc) => model.forward(tc.input('x', [2, 3, 8, 8]), tc.input('t', [2]), tc.input('y', [2], 'i32')), { params: model }))
      .toThrow(/LightningDiT.*expects x \[B, 4, 8, 8\]/);
    expect(() => trace('bad', (tc) => model.forward(tc.input('x', [2, 4, 8, 8]), tc.input('t', [2]), tc.input('y', [2])), { params: model }))
      .toThrow(/expects i32 labels/);
  });
});

describe('loadLightningDiTState', () => {
  const g = loadCase('lightningdit_p1');
  const model = new LightningDiT(ditConfigOf(g.info.config));
  const dir = mkdtempSync(join(tmpdir(), 'kiln-ldit-'));
  const params = g.byPrefix('param.');
  const rope = model.featRope!;
  const buffers = {
    'feat_rope.freqs_cos': hostTensor('f32', [rope.seqLen, rope.rotDim], rope.tables.cos),
    'feat_rope.freqs_sin': hostTensor('f32', [rope.seqLen, rope.rotDim], rope.tables.sin),
  };
  const write = (name: string, m: Map<string, HostTensor>) => {
    const p = join(dir, name);
    saveSafetensors(p, m);
    return p;
  };

  it('loads a reference state dict (with its RoPE buffers) and a Kiln one (without)', () => {
    for (const file of [write('ref.safetensors', new Map([...params, ...Object.entries(buffers)])), write('kiln.safetensors', params)]) {
      const s = loadLightningDiTState(file, model);
      expect([...s.keys()]).toEqual(g.info.param_order);
      for (const [k, v] of s) expect(relErr(v, params.get(k)!), k).toBe(0);
    }
  });

  it('names the file and key in its errors', () => {
    const without = new Map(params);
    without.delete('blocks.1.attn.qkv.bias');
    const f1 = write('missing.safetensors', without);
    expect(() => loadLightningDiTState(f1, model)).toThrow(`${f1}: no tensor 'blocks.1.attn.qkv.bias'`);

    const bad = new Map(params);
    bad.set('blocks.0.mlp.w3.weight', hostTensor('f32', [32, 84]));
    const f2 = write('shape.safetensors', bad);
    expect(() => loadLightningDiTState(f2, model)).toThrow(`${f2}: tensor 'blocks.0.mlp.w3.weight': expected shape [32,85]`);

    const ints = new Map(params);
    ints.set('pos_embed', hostTensor('i32', [1, 16, 32]));
    const f3 = write('dtype.safetensors', ints);
    expect(() => loadLightningDiTState(f3, model)).toThrow(`${f3}: tensor 'pos_embed': expected dtype f32, but the file holds i32`);

    const extra = new Map(params);
    extra.set('blocks.0.attn.extra.weight', hostTensor('f32', [2]));
    const f4 = write('extra.safetensors', extra);
    expect(() => loadLightningDiTState(f4, model)).toThrow(`${f4}: 1 unexpected key(s) for this model: 'blocks.0.attn.extra.weight'`);
    expect(loadLightningDiTState(f4, model, { strict: false }).size).toBe(params.size);

    const otherGrid = new Map([...params, ...Object.entries(buffers)]);
    otherGrid.set('feat_rope.freqs_cos', hostTensor('f32', [16, 16], new Float32Array(256).fill(1)));
    const f5 = write('rope.safetensors', otherGrid);
    expect(() => loadLightningDiTState(f5, model)).toThrow(`${f5}: tensor 'feat_rope.freqs_cos': RoPE table differs`);

    // A LightningDiT (RoPE) checkpoint into a model built without RoPE.
    const plain = new LightningDiT({ ...ditConfigOf(g.info.config), useRope: false });
    const f6 = write('rope_into_plain.safetensors', new Map([...params, ...Object.entries(buffers)]));
    expect(() => loadLightningDiTState(f6, plain)).toThrow(`${f6}: tensor 'feat_rope.freqs_cos': the file has RoPE tables`);
  });
});

describe('flow matching', () => {
  const g = loadCase('lightningdit_p1');
  const model = new LightningDiT(ditConfigOf(g.info.config));
  const params = g.byPrefix('param.');
  const flow = g.info.flow!;

  it('loss terms and gradients for given x1, x0, t vs PyTorch', () => {
    const ins = g.byPrefix('fm.input.');
    const graph = trace('fm', (tc) => {
      const i = (k: string) => tc.input(k, ins.get(k)!.shape, ins.get(k)!.dtype);
      const r = flowMatchingLoss(model, i('x1'), i('y'), { x0: i('x0'), t: i('t'), train: false });
      return { loss: r.loss, mse: r.mse, cos: r.cos };
    }, { params: model });
    const feeds: Record<string, HostTensor> = Object.fromEntries([...ins, ...params]);
    const r = runGraph(grad(graph, { loss: 'loss', wrt: model.trainableParameterNames() }), feeds);
    for (const k of ['loss', 'mse', 'cos']) {
      const got = hostTensor('f32', [1], r[k]!.data);
      expect(report(`fm ${k}`, relErr(got, g.get(`fm.output.${k}`))), k).toBeLessThan(TOL);
    }
    const refs = g.byPrefix('fm.grad.');
    const floor = 0.01 * Math.max(...[...refs.values()].map((t) => maxAbs(t.data)));
    let worst = 0;
    for (const [k, ref] of refs) {
      const e = relErr(r[`grad.${k}`]!, ref, floor);
      worst = Math.max(worst, e);
      expect(e, `fm grad ${k}`).toBeLessThan(TOL);
    }
    report('fm worst gradient', worst);
  });

  it('Euler ODE sample with CFG (interval, shift) vs PyTorch', async () => {
    const grid = samplingGrid(flow.ode_steps!, flow.shift);
    expect(relErr(hostTensor('f32', [grid.length], grid), g.get('ode.grid'))).toBeLessThan(1e-6);
    const sampler = new FlowSampler(cpuBackend, model, params);
    const x = await sampler.sampleOde(g.get('ode.input.z'), g.get('ode.input.y'), {
      numSteps: flow.ode_steps!, shift: flow.shift, cfg: { scale: flow.cfg_scale!, interval: [flow.cfg_interval_start!, 1] },
    });
    expect(report('ode sample', relErr(x, g.get('ode.output.x')))).toBeLessThan(TOL);
    sampler.dispose();
  });

  it('Euler–Maruyama SDE sample with explicit noise vs PyTorch; Philox noise is seeded', async () => {
    const n = flow.sde_steps!;
    expect(relErr(hostTensor('f32', [n], linspace(0, 1 - flow.last_step_size!, n)), g.get('sde.grid'))).toBeLessThan(1e-6);
    const sampler = new FlowSampler(cpuBackend, model, params);
    const z = g.get('sde.input.z');
    const y = g.get('sde.input.y');
    const x = await sampler.sampleSde(z, y, { numSteps: n, lastStepSize: flow.last_step_size, noise: g.get('sde.input.noise') });
    expect(report('sde sample', relErr(x, g.get('sde.output.x')))).toBeLessThan(TOL);
    const a = await sampler.sampleSde(z, y, { numSteps: n, seed: 5 });
    const b = await sampler.sampleSde(z, y, { numSteps: n, seed: 5 });
    const c = await sampler.sampleSde(z, y, { numSteps: n, seed: 6 });
    expect(relErr(a, b)).toBe(0);
    expect(relErr(a, c)).toBeGreaterThan(1e-3);
    // lastStepSize 0 (the reference's last_step=None): grid up to t = 1, no drift-only step, finite result.
    const d = await sampler.sampleSde(z, y, { numSteps: n, lastStepSize: 0, seed: 5 });
    expect([...d.data].every(Number.isFinite)).toBe(true);
    sampler.dispose();
  });

  it('CFG guides all channels by default, the leading `channels` ones when asked (the reference quirk)', () => {
    const B = 2;
    const graph = trace('cfg', (tc) => {
      const x = tc.input('x', [B, 4, 4, 4]);
      const t = tc.input('t', []);
      const y = tc.input('y', [B], 'i32');
      const s = tc.input('s', []);
      return {
        all: guidedVelocity(model, x, t, y, s),
        three: guidedVelocity(model, x, t, y, s, 3),
        cond: model.forward(x, t, y),
        uncond: model.forward(x, t, y.mul(0).add(model.nullClass)),
      };
    }, { params: model });
    const feeds: Record<string, HostTensor> = {
      ...Object.fromEntries(params), x: gaussianNoise([B, 4, 4, 4], 1), t: hostTensor('f32', [], [0.4]),
      y: hostTensor('i32', [B], [2, 5]), s: hostTensor('f32', [], [2.5]),
    };
    const r = runGraph(graph, feeds);
    const ch = (t: HostTensor, c: number) => hostTensor('f32', [B, 16], [0, 1].flatMap((b) => [...t.data.subarray((b * 4 + c) * 16, (b * 4 + c + 1) * 16)]));
    for (let c = 0; c < 4; c++) {
      const want = hostTensor('f32', [B, 16], ch(r.uncond!, c).data.map((u, i) => u + 2.5 * (ch(r.cond!, c).data[i]! - u)));
      expect(relErr(ch(r.all!, c), want), `all, channel ${c}`).toBeLessThan(1e-5);
      expect(relErr(ch(r.three!, c), c < 3 ? want : ch(r.cond!, c)), `three, channel ${c}`).toBeLessThan(1e-5);
    }
  });

  it('timestep shift and sampling grids', () => {
    expect(shiftTime(0.5, 0.3)).toBeCloseTo(0.15 / 0.65, 12);
    expect(shiftTime(0, 0.4)).toBe(0);
    expect(shiftTime(1, 0.4)).toBe(1);
    expect(shiftTime(0.37, 1)).toBeCloseTo(0.37, 15);
    expect(shiftTime(0.5, 3)).toBeCloseTo(0.75, 12);
    // s < 1 spends the steps near t = 0 (noise); the grid stays increasing from 0 to 1.
    const grid = samplingGrid(11, 0.4);
    expect([grid[0], grid[10]]).toEqual([0, 1]);
    for (let i = 1; i < 11; i++) expect(grid[i]!).toBeGreaterThan(grid[i - 1]!), expect(grid[i]!).toBeLessThanOrEqual(Math.fround(i / 10) + 1e-7);
    expect([...samplingGrid(5)]).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(() => samplingGrid(1)).toThrow(/numSteps 1/);
  });

  it('logit-normal and uniform time sampling statistics', () => {
    const n = 8192;
    const graph = trace('times', () => ({ ln: sampleTime(n), u: sampleTime(n, { kind: 'uniform' }), shifted: sampleTime(n, { kind: 'logit_normal', mean: 1, std: 0.5 }) }));
    const r = runGraph(graph, { rng_seed: hostTensor('u32', [2], [7, 0]) });
    const stats = (v: ArrayLike<number>) => {
      const a = Array.from(v);
      const mean = a.reduce((s, e) => s + e, 0) / a.length;
      return { mean, std: Math.sqrt(a.reduce((s, e) => s + (e - mean) ** 2, 0) / a.length), min: Math.min(...a), max: Math.max(...a) };
    };
    const logit = (v: ArrayLike<number>) => Array.from(v, (p) => Math.log(p / (1 - p)));
    const ln = stats(logit(r.ln!.data));
    expect(Math.abs(ln.mean)).toBeLessThan(0.05);
    expect(Math.abs(ln.std - 1)).toBeLessThan(0.05);
    const t = stats(r.ln!.data);
    expect(t.min).toBeGreaterThan(0), expect(t.max).toBeLessThan(1);
    expect(Math.abs(t.mean - 0.5)).toBeLessThan(0.01);
    const sh = stats(logit(r.shifted!.data));
    expect(Math.abs(sh.mean - 1)).toBeLessThan(0.03), expect(Math.abs(sh.std - 0.5)).toBeLessThan(0.03);
    const u = stats(r.u!.data);
    expect(Math.abs(u.mean - 0.5)).toBeLessThan(0.01), expect(Math.abs(u.std - Math.sqrt(1 / 12))).toBeLessThan(0.01);
  });

  it('the step graphs take t, dt and the scale as inputs', () => {
    const gr = buildStepGraph(model, { kind: 'sde', batch: 2, cfg: {}, noise: 'input' });
    expect(gr.inputs.filter((i) => i.kind === 'data').map((i) => `${i.name}:${i.type.dtype}[${i.type.shape.join(',')}]`))
      .toEqual(['x:f32[2,4,4,4]', 't:f32[]', 'dt:f32[]', 'y:i32[2]', 'cfg_scale:f32[]', 'noise:f32[2,4,4,4]']);
    expect(gr.inputs.filter((i) => i.kind === 'param' || i.kind === 'frozen').length).toBe(model.namedParameters().length);
    expect(gr.inputs.filter((i) => i.kind === 'frozen').map((i) => i.name)).toEqual(['pos_embed']);
  });
});

describe('training smoke test', () => {
  it('AdamW steps on fixed data: deterministic given the seed, and the loss falls', async () => {
    const config = lightningDiTConfig('B/1', { depth: 2, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 4 });
    const model = new LightningDiT(config);
    const B = 8;
    const STEPS = 40;
    const LR = 1e-2;
    const fwd = flowMatchingLossGraph(model, B);
    expect(fwd.inputs.map((i) => i.name)).toContain('rng_seed');
    const step = trainStep(fwd, {
      loss: 'loss', metrics: ['mse', 'cos'], params: model.trainableParameterNames(),
      optimizer: LIGHTNINGDIT_TRAINING.optimizer, ema: LIGHTNINGDIT_TRAINING.ema,
    });
    expect(step.inputs.some((i) => i.name === 'ema.pos_embed' || i.name === 'optim.exp_avg.pos_embed')).toBe(false);
    // Fixed data: one smooth pattern per class (label = class), plus a little noise.
    const labels = [0, 1, 2, 3, 0, 1, 2, 3];
    const pat = gaussianNoise([4, 4, 4, 4], 11);
    const jitter = gaussianNoise([B, 4, 4, 4], 12);
    const x1 = hostTensor('f32', [B, 4, 4, 4], Array.from({ length: B * 64 }, (_, i) => 1.5 * pat.data[labels[Math.floor(i / 64)]! * 64 + (i % 64)]! + 0.1 * jitter.data[i]!));
    const y = hostTensor('i32', [B], labels);
    const init = model.initState(0);
    // Held-out evaluation: the same loss without label dropout on a fixed draw of (x0, t).
    const evalGraph = flowMatchingLossGraph(model, B, { train: false });
    const evaluate = async (params: ReadonlyMap<string, HostTensor>) => {
      const s = await Session.open(cpuBackend, evalGraph, params);
      const r = await s.run({ x1, y, rng_seed: hostTensor('u32', [2], [99, 0]) }, ['loss']);
      s.dispose();
      return r.loss!.data[0]!;
    };
    const run = async (steps: number) => {
      const session = await Session.open(cpuBackend, step, init);
      const losses: number[] = [];
      for (let s = 0; s < steps; s++) {
        const r = await session.run({ x1, y, lr: hostTensor('f32', [], [LR]), rng_seed: hostTensor('u32', [2], [1, s]) }, ['loss', 'mse', 'cos']);
        losses.push(r.loss!.data[0]!);
      }
      const state = await session.read(['param', 'frozen']);
      session.dispose();
      return { losses, state };
    };
    const a = await run(STEPS);
    const b = await run(2);
    expect(b.losses).toEqual(a.losses.slice(0, 2));
    const before = await evaluate(init);
    const after = await evaluate(a.state);
    if (process.env.KILN_DIT_ERR) console.log('losses', a.losses.map((l) => l.toFixed(3)).join(' '), 'eval', before, after);
    // Measured: 4.40 → 3.08 (the per-step training losses are noisy: fresh x0, t and label dropout each step).
    expect(after).toBeLessThan(0.8 * before);
    // pos_embed stays frozen.
    expect(relErr(a.state.get('pos_embed')!, init.get('pos_embed')!)).toBe(0);
  });
});

/**
 * `kiln sample` and its samplers (models/sampling/*): Heun's order on a linear ODE with a known solution,
 * the guidance schedules, guided-with-scale-1 = unguided, seed determinism, and the CLI end to end on tiny
 * LightningDiT / TarFlow / FAE-decoder checkpoints that the test writes (safetensors with the models'
 * PyTorch state_dict keys), decoding the PNG it writes with sharp.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { main } from '../../cli/main.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { gaussianNoise } from '../../models/flowMatching.ts';
import { faeConfigs } from '../../models/fae/config.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { FaeDecoders } from '../../models/sampling/faeDecoders.ts';
import { generateFlow } from '../../models/sampling/generate.ts';
import { guidanceFromOptions, guidanceScaleAt, parsePiecewise } from '../../models/sampling/guidance.ts';
import { solveOde } from '../../models/sampling/odeSolvers.ts';
import { VelocityField } from '../../models/sampling/velocityField.ts';
import { TarFlow } from '../../models/tarflow/model.ts';
import { tarflowConfigs } from '../../models/tarflow/config.ts';
import { saveCheckpoint } from '../../runtime/checkpoint.ts';
import { saveRunCheckpoint } from '../../runtime/checkpoints.ts';
import { loadSafetensors, saveSafetensors } from '../../runtime/safetensors.ts';

/** The model's parameters, every one replaced by small seeded noise (the zero-initialized final layers would make v = 0). */
function randomParams(names: ReadonlyArray<[string, { shape: readonly number[] }]>, seed: number, std = 0.2): Map<string, HostTensor> {
  const m = new Map<string, HostTensor>();
  names.forEach(([k, p], i) => m.set(k, hostTensor('f32', p.shape, gaussianNoise(p.shape, seed, i + 1).data.map((v) => v * std))));
  return m;
}

const ditSpec = { kind: 'lightningdit', size: 'S/1', config: { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 3 } };
const dit = () => new LightningDiT(lightningDiTConfig('S/1', ditSpec.config));

describe('ODE solvers', () => {
  it('Heun is second order and Euler first order on dx/dt = a·x (x(1) = x0·e^a)', async () => {
    const a = -1.3, x0 = Float64Array.from([1, -0.5]);
    const v = async (x: Float64Array) => x.map((e) => a * e);
    const err = async (method: 'euler' | 'heun', n: number) => {
      const grid = Array.from({ length: n + 1 }, (_, i) => i / n);
      const x = await solveOde(method, v, x0, grid);
      return Math.abs(x[0]! - Math.exp(a));
    };
    const heun = [await err('heun', 20), await err('heun', 40), await err('heun', 80)];
    const euler = [await err('euler', 10), await err('euler', 20)];
    // Local error O(h³) → global O(h²): halving h divides the error by ~4 (4.10 at h = 1/20, 4.05 at 1/40: the O(h³) term fades); Euler ~2.
    expect(heun[0]! / heun[1]!).toBeGreaterThan(3.9);
    expect(heun[0]! / heun[1]!).toBeLessThan(4.2);
    expect(heun[1]! / heun[2]!).toBeGreaterThan(3.9);
    expect(heun[1]! / heun[2]!).toBeLessThan(4.2);
    expect(euler[0]! / euler[1]!).toBeGreaterThan(1.8);
    expect(euler[0]! / euler[1]!).toBeLessThan(2.2);
  });
});

describe('guidance schedules', () => {
  it('constant, interval and piecewise give the scale where they apply, conditional elsewhere', () => {
    expect(guidanceScaleAt(guidanceFromOptions({}), 0.5)).toBeUndefined();
    expect(guidanceScaleAt(guidanceFromOptions({ cfg: 2 }), 0.1)).toBe(2);
    const iv = guidanceFromOptions({ cfg: 2.5, cfgInterval: '0.3,1' });
    expect([0, 0.29, 0.3, 1].map((t) => guidanceScaleAt(iv, t))).toEqual([undefined, undefined, 2.5, 2.5]);
    const pw = parsePiecewise('0.3:1=2.5,0:0.3=0.9');
    expect([0, 0.2, 0.3, 0.31, 1].map((t) => guidanceScaleAt(pw, t))).toEqual([0.9, 0.9, 0.9, 2.5, 2.5]);
    expect(() => parsePiecewise('0:0.5=1,0.4:1=2')).toThrow(/overlap/);
    expect(() => guidanceFromOptions({ cfgInterval: '0,1' })).toThrow(/needs --cfg/);
    expect(() => guidanceFromOptions({ cfg: 1, cfgInterval: '0.5' })).toThrow(/not a time range/);
  });
});

describe('LightningDiT sampling', () => {
  const model = dit();
  const params = new Map([...model.initState(0), ...randomParams(model.namedParameters(), 7)]);
  const y = hostTensor('i32', [2], [0, 2]);

  it('the guided velocity with scale 1 equals the unguided one', async () => {
    const f = new VelocityField(cpuBackend, model, params, 2);
    const x = gaussianNoise([2, 4, 4, 4], 3);
    const plain = await f.velocity(x, 0.4, y);
    const guided = await f.velocity(x, 0.4, y, 1);
    const guided3 = await f.velocity(x, 0.4, y, 3);
    const scale = Math.max(...Array.from(plain.data as Float32Array, Math.abs));
    expect(scale).toBeGreaterThan(0.1); // a live model
    // v_u + 1·(v_c − v_u) = v_c up to two f32 roundings of values of size ~scale.
    for (let i = 0; i < plain.data.length; i++) expect(Math.abs(Number(guided.data[i]) - Number(plain.data[i]))).toBeLessThan(1e-6 * scale + 1e-7);
    // and guidance does something at w = 3.
    expect(Math.max(...Array.from(plain.data as Float32Array, (v, i) => Math.abs(v - Number(guided3.data[i]))))).toBeGreaterThan(1e-3);
    f.dispose();
  });

  it('the same seed gives the same samples, another seed other samples (Euler, Heun, SDE)', async () => {
    for (const method of ['euler', 'heun', 'sde'] as const) {
      const o = { method, numSteps: 4, shift: method === 'sde' ? 0 : 0.4, guidance: guidanceFromOptions({ cfg: 1.5, cfgInterval: '0.3,1' }), seed: 5 };
      const a = await generateFlow(cpuBackend, model, params, y, o);
      const b = await generateFlow(cpuBackend, model, params, y, o);
      const c = await generateFlow(cpuBackend, model, params, y, { ...o, seed: 6 });
      expect(a.shape).toEqual([2, 4, 4, 4]);
      expect(Array.from(b.data)).toEqual(Array.from(a.data));
      expect(Array.from(c.data)).not.toEqual(Array.from(a.data));
    }
  });

  it('Heun and Euler converge to the same ODE solution (Heun faster)', async () => {
    const o = { shift: 0, guidance: guidanceFromOptions({}), seed: 1 };
    const ref = await generateFlow(cpuBackend, model, params, y, { ...o, method: 'heun', numSteps: 33 });
    const dist = (h: HostTensor) => Math.max(...Array.from(h.data as Float32Array, (v, i) => Math.abs(v - Number(ref.data[i]))));
    const eHeun = dist(await generateFlow(cpuBackend, model, params, y, { ...o, method: 'heun', numSteps: 5 }));
    const eEuler = dist(await generateFlow(cpuBackend, model, params, y, { ...o, method: 'euler', numSteps: 5 }));
    expect(eHeun).toBeLessThan(eEuler / 3);
  });
});

describe('kiln sample (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-sample-'));
  const model = dit();
  const ditFile = join(dir, 'dit.safetensors');
  saveSafetensors(ditFile, randomParams(model.namedParameters(), 11), { format: 'pt' });
  const dec = new FaeDecoders(faeConfigs.tiny());
  const faeFile = join(dir, 'fae.safetensors');
  saveSafetensors(faeFile, randomParams(dec.namedParameters(), 12), { format: 'pt' });
  const run = (args: string[]) => main(['sample', ...args, '--backend', 'cpu']);

  it('samples, decodes through the FAE decoders, and writes a labelled PNG grid of the expected size; same seed same images', async () => {
    const spec = JSON.stringify({ ...ditSpec, fae: { preset: 'tiny' } });
    const out = (n: string) => join(dir, n);
    const args = (n: string, seed: string) => [ditFile, '--model', spec, '--fae', faeFile, '--num', '4', '--steps', '3', '--method', 'heun', '--cfg-piecewise', '0:0.3=0.9,0.3:1=2.5',
      '--seed', seed, '--out', out(`${n}.png`), '--save-samples', out(`${n}.safetensors`), '--columns', '2', '--scale', '1'];
    expect(await run(args('a', '3'))).toBe(0);
    expect(await run(args('b', '3'))).toBe(0);
    expect(await run(args('c', '4'))).toBe(0);
    const s = (n: string) => loadSafetensors(out(`${n}.safetensors`)).tensors;
    expect(s('a').get('samples')!.shape).toEqual([4, 4, 4, 4]);
    expect(s('a').get('images')!.shape).toEqual([4, 3, 16, 16]);
    expect(Array.from(s('a').get('labels')!.data)).toEqual([0, 1, 2, 0]);
    expect(Array.from(s('b').get('images')!.data)).toEqual(Array.from(s('a').get('images')!.data));
    expect(Array.from(s('c').get('images')!.data)).not.toEqual(Array.from(s('a').get('images')!.data));
    expect(readFileSync(out('b.png'))).toEqual(readFileSync(out('a.png')));
    // 2×2 tiles of 16×16 plus a 16 px label strip, 2 px padding: 2·16 + 3·2 = 38 wide, 2·32 + 3·2 = 70 high.
    const meta = await sharp(out('a.png')).metadata();
    const { data, info } = await sharp(out('a.png')).raw().toBuffer({ resolveWithObject: true }); // decodes every pixel
    // RGBA: sharp keeps the alpha channel of the composited SVG label overlay (runtime/train/imageGrid.ts)
    expect([meta.format, info.width, info.height, info.channels, data.length]).toEqual(['png', 38, 70, 4, 38 * 70 * 4]);
    expect(data.some((v) => v < 128)).toBe(true); // the label text and the images are drawn on the white canvas
  });

  it('samples a class-conditional TarFlow with guidance and the denoising step', async () => {
    const flow = new TarFlow(tarflowConfigs.tinyCond);
    const file = join(dir, 'tarflow.safetensors');
    saveSafetensors(file, randomParams(flow.namedParameters(), 13, 0.02), { format: 'pt' });
    const spec = JSON.stringify({ kind: 'tarflow', config: tarflowConfigs.tinyCond });
    const args = (n: string) => [file, '--model', spec, '--num', '3', '--cfg', '1.5', '--denoise', '0.1', '--seed', '2', '--out', join(dir, `${n}.png`), '--save-samples', join(dir, `${n}.safetensors`)];
    expect(await run(args('t1'))).toBe(0);
    expect(await run(args('t2'))).toBe(0);
    const a = loadSafetensors(join(dir, 't1.safetensors')).tensors.get('samples')!;
    expect(a.shape).toEqual([3, 2, 8, 8]);
    expect(Array.from(a.data).every(Number.isFinite)).toBe(true);
    expect(Array.from(loadSafetensors(join(dir, 't2.safetensors')).tensors.get('samples')!.data)).toEqual(Array.from(a.data));
    const meta = await sharp(join(dir, 't1.png')).metadata();
    expect([meta.width, meta.height]).toEqual([2 * 16 + 3 * 2, 2 * (16 + 16) + 3 * 2]); // 2 columns (ceil √3), scale 2, 2 rows
  });

  it('user errors exit 2: wrong model for the weights, bad guidance flags', async () => {
    const spec = JSON.stringify({ ...ditSpec, config: { ...ditSpec.config, hiddenSize: 64 } });
    expect(await run([ditFile, '--model', spec])).toBe(2);
    expect(await run([ditFile, '--model', JSON.stringify(ditSpec), '--cfg-interval', '0,1'])).toBe(2);
    expect(await run([join(dir, 'missing')])).toBe(2);
  });
});

describe('kiln sample on a training run', () => {
  it('reads the model from the job config in the checkpoint, prefers the EMA weights, merges FAE checkpoints for decoding', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-sample-run-'));
    const model = new LightningDiT(lightningDiTConfig('S/1', { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 10 }));
    const dec = new FaeDecoders(faeConfigs.tiny());
    const decW = randomParams(dec.namedParameters(), 21);
    const part = (prefix: string) => new Map([...decW].filter(([k]) => k.startsWith(prefix)));
    saveCheckpoint(join(dir, 'fae-ia'), { model: part('feature_decoder.'), ema: new Map(), trainState: new Map(), meta: {} });
    saveCheckpoint(join(dir, 'fae-pix'), { model: part('pixel_decoder.'), ema: new Map(), trainState: new Map(), meta: {} });
    const job = { model: { kind: 'lightningdit', size: 'S/1', config: { depth: 1, hiddenSize: 32, numHeads: 2 }, latents: { preset: 'tiny', checkpoint: join(dir, 'fae-ia') } }, data: { kind: 'fashion_mnist' } };
    const raw = randomParams(model.namedParameters(), 22), ema = randomParams(model.namedParameters(), 23);
    saveRunCheckpoint(join(dir, 'run', 'checkpoints'), { model: raw, ema, trainState: new Map(), meta: {} }, { step: 5, epoch: 0, batchInEpoch: 5, rng: { seed: 0, counter: 5 } }, job, 2);
    const args = (w: string, n: string, fae: string) => ['sample', join(dir, 'run'), '--weights', w, '--num', '2', '--steps', '2', '--fae', fae, '--backend', 'cpu', '--out', join(dir, `${n}.png`), '--save-samples', join(dir, `${n}.safetensors`)];
    const both = `${join(dir, 'fae-ia')},${join(dir, 'fae-pix')}`;
    expect(await main(args('ema', 'e', both))).toBe(0);
    expect(await main(args('model', 'm', both))).toBe(0);
    const s = (n: string) => loadSafetensors(join(dir, `${n}.safetensors`)).tensors;
    expect(s('e').get('images')!.shape).toEqual([2, 3, 16, 16]);
    const direct = await generateFlow(cpuBackend, model, new Map([...model.initState(0), ...ema]), hostTensor('i32', [2], [0, 1]), { method: 'euler', numSteps: 2, shift: 0.4, guidance: { kind: 'none' }, seed: 0 });
    expect(Array.from(s('e').get('samples')!.data)).toEqual(Array.from(direct.data));
    expect(Array.from(s('m').get('samples')!.data)).not.toEqual(Array.from(direct.data));
    // the job's stage-Ia checkpoint alone lacks the pixel decoder: a user error naming the fix
    expect(await main(args('ema', 'x', join(dir, 'fae-ia')))).toBe(2);
  });
});

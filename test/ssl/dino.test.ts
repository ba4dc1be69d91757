/**
 * @file DINO self-distillation (models/ssl/dino.ts) on the CPU interpreter, tiny sizes: the step's
 * loss against a host computation from the network's logits (centered, sharpened teacher on the
 * global views; student on every other view; the pairs i ≠ j), the teacher's EMA update
 * ema ← m·ema + (1 − m)·student (with the student before the step's update) and no other change to
 * the teacher (no gradient reaches it), the center's running mean, and the momentum schedule; with the
 * views cut in the program (deviceCrops), the same loss and updates as with MultiCropSource's host views
 * of the same draws; smaller local crops (localSize) run the encoder on the smaller patch grid.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { trace } from '../../compiler/dsl/index.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { CENTER_STATE, CROP_PARAMS_INPUT, DinoNetwork, IMAGES_INPUT, MOMENTUM_INPUT, dinoConfig, dinoForward, dinoStateOutputs, teacherMomentum } from '../../models/ssl/dino.ts';
import { CROP_PARAMS, MultiCropSource, cropParams } from '../../runtime/data/multiCrop.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import type { BatchSource, SourceBatch } from '../../runtime/data/source.ts';
import { Session } from '../../runtime/session.ts';

const B = 2, S = 8, K = 6;
const cfg = dinoConfig({ dim: 8, depth: 1, heads: 2, patchSize: 4, imageSize: S, channels: 1 }, { headHidden: 8, bottleneck: 4, prototypes: K, globalViews: 2, localViews: 1 });
const V = 3, G = 2;

function views(seed: number): HostTensor {
  const r = mulberry32(seed);
  return hostTensor('f32', [V * B, 1, S, S], Float32Array.from({ length: V * B * S * S }, () => 2 * r() - 1));
}

async function logits(net: DinoNetwork, state: ReadonlyMap<string, HostTensor>, x: HostTensor): Promise<Float32Array> {
  const g = trace('logits', (t) => ({ z: net.logits(t.input('x', x.shape)) }), { params: net });
  const s = await Session.open(cpuBackend, g, state);
  const z = (await s.run({ x })).z!.data as Float32Array;
  s.dispose();
  return z;
}

describe('DINO training step', () => {
  it('loss, teacher EMA and center match the host computation', async () => {
    const student = new DinoNetwork(cfg), teacher = new DinoNetwork(cfg);
    const step = trainStep(dinoForward(student, teacher, B), {
      loss: 'loss', metrics: ['teacher_entropy', ...dinoStateOutputs(teacher)],
      optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
    });
    const init = student.initState(3);
    const s = await Session.open(cpuBackend, step, init);
    const m = 0.75, lr = 0.05;
    const x1 = views(1);
    // step 1: teacher = student (the EMA starts as a copy), center = 0
    const z = await logits(student, init, x1);
    let want = 0, pairs = 0;
    const row = (v: number, b: number) => z.subarray((v * B + b) * K, (v * B + b + 1) * K);
    const softmax = (a: Float32Array, T: number) => {
      const mx = Math.max(...a), e = Array.from(a, (q) => Math.exp((q - mx) / T)), sum = e.reduce((p, q) => p + q);
      return e.map((q) => q / sum);
    };
    for (let i = 0; i < G; i++)
      for (let j = 0; j < V; j++) {
        if (i === j) continue;
        let ce = 0;
        for (let b = 0; b < B; b++) {
          const tp = softmax(row(i, b), cfg.teacherTemp), sp = softmax(row(j, b), cfg.studentTemp);
          ce -= tp.reduce((acc, p, k) => acc + p * Math.log(sp[k]!), 0);
        }
        want += ce / B;
        pairs++;
      }
    want /= pairs;
    const out1 = await s.run({ views: x1, [MOMENTUM_INPUT]: hostTensor('f32', [], [m]), lr: hostTensor('f32', [], [lr]) }, ['loss']);
    expect(out1.loss!.data[0]).toBeCloseTo(want, 4);
    const after1 = await s.read();
    // center: 0.9·0 + 0.1·mean of the teacher's logits over the global views
    const c = after1.get(CENTER_STATE)!.data;
    for (let k = 0; k < K; k++) {
      let mean = 0;
      for (let r = 0; r < G * B; r++) mean += z[r * K + k]!;
      expect(c[k]).toBeCloseTo((1 - cfg.centerMomentum) * (mean / (G * B)), 6);
    }
    // step 2: ema = m·X0 + (1 − m)·X1, X1 the student after step 1 (ema after step 1 = X0)
    await s.run({ views: views(2), [MOMENTUM_INPUT]: hostTensor('f32', [], [m]), lr: hostTensor('f32', [], [lr]) }, ['loss']);
    const after2 = await s.read();
    let moved = 0;
    for (const [name] of student.namedParameters()) {
      const x0 = init.get(name)!.data, x1p = after1.get(name)!.data, e1 = after1.get(`ema.${name}`)!.data, e2 = after2.get(`ema.${name}`)!.data;
      for (let i = 0; i < x0.length; i++) {
        expect(e1[i]).toBeCloseTo(Number(x0[i]), 6);
        expect(e2[i]).toBeCloseTo(m * Number(x0[i]) + (1 - m) * Number(x1p[i]), 6);
        moved = Math.max(moved, Math.abs(Number(x1p[i]) - Number(x0[i])));
      }
    }
    expect(moved).toBeGreaterThan(1e-3); // the student did move, so the EMA check is not vacuous
    s.dispose();
  }, 120_000);

  it('the teacher momentum follows the half cosine from the base to 1', () => {
    expect(teacherMomentum(0.99, 0, 101)).toBeCloseTo(0.99, 12);
    expect(teacherMomentum(0.99, 50, 101)).toBeCloseTo(0.995, 12);
    expect(teacherMomentum(0.99, 100, 101)).toBeCloseTo(1, 12);
  });

  it('views cut in the program: the same loss, teacher and center as host views of the same draws', async () => {
    const r = mulberry32(9);
    const images = hostTensor('f32', [B, 1, S, S], Float32Array.from({ length: B * S * S }, () => 2 * r() - 1));
    const crops = { globalViews: G, localViews: V - G, globalScale: [0.3, 1] as const, localScale: [0.2, 0.5] as const, jitter: 0.2, seed: 4 };
    const src: BatchSource = { batchesPerEpoch: 1, batchSize: B, imageShape: [1, S, S], classes: ['a'], load: async (e, b): Promise<SourceBatch> => ({ x: images, y: hostTensor('i32', [B], [0, 0]), epoch: e, batch: b }) };
    const hostViews = (await new MultiCropSource(src, crops).load(0, 0)).x;
    const opt = { loss: 'loss', optimizer: { kind: 'adamw' as const, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 } };
    const after = async (deviceCrops: boolean) => {
      const student = new DinoNetwork(cfg), teacher = new DinoNetwork(cfg);
      const step = trainStep(dinoForward(student, teacher, B, { deviceCrops }), { ...opt, metrics: dinoStateOutputs(teacher) });
      const s = await Session.open(cpuBackend, step, student.initState(3));
      const views: Record<string, HostTensor> = deviceCrops ? { [IMAGES_INPUT]: images, [CROP_PARAMS_INPUT]: hostTensor('f32', [V * B, CROP_PARAMS], cropParams(crops, S, S, 0, 0, B)) } : { views: hostViews };
      const loss = (await s.run({ ...views, [MOMENTUM_INPUT]: hostTensor('f32', [], [0.5]), lr: hostTensor('f32', [], [0.05]) }, ['loss'])).loss!.data[0]!;
      const state = await s.read();
      s.dispose();
      return { loss, state };
    };
    const host = await after(false), device = await after(true);
    expect(device.loss).toBeCloseTo(host.loss, 5);
    for (const name of ['ema.encoder.pos_embed', 'encoder.patch_embed.proj.weight', CENTER_STATE]) {
      const a = host.state.get(name)!.data, b = device.state.get(name)!.data;
      for (let i = 0; i < a.length; i++) expect(Number(b[i])).toBeCloseTo(Number(a[i]), 5);
    }
  }, 120_000);

  it('smaller local crops run the encoder on the smaller grid (bilinear position embedding) and train', async () => {
    const small = dinoConfig({ dim: 8, depth: 1, heads: 2, patchSize: 4, imageSize: S, channels: 1 }, { headHidden: 8, bottleneck: 4, prototypes: K, globalViews: 2, localViews: 2, localSize: 4 });
    const student = new DinoNetwork(small), teacher = new DinoNetwork(small);
    expect(() => dinoForward(student, teacher, B)).toThrow(/need the views cut in the program/);
    const step = trainStep(dinoForward(student, teacher, B, { deviceCrops: true }), { loss: 'loss', optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 } });
    expect(step.inputByName(IMAGES_INPUT)!.type.shape).toEqual([B, 1, S, S]);
    const init = student.initState(1);
    // tokens() of a smaller view: a depth-0 encoder on 12 px images (3x3 patches) seeing an 8 px view
    // (2x2 patches) adds kron(r, r)·pos, r = [[0.75, 0.25, 0], [0, 0.25, 0.75]], then the final LayerNorm
    const net0 = new DinoNetwork(dinoConfig({ dim: 8, depth: 0, heads: 2, patchSize: 4, imageSize: 12, channels: 1 }, { headHidden: 8, bottleneck: 4, prototypes: K, localSize: 8 }));
    const st0 = net0.initState(2);
    const g = trace('tok', (t) => { const xi = t.input('x', [1, 1, 8, 8]); return { z: net0.tokens(xi), p: net0.encoder.patch_embed.forward(xi) }; }, { params: net0 });
    const s0 = await Session.open(cpuBackend, g, st0);
    const out = await s0.run({ x: hostTensor('f32', [1, 1, 8, 8], Float32Array.from({ length: 64 }, (_, i) => Math.sin(i))) });
    s0.dispose();
    expect(out.z!.shape).toEqual([1, 4, 8]);
    const pos = st0.get('encoder.pos_embed')!.data, patch = out.p!.data, z = out.z!.data;
    const r = [[0.75, 0.25, 0], [0, 0.25, 0.75]];
    for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) {
      const x = Array.from({ length: 8 }, (_, d) => {
        let p = Number(patch[(a * 2 + b) * 8 + d]);
        for (let c = 0; c < 3; c++) for (let e = 0; e < 3; e++) p += r[a]![c]! * r[b]![e]! * Number(pos[(c * 3 + e) * 8 + d]);
        return p;
      });
      const mean = x.reduce((u, v) => u + v) / 8, vr = x.reduce((u, v) => u + (v - mean) ** 2, 0) / 8;
      for (let d = 0; d < 8; d++) expect(Number(z[(a * 2 + b) * 8 + d])).toBeCloseTo((x[d]! - mean) / Math.sqrt(vr + 1e-6), 4);
    }
    const s = await Session.open(cpuBackend, step, init);
    const crops = cropParams({ globalViews: 2, localViews: 2, seed: 1 }, S, S, 0, 0, B);
    const l = (await s.run({ [IMAGES_INPUT]: hostTensor('f32', [B, 1, S, S], Float32Array.from({ length: B * S * S }, (_, i) => Math.cos(i))), [CROP_PARAMS_INPUT]: hostTensor('f32', [4 * B, CROP_PARAMS], crops), [MOMENTUM_INPUT]: hostTensor('f32', [], [0.9]), lr: hostTensor('f32', [], [0.01]) }, ['loss'])).loss!.data[0]!;
    s.dispose();
    expect(Number.isFinite(l)).toBe(true);
    expect(l).toBeGreaterThan(0);
  }, 120_000);

  it("DINO's last-blocks readout: each block's output through the final norm, mean-pooled, concatenated", async () => {
    const deep = new DinoNetwork(dinoConfig({ dim: 8, depth: 3, heads: 2, patchSize: 4, imageSize: S, channels: 1 }, { headHidden: 8, bottleneck: 4, prototypes: K }));
    const init = deep.initState(5);
    const x = hostTensor('f32', [2, 1, S, S], Float32Array.from({ length: 2 * S * S }, (_, i) => Math.cos(i * 0.7)));
    const g = trace('readout', (t) => {
      const xi = t.input('x', [2, 1, S, S]), e = deep.encoder;
      let h = e.patch_embed.forward(xi).add(e.pos_embed);
      const means: Record<string, ReturnType<typeof h.mean>> = {};
      e.blocks.forEach((b, i) => { h = b.forward(h); means[`b${i}`] = e.norm.forward(h).mean(1); });
      return { last2: deep.lastBlocks(xi, 2), last1: deep.lastBlocks(xi, 1), embed: deep.embed(xi), ...means };
    }, { params: deep });
    const s = await Session.open(cpuBackend, g, init);
    const o = await s.run({ x });
    s.dispose();
    expect(o.last2!.shape).toEqual([2, 16]);
    expect(Array.from(o.last1!.data)).toEqual(Array.from(o.embed!.data)); // the last block alone is the mean-pooled embedding
    for (let r = 0; r < 2; r++)
      for (let d = 0; d < 8; d++) {
        expect(o.last2!.data[r * 16 + d]).toBeCloseTo(Number(o.b1!.data[r * 8 + d]), 6);
        expect(o.last2!.data[r * 16 + 8 + d]).toBeCloseTo(Number(o.b2!.data[r * 8 + d]), 6);
      }
    expect(() => deep.lastBlocks(undefined as never, 4)).toThrow(/last 4 blocks of a depth-3 encoder/);
  }, 60_000);
});

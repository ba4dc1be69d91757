/**
 * @file DINO self-distillation (models/ssl/dino.ts) on the CPU interpreter, tiny sizes: the step's
 * loss against a host computation from the network's logits (centered, sharpened teacher on the
 * global views; student on every other view; the pairs i ≠ j), the teacher's EMA update
 * ema ← m·ema + (1 − m)·student (with the student before the step's update) and no other change to
 * the teacher (no gradient reaches it), the center's running mean, and the momentum schedule.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { trace } from '../../compiler/dsl/index.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { CENTER_STATE, DinoNetwork, MOMENTUM_INPUT, dinoConfig, dinoForward, dinoStateOutputs, teacherMomentum } from '../../models/ssl/dino.ts';
import { mulberry32 } from '../../runtime/prng.ts';
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
});

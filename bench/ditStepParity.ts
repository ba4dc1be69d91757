/**
 * @file The FAE job's LightningDiT training step, Kiln against PyTorch on identical everything (issue 13
 * item 4: is Kiln's generator training the reference's at the job's shapes and precision?). Kiln's half:
 * the model of jobs/lightningdit-fae.json (S/1 layout, depth 6, width 192, 3 heads, 4x7x7 latents, 10
 * classes + the null row), its initial weights (initState(seed)), and S steps of the job's optimizer
 * (AdamW β (0.9, 0.95), no decay, clip 1, EMA 0.9999, lr 2e-4) on host-drawn batches: x1, the noise x0,
 * the times t (logit-normal) and the labels with the 10% dropped to the null class drawn here, so the
 * step program gets them as inputs (flowMatchingLoss with x0/t given, label dropout applied to y) and
 * nothing in it is random. Writes DIR/parity-inputs.safetensors (init weights, every step's batch) and
 * DIR/kiln.json (per-step loss, mse, cos, grad norm) and DIR/kiln-final.safetensors (weights and EMA
 * after S steps); bench/dit_step_parity_torch.py runs the same steps in PyTorch and compares.
 *
 *   npx tsx bench/ditStepParity.ts --backend cuda --batch 128 --steps 30 --out DIR   (precision: the backend's default, KILN_PRECISION)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { trace } from '../compiler/dsl/index.ts';
import { trainStep } from '../compiler/transforms/trainStep.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { flowMatchingLoss, gaussianNoise } from '../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../models/lightningdit.ts';
import { backendByName } from '../runtime/backends.ts';
import { compileOn, defaultPrecision } from '../runtime/compile.ts';
import { saveSafetensors } from '../runtime/safetensors.ts';
import { defaultResident } from '../runtime/session.ts';

const { values: a } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' }, batch: { type: 'string', default: '8' }, steps: { type: 'string', default: '5' },
    out: { type: 'string', default: 'out/dit-parity' }, seed: { type: 'string', default: '0' },
  },
});
const B = Number(a.batch), S = Number(a.steps), seed = Number(a.seed), out = a.out!;
mkdirSync(out, { recursive: true });
const job = JSON.parse(readFileSync(new URL('../jobs/lightningdit-fae.json', import.meta.url), 'utf8')) as {
  model: { size: string; config: Record<string, number> }; optimizer: { kind: 'adamw'; beta1: number; beta2: number; weightDecay: number };
  schedule: { lr: number }; clipGradNorm: number; ema: { decay: number };
};
const [C, G, K] = [4, 7, 10]; // the fashionMnist FAE preset's latents, Fashion-MNIST's classes
const model = new LightningDiT(lightningDiTConfig(job.model.size as 'S/1', { inputSize: G, inChannels: C, numClasses: K, ...job.model.config }));
const fwd = trace('fm_given_noise', (tc) => {
  const x1 = tc.input('x1', [B, C, G, G]);
  const r = flowMatchingLoss(model, x1, tc.input('y', [B], 'i32'), { x0: tc.input('x0', [B, C, G, G]), t: tc.input('t', [B]), train: false });
  return { loss: r.loss, mse: r.mse, cos: r.cos };
}, { params: model });
const graph = trainStep(fwd, { loss: 'loss', metrics: ['mse', 'cos'], optimizer: { ...job.optimizer }, clipGradNorm: job.clipGradNorm, ema: job.ema });

// every step's batch: x1 (smooth class patterns + noise, so the model has something to learn), x0, t, y with drops
const shape = [B, C, G, G], per = C * G * G;
const inputs: Record<string, HostTensor> = {};
for (let s = 0; s < S; s++) {
  const y = Int32Array.from({ length: B }, (_, i) => (s * 7 + i * 3) % K);
  const n = gaussianNoise(shape, 1000 + s).data as Float32Array;
  const x1 = Float32Array.from(n, (v, i) => 0.5 * v + Math.sin(0.7 * (i % per) * (1 + y[Math.floor(i / per)]!)));
  const tn = gaussianNoise([B], 2000 + s).data as Float32Array;
  const u = gaussianNoise([B], 3000 + s).data as Float32Array; // a normal → uniform through its CDF sign: drop when |u| > 1.645 (10%)
  inputs[`x1.${s}`] = hostTensor('f32', shape, x1);
  inputs[`x0.${s}`] = gaussianNoise(shape, 4000 + s);
  inputs[`t.${s}`] = hostTensor('f32', [B], Float32Array.from(tn, (v) => 1 / (1 + Math.exp(-v))));
  inputs[`y.${s}`] = hostTensor('i32', [B], y.map((c, i) => (Math.abs(u[i]!) > 1.6449 ? K : c)));
}
const init = model.initState(seed);
saveSafetensors(join(out, 'parity-inputs.safetensors'), { ...Object.fromEntries([...init].map(([k, v]) => [`init.${k}`, v])), ...inputs },
  { steps: String(S), batch: String(B), lr: String(job.schedule.lr), beta1: String(job.optimizer.beta1), beta2: String(job.optimizer.beta2), clip: String(job.clipGradNorm), ema: String(job.ema.decay) });

const backend = backendByName(a.backend!);
const precision = await defaultPrecision(backend);
const t0 = performance.now();
const exe = await compileOn(backend, graph);
for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
const rec = { backend: backend.name, precision, batch: B, steps: S, loss: [] as number[], mse: [] as number[], cos: [] as number[], grad_norm: [] as number[], trained: [] as string[] };
rec.trained = graph.inputs.filter((i) => i.kind === 'param').map((i) => i.name);
for (let s = 0; s < S; s++) {
  const r = await exe.run({ x1: inputs[`x1.${s}`]!, x0: inputs[`x0.${s}`]!, t: inputs[`t.${s}`]!, y: inputs[`y.${s}`]!, lr: hostTensor('f32', [], [job.schedule.lr]) }, ['loss', 'mse', 'cos', 'grad_norm']);
  for (const k of ['loss', 'mse', 'cos', 'grad_norm'] as const) rec[k].push(r[k]!.data[0]!);
}
const final: Record<string, HostTensor> = {};
for (const i of graph.inputs) if (i.kind === 'param' || i.name.startsWith('ema.')) final[i.name] = await exe.read(i.name);
exe.dispose();
saveSafetensors(join(out, 'kiln-final.safetensors'), final);
writeFileSync(join(out, 'kiln.json'), JSON.stringify(rec) + '\n');
console.log(`Kiln ${backend.name} ${precision}: ${S} steps of batch ${B} in ${((performance.now() - t0) / 1000).toFixed(1)} s; losses ${rec.loss.map((v) => v.toFixed(4)).join(' ')}`);
console.log(`trained inputs: ${rec.trained.length} (pos_embed ${rec.trained.includes('pos_embed') ? 'TRAINED' : 'frozen'})`);

/**
 * @file The random draws of the FAE job's LightningDiT training step as the backend computes them (issue 13
 * item 4): the flow-matching loss of jobs/lightningdit-fae.json's model with its in-graph noise x0 ~ N(0, I),
 * times t = sigmoid(N(0, 1)) (flowMatchingLoss in train mode, label dropout included), traced with x0 and t as
 * extra outputs, compiled at the backend's default precision and run for a few rng seeds ([seed, step] as the
 * trainer feeds them). Prints what PyTorch's randn_like / randn give by construction: mean 0 and variance 1
 * of x0, logit(t) ~ N(0, 1), no correlation between x0 and t, and fresh numbers at every step.
 *
 *   npx tsx bench/flowNoiseCheck.ts --backend cuda [--batch 128] [--steps 4]
 */
import { parseArgs } from 'node:util';
import { trace } from '../compiler/dsl/index.ts';
import { hostTensor } from '../ir/tensor.ts';
import { flowMatchingLoss } from '../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../models/lightningdit.ts';
import { backendByName } from '../runtime/backends.ts';
import { compileOn, defaultPrecision } from '../runtime/compile.ts';
import { defaultResident } from '../runtime/session.ts';

const { values: a } = parseArgs({ options: { backend: { type: 'string', default: 'cpu' }, batch: { type: 'string', default: '128' }, steps: { type: 'string', default: '4' } } });
const B = Number(a.batch), S = Number(a.steps);
const [C, G, K] = [4, 7, 10];
const model = new LightningDiT(lightningDiTConfig('S/1', { inputSize: G, inChannels: C, numClasses: K, depth: 6, hiddenSize: 192, numHeads: 3, classDropoutProb: 0.1 }));
const graph = trace('fm_draws', (tc) => {
  const x1 = tc.input('x1', [B, C, G, G]);
  const y = tc.input('y', [B], 'i32');
  const r = flowMatchingLoss(model, x1, y, { train: true });
  // x0 = x1 − u
  return { loss: r.loss, x0: x1.sub(r.u), t: r.t };
}, { params: model });
const backend = backendByName(a.backend!);
const exe = await compileOn(backend, graph);
for (const [k, v] of defaultResident(graph, model.initState(0))) await exe.write(k, v);
const mean = (v: ArrayLike<number>) => { let s = 0; for (let i = 0; i < v.length; i++) s += v[i]!; return s / v.length; };
const x1 = hostTensor('f32', [B, C, G, G]), y = hostTensor('i32', [B], Int32Array.from({ length: B }, (_, i) => i % K));
let prev: Float32Array | undefined;
console.log(`${backend.name} ${await defaultPrecision(backend)}, batch ${B}`);
for (let s = 1; s <= S; s++) {
  const r = await exe.run({ x1, y, rng_seed: hostTensor('u32', [2], [0, s]) }, ['loss', 'x0', 't']);
  const x0 = r.x0!.data as Float32Array, t = r.t!.data as Float32Array;
  const lt = Float32Array.from(t, (v) => Math.log(v / (1 - v)));
  const m0 = mean(x0), v0 = mean(x0.map((v) => (v - m0) ** 2));
  const mt = mean(lt), vt = mean(lt.map((v) => (v - mt) ** 2));
  const per = C * G * G;
  const first = Float32Array.from({ length: B }, (_, b) => x0[b * per]!);
  const corr = mean(first.map((v, b) => v * (lt[b]! - mt))) / Math.sqrt(vt);
  const same = prev ? x0.filter((v, i) => v === prev![i]).length : 0;
  console.log(`step ${s}: x0 mean ${m0.toFixed(4)} var ${v0.toFixed(4)}; logit t mean ${mt.toFixed(3)} sd ${Math.sqrt(vt).toFixed(3)}; corr(x0[b,0,0,0], logit t) ${corr.toFixed(3)}; x0 equal to the previous step's: ${same} of ${x0.length}; loss ${r.loss!.data[0]!.toFixed(4)}`);
  prev = x0;
}
exe.dispose();

/**
 * @file Loss-curve parity of mixed precision (compiler/transforms/autocast.ts): the same training run
 * in f32 and in a low precision (bf16 by default) on one backend, from the same initial weights, on the
 * same batches in the same order, with the same Philox seeds; prints both loss curves and a table of
 * the final losses and their relative difference.
 *   1. the Fashion-MNIST MLP 784-256-128-10 (AdamW, constant lr) on a subset of the training split —
 *      read from the Debian package (`--subset N` images), or from a file written here with
 *      `--write-subset FILE` (so that a few MiB can be carried to the GPU machine: `--mnist FILE`);
 *   2. a small LightningDiT (B/1 layout: RMSNorm, SwiGLU, RoPE, qk-norm; depth 2, width 64, 4 heads,
 *      8x8x4 latents, 10 classes) trained with the flow-matching loss on a fixed synthetic latent set
 *      (one smooth pattern per class plus noise), AdamW with clipping and EMA as LIGHTNINGDIT_TRAINING.
 * "Final loss": the MLP's mean training loss over the last epoch; the DiT's held-out flow-matching loss
 * (no label dropout, fixed x0/t draws, evaluated in f32 for both runs so that the models are compared, not
 * the evaluators) averaged over several batches. Parity: |low − f32| / f32 < 2%.
 *
 *   KILN_BACKEND=cuda npx tsx bench/precisionParity.ts --mnist subset.bin [--precision bf16] [--json FILE]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Backend } from '../backends/backend.ts';
import { buildGraphs } from '../cli/jobs/fashionMlp.ts';
import { hostTensor } from '../ir/tensor.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph, gaussianNoise } from '../models/flowMatching.ts';
import { LightningDiT, lightningDiTConfig } from '../models/lightningdit.ts';
import { MlpClassifier } from '../models/mlp.ts';
import { trainStep } from '../compiler/transforms/trainStep.ts';
import { backendByName } from '../runtime/backends.ts';
import { type Precision, checkPrecision } from '../compiler/transforms/autocast.ts';
import { loadFashionMnist, permutation } from '../runtime/data/fashionMnist.ts';
import { mulberry32 } from '../runtime/prng.ts';
import { Session } from '../runtime/session.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string' }, precision: { type: 'string' }, mnist: { type: 'string' }, subset: { type: 'string' },
    'write-subset': { type: 'string' }, 'mlp-epochs': { type: 'string' }, 'dit-steps': { type: 'string' }, json: { type: 'string' },
    only: { type: 'string' },
  },
});

const MEAN = 0.2860, STD = 0.3530;

interface Subset { count: number; images: Uint8Array; labels: Uint8Array }

/** Subset file: u32 count, count·784 pixel bytes, count label bytes. */
function readSubset(file: string): Subset {
  const b = readFileSync(file);
  const count = b.readUInt32LE(0);
  return { count, images: new Uint8Array(b.buffer, b.byteOffset + 4, count * 784), labels: new Uint8Array(b.buffer, b.byteOffset + 4 + count * 784, count) };
}
function subsetOfTrain(count: number): Subset {
  const d = loadFashionMnist('train');
  return { count, images: d.images.subarray(0, count * 784), labels: d.labels.subarray(0, count) };
}

if (args['write-subset']) {
  const s = subsetOfTrain(Number(args.subset ?? 4096));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(s.count);
  writeFileSync(args['write-subset'], Buffer.concat([head, Buffer.from(s.images), Buffer.from(s.labels)]));
  console.log(`wrote ${s.count} images to ${args['write-subset']}`);
  process.exit(0);
}

const backend: Backend = backendByName(args.backend ?? process.env.KILN_BACKEND ?? 'cpu');
const low = checkPrecision(args.precision ?? 'bf16', '--precision');
const mean = (a: readonly number[]) => a.reduce((s, x) => s + x, 0) / a.length;

async function mlpRun(data: Subset, precision: Precision, epochs: number): Promise<{ curve: number[]; final: number; ms: number }> {
  const B = 128;
  const model = new MlpClassifier({ inputs: 784, hidden: [256, 128], classes: 10 });
  const { train } = buildGraphs(model, B, { weightDecay: 1e-4 });
  const s = await Session.open(backend, train, model.initState(0), { precision });
  const perEpoch = Math.floor(data.count / B);
  const curve: number[] = [];
  const x = new Float32Array(B * 784), y = new Int32Array(B);
  const lr = hostTensor('f32', [], [2e-3]);
  const t0 = performance.now();
  for (let e = 0; e < epochs; e++) {
    const order = permutation(data.count, mulberry32(100 + e));
    for (let b = 0; b < perEpoch; b++) {
      for (let r = 0; r < B; r++) {
        const i = order[b * B + r]!;
        for (let p = 0; p < 784; p++) x[r * 784 + p] = (data.images[i * 784 + p]! / 255 - MEAN) / STD;
        y[r] = data.labels[i]!;
      }
      const out = await s.run({ x: hostTensor('f32', [B, 784], x), y: hostTensor('i32', [B], y), lr }, ['loss']);
      curve.push(out.loss!.data[0]!);
    }
  }
  const ms = performance.now() - t0;
  s.dispose();
  return { curve, final: mean(curve.slice(-perEpoch)), ms };
}

async function ditRun(precision: Precision, steps: number): Promise<{ curve: number[]; final: number; ms: number }> {
  const config = lightningDiTConfig('B/1', { depth: 2, hiddenSize: 64, numHeads: 4, inputSize: 8, inChannels: 4, numClasses: 10 });
  const model = new LightningDiT(config);
  const B = 32, N = 512, C = 10, L = 4 * 8 * 8;
  const pat = gaussianNoise([C, L], 11);
  const jitter = gaussianNoise([N, L], 12);
  const labels = Array.from({ length: N }, (_, i) => i % C);
  // Smooth per-class patterns: a running average of white noise along the flattened latent.
  const smooth = new Float32Array(C * L);
  for (let c = 0; c < C; c++) for (let i = 0; i < L; i++) {
    let a = 0;
    for (let d = -2; d <= 2; d++) a += pat.data[c * L + ((i + d + L) % L)]!;
    smooth[c * L + i] = a / 2;
  }
  const latents = Float32Array.from({ length: N * L }, (_, k) => smooth[labels[Math.floor(k / L)]! * L + (k % L)]! + 0.1 * jitter.data[k]!);
  const batchAt = (idx: ArrayLike<number>) => ({
    x1: hostTensor('f32', [B, 4, 8, 8], Float32Array.from({ length: B * L }, (_, k) => latents[idx[Math.floor(k / L)]! * L + (k % L)]!)),
    y: hostTensor('i32', [B], Array.from({ length: B }, (_, r) => labels[idx[r]!]!)),
  });
  const step = trainStep(flowMatchingLossGraph(model, B), {
    loss: 'loss', metrics: ['mse', 'cos'], params: model.trainableParameterNames(),
    optimizer: LIGHTNINGDIT_TRAINING.optimizer, ema: LIGHTNINGDIT_TRAINING.ema, clipGradNorm: 1,
  });
  const init = model.initState(0);
  const s = await Session.open(backend, step, init, { precision });
  const curve: number[] = [];
  const lr = hostTensor('f32', [], [1e-3]);
  const t0 = performance.now();
  const perEpoch = N / B;
  for (let k = 0; k < steps; k++) {
    const order = permutation(N, mulberry32(200 + Math.floor(k / perEpoch)));
    const idx = order.subarray((k % perEpoch) * B, (k % perEpoch + 1) * B);
    const out = await s.run({ ...batchAt(idx), lr, rng_seed: hostTensor('u32', [2], [1, k]) }, ['loss']);
    curve.push(out.loss!.data[0]!);
  }
  const ms = performance.now() - t0;
  const params = await s.read(['param', 'frozen']);
  s.dispose();
  // Held-out loss in f32: 8 batches, fixed x0/t draws, no label dropout.
  const ev = await Session.open(backend, flowMatchingLossGraph(model, B, { train: false }), params, { precision: 'f32' });
  const losses: number[] = [];
  for (let e = 0; e < 8; e++) {
    const idx = Array.from({ length: B }, (_, r) => (e * B + r) % N);
    losses.push((await ev.run({ ...batchAt(idx), rng_seed: hostTensor('u32', [2], [999, e]) }, ['loss'])).loss!.data[0]!);
  }
  ev.dispose();
  return { curve, final: mean(losses), ms };
}

function show(name: string, a: number[], b: number[], every: number): void {
  console.log(`\n${name}: training loss (f32 | ${low}), every ${every} steps`);
  for (let i = 0; i < a.length; i += every) console.log(`  step ${String(i + 1).padStart(4)}  ${a[i]!.toFixed(4)}  ${b[i]!.toFixed(4)}`);
  console.log(`  step ${String(a.length).padStart(4)}  ${a.at(-1)!.toFixed(4)}  ${b.at(-1)!.toFixed(4)}`);
}

const rows: Array<{ run: string; steps: number; f32: number; low: number; rel: number; msF32: number; msLow: number }> = [];
const result: Record<string, unknown> = { backend: backend.name, precision: low };
if (args.only !== 'dit') {
  const data = args.mnist ? readSubset(args.mnist) : subsetOfTrain(Number(args.subset ?? 4096));
  const epochs = Number(args['mlp-epochs'] ?? 5);
  const a = await mlpRun(data, 'f32', epochs);
  const b = await mlpRun(data, low, epochs);
  show(`Fashion-MNIST MLP (${data.count} images, batch 128, ${epochs} epochs)`, a.curve, b.curve, 16);
  rows.push({ run: `Fashion-MNIST MLP 784-256-128-10, ${data.count} images x ${epochs} epochs (mean loss of the last epoch)`, steps: a.curve.length, f32: a.final, low: b.final, rel: Math.abs(b.final - a.final) / a.final, msF32: a.ms, msLow: b.ms });
  result.mlp = { f32: a.curve, [low]: b.curve };
}
if (args.only !== 'mlp') {
  const steps = Number(args['dit-steps'] ?? 320);
  const a = await ditRun('f32', steps);
  const b = await ditRun(low, steps);
  show('LightningDiT depth 2 width 64, 8x8x4 synthetic latents (512), batch 32', a.curve, b.curve, 32);
  rows.push({ run: `LightningDiT (B/1 layout, depth 2, width 64), ${steps} steps (held-out loss, 8 batches)`, steps, f32: a.final, low: b.final, rel: Math.abs(b.final - a.final) / a.final, msF32: a.ms, msLow: b.ms });
  result.dit = { f32: a.curve, [low]: b.curve };
}
console.log(`\n| run (${backend.name}) | steps | final loss f32 | final loss ${low} | relative difference | parity (< 2%) | train s f32 / ${low} |`);
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows)
  console.log(`| ${r.run} | ${r.steps} | ${r.f32.toFixed(4)} | ${r.low.toFixed(4)} | ${(r.rel * 100).toFixed(2)}% | ${r.rel < 0.02 ? 'yes' : 'NO'} | ${(r.msF32 / 1000).toFixed(1)} / ${(r.msLow / 1000).toFixed(1)} |`);
result.rows = rows;
if (args.json) writeFileSync(args.json, JSON.stringify(result));

/**
 * @file The Fashion-MNIST MLP job: trace the classifier, build its training step (forward,
 * backward, AdamW), train on the Debian package's data with progress output and checkpoints,
 * and evaluate test accuracy.
 */
import type { Backend } from '../../backends/backend.ts';
import { accuracy, crossEntropy, trace } from '../../compiler/dsl/index.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import type { Graph } from '../../ir/graph.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { type Checkpoint, joinResident, loadCheckpoint, saveCheckpoint, splitResident } from '../../runtime/checkpoint.ts';
import { Batcher, loadFashionMnist } from '../../runtime/data/fashionMnist.ts';
import { warmupCosine } from '../../runtime/schedule.ts';
import type { Precision } from '../../runtime/compile.ts';
import { Session } from '../../runtime/session.ts';
import { MlpClassifier } from '../../models/mlp.ts';

export interface FashionMlpOptions {
  backend: Backend;
  /** Compile precision (runtime/compile.ts compileOn; default: the backend's, bf16 on cuda). */
  precision?: Precision;
  epochs: number;
  batch: number;
  hidden: number[];
  lr: number;
  weightDecay: number;
  seed: number;
  /** Stop after this many steps (for quick runs); default: all epochs. */
  maxSteps?: number;
  dataDir?: string;
  checkpointDir?: string;
  resume?: boolean;
  log?: (line: string) => void;
  logEvery?: number;
}

export interface FashionMlpResult {
  steps: number;
  firstLoss: number;
  lastLoss: number;
  trainAccuracy: number;
  testAccuracy: number;
  seconds: number;
}

const MEAN = 0.2860, STD = 0.3530; // Fashion-MNIST pixel statistics (train split)

export function buildGraphs(model: MlpClassifier, batch: number, opts: { lr?: number; weightDecay: number }): { train: Graph; evaluate: Graph } {
  const forward = trace('fashion_mlp', (t) => {
    const x = t.input('x', [batch, model.config.inputs]);
    const y = t.input('y', [batch], 'i32');
    const logits = model.forward(x);
    return { loss: crossEntropy(logits, y), accuracy: accuracy(logits, y) };
  }, { params: model });
  const train = trainStep(forward, { loss: 'loss', metrics: ['accuracy'], optimizer: { kind: 'adamw', weightDecay: opts.weightDecay } });
  const evaluate = trace('fashion_mlp_eval', (t) => {
    const x = t.input('x', [batch, model.config.inputs]);
    const y = t.input('y', [batch], 'i32');
    return { correct: model.forward(x).argmax(-1).eq(y).cast('f32').sum() };
  }, { params: model });
  return { train, evaluate };
}

export async function runFashionMlp(o: FashionMlpOptions): Promise<FashionMlpResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const started = performance.now();
  const trainSet = loadFashionMnist('train', o.dataDir);
  const testSet = loadFashionMnist('test', o.dataDir);
  const model = new MlpClassifier({ inputs: 784, hidden: o.hidden, classes: 10 });
  const { train, evaluate } = buildGraphs(model, o.batch, { weightDecay: o.weightDecay });
  log(`model: MLP 784-${o.hidden.join('-')}-10, ${model.numParams().toLocaleString()} parameters; train step: ${train.nodes.length} ops on ${o.backend.name}${o.precision ? ` (${o.precision})` : ''}`);

  const batcher = new Batcher(trainSet, { batchSize: o.batch, seed: o.seed, dropLast: true, normalize: { mean: MEAN, std: STD } });
  const perEpoch = batcher.numBatches;
  const total = Math.min(o.maxSteps ?? Infinity, perEpoch * o.epochs);
  const schedule = warmupCosine(o.lr, Math.min(100, Math.floor(total / 10)), total);

  let initial = model.initState(o.seed);
  let step = 0;
  if (o.resume && o.checkpointDir) {
    const ck = loadCheckpoint(o.checkpointDir);
    initial = joinResident(ck);
    step = Number(ck.meta.step ?? 0);
    log(`resumed from ${o.checkpointDir} at step ${step}`);
  }
  const session = await Session.open(o.backend, train, initial, { precision: o.precision });
  const paramNames = model.namedParameters().map(([n]) => n);
  const save = async () => {
    if (!o.checkpointDir) return;
    const c: Checkpoint = { ...splitResident(await session.read(), paramNames), meta: { step: String(step), config: JSON.stringify({ hidden: o.hidden, batch: o.batch }) } };
    saveCheckpoint(o.checkpointDir, c);
  };

  let firstLoss = NaN, lastLoss = NaN, accSum = 0, accN = 0;
  const logEvery = o.logEvery ?? 100;
  outer: for (let epoch = Math.floor(step / perEpoch); epoch < o.epochs; epoch++) {
    let b = 0;
    for (const batch of batcher.epoch(epoch)) {
      if (b++ < step % perEpoch && epoch === Math.floor(step / perEpoch)) continue; // skip what a resumed run already did
      if (step >= total) break outer;
      const out = await session.run({ x: batch.x, y: batch.y, lr: hostTensor('f32', [], [schedule(step)]) }, ['loss', 'accuracy']);
      const loss = out.loss!.data[0]!;
      if (!Number.isFinite(loss)) throw new Error(`training diverged at step ${step}: loss ${loss}`);
      if (Number.isNaN(firstLoss)) firstLoss = loss;
      lastLoss = loss;
      accSum += out.accuracy!.data[0]!;
      accN++;
      step++;
      if (step % logEvery === 0 || step === total)
        log(`epoch ${epoch + 1} step ${step}/${total}  loss ${loss.toFixed(4)}  train acc ${(accSum / accN * 100).toFixed(1)}%  lr ${schedule(step - 1).toExponential(2)}  ${((performance.now() - started) / 1000).toFixed(0)}s`);
      if (step % perEpoch === 0) await save();
    }
  }
  await save();
  const trainAccuracy = accN ? accSum / accN : NaN;

  // Evaluate on the test split with the trained parameters.
  const params = await session.read(['param', 'frozen']);
  const evalSession = await Session.open(o.backend, evaluate, params, { precision: o.precision });
  const testBatcher = new Batcher(testSet, { batchSize: o.batch, shuffle: false, dropLast: false, normalize: { mean: MEAN, std: STD } });
  let correct = 0, seen = 0;
  for (const batch of testBatcher.epoch(0)) {
    if (batch.y.shape[0] !== o.batch) {
      // The last partial batch: pad to the compiled batch size and count only real rows.
      const n = batch.y.shape[0]!;
      const x = new Float32Array(o.batch * 784); x.set(batch.x.data as Float32Array);
      const y = new Int32Array(o.batch).fill(-1); y.set(batch.y.data as Int32Array);
      const r = await evalSession.run({ x: hostTensor('f32', [o.batch, 784], x), y: hostTensor('i32', [o.batch], y) });
      correct += r.correct!.data[0]!;
      seen += n;
    } else {
      const r = await evalSession.run({ x: batch.x, y: batch.y });
      correct += r.correct!.data[0]!;
      seen += o.batch;
    }
  }
  const testAccuracy = correct / seen;
  const seconds = (performance.now() - started) / 1000;
  log(`test accuracy ${(testAccuracy * 100).toFixed(2)}% on ${seen} images after ${step} steps (${seconds.toFixed(0)}s)`);
  session.dispose();
  evalSession.dispose();
  return { steps: step, firstLoss, lastLoss, trainAccuracy, testAccuracy, seconds };
}

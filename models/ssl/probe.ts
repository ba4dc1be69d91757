/**
 * @file Evaluating a frozen encoder's features, every step run by Kiln on a backend:
 * - `encodeImages`: pooled features [N, D] of images through a traced embedding function, in batches;
 * - `linearProbe`: multinomial logistic regression (one Linear layer, cross-entropy, AdamW with a
 *   cosine learning rate, minibatches of a seeded per-epoch order) trained on standardized train
 *   features (train mean/std) held resident on the backend, accuracy on the test features;
 * - `knnAccuracy`: weighted k-nearest-neighbour classification (DINO's: cosine similarity on
 *   L2-normalized features, the k most similar train items vote with weight exp(sim / 0.07)); the k
 *   best are found in the program by k rounds of argmax and masking, so no N×N matrix leaves the device.
 * - `tunedLinearProbe`: the probe's weight decay chosen on a held-out part of the train split (the
 *   last `valFraction` of it; the test split is never looked at), then retrained on the whole train split.
 * The raw-pixel probe is `linearProbe` on flattened pixels (the floor an encoder must beat).
 */
import type { Backend } from '../../backends/backend.ts';
import { type Module, type Tensor, crossEntropy, nn, trace } from '../../compiler/dsl/index.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import { Session } from '../../runtime/session.ts';

export interface FeatureSet {
  /** [N, D] row-major. */
  x: Float32Array;
  /** Class of each row. */
  y: Int32Array;
  n: number;
  d: number;
}

/**
 * Features of `images` ([N, C, H, W] values) from `embed(images [batch, C, H, W]) → [batch, D]` traced with
 * `params` (state `state`). The last partial batch is zero-padded and cut.
 */
export async function encodeImages(
  backend: Backend, params: Module, state: ReadonlyMap<string, HostTensor>, embed: (x: Tensor) => Tensor,
  images: Float32Array, shape: readonly [number, number, number], n: number, batch: number,
): Promise<{ x: Float32Array; d: number }> {
  const per = shape[0] * shape[1] * shape[2];
  const B = Math.min(batch, n);
  const g = trace('probe_features', (t) => ({ features: embed(t.input('images', [B, ...shape])) }), { params });
  const s = await Session.open(backend, g, state, { precision: 'f32' });
  try {
    let out: Float32Array | undefined, d = 0;
    for (let i = 0; i < n; i += B) {
      const m = Math.min(B, n - i);
      const chunk = new Float32Array(B * per);
      chunk.set(images.subarray(i * per, (i + m) * per));
      const f = (await s.run({ images: hostTensor('f32', [B, ...shape], chunk) })).features!;
      d = f.shape[1]!;
      out ??= new Float32Array(n * d);
      out.set((f.data as Float32Array).subarray(0, m * d), i * d);
    }
    return { x: out!, d };
  } finally {
    s.dispose();
  }
}

export interface LinearProbeOptions {
  epochs?: number;
  batch?: number;
  lr?: number;
  weightDecay?: number;
  seed?: number;
}

function standardize(train: FeatureSet, test: FeatureSet): [Float32Array, Float32Array] {
  const { d } = train;
  const mean = new Float64Array(d), sq = new Float64Array(d);
  for (let i = 0; i < train.n; i++) {
    const o = i * d;
    for (let k = 0; k < d; k++) {
      const v = train.x[o + k]!;
      mean[k]! += v;
      sq[k]! += v * v;
    }
  }
  const inv = new Float64Array(d);
  for (let k = 0; k < d; k++) {
    mean[k]! /= train.n;
    inv[k] = 1 / (Math.sqrt(Math.max(sq[k]! / train.n - mean[k]! ** 2, 0)) + 1e-6);
  }
  const apply = (s: FeatureSet) => {
    const out = new Float32Array(s.x.length);
    for (let i = 0; i < s.n; i++) {
      const o = i * d;
      for (let k = 0; k < d; k++) out[o + k] = (s.x[o + k]! - mean[k]!) * inv[k]!;
    }
    return out;
  };
  return [apply(train), apply(test)];
}

/**
 * Logistic-regression probe: trained on `train`, accuracy on `test` (and on `train`). The standardized
 * train features and labels stay resident on the backend (`frozen` inputs); each step feeds only the
 * minibatch's row indices and gathers the rows in the program, and only the last step's loss is read
 * back, so no step waits for the host (a 3136-d token map of 60,000 images is 750 MB: copying its
 * minibatches every step was most of the probe's time).
 */
export async function linearProbe(backend: Backend, train: FeatureSet, test: FeatureSet, classes: number, o: LinearProbeOptions = {}): Promise<{ testAccuracy: number; trainAccuracy: number; finalLoss: number }> {
  if (train.d !== test.d) throw new KilnError(`linear probe: train features have ${train.d} dims, test features ${test.d}`);
  const { d, n } = train;
  const B = Math.max(1, Math.min(o.batch ?? 512, Math.floor(n / 8))), epochs = o.epochs ?? 30, peak = o.lr ?? 1e-2;
  const [xs, xt] = standardize(train, test);
  const layer = new nn.Linear(d, classes, { weightInit: { kind: 'zeros' }, biasInit: { kind: 'zeros' } });
  const fwd = trace('linear_probe', (t) => {
    const idx = t.input('idx', [B], 'i32');
    const x = t.input('features', [n, d], 'f32', 'frozen').take(idx, 0);
    const y = t.input('labels', [n], 'i32', 'frozen').take(idx, 0);
    return { loss: crossEntropy(layer.forward(x), y) };
  }, { params: layer });
  const step = trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay ?? 1e-4 } });
  const init = new Map([...layer.initState(0), ['features', hostTensor('f32', [n, d], xs)], ['labels', hostTensor('i32', [n], train.y)]]);
  const s = await Session.open(backend, step, init, { precision: 'f32' });
  let finalLoss = NaN;
  try {
    const perEpoch = Math.floor(n / B), total = perEpoch * epochs;
    const rand = mulberry32(o.seed ?? 0);
    const order = Int32Array.from({ length: n }, (_, i) => i);
    let k = 0;
    for (let e = 0; e < epochs; e++) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (let b = 0; b < perEpoch; b++, k++) {
        const lr = (peak * (1 + Math.cos((Math.PI * k) / total))) / 2;
        const last = k === total - 1;
        const out = await s.run({ idx: hostTensor('i32', [B], order.slice(b * B, (b + 1) * B)), lr: hostTensor('f32', [], [lr]) }, last ? ['loss'] : []);
        if (last) finalLoss = out.loss!.data[0]!;
      }
    }
    const p = await s.read(['param']);
    const w = Float32Array.from(p.get('weight')!.data as ArrayLike<number>), bias = Float32Array.from(p.get('bias')!.data as ArrayLike<number>);
    const acc = (x: Float32Array, s2: FeatureSet) => {
      let correct = 0;
      for (let i = 0; i < s2.n; i++) {
        const o2 = i * d;
        let best = -Infinity, arg = 0;
        for (let c = 0; c < classes; c++) {
          let z = bias[c]!;
          const wc = c * d;
          for (let q = 0; q < d; q++) z += w[wc + q]! * x[o2 + q]!;
          if (z > best) [best, arg] = [z, c];
        }
        if (arg === s2.y[i]) correct++;
      }
      return correct / s2.n;
    };
    return { testAccuracy: acc(xt, test), trainAccuracy: acc(xs, train), finalLoss };
  } finally {
    s.dispose();
  }
}

/** Rows [start, end) of a feature set. */
export function featureRows(s: FeatureSet, start: number, end: number): FeatureSet {
  return { x: s.x.subarray(start * s.d, end * s.d), y: s.y.subarray(start, end), n: end - start, d: s.d };
}

export interface TunedProbeOptions extends LinearProbeOptions {
  /** Candidate weight decays (AdamW, decoupled); one candidate: no selection, the plain probe. */
  weightDecays?: readonly number[];
  /** Share of the train split held out to choose among them (its last rows; default 1/6). */
  valFraction?: number;
}

export interface TunedProbe {
  testAccuracy: number;
  trainAccuracy: number;
  finalLoss: number;
  /** The chosen weight decay and each candidate's held-out accuracy. */
  weightDecay: number;
  validation: { weightDecay: number; accuracy: number }[];
}

/**
 * The linear probe with its weight decay chosen on held-out train rows: each candidate is trained on
 * the first (1 − valFraction) of `train` and scored on the rest; the best (the smallest on a tie) is
 * retrained on all of `train` and scored on `test`.
 */
export async function tunedLinearProbe(backend: Backend, train: FeatureSet, test: FeatureSet, classes: number, o: TunedProbeOptions = {}): Promise<TunedProbe> {
  const wds = o.weightDecays ?? [o.weightDecay ?? 1e-4];
  if (wds.length === 0) throw new KilnError('linear probe: weightDecays is empty');
  const validation: { weightDecay: number; accuracy: number }[] = [];
  let best = wds[0]!;
  if (wds.length > 1) {
    const f = o.valFraction ?? 1 / 6;
    const cut = train.n - Math.max(1, Math.round(train.n * f));
    if (!(f > 0 && f < 1) || cut < 8) throw new KilnError(`linear probe: valFraction ${f} leaves no train or no held-out rows of ${train.n}`);
    const fit = featureRows(train, 0, cut), held = featureRows(train, cut, train.n);
    let bestAcc = -1;
    for (const wd of wds) {
      const r = await linearProbe(backend, fit, held, classes, { ...o, weightDecay: wd });
      validation.push({ weightDecay: wd, accuracy: r.testAccuracy });
      if (r.testAccuracy > bestAcc || (r.testAccuracy === bestAcc && wd < best)) [bestAcc, best] = [r.testAccuracy, wd];
    }
  }
  const r = await linearProbe(backend, train, test, classes, { ...o, weightDecay: best });
  return { ...r, weightDecay: best, validation };
}

function l2rows(s: FeatureSet): Float32Array {
  const out = new Float32Array(s.x.length);
  for (let i = 0; i < s.n; i++) {
    let n2 = 0;
    for (let k = 0; k < s.d; k++) n2 += s.x[i * s.d + k]! ** 2;
    const inv = 1 / Math.sqrt(n2 + 1e-12);
    for (let k = 0; k < s.d; k++) out[i * s.d + k] = s.x[i * s.d + k]! * inv;
  }
  return out;
}

/** Weighted kNN accuracy (k neighbours, temperature 0.07) of `test` against the `train` bank. */
export async function knnAccuracy(backend: Backend, train: FeatureSet, test: FeatureSet, classes: number, o: { k?: number; queryBatch?: number; temperature?: number } = {}): Promise<number> {
  const k = Math.min(o.k ?? 20, train.n), Q = Math.min(o.queryBatch ?? 500, test.n), T = o.temperature ?? 0.07;
  const { d } = train, N = train.n;
  const bank = l2rows(train), queries = l2rows(test);
  const g = trace('knn', (t) => {
    let sims = t.input('q', [Q, d]).matmul(t.input('bank', [N, d], 'f32', 'frozen').mT); // [Q, N], in [−1, 1]
    const out: Record<string, Tensor> = {};
    for (let i = 0; i < k; i++) {
      const idx = sims.argmax(-1);
      const hot = idx.oneHot(N);
      out[`idx${i}`] = idx;
      out[`sim${i}`] = sims.mul(hot).sum(-1);
      if (i + 1 < k) sims = sims.sub(hot.mul(4)); // below any cosine similarity: never picked again
    }
    return out;
  });
  const s = await Session.open(backend, g, new Map([['bank', hostTensor('f32', [N, d], bank)]]), { precision: 'f32' });
  try {
    let correct = 0;
    for (let i = 0; i < test.n; i += Q) {
      const m = Math.min(Q, test.n - i);
      const q = new Float32Array(Q * d);
      q.set(queries.subarray(i * d, (i + m) * d));
      const out = await s.run({ q: hostTensor('f32', [Q, d], q) });
      for (let r = 0; r < m; r++) {
        const votes = new Float64Array(classes);
        for (let j = 0; j < k; j++) votes[train.y[Number(out[`idx${j}`]!.data[r])]!]! += Math.exp(Number(out[`sim${j}`]!.data[r]) / T);
        let arg = 0;
        for (let c = 1; c < classes; c++) if (votes[c]! > votes[arg]!) arg = c;
        if (arg === test.y[i + r]) correct++;
      }
    }
    return correct / test.n;
  } finally {
    s.dispose();
  }
}

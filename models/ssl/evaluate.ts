/**
 * @file The SSL encoder's evaluation on Fashion-MNIST: linear-probe and kNN accuracy of its frozen
 * features (a readout of `ProbeFeatures`), and the raw-pixel linear probe it must beat.
 * Images are scaled as in training ((v/255 − 0.5)/0.5); `limit` takes the first N of each split (tests).
 */
import type { Backend } from '../../backends/backend.ts';
import type { Tensor } from '../../compiler/dsl/index.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import type { FashionMnist } from '../../runtime/data/fashionMnist.ts';
import type { DinoNetwork } from './dino.ts';
import { type FeatureSet, type TunedProbeOptions, encodeImages, knnAccuracy, tunedLinearProbe } from './probe.ts';

export interface EncoderEvalOptions {
  /** First N train / test images (default: all). */
  trainLimit?: number;
  testLimit?: number;
  /** The probe's options; `weightDecays` with more than one value: chosen on held-out train rows. */
  probe?: TunedProbeOptions;
  k?: number;
  batch?: number;
  /** Skip the kNN evaluation. */
  noKnn?: boolean;
  /** The probed feature (default 'mean'). */
  features?: ProbeFeatures;
}

/**
 * What the probe reads of the frozen encoder: 'mean', the mean-pooled final tokens (what DINO's head
 * sees); 'last4', DINO's linear-evaluation readout (the last 4 blocks' outputs through the final norm,
 * mean-pooled, concatenated: 4·D values); 'tokens', the whole final token map flattened (N·D values:
 * what the FAE adapter sees, and the raw-pixel probe's counterpart, as both keep the spatial layout).
 */
export type ProbeFeatures = 'mean' | 'last4' | 'tokens';
export const PROBE_FEATURES: readonly ProbeFeatures[] = ['mean', 'last4', 'tokens'];

export interface EncoderEval {
  linear_probe: number;
  linear_probe_train: number;
  knn?: number;
  features: number;
  /** The probe's weight decay (chosen on held-out train rows when several were given) and each candidate's held-out accuracy. */
  weight_decay: number;
  validation: { weightDecay: number; accuracy: number }[];
}

function scaled(d: FashionMnist, n: number): Float32Array {
  return Float32Array.from(d.images.subarray(0, n * 784), (v) => (v / 255 - 0.5) / 0.5);
}

function labels(d: FashionMnist, n: number): Int32Array {
  return Int32Array.from(d.labels.subarray(0, n));
}

/** Probe and kNN accuracy of `net`'s embedding (`state`: its parameters by name). */
export async function evaluateEncoder(backend: Backend, net: DinoNetwork, state: ReadonlyMap<string, HostTensor>, train: FashionMnist, test: FashionMnist, o: EncoderEvalOptions = {}): Promise<EncoderEval> {
  const ntr = Math.min(o.trainLimit ?? train.count, train.count), nte = Math.min(o.testLimit ?? test.count, test.count);
  const shape: [number, number, number] = [1, 28, 28];
  const enc = async (d: FashionMnist, n: number): Promise<FeatureSet> => {
    const embed = o.features === 'tokens' ? (x: Tensor) => net.encoder.forward(x).flatten(1)
      : o.features === 'last4' ? (x: Tensor) => net.lastBlocks(x, Math.min(4, net.encoder.blocks.length)) : (x: Tensor) => net.embed(x);
    const f = await encodeImages(backend, net, state, embed, scaled(d, n), shape, n, o.batch ?? 500);
    return { x: f.x, y: labels(d, n), n, d: f.d };
  };
  const ftr = await enc(train, ntr), fte = await enc(test, nte);
  const lp = await tunedLinearProbe(backend, ftr, fte, train.classes.length, o.probe);
  const knn = o.noKnn ? undefined : await knnAccuracy(backend, ftr, fte, train.classes.length, { k: o.k });
  return { linear_probe: lp.testAccuracy, linear_probe_train: lp.trainAccuracy, knn, features: ftr.d, weight_decay: lp.weightDecay, validation: lp.validation };
}

/** The floor: the same linear probe on raw pixels (784 values per image). */
export async function pixelProbe(backend: Backend, train: FashionMnist, test: FashionMnist, o: EncoderEvalOptions = {}): Promise<{ linear_probe: number; linear_probe_train: number; weight_decay: number; validation: { weightDecay: number; accuracy: number }[] }> {
  const ntr = Math.min(o.trainLimit ?? train.count, train.count), nte = Math.min(o.testLimit ?? test.count, test.count);
  const set = (d: FashionMnist, n: number): FeatureSet => ({ x: scaled(d, n), y: labels(d, n), n, d: 784 });
  const lp = await tunedLinearProbe(backend, set(train, ntr), set(test, nte), train.classes.length, o.probe);
  return { linear_probe: lp.testAccuracy, linear_probe_train: lp.trainAccuracy, weight_decay: lp.weightDecay, validation: lp.validation };
}

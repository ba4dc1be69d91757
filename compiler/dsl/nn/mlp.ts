/**
 * @file The transformer MLP, timm's `Mlp`: `fc1` → activation → `fc2` (dropout 0, no hidden norm).
 * Activations: exact erf GELU ('gelu': timm's default nn.GELU, DINOv2) or the tanh approximation
 * ('gelu_tanh': nn.GELU(approximate="tanh"), DiT/SiT/LightningDiT).
 */
import { Module } from '../module.ts';
import type { Tensor } from '../tensor.ts';
import { Linear, type LinearInitOptions } from './linear.ts';

export type MlpActivation = 'gelu' | 'gelu_tanh';

export interface MlpOptions {
  /** Default inFeatures (timm's default). */
  hidden?: number;
  /** Default inFeatures. */
  out?: number;
  /** Default 'gelu' (exact). */
  act?: MlpActivation;
  /** Biases of fc1 and fc2. Default true. */
  bias?: boolean;
  linear?: LinearInitOptions;
}

export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly act: MlpActivation;
  constructor(readonly inFeatures: number, opts: MlpOptions = {}) {
    super();
    const hidden = opts.hidden ?? inFeatures;
    this.act = opts.act ?? 'gelu';
    this.fc1 = new Linear(inFeatures, hidden, { ...opts.linear, bias: opts.bias ?? true });
    this.fc2 = new Linear(hidden, opts.out ?? inFeatures, { ...opts.linear, bias: opts.bias ?? true });
  }
  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x);
    return this.fc2.forward(h.gelu(this.act === 'gelu_tanh' ? 'tanh' : 'none'));
  }
}

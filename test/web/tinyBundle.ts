/**
 * @file The tiny generator the web tests export: a one-block LightningDiT (hidden 32, 4×4×4 latents, 3
 * classes) and the tiny FAE preset's decoders (16×16 RGB), every parameter small seeded noise (the
 * zero-initialized final layers would make v = 0), written as safetensors with the PyTorch keys, plus
 * latent stats in a JSON file, as a user's run would give them; and a tiny class-conditional TarFlow on the same latents.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { faeConfigs } from '../../models/fae/config.ts';
import { LightningDiT, lightningDiTConfig } from '../../models/lightningdit.ts';
import { FaeDecoders } from '../../models/sampling/faeDecoders.ts';
import { gaussianNoise } from '../../models/sampling/timeGrid.ts';
import { TarFlow } from '../../models/tarflow/model.ts';
import { saveSafetensors } from '../../runtime/safetensors.ts';

export const TINY_DIT_SPEC = { kind: 'lightningdit', size: 'S/1', config: { depth: 1, hiddenSize: 32, numHeads: 2, inputSize: 4, inChannels: 4, numClasses: 3 }, fae: { preset: 'tiny' } };

function randomParams(names: ReadonlyArray<[string, { shape: readonly number[] }]>, seed: number, std = 0.2): Map<string, HostTensor> {
  const m = new Map<string, HostTensor>();
  names.forEach(([k, p], i) => m.set(k, hostTensor('f32', p.shape, gaussianNoise(p.shape, seed, i + 1).data.map((v) => v * std))));
  return m;
}

export interface TinyFiles {
  dit: string;
  fae: string;
  stats: string;
  spec: string;
  model: LightningDiT;
  ditParams: Map<string, HostTensor>;
  faeParams: Map<string, HostTensor>;
}

export function writeTinyGenerator(dir: string): TinyFiles {
  const model = new LightningDiT(lightningDiTConfig('S/1', TINY_DIT_SPEC.config));
  const ditParams = randomParams(model.namedParameters(), 11);
  const dit = join(dir, 'dit.safetensors');
  saveSafetensors(dit, ditParams, { format: 'pt' });
  const dec = new FaeDecoders(faeConfigs.tiny());
  const faeParams = randomParams(dec.namedParameters(), 12);
  const fae = join(dir, 'fae.safetensors');
  saveSafetensors(fae, faeParams, { format: 'pt' });
  const stats = join(dir, 'stats.json');
  writeFileSync(stats, JSON.stringify({ mean: [0.1, -0.2, 0, 0.3], std: [1.5, 0.8, 1, 1.2] }));
  return { dit, fae, stats, spec: JSON.stringify(TINY_DIT_SPEC), model, ditParams, faeParams };
}

/** A class-conditional TarFlow on the tiny FAE latents (4×4×4, patch 1: 16 tokens of 4), two blocks of one layer. */
export const TINY_TARFLOW_CONFIG = { inChannels: 4, imgSize: 4, patchSize: 1, channels: 16, headDim: 8, layersPerBlock: [1, 1], numClasses: 3 };

export function writeTinyTarFlow(dir: string): { file: string; spec: string } {
  const flow = new TarFlow(TINY_TARFLOW_CONFIG);
  const file = join(dir, 'tarflow.safetensors');
  // small weights (std 0.02) keep the flow's scales near 1, so samples stay finite
  saveSafetensors(file, randomParams(flow.namedParameters(), 13, 0.02), { format: 'pt' });
  return { file, spec: JSON.stringify({ kind: 'tarflow', config: TINY_TARFLOW_CONFIG, fae: { preset: 'tiny' } }) };
}

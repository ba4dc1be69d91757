/**
 * @file The generator a `kiln sample` / `kiln eval` call means: a checkpoint (a run directory — its
 * newest valid checkpoint —, a checkpoint directory, or a .safetensors file) and the model it holds,
 * described by `--model <json>` or, for checkpoints written by `kiln train`, by the job config in its
 * metadata (model kind/size/config; latent geometry from the job's FAE preset; classes from the data).
 *
 * Model spec JSON: {"kind": "lightningdit", "size": "S/1", "config": {LightningDiTConfig fields}} or
 * {"kind": "tarflow", "config": {TarFlowConfig}}; optional "fae": {"preset", "checkpoint"} for decoding.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../ir/errors.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { type FaeConfig, faeConfigs } from '../models/fae/config.ts';
import { type DiTName, LightningDiT, lightningDiTConfig } from '../models/lightningdit.ts';
import { TarFlow } from '../models/tarflow/model.ts';
import type { TarFlowConfig } from '../models/tarflow/config.ts';
import { loadCheckpoint } from '../runtime/checkpoint.ts';
import { loadLatestCheckpoint } from '../runtime/checkpoints.ts';
import { loadSafetensors } from '../runtime/safetensors.ts';
import { FASHION_MNIST_CLASSES } from '../runtime/data/fashionMnist.ts';

export interface LoadedWeights {
  model: Map<string, HostTensor>;
  ema: Map<string, HostTensor>;
  meta: Record<string, string>;
  from: string;
}

export function loadGeneratorWeights(path: string, warn: (s: string) => void): LoadedWeights {
  if (!existsSync(path)) throw new KilnError(`${path}: no such file or directory`);
  if (statSync(path).isFile()) {
    const st = loadSafetensors(path);
    return { model: st.tensors, ema: new Map(), meta: st.metadata, from: path };
  }
  if (existsSync(join(path, 'model.safetensors'))) {
    const c = loadCheckpoint(path);
    return { model: c.model, ema: c.ema, meta: c.meta, from: path };
  }
  const found = loadLatestCheckpoint(join(path, 'checkpoints'), warn);
  if (!found) throw new KilnError(`${path}: neither a .safetensors file, a checkpoint (model.safetensors) nor a run directory with a valid checkpoint`);
  return { model: found.checkpoint.model, ema: found.checkpoint.ema, meta: found.checkpoint.meta, from: found.dir };
}

export type Generator =
  | { kind: 'lightningdit'; model: LightningDiT; fae?: FaeRef; classNames: string[] }
  | { kind: 'tarflow'; model: TarFlow; fae?: FaeRef; classNames: string[] };

export interface FaeRef {
  config: FaeConfig;
  checkpoint: string | null;
}

interface Spec {
  kind?: unknown;
  size?: unknown;
  config?: Record<string, unknown>;
  fae?: { preset?: string; checkpoint?: string | null };
}

function faeRef(f: Spec['fae']): FaeRef | undefined {
  if (!f) return undefined;
  const preset = (f.preset ?? 'fashionMnist') as keyof typeof faeConfigs;
  if (!faeConfigs[preset]) throw new KilnError(`model spec: fae.preset '${preset}' is not one of ${Object.keys(faeConfigs).join(', ')}`);
  return { config: faeConfigs[preset](), checkpoint: f.checkpoint ?? null };
}

/** The spec from --model (JSON text or a JSON file), else from a training job's config. */
export function generatorSpec(modelOpt: string | undefined, meta: Record<string, string>, from: string): Spec {
  if (modelOpt !== undefined) {
    const text = existsSync(modelOpt) ? readFileSync(modelOpt, 'utf8') : modelOpt;
    try {
      return JSON.parse(text) as Spec;
    } catch (e) {
      throw new KilnError(`--model: not JSON nor a JSON file: ${(e as Error).message}`);
    }
  }
  if (!meta.job_config) throw new KilnError(`${from}: no job config in its metadata; describe the model with --model '{"kind":"lightningdit","size":"S/1","config":{...}}'`);
  const job = JSON.parse(meta.job_config) as { model: { kind: string; size?: string; config?: Record<string, unknown>; latents?: { preset: string; checkpoint: string | null } | null }; data: { kind: string; classes?: number } };
  const m = job.model;
  if (m.kind !== 'lightningdit' && m.kind !== 'tarflow') throw new KilnError(`${from}: a '${m.kind}' checkpoint, not a generator (lightningdit, tarflow)`);
  const fae = faeConfigs[(m.latents?.preset ?? 'fashionMnist') as keyof typeof faeConfigs]();
  const classes = job.data.kind === 'fashion_mnist' ? 10 : job.data.classes;
  if (!classes) throw new KilnError(`${from}: the job's data does not say its class count; describe the model with --model`);
  if (m.kind === 'lightningdit' && m.latents === null) { // pixel space: the job's images, no FAE decoder
    const d = job.data as { size?: number; channels?: number };
    return { kind: m.kind, size: m.size, config: { inputSize: d.size ?? 28, inChannels: d.channels ?? 1, numClasses: classes, ...m.config }, ...(job.data.kind === 'fashion_mnist' ? { classNames: [...FASHION_MNIST_CLASSES] } : {}) } as Spec;
  }
  const geom = m.kind === 'lightningdit'
    ? { inputSize: fae.encoder.grid, inChannels: fae.adapter.latentChannels, numClasses: classes }
    : { inChannels: fae.adapter.latentChannels, imgSize: fae.encoder.grid, patchSize: 1, channels: 128, headDim: 32, layersPerBlock: [2, 2, 2, 2], numClasses: classes };
  return { kind: m.kind, size: m.size, config: { ...geom, ...m.config }, fae: { preset: m.latents?.preset, checkpoint: m.latents?.checkpoint ?? null }, ...(job.data.kind === 'fashion_mnist' ? { classNames: [...FASHION_MNIST_CLASSES] } : {}) } as Spec;
}

export function buildGenerator(spec: Spec): Generator {
  const names = (n: number) => ((spec as { classNames?: string[] }).classNames ?? Array.from({ length: n }, (_, i) => String(i)));
  try {
    if (spec.kind === 'lightningdit') {
      const model = new LightningDiT(lightningDiTConfig((spec.size ?? 'S/1') as DiTName, (spec.config ?? {}) as never));
      return { kind: 'lightningdit', model, fae: faeRef(spec.fae), classNames: names(model.config.numClasses) };
    }
    if (spec.kind === 'tarflow') {
      const model = new TarFlow((spec.config ?? {}) as unknown as TarFlowConfig);
      return { kind: 'tarflow', model, fae: faeRef(spec.fae), classNames: names(model.cfg.numClasses) };
    }
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError(`model spec: ${(e as Error).message}`);
  }
  throw new KilnError(`model spec: kind must be 'lightningdit' or 'tarflow', got ${JSON.stringify(spec.kind)}`);
}

/** Check that `weights` hold every parameter of `model` with its shape. */
export function checkWeights(names: ReadonlyArray<[string, { shape: readonly number[] }]>, weights: ReadonlyMap<string, HostTensor>, from: string): void {
  for (const [k, p] of names) {
    const w = weights.get(k);
    if (!w) throw new KilnError(`${from}: no tensor '${k}' (the model needs ${names.length} tensors; is --model right?)`);
    if (w.shape.join() !== p.shape.join()) throw new KilnError(`${from}: tensor '${k}' is [${w.shape.join(', ')}], the model's is [${p.shape.join(', ')}]`);
  }
}

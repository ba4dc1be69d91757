/**
 * @file `kiln export --target web`: a self-contained folder a static web server can serve.
 *   index.html, assets/      the sampling page (web/page, built with vite)
 *   runtime/kiln-web.js      the browser runtime (web/runtime: plan executables, the Euler/CFG loop, decoding)
 *   bundle.json              the manifest (web/runtime/bundle.ts)
 *   programs/*.json          the compiled programs as WGSL plans (backends/wgsl/plan.ts), one per kernel
 *                            variant: LightningDiT's Euler step unguided and guided, or TarFlow's KV-cached
 *                            block steps (unguided and guided) and unpatchify; and the FAE decoder
 *   weights/*.safetensors    their parameters (PyTorch state_dict keys, f32)
 *   api.ts                   the typed API of the programs and the sampler (generated with ts-morph)
 * The generator and decoders are found as `kiln sample` finds them (cli/generators.ts, cli/faeInputs.ts);
 * programs are compiled in f32 by the same compiler call as compileOn, for WebGPU's default limits.
 * The browser runs one model step per program run and the loop in JS (models/sampling/eulerOde.ts and
 * models/tarflow/reverseLoop.ts, the Node samplers' loops), so steps and guidance are picked in the page.
 * Not exported: Heun / SDE, CFG intervals, TarFlow's denoising step (it needs the gradient program).
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { measuredGemmTile } from '../../backends/wgsl/codegen.ts';
import { WEBGPU_DEFAULT_LIMITS, type WgslPlan, planWgsl } from '../../backends/wgsl/plan.ts';
import { compile } from '../../compiler/compile.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { buildStepGraph, latentShape } from '../../models/flowMatching.ts';
import { blockStepGraph, unpatchifyGraph } from '../../models/tarflow/graphs.ts';
import { reverseSpec } from '../../models/tarflow/sampler.ts';
import { FaeDecoders, faeDecodeGraph, faeDecoderState } from '../../models/sampling/faeDecoders.ts';
import { saveSafetensors } from '../../runtime/safetensors.ts';
import { BUNDLE_FORMAT, type BundleManifest, type KernelVariant, type ProgramRef } from '../../web/runtime/bundle.ts';
import { faeWeightsFrom, latentStatsFor } from '../faeInputs.ts';
import { buildGenerator, checkWeights, generatorSpec, loadGeneratorWeights } from '../generators.ts';
import { buildPage } from './buildPage.ts';

export interface WebExportOptions {
  readonly checkpoint: string;
  readonly out: string;
  readonly model?: string;
  readonly weights: 'ema' | 'model';
  readonly fae?: string;
  readonly latentStats?: string;
  readonly batch: number;
  readonly steps: number;
  readonly shift: number;
  /** The page's default guidance (default: 1 for LightningDiT, conditional only; 0 for TarFlow, none). */
  readonly cfg?: number;
  readonly seed: number;
  readonly range: readonly [number, number];
  /** Skip the vite builds (page and runtime): for tests of the data files alone. */
  readonly noPage?: boolean;
  readonly log?: (s: string) => void;
  readonly warn?: (s: string) => void;
}

const VARIANTS: Record<KernelVariant, Parameters<typeof planWgsl>[3]> = {
  swiftshader: { reductions: 'serial', gemm: 'simple' },
  gpu: { reductions: 'workgroup', gemm: measuredGemmTile },
};

/** The exported program of `graph`: one plan per kernel variant under programs/, parameters in `weightsFile`. */
function exportProgram(out: string, graph: Graph, weightsFile: string): { ref: ProgramRef; plans: WgslPlan[] } {
  const program = compile(graph).program;
  const plans: Partial<Record<KernelVariant, string>> = {};
  const all: WgslPlan[] = [];
  for (const [v, opts] of Object.entries(VARIANTS) as Array<[KernelVariant, (typeof VARIANTS)[KernelVariant]]>) {
    const plan = planWgsl(graph, program, WEBGPU_DEFAULT_LIMITS, opts);
    const file = `programs/${graph.name}.${v}.json`;
    writeFileSync(join(out, file), JSON.stringify(plan));
    plans[v] = file;
    all.push(plan);
  }
  return { ref: { plans: plans as Record<KernelVariant, string>, weights: weightsFile }, plans: all };
}

/** The parameters `graph` reads, from `values`. */
function paramsOf(graph: Graph, values: ReadonlyMap<string, HostTensor>, what: string): Map<string, HostTensor> {
  const m = new Map<string, HostTensor>();
  for (const i of graph.inputs) {
    if (i.kind === 'data' || i.kind === 'state') continue; // state (KV caches) is the sampler's
    const v = values.get(i.name);
    if (!v) throw new KilnError(`${what}: no value for parameter '${i.name}'`);
    m.set(i.name, v);
  }
  return m;
}

function prepareOut(out: string): void {
  if (existsSync(out)) {
    const entries = readdirSync(out);
    if (entries.length && !entries.includes('bundle.json')) throw new KilnError(`--out ${out}: the folder is not empty and is not a Kiln web bundle (no bundle.json); pick a new folder`);
  }
  mkdirSync(out, { recursive: true });
}

export async function exportWebBundle(o: WebExportOptions): Promise<BundleManifest> {
  const log = o.log ?? console.log;
  const warn = o.warn ?? ((s: string) => console.error(`warning: ${s}`));
  if (!Number.isInteger(o.steps) || o.steps < 2) throw new KilnError(`--steps: ${o.steps} must be an integer >= 2`);
  const w = loadGeneratorWeights(o.checkpoint, warn);
  const gen = buildGenerator(generatorSpec(o.model, w.meta, w.from));
  const useEma = o.weights === 'ema' && w.ema.size > 0;
  if (o.weights === 'ema' && !useEma && !w.from.endsWith('.safetensors')) warn(`${w.from} has no EMA weights; using the model weights`);
  const weights = useEma ? w.ema : w.model;
  checkWeights(gen.model.namedParameters(), weights, w.from);
  const params = gen.model.initState(0);
  for (const [k, v] of weights) if (params.has(k)) params.set(k, v);

  // Resolve the FAE side before writing anything, so that a bad --fae leaves no half bundle.
  const faePath = o.fae ?? gen.fae?.checkpoint ?? undefined;
  let decoder: { graph: Graph; state: Map<string, HostTensor> } | undefined;
  let stats = undefined as BundleManifest['latentStats'];
  if (faePath) {
    const cfg = gen.fae?.config;
    if (!cfg) throw new KilnError('--fae: the model spec has no "fae": {"preset": ...}');
    stats = latentStatsFor(o.latentStats, w.meta, w.from, log, warn);
    const d = new FaeDecoders(cfg);
    decoder = { graph: faeDecodeGraph(d, o.batch), state: faeDecoderState(d, faeWeightsFrom(faePath, warn)) };
  }

  if (!o.noPage) {
    prepareOut(o.out);
    await buildPage(o.out);
  } else prepareOut(o.out);
  mkdirSync(join(o.out, 'programs'), { recursive: true });
  mkdirSync(join(o.out, 'weights'), { recursive: true });

  const programs: Array<{ role: string; graph: Graph; plans: WgslPlan[] }> = [];
  const add = (role: string, graph: Graph, file: string) => {
    const r = exportProgram(o.out, graph, file);
    programs.push({ role, graph, plans: r.plans });
    return r.ref;
  };
  const GEN = 'weights/generator.safetensors';
  const genParams = new Map<string, HostTensor>();
  const use = (g: Graph) => {
    for (const [k, v] of paramsOf(g, params, w.from)) genParams.set(k, v);
    return g;
  };
  let refs: { -readonly [K in keyof BundleManifest['programs']]: BundleManifest['programs'][K] };
  let sampler: BundleManifest['sampler'];
  let shape: [number, number, number];
  if (gen.kind === 'lightningdit') {
    const model = gen.model;
    refs = {
      step: add('step', use(buildStepGraph(model, { kind: 'euler', batch: o.batch })), GEN),
      stepCfg: add('stepCfg', use(buildStepGraph(model, { kind: 'euler', batch: o.batch, cfg: {} })), GEN),
    };
    sampler = { method: 'euler', shift: o.shift, defaultSteps: o.steps, defaultCfg: o.cfg ?? 1, defaultSeed: o.seed };
    shape = latentShape(model);
  } else {
    // KV-cached step programs per block; guided copies for class-conditional flows (w = 0 runs the unguided ones, as kiln sample does).
    const flow = gen.model;
    const blockRefs = (guided: boolean) => flow.blocks.map((_, k) => add(`${guided ? 'guidedBlock' : 'block'}${k}`, use(blockStepGraph(flow, k, { batch: o.batch, guided })), GEN));
    refs = { blocks: blockRefs(false), ...(flow.cfg.numClasses > 0 ? { guidedBlocks: blockRefs(true) } : {}), unpatchify: add('unpatchify', use(unpatchifyGraph(flow, { batch: o.batch })), GEN) };
    sampler = { method: 'reverse', shift: 0, defaultSteps: o.steps, defaultCfg: o.cfg ?? 0, defaultSeed: o.seed, reverse: reverseSpec(flow) };
    shape = [flow.cfg.inChannels, flow.cfg.imgSize, flow.cfg.imgSize];
  }
  saveSafetensors(join(o.out, GEN), genParams, { format: 'pt', source: w.from });
  const [C, H, W] = shape;
  let imageShape: [number, number, number] = [C >= 3 ? 3 : 1, H, W];
  if (decoder && faePath) {
    saveSafetensors(join(o.out, 'weights/fae.safetensors'), paramsOf(decoder.graph, decoder.state, faePath), { format: 'pt', source: faePath });
    refs.decode = add('decode', decoder.graph, 'weights/fae.safetensors');
    const img = decoder.graph.typeOf(decoder.graph.output('images')!.id).shape;
    imageShape = [img[1]!, img[2]!, img[3]!];
  } else warn('no FAE decoder (--fae): the page shows the latents\' first channels');

  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    name: `${gen.kind} from ${w.from}`,
    source: w.from,
    generator: { kind: gen.kind, batch: o.batch, latentShape: [C, H, W], classNames: gen.classNames },
    sampler,
    programs: refs,
    ...(stats ? { latentStats: { mean: Array.from(stats.mean), std: Array.from(stats.std) } } : {}),
    imageShape,
    range: [o.range[0], o.range[1]],
  };
  writeFileSync(join(o.out, 'bundle.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // ts-morph is loaded only here, not whenever the CLI starts (the GPU machine's pack carries no ts-morph).
  const { writeApiModule } = await import('./apiModule.ts');
  writeApiModule(join(o.out, 'api.ts'), manifest, programs.map((p) => ({ role: p.role, plan: p.plans[0]! })));
  const kernels = programs.map((p) => `${p.graph.name} ${p.plans[0]!.dispatches.length}`).join(', ');
  log(`exported ${manifest.name} to ${o.out}: programs ${kernels} dispatches; batch ${o.batch}, ${manifest.generator.classNames.length} classes, images [${imageShape.join(', ')}]`);
  return manifest;
}

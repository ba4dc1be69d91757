/**
 * @file The browser runtime of a web bundle: opens a WebGPU device (navigator.gpu, or any GPU object
 * passed in, e.g. Dawn's in Node), loads bundle.json, the WGSL plans of the kernel variant for the
 * adapter (SwiftShader → 'swiftshader', else 'gpu') and their safetensors weights, and samples:
 * Philox noise for the seed; LightningDiT: the Euler ODE over the exported one-step programs with
 * classifier-free guidance (models/sampling/eulerOde.ts: the loop the Node sampler runs); TarFlow: the
 * KV-cached reverse pass over the per-block step programs (models/tarflow/reverseLoop.ts, the Node
 * sampler's loop) and the unpatchify program; then the latent stats undone and the FAE decoders. No Node imports (test/web/browserRuntime.test.ts walks the import graph).
 */
import { type WgslPlan } from '../../backends/wgsl/plan.ts';
import { WgslPlanExecutable, planLimitShortfall } from '../../backends/wgsl/planExecutable.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { eulerOde, eulerScaleAt } from '../../models/sampling/eulerOde.ts';
import type { GuidanceSchedule } from '../../models/sampling/guidance.ts';
import { denormalizeLatents } from '../../models/sampling/latentStats.ts';
import { gaussianNoise, samplingGrid } from '../../models/sampling/timeGrid.ts';
import { type GraphRunner, reverseTokens } from '../../models/tarflow/reverseLoop.ts';
import { BUNDLE_FORMAT, type BundleManifest, type KernelVariant, type ProgramRef } from './bundle.ts';
import { parseSafetensors } from './safetensors.ts';

/** Reads a bundle file (a path relative to the bundle) as bytes. */
export type BundleLoader = (path: string) => Promise<ArrayBuffer>;

export interface OpenOptions {
  /** The WebGPU entry point (default navigator.gpu). */
  readonly gpu?: GPU;
  /** How bundle files are read (default: fetch relative to `base`). */
  readonly load?: BundleLoader;
  /** Force a kernel variant (default: 'swiftshader' on SwiftShader adapters, else 'gpu'). */
  readonly variant?: KernelVariant;
}

export interface SampleRequest {
  /** One label per sample (length = the bundle's batch), or one label for every sample. */
  readonly labels: number | readonly number[];
  /** LightningDiT: ODE grid points N (N − 1 Euler steps), >= 2 (TarFlow: ignored). */
  readonly steps: number;
  /** LightningDiT: classifier-free guidance scale w (1 = conditional only); TarFlow: guidance weight w (0 = none). */
  readonly cfg: number;
  readonly seed: number;
  /** Called after each model step and after decoding: done of total units of work. */
  readonly onProgress?: (done: number, total: number, phase: 'step' | 'block' | 'decode') => void;
}

export interface SampleResult {
  readonly latents: HostTensor;
  /** [B, channels, H, W] in the bundle's range. */
  readonly images: HostTensor;
  readonly labels: readonly number[];
  readonly ms: number;
}

/** The kernel variant WgslExecutable's defaultKernels would pick for this adapter. */
export function variantFor(info: { vendor?: string; architecture?: string; device?: string; description?: string }): KernelVariant {
  return /swiftshader/i.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ')) ? 'swiftshader' : 'gpu';
}

function fetchLoader(base: string | URL): BundleLoader {
  return async (path) => {
    const url = new URL(path, base);
    const r = await fetch(url);
    if (!r.ok) throw new KilnError(`bundle: ${url.href}: HTTP ${r.status} ${r.statusText}`);
    return r.arrayBuffer();
  };
}

/** A plan executable as the TarFlow loop's GraphRunner. */
const runner = (e: WgslPlanExecutable): GraphRunner => ({ write: async (n, v) => e.write(n, v), run: (f, w) => e.run(f, w), dispose: () => e.dispose() });

export class KilnWebSampler {
  private constructor(
    readonly manifest: BundleManifest,
    readonly device: GPUDevice,
    readonly adapterInfo: string,
    readonly variant: KernelVariant,
    private readonly exes: ReadonlyMap<string, WgslPlanExecutable>,
  ) {}

  /** Open the bundle at `base` (a URL of its folder). Throws a KilnError naming what is missing (no WebGPU, no adapter, a file). */
  static async open(base: string | URL, o: OpenOptions = {}): Promise<KilnWebSampler> {
    const gpu = o.gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
    if (!gpu) throw new KilnError('WebGPU is not available in this browser (navigator.gpu is missing): use a recent Chrome, Edge or Firefox with WebGPU enabled, over https or localhost');
    const load = o.load ?? fetchLoader(base);
    const json = async <T>(path: string) => JSON.parse(new TextDecoder().decode(await load(path))) as T;
    const manifest = await json<BundleManifest>('bundle.json');
    if (manifest.format !== BUNDLE_FORMAT) throw new KilnError(`bundle.json: format '${String(manifest.format)}', this runtime reads '${BUNDLE_FORMAT}'`);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new KilnError('WebGPU is present but no adapter was found (the GPU is blocklisted or disabled)');
    const variant = o.variant ?? variantFor(adapter.info);
    const P = manifest.programs;
    const refs: Array<[string, ProgramRef]> = [];
    const add = (role: string, r: ProgramRef | undefined) => r && refs.push([role, r]);
    add('step', P.step);
    add('stepCfg', P.stepCfg);
    P.blocks?.forEach((r, k) => add(`block${k}`, r));
    P.guidedBlocks?.forEach((r, k) => add(`guidedBlock${k}`, r));
    add('unpatchify', P.unpatchify);
    add('decode', P.decode);
    const plans = await Promise.all(refs.map(([, r]) => json<WgslPlan>(r.plans[variant])));
    const requiredLimits: Record<string, number> = {};
    for (const p of plans) {
      const short = planLimitShortfall(p, adapter.limits as unknown as Record<string, unknown>);
      if (short) throw new KilnError(`this GPU is too small for the bundle's program ${p.name} (${short})`);
      for (const [k, v] of Object.entries(p.limits)) requiredLimits[k] = Math.max(requiredLimits[k] ?? 0, v);
    }
    const device = await adapter.requestDevice({ requiredLimits });
    const weightFiles = [...new Set(refs.map(([, r]) => r.weights))];
    const weights = new Map(await Promise.all(weightFiles.map(async (f) => [f, parseSafetensors(await load(f), f)] as const)));
    const exes = await Promise.all(plans.map(async (p, i) => {
      const e = await WgslPlanExecutable.create(device, p);
      const file = refs[i]![1].weights;
      const w = weights.get(file)!;
      for (const t of e.inputs) {
        if (t.kind === 'data' || t.kind === 'state') continue; // state (e.g. KV caches) is written by the sampler
        const v = w.get(t.name);
        if (!v) throw new KilnError(`bundle: ${file} has no tensor '${t.name}' (program ${p.name})`);
        e.write(t.name, v);
      }
      return [refs[i]![0], e] as const;
    }));
    const info = adapter.info;
    const adapterInfo = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter';
    return new KilnWebSampler(manifest, device, adapterInfo, variant, new Map(exes));
  }

  private exe(role: string): WgslPlanExecutable {
    const e = this.exes.get(role);
    if (!e) throw new KilnError(`bundle: no program '${role}'`);
    return e;
  }

  /** Sample one batch: noise from `seed`; LightningDiT: `steps` grid points with the bundle's shift and CFG scale `cfg`; TarFlow: guidance weight `cfg`; then decode. */
  async sample(r: SampleRequest): Promise<SampleResult> {
    const t0 = performance.now();
    const m = this.manifest;
    const B = m.generator.batch;
    const K = m.generator.classNames.length;
    const labels = K === 0 ? Array.from({ length: B }, () => -1) : typeof r.labels === 'number' ? Array.from({ length: B }, () => r.labels as number) : [...r.labels];
    if (labels.length !== B) throw new KilnError(`sample: ${labels.length} labels, the bundle samples ${B} at a time`);
    if (K > 0) for (const l of labels) if (!Number.isInteger(l) || l < 0 || l >= K) throw new KilnError(`sample: class ${l} is out of range (the model has ${K} classes)`);
    if (!Number.isFinite(r.cfg)) throw new KilnError(`sample: guidance scale ${r.cfg} is not a number`);
    const y = hostTensor('i32', [B], labels);
    const decoder = this.exes.get('decode');
    let latents: HostTensor;
    let total = decoder ? 1 : 0;
    if (m.generator.kind === 'tarflow') {
      const spec = m.sampler.reverse!;
      if (r.cfg !== 0 && !m.programs.guidedBlocks) throw new KilnError('sample: this flow is not class-conditional; guidance must be 0');
      const guided = r.cfg !== 0;
      total += spec.blocks.length;
      const blocks = spec.blocks.map((_, k) => runner(this.exe(`${guided ? 'guidedBlock' : 'block'}${k}`)));
      const noise = gaussianNoise([B, spec.tokens, spec.tokenChannels], r.seed);
      const tokens = await reverseTokens(spec, blocks, noise, { batch: B, guided, kvCache: true, y: K > 0 ? y : undefined, guidance: r.cfg, onBlock: (d) => r.onProgress?.(d, total, 'block') });
      latents = (await this.exe('unpatchify').run({ tokens }, ['x'])).x!;
    } else {
      if (!Number.isInteger(r.steps) || r.steps < 2) throw new KilnError(`sample: steps ${r.steps} must be an integer >= 2`);
      const guidance: GuidanceSchedule = { kind: 'constant', scale: r.cfg };
      const z = gaussianNoise([B, ...m.generator.latentShape], r.seed);
      total += r.steps - 1;
      const [step, stepCfg] = [this.exe('step'), this.exe('stepCfg')];
      latents = await eulerOde(z, y, samplingGrid(r.steps, m.sampler.shift), eulerScaleAt(guidance), async (feeds, scale) => {
        if (scale === undefined) return (await step.run({ ...feeds }, ['x'])).x!;
        return (await stepCfg.run({ ...feeds, cfg_scale: hostTensor('f32', [], [scale]) }, ['x'])).x!;
      }, (done) => r.onProgress?.(done, total, 'step'));
    }
    let images: HostTensor;
    if (decoder) {
      images = (await decoder.run({ latents: m.latentStats ? denormalizeLatents(latents, m.latentStats) : latents }, ['images'])).images!;
      r.onProgress?.(total, total, 'decode');
    } else images = firstChannels(latents, m.imageShape[0]);
    return { latents, images, labels, ms: performance.now() - t0 };
  }

  dispose(): void {
    for (const e of this.exes.values()) e.dispose();
    this.device.destroy();
  }
}

/** The first `keep` channels of [B, C, H, W] (what `kiln sample` shows without an FAE decoder). */
export function firstChannels(x: HostTensor, keep: number): HostTensor {
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const d = new Float32Array(B * keep * H * W);
  for (let b = 0; b < B; b++) d.set((x.data as Float32Array).subarray(b * C * H * W, (b * C + keep) * H * W), b * keep * H * W);
  return hostTensor('f32', [B, keep, H, W], d);
}

/** RGBA bytes of image b of [B, channels, H, W] (1 channel: grey; 3: RGB), values mapped from `range` as runtime/train/imageGrid.ts maps them. */
export function imageRgba(images: HostTensor, b: number, range: readonly [number, number]): Uint8ClampedArray<ArrayBuffer> {
  const [, C, H, W] = images.shape as [number, number, number, number];
  const [lo, hi] = range;
  const out = new Uint8ClampedArray(H * W * 4);
  const px = (v: number) => Math.max(0, Math.min(255, Math.round(((v - lo) / (hi - lo)) * 255)));
  for (let i = 0; i < H * W; i++) {
    for (let c = 0; c < 3; c++) out[i * 4 + c] = px(Number(images.data[(b * C + (C === 1 ? 0 : c)) * H * W + i]));
    out[i * 4 + 3] = 255;
  }
  return out;
}

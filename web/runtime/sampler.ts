/**
 * @file The browser runtime of a web bundle: opens a WebGPU device (navigator.gpu, or any GPU object
 * passed in, e.g. Dawn's in Node), loads bundle.json, the WGSL plans of the kernel variant for the
 * adapter (SwiftShader → 'swiftshader', else 'gpu') and their safetensors weights, and samples:
 * Philox noise for the seed, the Euler ODE over the exported one-step programs with classifier-free
 * guidance (models/sampling/eulerOde.ts: the loop the Node sampler runs), the latent stats undone, and
 * the FAE decoders. No Node imports (test/web/browserRuntime.test.ts walks the import graph).
 */
import { type WgslPlan } from '../../backends/wgsl/plan.ts';
import { WgslPlanExecutable, planLimitShortfall } from '../../backends/wgsl/planExecutable.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { eulerOde, eulerScaleAt } from '../../models/sampling/eulerOde.ts';
import type { GuidanceSchedule } from '../../models/sampling/guidance.ts';
import { denormalizeLatents } from '../../models/sampling/latentStats.ts';
import { gaussianNoise, samplingGrid } from '../../models/sampling/timeGrid.ts';
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
  /** ODE grid points N (N − 1 Euler steps), >= 2. */
  readonly steps: number;
  /** Classifier-free guidance scale w (1 = conditional only). */
  readonly cfg: number;
  readonly seed: number;
  /** Called after each model step and after decoding: done of total units of work. */
  readonly onProgress?: (done: number, total: number, phase: 'step' | 'decode') => void;
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

export class KilnWebSampler {
  private constructor(
    readonly manifest: BundleManifest,
    readonly device: GPUDevice,
    readonly adapterInfo: string,
    readonly variant: KernelVariant,
    private readonly step: WgslPlanExecutable,
    private readonly stepCfg: WgslPlanExecutable,
    private readonly decoder: WgslPlanExecutable | undefined,
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
    const refs: ProgramRef[] = [manifest.programs.step, manifest.programs.stepCfg, ...(manifest.programs.decode ? [manifest.programs.decode] : [])];
    const plans = await Promise.all(refs.map((r) => json<WgslPlan>(r.plans[variant])));
    const requiredLimits: Record<string, number> = {};
    for (const p of plans) {
      const short = planLimitShortfall(p, adapter.limits as unknown as Record<string, unknown>);
      if (short) throw new KilnError(`this GPU is too small for the bundle's program ${p.name} (${short})`);
      for (const [k, v] of Object.entries(p.limits)) requiredLimits[k] = Math.max(requiredLimits[k] ?? 0, v);
    }
    const device = await adapter.requestDevice({ requiredLimits });
    const weightFiles = [...new Set(refs.map((r) => r.weights))];
    const weights = new Map(await Promise.all(weightFiles.map(async (f) => [f, parseSafetensors(await load(f), f)] as const)));
    const exes = await Promise.all(plans.map(async (p, i) => {
      const e = await WgslPlanExecutable.create(device, p);
      const w = weights.get(refs[i]!.weights)!;
      for (const t of e.inputs) {
        if (t.kind === 'data') continue;
        const v = w.get(t.name);
        if (!v) throw new KilnError(`bundle: ${refs[i]!.weights} has no tensor '${t.name}' (program ${p.name})`);
        e.write(t.name, v);
      }
      return e;
    }));
    const info = adapter.info;
    const adapterInfo = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter';
    return new KilnWebSampler(manifest, device, adapterInfo, variant, exes[0]!, exes[1]!, exes[2]);
  }

  /** Sample one batch: noise from `seed`, `steps` grid points with the bundle's shift, CFG scale `cfg`, then decode. */
  async sample(r: SampleRequest): Promise<SampleResult> {
    const t0 = performance.now();
    const m = this.manifest;
    const B = m.generator.batch;
    const labels = typeof r.labels === 'number' ? Array.from({ length: B }, () => r.labels as number) : [...r.labels];
    if (labels.length !== B) throw new KilnError(`sample: ${labels.length} labels, the bundle samples ${B} at a time`);
    const K = m.generator.classNames.length;
    for (const l of labels) if (!Number.isInteger(l) || l < 0 || l >= K) throw new KilnError(`sample: class ${l} is out of range (the model has ${K} classes)`);
    if (!Number.isInteger(r.steps) || r.steps < 2) throw new KilnError(`sample: steps ${r.steps} must be an integer >= 2`);
    if (!Number.isFinite(r.cfg)) throw new KilnError(`sample: guidance scale ${r.cfg} is not a number`);
    const guidance: GuidanceSchedule = { kind: 'constant', scale: r.cfg };
    const y = hostTensor('i32', [B], labels);
    const z = gaussianNoise([B, ...m.generator.latentShape], r.seed);
    const total = r.steps - 1 + (this.decoder ? 1 : 0);
    const latents = await eulerOde(z, y, samplingGrid(r.steps, m.sampler.shift), eulerScaleAt(guidance), async (feeds, scale) => {
      if (scale === undefined) return (await this.step.run({ ...feeds }, ['x'])).x!;
      return (await this.stepCfg.run({ ...feeds, cfg_scale: hostTensor('f32', [], [scale]) }, ['x'])).x!;
    }, (done) => r.onProgress?.(done, total, 'step'));
    let images: HostTensor;
    if (this.decoder) {
      images = (await this.decoder.run({ latents: m.latentStats ? denormalizeLatents(latents, m.latentStats) : latents }, ['images'])).images!;
      r.onProgress?.(total, total, 'decode');
    } else images = firstChannels(latents, m.imageShape[0]);
    return { latents, images, labels, ms: performance.now() - t0 };
  }

  dispose(): void {
    this.step.dispose();
    this.stepCfg.dispose();
    this.decoder?.dispose();
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

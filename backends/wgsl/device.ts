/**
 * @file WebGPU device creation: the only module of the WGSL backend that knows where WebGPU comes from.
 * In a browser it uses `navigator.gpu`; in Node it loads Dawn through the npm package `webgpu` (with
 * the Dawn toggles of ../shared/DESIGN.md: f16 on NVIDIA's Vulkan driver, unsafe APIs for subgroup
 * matrices, no timestamp quantization) and installs its globals (GPUBufferUsage, ...). The adapter's
 * optional features Kiln can use are requested when offered, and its maximum limits (or the caller's
 * lower binding limits, to test browser defaults). Everything below this module is plain WebGPU.
 * Which Vulkan driver Dawn uses is configuration read at the edge: VK_ICD_FILENAMES (vitest.config.ts
 * points it at SwiftShader when no driver is named; `kiln train --backend wgsl` on a machine without a
 * GPU needs it set, as the no-adapter error says).
 *
 * Robustness (Tint's bounds clamps on every index, Dawn's default): off by default in Node on a real GPU
 * adapter (Dawn's `disable_robustness`; 2.5x on the f16 GEMM at 8192³, bench/RESULTS.md), on where the
 * adapter is a CPU driver (SwiftShader: CI) and in browsers (which cannot turn it off).
 * KILN_WGSL_ROBUSTNESS=on|off (Node) or the `robustness` option choose it. Safe because every kernel
 * Kiln generates indexes in bounds by construction: docs/wgsl.md "Robustness" says how each kind does.
 */
import { KilnError } from '../../ir/errors.ts';

export interface WgslDeviceOptions {
  /** Request at most this many storage buffers per shader stage (browsers guarantee 8). */
  readonly maxStorageBuffersPerShaderStage?: number;
  /** Pretend bindings can be at most this large (tests the window splitting). */
  readonly maxStorageBufferBindingSize?: number;
  /** Pretend workgroup memory is at most this large (tests the smaller attention tiles). */
  readonly maxComputeWorkgroupStorageSize?: number;
  /**
   * Tint's bounds clamps on every array index: false: Dawn's `disable_robustness` toggle (Node only;
   * browsers always clamp). Unset: KILN_WGSL_ROBUSTNESS (on|off) where set, else off on a real GPU
   * adapter and on on a CPU adapter (SwiftShader) — see wgslRobustness and the file comment.
   */
  readonly robustness?: boolean;
}

export interface WgslDevice {
  readonly device: GPUDevice;
  readonly adapterInfo: string;
  readonly features: ReadonlySet<string>;
  readonly limits: {
    readonly maxStorageBufferBindingSize: number;
    readonly maxStorageBuffersPerShaderStage: number;
    readonly maxComputeWorkgroupsPerDimension: number;
    readonly maxComputeInvocationsPerWorkgroup: number;
    readonly maxComputeWorkgroupStorageSize: number;
    readonly maxBufferSize: number;
  };
  /**
   * The f16 subgroup-matrix GEMM can run (backends/wgsl/gemmSubgroupMatrix.ts): the device has
   * chromium-experimental-subgroup-matrix, shader-f16 and subgroups, and the adapter lists the
   * f16×f16→f32 16×16×16 configuration (where it lists its configurations at all) with 32-lane subgroups.
   */
  readonly subgroupMatrixF16: boolean;
  /** The adapter's smallest subgroup size where it has the 'subgroups' feature and says (undefined otherwise). */
  readonly subgroupMinSize?: number;
  /** Whether shaders run with Tint's bounds clamps (always true in a browser; see wgslRobustness). */
  readonly robustness: boolean;
}

/**
 * Whether a Node device runs with Tint's bounds clamps: the option where given (runtime/backends.ts sets
 * it from KILN_WGSL_ROBUSTNESS=on|off), else on exactly where the adapter is a CPU driver (SwiftShader:
 * slow anyway, and the CI's oracle runs keep Dawn's default there) and off on a real GPU (for speed).
 */
export function wgslRobustness(option: boolean | undefined, cpuAdapter: boolean): boolean {
  return option ?? cpuAdapter;
}

/** A CPU (software) adapter: SwiftShader, or whatever the adapter calls a fallback adapter. */
export function isCpuAdapter(info: GPUAdapterInfo): boolean {
  const i = info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  return Boolean(i.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe/i.test([info.vendor, info.architecture, info.device, info.description].join(' '));
}

export const DAWN_TOGGLES = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia', 'disable-dawn-features=timestamp_quantization'];
const WANTED_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query'];

/** The Dawn instance flags for a device: DAWN_TOGGLES, plus disable_robustness when robustness is off. */
export function dawnFlags(robustness = true): string[] {
  return robustness ? DAWN_TOGGLES : [DAWN_TOGGLES[0] + ',disable_robustness', ...DAWN_TOGGLES.slice(1)];
}

/** See WgslDevice.subgroupMatrixF16. */
export function hasSubgroupMatrixF16(features: ReadonlySet<string> | GPUSupportedFeatures, info: GPUAdapterInfo): boolean {
  if (!['chromium-experimental-subgroup-matrix', 'shader-f16', 'subgroups'].every((f) => features.has(f))) return false;
  const i = info as unknown as { subgroupMaxSize?: number; subgroupMatrixConfigs?: ReadonlyArray<Record<string, unknown>> };
  if (i.subgroupMaxSize !== undefined && i.subgroupMaxSize !== 32) return false;
  const configs = i.subgroupMatrixConfigs;
  if (!configs) return true;
  return configs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && (c.M ?? 16) === 16 && (c.N ?? 16) === 16 && (c.K ?? 16) === 16);
}

const nodeGpus = new Map<string, Promise<GPU>>();

const browserGpu = (): GPU | undefined => (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;

async function gpuEntry(robustness: boolean): Promise<{ gpu: GPU; where: string }> {
  const nav = browserGpu();
  if (nav) return { gpu: nav, where: 'navigator.gpu' };
  const flags = dawnFlags(robustness);
  let g = nodeGpus.get(flags.join(' '));
  if (!g) {
    g = (async () => {
      const mod = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: object };
      Object.assign(globalThis, mod.globals);
      return mod.create(flags);
    })();
    nodeGpus.set(flags.join(' '), g);
  }
  return { gpu: await g, where: "Dawn through the npm package 'webgpu'" };
}

const devices = new Map<string, Promise<WgslDevice>>();

/** The shared device for `opts` (one per distinct option set per process). */
export function wgslDevice(opts: WgslDeviceOptions = {}): Promise<WgslDevice> {
  const key = JSON.stringify(opts);
  let d = devices.get(key);
  if (!d) {
    d = createDevice(opts);
    devices.set(key, d);
    d.catch(() => devices.delete(key));
  }
  return d;
}

async function createDevice(opts: WgslDeviceOptions): Promise<WgslDevice> {
  // Node: the adapter is found with Dawn's defaults (robustness on); where robustness is to be off, the
  // same adapter again from an instance with disable_robustness (an instance flag in Dawn).
  let { gpu, where } = await gpuEntry(opts.robustness ?? true);
  let adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  let robustness = true;
  if (adapter && !browserGpu() && !wgslRobustness(opts.robustness, isCpuAdapter(adapter.info))) {
    robustness = false;
    if (opts.robustness !== false) {
      ({ gpu, where } = await gpuEntry(false));
      adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    }
  }
  if (!adapter) {
    throw new KilnError(
      `wgsl: no WebGPU adapter: tried ${where} (in Node, Dawn's Vulkan backend finds drivers through VK_ICD_FILENAMES / VK_DRIVER_FILES). Without a GPU, install SwiftShader's Vulkan driver (Debian: ` +
        `sudo apt-get install chromium libvulkan1) and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`,
    );
  }
  const features = [...adapter.features].filter((f) => WANTED_FEATURES.includes(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  if (opts.maxStorageBuffersPerShaderStage !== undefined)
    requiredLimits.maxStorageBuffersPerShaderStage = Math.min(opts.maxStorageBuffersPerShaderStage, requiredLimits.maxStorageBuffersPerShaderStage ?? 8);
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') console.error(`wgsl: device lost: ${info.message}`);
  });
  const info = adapter.info;
  const L = device.limits;
  return {
    device,
    adapterInfo: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter',
    features: new Set([...device.features]),
    limits: {
      maxStorageBufferBindingSize: Math.min(L.maxStorageBufferBindingSize, opts.maxStorageBufferBindingSize ?? Infinity),
      maxStorageBuffersPerShaderStage: Math.min(L.maxStorageBuffersPerShaderStage, opts.maxStorageBuffersPerShaderStage ?? Infinity),
      maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupStorageSize: Math.min(L.maxComputeWorkgroupStorageSize, opts.maxComputeWorkgroupStorageSize ?? Infinity),
      maxBufferSize: L.maxBufferSize,
    },
    subgroupMatrixF16: hasSubgroupMatrixF16(device.features, info),
    robustness,
    ...(device.features.has('subgroups') && typeof (info as { subgroupMinSize?: number }).subgroupMinSize === 'number' ? { subgroupMinSize: (info as { subgroupMinSize?: number }).subgroupMinSize } : {}),
  };
}

/**
 * @file The manifest of a web bundle (`kiln export --target web`, bundle.json): which generator, its
 * compiled programs (WGSL plans, one per kernel variant), their weights files, the sampler's settings,
 * the FAE decoder and the latent stats. Types only plus the format tag: shared by the exporter (cli/web)
 * and the browser runtime (web/runtime/sampler.ts).
 */
import type { LatentStats } from '../../models/sampling/latentStats.ts';

export const BUNDLE_FORMAT = 'kiln-web-bundle/1';

/** Kernel variants: 'swiftshader' (serial reductions, one invocation per matmul output: SwiftShader compiles workgroup barriers slowly) and 'gpu'. */
export type KernelVariant = 'gpu' | 'swiftshader';

export interface ProgramRef {
  /** Plan JSON file per kernel variant, relative to the bundle. */
  readonly plans: Readonly<Record<KernelVariant, string>>;
  /** The safetensors file holding the program's parameters, relative to the bundle. */
  readonly weights: string;
}

export interface BundleManifest {
  readonly format: typeof BUNDLE_FORMAT;
  readonly name: string;
  readonly source: string;
  readonly generator: {
    readonly kind: 'lightningdit';
    /** Samples per run (the programs' static batch). */
    readonly batch: number;
    /** [C, H, W] of one latent sample. */
    readonly latentShape: readonly [number, number, number];
    readonly classNames: readonly string[];
  };
  readonly sampler: {
    readonly method: 'euler';
    readonly shift: number;
    readonly defaultSteps: number;
    readonly defaultCfg: number;
    readonly defaultSeed: number;
  };
  /** The Euler step, unguided (`step`) and guided (`stepCfg`, input cfg_scale); `decode`: FAE latents → images. */
  readonly programs: { readonly step: ProgramRef; readonly stepCfg: ProgramRef; readonly decode?: ProgramRef };
  readonly latentStats?: LatentStats;
  /** [channels, H, W] of one image (decoded, or the latent channels shown when there is no decoder). */
  readonly imageShape: readonly [number, number, number];
  /** Values mapped to black..white. */
  readonly range: readonly [number, number];
}

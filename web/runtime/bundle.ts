/**
 * @file The manifest of a web bundle (`kiln export --target web`, bundle.json): which generator, its
 * compiled programs (WGSL plans, one per kernel variant), their weights files, the sampler's settings,
 * the FAE decoder and the latent stats. Types only plus the format tag: shared by the exporter (cli/web)
 * and the browser runtime (web/runtime/sampler.ts).
 */
import type { LatentStats } from '../../models/sampling/latentStats.ts';
import type { ReverseSpec } from '../../models/tarflow/reverseLoop.ts';

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
    readonly kind: 'lightningdit' | 'tarflow';
    /** Samples per run (the programs' static batch). */
    readonly batch: number;
    /** [C, H, W] of one latent sample. */
    readonly latentShape: readonly [number, number, number];
    readonly classNames: readonly string[];
  };
  readonly sampler: {
    /** LightningDiT: the Euler ODE with CFG; TarFlow: the KV-cached reverse pass with guidance weight. */
    readonly method: 'euler' | 'reverse';
    /** Euler: the timestep shift of the grid. */
    readonly shift: number;
    readonly defaultSteps: number;
    readonly defaultCfg: number;
    readonly defaultSeed: number;
    /** TarFlow: the flow's geometry the reverse loop needs. */
    readonly reverse?: ReverseSpec;
  };
  /**
   * LightningDiT: the Euler step, unguided (`step`) and guided (`stepCfg`, input cfg_scale). TarFlow: one
   * KV-cached step program per block, unguided (`blocks`) and guided (`guidedBlocks`, input guidance;
   * class-conditional flows), and `unpatchify` (tokens → latents). `decode`: FAE latents → images.
   */
  readonly programs: {
    readonly step?: ProgramRef;
    readonly stepCfg?: ProgramRef;
    readonly blocks?: readonly ProgramRef[];
    readonly guidedBlocks?: readonly ProgramRef[];
    readonly unpatchify?: ProgramRef;
    readonly decode?: ProgramRef;
  };
  readonly latentStats?: LatentStats;
  /** [channels, H, W] of one image (decoded, or the latent channels shown when there is no decoder). */
  readonly imageShape: readonly [number, number, number];
  /** Values mapped to black..white. */
  readonly range: readonly [number, number];
}

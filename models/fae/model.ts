/**
 * @file The FAE system as one Module, so its parameters carry the PyTorch reference's state_dict
 * keys: `encoder.*` (frozen representation encoder), `adapter.*`, `feature_decoder.*`,
 * `pixel_decoder.*`, `discriminator.*` (absent when the config has no GAN term), in that order.
 *
 * Each training stage only touches some of these; `faeScope` builds a Module holding just those
 * parts (same keys), so a stage's graph only has the parameters it uses as inputs.
 */
import { Module } from '../../compiler/dsl/index.ts';
import { type FaeConfig, FaeConfigError, faeImageSize, validateFaeConfig } from './config.ts';
import { FaeAdapter } from './adapter.ts';
import { PatchDiscriminator } from './discriminator.ts';
import type { FeatureEncoderModule } from './encoder.ts';
import { FeatureDecoder } from './featureDecoder.ts';
import { PixelDecoder } from './pixelDecoder.ts';

export type FaePart = 'encoder' | 'adapter' | 'feature_decoder' | 'pixel_decoder' | 'discriminator';
export const FAE_PARTS: readonly FaePart[] = ['encoder', 'adapter', 'feature_decoder', 'pixel_decoder', 'discriminator'];

export class FAE extends Module {
  readonly encoder: FeatureEncoderModule;
  readonly adapter: FaeAdapter;
  readonly feature_decoder: FeatureDecoder;
  readonly pixel_decoder: PixelDecoder;
  readonly discriminator: PatchDiscriminator | undefined;
  readonly config: FaeConfig;

  /** Validates `config` and checks that `encoder` produces what the config expects. */
  constructor(config: FaeConfig, encoder: FeatureEncoderModule) {
    super();
    const c = validateFaeConfig(config);
    const checks: Array<[string, number, boolean, string]> = [
      ['encoder.dim', c.encoder.dim, c.encoder.dim === encoder.dim, `the frozen encoder's width is ${encoder.dim}`],
      ['encoder.grid', c.encoder.grid, c.encoder.grid === encoder.grid, `the frozen encoder's patch grid is ${encoder.grid}×${encoder.grid}`],
      ['pixelDecoder.channels', c.pixelDecoder.channels, c.pixelDecoder.channels === encoder.channels, `the frozen encoder takes ${encoder.channels}-channel images`],
      ['pixelDecoder.patchSize', c.pixelDecoder.patchSize, faeImageSize(c) === encoder.imageSize,
        `gives ${faeImageSize(c)} px images, the frozen encoder takes ${encoder.imageSize} px`],
    ];
    for (const [field, v, ok, why] of checks) if (!ok) throw new FaeConfigError(field, `does not fit the encoder: ${why}`, v);
    this.encoder = encoder;
    this.adapter = new FaeAdapter(c.encoder.dim, c.adapter);
    this.feature_decoder = new FeatureDecoder(c.adapter.latentChannels, c.encoder.dim, c.encoder.grid, c.featureDecoder);
    this.pixel_decoder = new PixelDecoder(c.encoder.dim, c.encoder.grid, c.pixelDecoder);
    this.discriminator = c.discriminator ? new PatchDiscriminator(c.pixelDecoder.channels, c.discriminator) : undefined;
    this.config = c;
  }

  get grid(): number {
    return this.config.encoder.grid;
  }
  get tokens(): number {
    return this.config.encoder.grid ** 2;
  }
  get imageSize(): number {
    return faeImageSize(this.config);
  }

  /** Full state_dict names of one part's parameters (e.g. the trainable set of a stage). */
  paramNames(...parts: FaePart[]): string[] {
    return faeScope(this, parts).namedParameters().map(([n]) => n);
  }
}

/** A Module holding some parts of `fae` under their FAE names (for trace's `params`). */
export class FaeScope extends Module {
  constructor(fae: FAE, parts: readonly FaePart[]) {
    super();
    for (const p of FAE_PARTS) {
      if (!parts.includes(p)) continue;
      const m = fae[p];
      if (!m) throw new FaeConfigError(p, 'is needed by this stage but the model has none (config.discriminator is null)', null);
      (this as unknown as Record<string, Module>)[p] = m;
    }
  }
}

export function faeScope(fae: FAE, parts: readonly FaePart[]): FaeScope {
  return new FaeScope(fae, parts);
}

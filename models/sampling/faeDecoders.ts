/**
 * @file Decoding generated FAE latents to images: latents [B, C, g, g] (normalized per channel when the
 * generator was trained on normalized latents: undone first with the stats) → tokens [B, g², C] →
 * feature decoder → pixel decoder → images [B, channels, S, S]. Only the two decoders are built (under
 * their FAE state_dict keys `feature_decoder.*`, `pixel_decoder.*`), so no encoder is needed.
 */
import type { Backend } from '../../backends/backend.ts';
import { Module, trace } from '../../compiler/dsl/index.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { Session } from '../../runtime/session.ts';
import { type FaeConfig, validateFaeConfig } from '../fae/config.ts';
import { FeatureDecoder } from '../fae/featureDecoder.ts';
import { PixelDecoder } from '../fae/pixelDecoder.ts';

export class FaeDecoders extends Module {
  readonly feature_decoder: FeatureDecoder;
  readonly pixel_decoder: PixelDecoder;
  readonly config: FaeConfig;
  constructor(config: FaeConfig) {
    super();
    const c = validateFaeConfig(config);
    this.feature_decoder = new FeatureDecoder(c.adapter.latentChannels, c.encoder.dim, c.encoder.grid, c.featureDecoder);
    this.pixel_decoder = new PixelDecoder(c.encoder.dim, c.encoder.grid, c.pixelDecoder);
    this.config = c;
  }
}

export { type LatentStats, denormalizeLatents } from './latentStats.ts';

/** The decoding program: input `latents` [batch, C, g, g] → output `images` [batch, channels, S, S]. */
export function faeDecodeGraph(d: FaeDecoders, batch: number): Graph {
  const c = d.config;
  const [C, g] = [c.adapter.latentChannels, c.encoder.grid];
  return trace('fae_decode', (tc) => {
    const z = tc.input('latents', [batch, C, g, g]);
    const tokens = z.reshape([batch, C, g * g]).transpose(1, 2);
    return { images: d.pixel_decoder.forward(d.feature_decoder.forward(tokens)) };
  }, { params: d });
}

/** The decoders' parameters from an FAE checkpoint's tensors (others ignored); names what is missing or misshapen. */
export function faeDecoderState(d: FaeDecoders, weights: ReadonlyMap<string, HostTensor>): Map<string, HostTensor> {
  const state = d.initState(0);
  let found = 0;
  for (const [k, v] of weights) {
    const want = state.get(k);
    if (!want) continue;
    if (want.shape.join() !== v.shape.join()) throw new KilnError(`FAE weights: '${k}' is [${v.shape.join(', ')}], the decoder's is [${want.shape.join(', ')}]`);
    state.set(k, v);
    found++;
  }
  if (found !== state.size) {
    const missing = [...state.keys()].filter((k) => !weights.has(k));
    throw new KilnError(`FAE weights: ${missing.length} decoder tensors missing (e.g. '${missing[0]}'); a stage Ia run holds only the feature decoder: add the pixel decoder's run, e.g. --fae runs/fae-stage-ia,runs/fae-pixel-finetune`);
  }
  return state;
}

export class LatentDecoder {
  private constructor(readonly decoders: FaeDecoders, private readonly session: Session, readonly batch: number) {}

  /** `weights`: the FAE checkpoint's tensors (feature_decoder.*, pixel_decoder.*; others are ignored). */
  static async open(backend: Backend, config: FaeConfig, weights: ReadonlyMap<string, HostTensor>, batch: number): Promise<LatentDecoder> {
    const d = new FaeDecoders(config);
    return new LatentDecoder(d, await Session.open(backend, faeDecodeGraph(d, batch), faeDecoderState(d, weights)), batch);
  }

  async decode(latents: HostTensor): Promise<HostTensor> {
    return (await this.session.run({ latents }, ['images'])).images!;
  }

  dispose(): void {
    this.session.dispose();
  }
}

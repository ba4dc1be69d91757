/**
 * @file TarFlow / STARFlow configuration: the reference's constructor arguments, Kiln's option
 * names for STARFlow's changes, and presets (tiny test configs, FAE latents, Fashion-MNIST).
 *
 * Geometry: an image [B, C, S, S] is cut into p×p patches → T = (S/p)² tokens of C' = C·p² features.
 * A flow is `layersPerBlock.length` MetaBlocks applied in that order on the forward (data → noise)
 * pass; sampling runs them in reverse. STARFlow's deep-shallow layout puts the deep block LAST in
 * this (state_dict / forward) order, which makes it the FIRST block sampled: `deepShallow()` builds it.
 */

export type ScaleKind = 'exp' | 'softplus';
/** Patch feature order: TarFlow's F.unfold gives (c, ki, kj); STARFlow's rearrange gives (ki, kj, c). */
export type PatchLayout = 'unfold' | 'channels_last';
/** STARFlow `seq_order`: 'R2L' keeps the token order in blocks 0, 2, ... (TarFlow); 'L2R' flips them. */
export type SeqOrder = 'R2L' | 'L2R';

export interface TarFlowConfig {
  /** Image channels C (FAE latents: 32). */
  inChannels: number;
  /** Square image side S (must be a multiple of patchSize). */
  imgSize: number;
  patchSize: number;
  /** Transformer width. */
  channels: number;
  /** Attention head width (heads = channels / headDim). TarFlow: 64. */
  headDim: number;
  /** MLP hidden = channels · expansion. Default 4. */
  expansion?: number;
  /** Attention layers of each MetaBlock, in forward order (TarFlow: the same number for every block). */
  layersPerBlock: readonly number[];
  /** 0: unconditional. Otherwise a class embedding [numClasses, 1, channels]; label −1 = no class. */
  numClasses?: number;
  /** Non-volume-preserving (α and μ predicted). Default true; false predicts μ only (α = 0). */
  nvp?: boolean;
  /** σ = exp(α) (TarFlow, default) or softplus(α + 0.5413) (STARFlow use_softplus). */
  scale?: ScaleKind;
  /** STARFlow soft_clip c > 0: proj_out's output becomes c·tanh(out / c). Default 0 (off). */
  softClip?: number;
  /** STARFlow use_sos: a learned start token `sos_embed` replaces the right shift. Default false. */
  sos?: boolean;
  /** Default 'unfold' (TarFlow). */
  patchLayout?: PatchLayout;
  /** Default 'R2L' (TarFlow's order). */
  seqOrder?: SeqOrder;
  /** LayerNorm eps (PyTorch default 1e-5). */
  lnEps?: number;
}

export type ResolvedTarFlowConfig = Required<TarFlowConfig> & {
  readonly tokens: number;
  readonly tokenChannels: number;
  readonly numHeads: number;
};

/** STARFlow's softplus offset: softplus(0 + INV_SOFTPLUS_1) = 1, so a zero output is the identity. */
export const INV_SOFTPLUS_1 = 0.541324854612918;

export function resolveConfig(c: TarFlowConfig): ResolvedTarFlowConfig {
  const r = {
    expansion: 4, numClasses: 0, nvp: true, scale: 'exp' as ScaleKind, softClip: 0, sos: false,
    patchLayout: 'unfold' as PatchLayout, seqOrder: 'R2L' as SeqOrder, lnEps: 1e-5, ...c,
  };
  const bad = (msg: string) => new Error(`TarFlow config: ${msg}`);
  if (r.imgSize % r.patchSize !== 0) throw bad(`imgSize ${r.imgSize} is not a multiple of patchSize ${r.patchSize}`);
  if (r.channels % r.headDim !== 0) throw bad(`channels ${r.channels} is not a multiple of headDim ${r.headDim}`);
  if (r.layersPerBlock.length === 0 || r.layersPerBlock.some((n) => !Number.isInteger(n) || n < 1))
    throw bad(`layersPerBlock ${JSON.stringify(r.layersPerBlock)} must list at least one block of >= 1 layers`);
  const side = r.imgSize / r.patchSize;
  return {
    ...r,
    layersPerBlock: [...r.layersPerBlock],
    tokens: side * side,
    tokenChannels: r.inChannels * r.patchSize * r.patchSize,
    numHeads: r.channels / r.headDim,
  };
}

/** STARFlow's deep-shallow layout in forward order: `blocks − 1` shallow blocks, then the deep one. */
export function deepShallow(blocks: number, deepLayers: number, shallowLayers = 2): number[] {
  return [...Array(blocks - 1).fill(shallowLayers), deepLayers];
}

/** The STARFlow options together (as the reference's image configs set them). */
export const starflowOptions = {
  scale: 'softplus', softClip: 4, sos: true, patchLayout: 'channels_last', seqOrder: 'R2L',
} as const satisfies Partial<TarFlowConfig>;

export const tarflowConfigs = {
  /** Test size: 4x4x2 image, patch 1 (16 tokens of 2), 2 blocks × 2 layers, width 16. */
  tiny: { inChannels: 2, imgSize: 4, patchSize: 1, channels: 16, headDim: 8, layersPerBlock: [2, 2] },
  /** Class-conditional test size: 8x8x2 image, patch 2 (16 tokens of 8), 3 classes. */
  tinyCond: { inChannels: 2, imgSize: 8, patchSize: 2, channels: 16, headDim: 8, layersPerBlock: [2, 2], numClasses: 3 },
  /** STARFlow options on the test size (deep-shallow [1, 1, 2], L2R, class embedding). */
  tinyStarflow: {
    inChannels: 2, imgSize: 8, patchSize: 2, channels: 16, headDim: 8, layersPerBlock: [1, 1, 2], numClasses: 3,
    ...starflowOptions, seqOrder: 'L2R',
  },
  /** FAE latents 16x16x32 (ImageNet classes), patch 1: 256 tokens of 32; STARFlow deep-shallow. */
  faeLatentP1: {
    inChannels: 32, imgSize: 16, patchSize: 1, channels: 1024, headDim: 64, layersPerBlock: deepShallow(6, 16),
    numClasses: 1000, ...starflowOptions,
  },
  /** FAE latents 16x16x32, patch 2: 64 tokens of 128; STARFlow deep-shallow. */
  faeLatentP2: {
    inChannels: 32, imgSize: 16, patchSize: 2, channels: 1024, headDim: 64, layersPerBlock: deepShallow(6, 16),
    numClasses: 1000, ...starflowOptions,
  },
  /** Fashion-MNIST 28x28x1, patch 2: 196 tokens of 4; TarFlow 4 blocks × 4 layers, 10 classes. */
  fashionMnist28: {
    inChannels: 1, imgSize: 28, patchSize: 2, channels: 256, headDim: 64, layersPerBlock: [4, 4, 4, 4], numClasses: 10,
  },
  /** Fashion-MNIST zero-padded to 32x32x1, patch 4: 64 tokens of 16; TarFlow 4 blocks × 4 layers. */
  fashionMnist32: {
    inChannels: 1, imgSize: 32, patchSize: 4, channels: 256, headDim: 64, layersPerBlock: [4, 4, 4, 4], numClasses: 10,
  },
} as const satisfies Record<string, TarFlowConfig>;

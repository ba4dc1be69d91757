/**
 * @file TarFlow / STARFlow, the autoregressive transformer normalizing flow that FAE trains on its
 * latents (see ../shared/FAE.md). The pieces live in models/tarflow/:
 *   config.ts    configuration, STARFlow options, presets (tiny, FAE latents, Fashion-MNIST)
 *   layers.ts    Attention / MLP / AttentionBlock with the reference's parameter names, KV-cache step
 *   metaBlock.ts one flow block (MetaBlock): forward transform, log-determinant, per-token parameters
 *   model.ts     the flow (patchify, blocks, loss, NLL, bits per dimension, noise augmentation)
 *   graphs.ts    the traced programs (forward, training loss, log-density, sampling steps)
 *   sampler.ts   host loops: KV-cached and non-cached samplers with guidance; score denoising
 * Reference: apple/ml-tarflow transformer_flow.py (@313120e), apple/ml-starflow transformer_flow.py
 * (@e565a46). PyTorch goldens: golden/tarflow_golden.py.
 */
export * from './tarflow/config.ts';
export * from './tarflow/layers.ts';
export * from './tarflow/metaBlock.ts';
export * from './tarflow/model.ts';
export * from './tarflow/graphs.ts';
export * from './tarflow/sampler.ts';

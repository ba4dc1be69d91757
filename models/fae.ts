/**
 * @file FAE (Feature Auto-Encoder, arXiv 2512.07829): the public surface. The parts live in
 * models/fae/: config.ts (configs + validation), encoder.ts (the frozen FeatureEncoder interface and
 * a small ViT stand-in), adapter.ts (the one-attention-layer encoder, reparameterization, latent
 * layout), featureDecoder.ts, pixelDecoder.ts, discriminator.ts (patch discriminator, hinge losses),
 * model.ts (the FAE Module: PyTorch state_dict names), losses.ts (stage Ia / Ib objectives) and
 * programs.ts (traced stage graphs, training steps, the in-graph adaptive GAN weight).
 */
export * from './fae/config.ts';
export * from './fae/encoder.ts';
export * from './fae/adapter.ts';
export * from './fae/featureDecoder.ts';
export * from './fae/pixelDecoder.ts';
export * from './fae/discriminator.ts';
export * from './fae/model.ts';
export * from './fae/losses.ts';
export * from './fae/programs.ts';
export * from './fae/dinov2Encoder.ts';

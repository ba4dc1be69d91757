/**
 * @file The nn layer library (PyTorch-named parameters), re-exported in one place.
 */
export * from './linear.ts';
export * from './norm.ts';
export * from './embedding.ts';
export * from './attention.ts';
export * from './rope.ts';
export * from './mlp.ts';
export * from './swiglu.ts';
export * from './patchEmbed.ts';
export * from './unpatchify.ts';
export * from './posEmbed.ts';
export * from './timestep.ts';
export * from './label.ts';
export * from './adaLN.ts';
export * from './vitBlock.ts';
export * from './conv.ts';

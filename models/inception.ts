/**
 * @file Inception-v3 for FID: the public surface. models/inception/blocks.ts (BasicConv2d and the
 * Inception A–E blocks, torchvision's names), model.ts (the network as pytorch-fid runs it: resize to
 * 299, 2x − 1, 2048-d pool features; 'fid' and 'torchvision' variants), weights.ts (loading a
 * safetensors state_dict with torchvision's keys).
 */
export * from './inception/blocks.ts';
export * from './inception/model.ts';
export * from './inception/weights.ts';

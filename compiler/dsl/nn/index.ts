/**
 * @file The nn layer library (PyTorch-named parameters), re-exported in one place.
 */
export * from './linear.ts';
export * from './norm.ts';

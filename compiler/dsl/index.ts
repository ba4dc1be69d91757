/**
 * @file The DSL's public surface: tracing, Tensor, Module/Parameter, initializers, functions, nn.
 * Models import from here (and ir types) only.
 */
export { trace, withTrace, TraceContext, activeTrace, RNG_SEED_INPUT, type TraceOptions, type TraceOutputs } from './trace.ts';
export { Tensor, type TensorLike, type Axes } from './tensor.ts';
export { Module, Parameter, checkState } from './module.ts';
export * as init from './init.ts';
export type { Init } from './init.ts';
export * from './functional.ts';
export * as nn from './nn/index.ts';
export * from './losses.ts';

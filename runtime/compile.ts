/**
 * @file Compile a graph for a backend: the CPU reference interpreter takes the Graph IR as it is;
 * kernel backends get the compiler's KernelProgram (passes, fusion, scheduling, memory plan).
 *
 * Precision: `precision: 'bf16' | 'f16'` runs the program through compiler/transforms/autocast first
 * (matmul and attention operands in that dtype, f32 accumulation; weights, optimizer state,
 * statistics, reductions and losses in f32), on every backend alike — the CPU oracle runs the same
 * autocast graph, with bf16/f16 rounding (ir/dtype.ts), so it stays the reference. `'f32'` compiles
 * the graph as it is. The default is the backend's: `backend.defaultPrecision()` when the backend has
 * one (the hook for the WGSL backend, which answers 'f16' when its adapter has shader-f16), else
 * bf16 on `cuda` and f32 elsewhere; the environment variable KILN_PRECISION overrides the default
 * (not an explicit option).
 *
 * Kernel programs come from the compiled-program cache on disk when the same graph was compiled
 * before by the same Kiln (runtime/programCache.ts); the backend gets the cache key for its own build
 * cache (CUDA: the launch list and CUBINs), so a second run of the same job compiles nothing.
 */
import type { Backend, Executable } from '../backends/backend.ts';
import { compile } from '../compiler/compile.ts';
import { type Precision, autocast, checkPrecision } from '../compiler/transforms/autocast.ts';
import type { Graph } from '../ir/graph.ts';

export type { Precision } from '../compiler/transforms/autocast.ts';

export interface CompileOnOptions {
  /** 'f32', or the low-precision dtype of matmul/attention operands (default: defaultPrecision(backend)). */
  precision?: Precision;
  /**
   * The compiled-program cache folder (runtime/programCache.ts); '' for none. Default:
   * $KILN_CACHE_DIR/programs or ~/.cache/kiln/programs (KILN_PROGRAM_CACHE=off: none).
   */
  cacheDir?: string;
}

/** The precision a backend compiles in when none is asked for (a promise where the backend must ask its device). */
export function defaultPrecision(backend: Backend): Precision | Promise<Precision> {
  const env = process.env.KILN_PRECISION;
  if (env) return checkPrecision(env, 'KILN_PRECISION');
  if (backend.defaultPrecision) return backend.defaultPrecision();
  return backend.name === 'cuda' ? 'bf16' : 'f32';
}

/** The graph a backend runs at `precision`: autocast for bf16/f16, the graph itself for f32. */
export function atPrecision(graph: Graph, precision: Precision): Graph {
  return precision === 'f32' ? graph : autocast(graph, { dtype: precision });
}

export async function compileOn(backend: Backend, graph: Graph, opts: CompileOnOptions = {}): Promise<Executable> {
  const precision = opts.precision === undefined ? await defaultPrecision(backend) : checkPrecision(opts.precision, 'compileOn: precision');
  const g = atPrecision(graph, precision);
  if (backend.consumes === 'graph') return backend.compile(g);
  // The cache lives on disk: loaded only where there is one (Node; a browser compiles every time).
  if (typeof process === 'undefined' || !process.versions?.node) return backend.compile(g, compile(g).program);
  const { cachedProgram, defaultProgramCacheDir } = await import('./programCache.ts');
  const dir = opts.cacheDir === undefined ? defaultProgramCacheDir() : opts.cacheDir || undefined;
  const { program, key } = cachedProgram(g, () => compile(g).program, { dir });
  return backend.compile(g, program, { cacheKey: dir ? key : undefined });
}

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
 * Rematerialization: `remat` ('off' | 'cheap' | 'blocks' | 'auto', compiler/transforms/remat.ts; default
 * the compiler's DEFAULT_REMAT). 'auto' compiles with 'cheap' and, when the program's device memory
 * (arena + inputs, outputs, constants) exceeds the device's free memory (`deviceFreeBytes`, else
 * `backend.freeMemoryBytes()`), again with 'blocks'; `onRemat` hears the choice.
 *
 * Kernel programs come from the compiled-program cache on disk when the same graph was compiled
 * before by the same Kiln (runtime/programCache.ts); the backend gets the cache key for its own build
 * cache (CUDA: the launch list and CUBINs), so a second run of the same job compiles nothing.
 */
import type { Backend, Executable } from '../backends/backend.ts';
import { DEFAULT_REMAT, type RematSummary, compile, programDeviceBytes } from '../compiler/compile.ts';
import { type RematMode, checkRematMode } from '../compiler/transforms/remat.ts';
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
  /** Rematerialization (see above; default DEFAULT_REMAT). */
  remat?: RematMode | 'auto';
  /** For remat 'auto': the device's free memory in bytes (default: the backend's freeMemoryBytes, if any). */
  deviceFreeBytes?: number;
  /** Told what remat did (mode, extra FLOPs, why) when the compiler ran (not on a cache hit). */
  onRemat?: (r: RematSummary) => void;
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
  const asked = opts.remat === undefined ? DEFAULT_REMAT : opts.remat === 'auto' ? 'auto' : checkRematMode(opts.remat, 'compileOn: remat');
  const target = await backend.gemmTarget?.();
  const run = (mode: RematMode) => {
    const c = compile(g, { remat: mode, ...(target ? { target } : {}) });
    opts.onRemat?.(c.remat);
    return c.program;
  };
  // The cache lives on disk: loaded only where there is one (Node; a browser compiles every time).
  const node = typeof process !== 'undefined' && Boolean(process.versions?.node);
  const { cachedProgram, defaultProgramCacheDir } = node ? await import('./programCache.ts') : { cachedProgram: undefined, defaultProgramCacheDir: undefined };
  const dir = !node ? undefined : opts.cacheDir === undefined ? defaultProgramCacheDir!() : opts.cacheDir || undefined;
  const build = (mode: RematMode) => (cachedProgram
    ? cachedProgram(g, () => run(mode), { dir, extra: mode === DEFAULT_REMAT && !target ? undefined : { ...(mode === DEFAULT_REMAT ? {} : { remat: mode }), ...(target ? { target } : {}) } })
    : { program: run(mode), key: undefined });
  let built = build(asked === 'auto' ? 'cheap' : asked);
  if (asked === 'auto') {
    const free = opts.deviceFreeBytes ?? (await backend.freeMemoryBytes?.());
    if (free !== undefined && programDeviceBytes(built.program) > free) built = build('blocks');
  }
  return backend.compile(g, built.program, { cacheKey: dir ? built.key : undefined });
}

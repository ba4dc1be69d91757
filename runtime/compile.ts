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
 * Rematerialization: `remat` ('off' | 'fused' | 'cheap' | 'blocks' | 'auto', compiler/transforms/remat.ts; default
 * the compiler's DEFAULT_REMAT, 'auto'). 'auto' compiles with 'fused' and, when the program's device
 * memory (arena + inputs, outputs, constants) exceeds the device's free memory (`deviceFreeBytes`, else
 * `backend.freeMemoryBytes()`), again with 'cheap', and then with 'blocks'; `onRemat` hears each choice.
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
  // What remat did in each compile (not on cache hits), told to onRemat once the choice is made.
  const heard: RematSummary[] = [];
  const target = await backend.gemmTarget?.();
  const run = (mode: RematMode | 'auto') => {
    const c = compile(g, { remat: mode, ...(target ? { target } : {}) });
    heard.push(c.remat);
    return c.program;
  };
  // The cache lives on disk: loaded only where there is one (Node; a browser compiles every time).
  const node = typeof process !== 'undefined' && Boolean(process.versions?.node);
  const { cachedProgram, defaultProgramCacheDir } = node ? await import('./programCache.ts') : { cachedProgram: undefined, defaultProgramCacheDir: undefined };
  const dir = !node ? undefined : opts.cacheDir === undefined ? defaultProgramCacheDir!() : opts.cacheDir || undefined;
  // The key of the program compile(g) gives without options (DEFAULT_REMAT without a free-memory figure, no
  // GEMM target) has no extra.
  const build = (mode: RematMode | 'auto') => {
    const at = heard.length;
    const extra = mode === DEFAULT_REMAT && !target ? undefined : { ...(mode === DEFAULT_REMAT ? {} : { remat: mode }), ...(target ? { target } : {}) };
    const b = cachedProgram ? cachedProgram(g, () => run(mode), { dir, extra }) : { program: run(mode), key: undefined };
    return { ...b, heardAt: heard.length > at ? at : undefined };
  };
  // auto: the fastest step that fits: fused (the compiler's auto without a free-memory figure, under the
  // plain key), else cheap, else blocks, each when the one before exceeds the device's free memory.
  let built = build(asked);
  if (asked === 'auto') {
    const free = opts.deviceFreeBytes ?? (await backend.freeMemoryBytes?.());
    const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
    /** Does `b` fit? (and the reason, in what its compile told) */
    const fits = (b: typeof built): boolean => {
      const need = programDeviceBytes(b.program), ok = need <= free!;
      const r = b.heardAt === undefined ? undefined : heard[b.heardAt];
      if (r) heard[b.heardAt!] = { ...r, reason: `auto: the plan's ${gb(need)} with remat ${r.mode} ${ok ? 'fits' : 'exceeds'} the device's free ${gb(free!)}` };
      return ok;
    };
    if (free !== undefined) {
      let settled = false;
      for (const next of ['cheap', 'blocks'] as const) {
        if ((settled = fits(built))) break;
        built = build(next);
      }
      if (!settled) fits(built);
    }
  }
  for (const r of heard) opts.onRemat?.(r);
  return backend.compile(g, built.program, { cacheKey: dir ? built.key : undefined });
}

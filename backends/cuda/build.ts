/**
 * @file Building a kernel program for the GPU: GEMM schedules measured on this device (gemmTuning.ts),
 * CUDA code generation (codegen.ts: position-independent units), and NVRTC of the distinct units in
 * worker threads to CUBIN (nvrtcPool.ts, cached per unit). With a cache key (the program cache's, from
 * runtime/compile.ts) the generated launch list is cached too (`<cacheDir>/programs/<key>.cuda-*.json`),
 * so a second run of the same job neither generates code nor compiles: it reads the launch list and
 * the CUBINs. A cached build whose CUBINs are missing or unreadable is built again.
 */
import { join } from 'node:path';
import { readEntry, writeEntry } from '../cacheEntry.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { type CudaModule, generateCuda } from './codegen.ts';
import type { CudaDriver } from './driver.ts';
import { withLibraryDefaults } from './gemmDefault.ts';
import { applyTuning } from './gemmTuning.ts';
import { compileCubins, cubinKey, nvrtcFlags, readCubin } from './nvrtcPool.ts';
import { type CudaOptions, DEFAULT_ELEMENTWISE_POINTS, defaultPtxCacheDir } from './options.ts';

/** Generated code and the CUBIN of each of its units. */
export interface BuiltCuda {
  readonly gen: CudaModule;
  readonly images: readonly Uint8Array[];
  /** Where it came from: 'cache' (nothing generated or compiled), or how many units NVRTC compiled. */
  readonly compiled: number | 'cache';
}

/**
 * The GEMM schedules that run on this device: measured ones from the tuning cache replace the tiling
 * stage's defaults (gemmTuning.ts), and the untuned bf16 ones go to the library (gemmDefault.ts)
 * unless CudaOptions.gemmDefault is 'generated' or cuBLAS is off.
 */
export function tunedProgram(cuda: CudaDriver, program: KernelProgram, options: CudaOptions): KernelProgram {
  const tuned = options.gemmTuning === false ? program : applyTuning(program, cuda.name, options.cacheDir ?? defaultPtxCacheDir());
  return options.gemmDefault === 'generated' || options.cublas === false || options.tensorCores === false ? tuned : withLibraryDefaults(tuned);
}

/** A cached build: the launch list and, per unit, its functions and CUBIN key (no sources). */
interface CachedBuild {
  readonly launches: CudaModule['launches'];
  readonly scratch: CudaModule['scratch'];
  readonly units: ReadonlyArray<{ readonly name: string; readonly functions: readonly string[]; readonly cubin: string }>;
}

/** The code generator's options for the GPU of `cuda`: wgmma attention on sm_90 unless `flashWgmma` is false. */
export function codegenOptions(cuda: Pick<CudaDriver, 'sm'>, options: CudaOptions): CudaOptions & { readonly flashWgmma: boolean } {
  return { ...options, flashWgmma: cuda.sm === 'sm_90' && options.flashWgmma !== false };
}

/** Generate and compile `program` for the GPU of `cuda`; `cacheKey`: the program cache's key of it. */
export async function buildCuda(cuda: CudaDriver, program: KernelProgram, options: CudaOptions = {}, cacheKey?: string): Promise<BuiltCuda> {
  const root = options.cacheDir ?? defaultPtxCacheDir();
  const cubinDir = join(root, 'cubin');
  const flags = nvrtcFlags(cuda.sm);
  const buildDir = join(root, 'programs');
  // wgmma flash attention on Hopper unless turned off (options.flashWgmma): part of the build's key.
  const cg = codegenOptions(cuda, options), wgmma = cg.flashWgmma;
  const buildKey = cacheKey && `${cacheKey}.cuda-${cuda.sm}-${options.cublas === false ? 'nocublas' : 'cublas'}-${options.tensorCores === false ? 'simt' : 'tc'}-${options.gemmTuning === false ? 'untuned' : 'tuned'}-${options.gemmDefault === 'generated' ? 'gen' : 'lib'}-e${options.elementwisePoints ?? DEFAULT_ELEMENTWISE_POINTS}${wgmma ? '-wgmma' : ''}${options.gemmOutputC === false ? '-cws' : ''}${options.columnPairs ? '-pairs' : ''}`;
  if (buildKey) {
    const hit = readEntry<CachedBuild>(buildDir, buildKey, 'build');
    const images = hit?.units.map((u) => readCubin(join(cubinDir, `${u.cubin}.cubin`)));
    if (hit && images && images.every((b) => b !== undefined)) {
      const gen: CudaModule = { source: '', units: hit.units.map((u) => ({ name: u.name, source: '', functions: u.functions })), launches: hit.launches, scratch: hit.scratch };
      return { gen, images: images as Uint8Array[], compiled: 'cache' };
    }
  }
  const gen = generateCuda(tunedProgram(cuda, program, options), cg);
  const { images, compiled } = await compileCubins(gen.units, { arch: cuda.sm, libDir: options.libDir, cacheDir: cubinDir });
  if (buildKey)
    writeEntry(buildDir, buildKey, 'build', {
      launches: gen.launches, scratch: gen.scratch,
      units: gen.units.map((u) => ({ name: u.name, functions: u.functions, cubin: cubinKey(u.source, flags) })),
    } satisfies CachedBuild);
  return { gen, images, compiled };
}

/**
 * @file Measured GEMM schedules: a per-device cache on disk (`gemm-tuning.json` in the backend's cache
 * folder, CudaOptions.cacheDir: KILN_CACHE_DIR, else ~/.cache/kiln/ptx) mapping a matmul's shape signature to the provider and tile that
 * measured fastest (written by bench/gemmTune.ts on the GPU). When the CUDA backend compiles a
 * program, a kernel whose signature is in the cache for this device gets that schedule
 * (`source: 'measured'`); otherwise it keeps the tiling stage's deterministic default (CI, first run).
 * Entries come from bench/gemmTune.ts (benchmark shapes, every tile) or from gemmAutotune.ts (a
 * program's own matmul kernels, generated kernel vs library provider; CudaOptions.autotune).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Kernel, KernelProgram, MatmulKernel, TileSchedule } from '../../ir/kernel/types.ts';

export function tuningFile(cacheDir: string): string {
  return join(cacheDir, 'gemm-tuning.json');
}

/**
 * What the best schedule depends on: shape, batch, operand dtypes, how the operands are staged, and
 * whether the epilogue is one plain store (a library GEMM writes it directly) or fused work (a library
 * GEMM then needs an epilogue kernel of its own, so it is measured separately).
 */
export function gemmSignature(k: MatmulKernel): string {
  const t = k.tile;
  const plan = t ? `${t.a.staging}/${t.a.major},${t.b.staging}/${t.b.major}` : 'untiled';
  const only = k.epilogue.length === 1 ? k.epilogue[0]! : undefined;
  const epi = only?.k === 'store' && only.mode === 'set' && (only.value.k === 'ref' || (only.value.k === 'cast' && only.value.a.k === 'ref')) ? 'store' : `fused${k.epilogue.length}`;
  return `${k.batch.join('x') || '-'}|${k.m}x${k.n}x${k.k}|${k.a.dtype}|${plan}|${epi}`;
}

type Entry = Pick<TileSchedule, 'provider' | 'block' | 'warps' | 'stages'> & { readonly ms?: number };
type Cache = Record<string, Record<string, Entry>>;

function readCache(cacheDir: string): Cache {
  const f = tuningFile(cacheDir);
  if (!existsSync(f)) return {};
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as Cache;
  } catch {
    return {};
  }
}

/** The measured schedules recorded for `device`, by signature. */
export function tunedEntries(cacheDir: string, device: string): Readonly<Record<string, Entry>> {
  return readCache(cacheDir)[device] ?? {};
}

/** Record the measured best schedule of a kernel on a device. */
export function recordTuning(cacheDir: string, device: string, k: MatmulKernel, best: TileSchedule, ms: number): void {
  const cache = readCache(cacheDir);
  (cache[device] ??= {})[gemmSignature(k)] = { provider: best.provider, block: best.block, warps: best.warps, stages: best.stages, ms };
  const f = tuningFile(cacheDir);
  mkdirSync(dirname(f), { recursive: true });
  const tmp = `${f}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(cache, null, 1));
  renameSync(tmp, f);
}

/** The program with each tuned matmul's schedule replaced by the measured one for `device`. */
export function applyTuning(p: KernelProgram, device: string, cacheDir: string): KernelProgram {
  const entries = readCache(cacheDir)[device];
  if (!entries) return p;
  let changed = false;
  const kernels = p.kernels.map((k): Kernel => {
    if (k.kind !== 'matmul' || !k.tile || k.tile.provider === 'simt') return k;
    const e = entries[gemmSignature(k)];
    if (!e) return k;
    changed = true;
    return { ...k, tile: { ...k.tile, provider: e.provider, block: e.block, warps: e.warps, stages: e.stages, source: 'measured' } };
  });
  return changed ? { ...p, kernels } : p;
}

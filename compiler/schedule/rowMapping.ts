/**
 * @file The thread mapping of row kernels (loop kernels with reductions or row loops), decided in
 * the tiling stage and recorded in the kernel IR (`LoopKernel.rows`, printed by `kiln compile
 * --kernels`): a pure function of the kernel and the target, testable without a GPU. Backends render
 * it (backends/cuda/codegen.ts); the CPU interpreters ignore it.
 *
 * Rules (deterministic):
 *  - a kernel is a column candidate when its reductions and row loops read memory only strided along
 *    the reduced axis (no load has unit stride along it) and at least one load is contiguous along
 *    the last grid axis: sums over tokens or over the batch of a [rows, channels] tensor. One block
 *    per grid point would read one element per row per thread (uncoalesced) and pay a block
 *    reduction per point; a column block takes COLUMN_POINTS consecutive points (coalesced loads)
 *    with COLUMN_LANES lanes each;
 *  - a column candidate with fewer than SPLIT_TARGET_WAVES waves of column blocks and a reduced
 *    extent of at least 2·SPLIT_MIN_CHUNK (a bias gradient: 768–4096 channels × 32768 rows) is split
 *    in two passes, as many chunks as bring the blocks to SPLIT_TARGET_WAVES waves (at most
 *    SPLIT_MAX, each chunk at least SPLIT_MIN_CHUNK long), when its body allows it (splittable);
 *  - otherwise a column candidate with at least COLUMN_MIN_POINTS grid points and a reduced extent
 *    of at most COLUMN_MAX_EXTENT (each lane's chain stays short) is one column pass;
 *  - everything else is one block per grid point, threads = the row's extent rounded up to a power
 *    of two, between 32 and 256.
 */
import { walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import { splittable } from '../../ir/kernel/reductions.ts';
import { samplePoints, strideAt } from '../../ir/kernel/stride.ts';
import type { Expr, LoopKernel, RowMapping } from '../../ir/kernel/types.ts';

export { splittable };

export const COLUMN_POINTS = 32;
export const COLUMN_LANES = 8;
const COLUMN_MIN_POINTS = 4096;
const COLUMN_MAX_EXTENT = 8192;
/** Blocks per multiprocessor the split aims at (a few waves hide the tail). */
const SPLIT_TARGET_WAVES = 4;
const SPLIT_MAX = 64;
const SPLIT_MIN_CHUNK = 256;

/** Does the kernel have reductions or row loops (one of its grid points is more than one thread's work)? */
export const isRowKernel = (k: LoopKernel): boolean => k.body.some((s) => s.k === 'reduce' || s.k === 'loop');

/** The mapping of a row kernel on a target with `processors` multiprocessors; undefined for elementwise kernels. */
export function chooseRowMapping(k: LoopKernel, processors: number): RowMapping | undefined {
  if (!isRowKernel(k)) return undefined;
  const total = k.grid.reduce((a, b) => a * b, 1);
  let maxExtent = 1;
  walkStmts(k.body, () => {}, (s) => {
    if (s.k === 'reduce' || s.k === 'loop') maxExtent = Math.max(maxExtent, s.extent);
  });
  if (total > 0 && isColumnCandidate(k)) {
    const blocks = Math.ceil(total / COLUMN_POINTS);
    const split = Math.min(SPLIT_MAX, Math.ceil((SPLIT_TARGET_WAVES * processors) / blocks), Math.floor(maxExtent / SPLIT_MIN_CHUNK));
    if (split >= 2 && splittable(k)) return { kind: 'column', points: COLUMN_POINTS, lanes: COLUMN_LANES, split };
    if (total >= COLUMN_MIN_POINTS && maxExtent <= COLUMN_MAX_EXTENT) return { kind: 'column', points: COLUMN_POINTS, lanes: COLUMN_LANES, split: 1 };
  }
  return { kind: 'block', threads: Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(maxExtent)))) };
}

/**
 * Loads strided along the reduced axis and contiguous along the last grid axis (at the sample points
 * where the index is not clamped: the parts of a concatenation), none contiguous along the reduced axis. Strides are measured on the index expressions at sample points (so indices with
 * div/mod, e.g. the [3, B, H, S, D] layout of q/k/v gradients, count too): the start of the grid and
 * the reduced axis, and their middles (the last grid axis' middle aligned to COLUMN_POINTS, where a
 * block of points starts).
 */
export function isColumnCandidate(k: LoopKernel): boolean {
  if (k.grid.length === 0) return false;
  const last = `g${k.grid.length - 1}`;
  let column = 0, contiguous = 0;
  for (const s of k.body) {
    if (s.k !== 'reduce' && s.k !== 'loop') continue;
    const extents = new Map<string, number>(k.grid.map((n, i) => [`g${i}`, n]));
    extents.set(s.var, s.extent);
    const samples = samplePoints(extents, COLUMN_POINTS);
    const visit = (e: Expr) => {
      if (e.k !== 'load') return;
      const along = samples.map((env) => strideAt(e.index, s.var, env));
      const across = samples.map((env) => strideAt(e.index, last, env));
      if (along.some((d) => d === undefined)) return;
      if (along.some((d) => d === 1 || d === -1)) contiguous++;
      // Contiguous across the grid where the load is live; a concatenation's clamped index
      // (max(g - n, 0), min(g, n - 1): the other part's points) is constant (stride 0) elsewhere.
      else if (along.some((d) => d !== 0) && across.some((d) => d === 1) && across.every((d) => d === 1 || d === 0)) column++;
    };
    walkStmts(s.body, visit);
    if (s.k === 'reduce') walkExpr(s.value, visit);
  }
  return column > 0 && contiguous === 0;
}

/** Every row kernel with its mapping (other kernels unchanged). */
export function withRowMapping(k: LoopKernel, processors: number): LoopKernel {
  const rows = chooseRowMapping(k, processors);
  return rows ? { ...k, rows } : k;
}

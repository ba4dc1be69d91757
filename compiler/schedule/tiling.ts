/**
 * @file The tiling stage: every matmul kernel gets its TileSchedule (ir/kernel/types.ts) — provider,
 * block tile, warp layout, pipeline stages, matrix instruction, and how each operand reaches shared
 * memory — and every row kernel its thread mapping (rowMapping.ts: one block per row, or column
 * blocks, split in two passes for small grids). A pure function of the kernel (shape, operand expressions and dtypes) and a target
 * description, so the decision is visible in the kernel IR (`kiln compile --kernels`) and testable
 * without a GPU. Backends render the schedule (backends/cuda/gemmTensorCore.ts); a backend may
 * replace it by a measured one from its tuning cache (same types, `source: 'measured'`).
 *
 * Rules (deterministic):
 *  - on a WebGPU subgroup-matrix target: subgroupMatrixTiling.ts;
 *  - float operands of the target's MMA dtype (bf16/f16) with an f32 accumulator → tensor cores;
 *  - plain strided f32 operands (m, n, k ≥ 2) → the vendor SGEMM ('cublas'), other f32 → SIMT;
 *  - an operand is 'async' when it is a load of a buffer of the MMA dtype whose index is affine in
 *    (b*, i|j, p), unit stride along one of its two matrix dims, every other stride, the offset and
 *    the contiguous extent multiples of 8 elements (16-byte chunks stay aligned and whole);
 *    otherwise 'registers';
 *  - the block tile is the largest candidate that still gives one wave of blocks on the target's
 *    multiprocessors (128×128, then 64×64; at most 128×128 when an operand is
 *    register-staged, whose tile lives in registers too) and fits its shared memory; stages fill the shared
 *    memory budget, two when an operand is register-staged (its loads are prefetched one tile
 *    ahead in registers, which is what hides their latency).
 */
import type { DType } from '../../ir/dtype.ts';
import { affine } from '../../ir/kernel/expr.ts';
import { samplePoints, strideAt } from '../../ir/kernel/stride.ts';
import { epilogueBytes, stageBytes } from '../../ir/kernel/tile.ts';
import type { BufferDecl, Expr, FragmentShape, GemmTarget, Kernel, MatmulKernel, MmaInstr, OperandPlan, TileSchedule } from '../../ir/kernel/types.ts';
import { withRowMapping } from './rowMapping.ts';
import { chooseSubgroupMatrixTile, SUBGROUP_MATRIX_FAMILY } from './subgroupMatrixTiling.ts';

export type { GemmTarget } from '../../ir/kernel/types.ts';

const mmaSync = (ab: DType): MmaInstr => ({ family: 'mma.sync', m: 16, n: 8, k: 16, ab, acc: 'f32', threads: 32 });

/** NVIDIA Hopper (H100/H200): mma.sync m16n8k16 for bf16 and f16, 132 SMs, 227 KiB shared per block. */
export const SM90: GemmTarget = { name: 'sm_90', mma: [mmaSync('bf16'), mmaSync('f16')], processors: 132, sharedBytes: 227 * 1024, warpSize: 32 };

/**
 * Block tiles tried largest first, with their warp layouts (warp tile 64×64, or 32×32 for the small
 * one); both are run by the GPU GEMM tests. 128×256 (8 warps) and the others are left to the tuner (bench/gemmTune.ts): on an H200 (2026-12-01) the
 * 128×128×32 four-stage tile measured 10–25% faster at all twelve benchmark shapes (bench/RESULTS.md).
 */
const CANDIDATES: ReadonlyArray<{ block: FragmentShape; warps: { m: number; n: number } }> = [
  { block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 2 } },
  { block: { m: 64, n: 64, k: 32 }, warps: { m: 2, n: 2 } },
];

/**
 * The tile search space of the measuring tuner (bench/gemmTune.ts, which also times the library
 * provider): block tile, warp layout, stages. Each is checked against the CPU oracle by the GPU
 * GEMM tests (test/gpu/gemm.test.ts), and the tuner accepts one only when its result equals the
 * default schedule's.
 */
export const TUNING_TILES: ReadonlyArray<Pick<TileSchedule, 'block' | 'warps' | 'stages'>> = [
  { block: { m: 128, n: 256, k: 32 }, warps: { m: 2, n: 4 }, stages: 4 },
  { block: { m: 128, n: 256, k: 32 }, warps: { m: 2, n: 4 }, stages: 3 },
  { block: { m: 128, n: 256, k: 64 }, warps: { m: 2, n: 4 }, stages: 3 },
  { block: { m: 256, n: 128, k: 32 }, warps: { m: 4, n: 2 }, stages: 4 },
  { block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 2 }, stages: 4 },
  { block: { m: 128, n: 128, k: 64 }, warps: { m: 2, n: 2 }, stages: 3 },
  { block: { m: 128, n: 128, k: 64 }, warps: { m: 2, n: 2 }, stages: 4 },
  { block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 4 }, stages: 4 },
  { block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 2 }, stages: 3 },
];

const SIMT: Omit<TileSchedule, 'provider' | 'a' | 'b'> = { block: { m: 64, n: 64, k: 16 }, warps: { m: 8, n: 1 }, stages: 1, source: 'default' };

/** The two operands' variables: a(b*, i, p), b(b*, p, j). */
function operandVars(which: 'a' | 'b'): { mn: string; k: string } {
  return which === 'a' ? { mn: 'i', k: 'p' } : { mn: 'j', k: 'p' };
}

/** The first buffer load in an expression (the operand's main input), or undefined. */
function firstLoad(e: Expr): Extract<Expr, { k: 'load' }> | undefined {
  switch (e.k) {
    case 'load': return e;
    case 'un': case 'cast': return firstLoad(e.a);
    case 'bin': return firstLoad(e.a) ?? firstLoad(e.b);
    case 'select': return firstLoad(e.a) ?? firstLoad(e.b) ?? firstLoad(e.c);
    default: return undefined;
  }
}

/** How operand `which` of `k` is staged, for an MMA of dtype `ab`. */
export function planOperand(k: MatmulKernel, which: 'a' | 'b', buffers: readonly BufferDecl[], ab: DType): OperandPlan {
  const e = which === 'a' ? k.a : k.b;
  const v = operandVars(which);
  const mnExtent = which === 'a' ? k.m : k.n;
  const vars = new Set([...k.batch.map((_, i) => `b${i}`), v.mn, v.k]);
  const load = firstLoad(e);
  const aff = load ? affine(load.index) : undefined;
  const coef = (name: string) => aff?.coef.get(name) ?? 0;
  // Contiguous dim: where the main load has unit stride (K-major when both or neither); for an index
  // with div/mod (a head-split layout read by channel) the strides measured at sample points.
  const major: 'k' | 'mn' = aff ? (coef(v.k) !== 1 && coef(v.mn) === 1 ? 'mn' : 'k') : load ? probedMajor(load.index, k, v) : 'k';
  const plain = e.k === 'load' && buffers[e.buf]!.dtype === ab && aff !== undefined && [...aff.coef.keys()].every((n) => vars.has(n));
  if (!plain) return { staging: 'registers', major };
  const contiguous = major === 'k' ? v.k : v.mn;
  const extent = major === 'k' ? k.k : mnExtent;
  const aligned = coef(contiguous) === 1 && extent % 8 === 0 && aff.c % 8 === 0 &&
    [...aff.coef].every(([n, c]) => n === contiguous || c % 8 === 0);
  return { staging: aligned ? 'async' : 'registers', major };
}

/** 'mn' when the index measures unit stride along the M/N variable and not along K at every sample point, else 'k'. */
function probedMajor(index: Expr, k: MatmulKernel, v: { mn: string; k: string }): 'k' | 'mn' {
  const extents = new Map<string, number>(k.batch.map((n, d) => [`b${d}`, n]));
  extents.set(v.mn, v.mn === 'i' ? k.m : k.n);
  extents.set(v.k, k.k);
  const samples = samplePoints(extents);
  const alongMn = samples.map((env) => strideAt(index, v.mn, env));
  const alongK = samples.map((env) => strideAt(index, v.k, env));
  return alongMn.every((d) => d === 1) && !alongK.some((d) => d === 1) ? 'mn' : 'k';
}

/** Is the operand a plain strided load of an f32 buffer (what the vendor SGEMM takes)? */
function plainF32(e: Expr, buffers: readonly BufferDecl[], vars: ReadonlySet<string>): boolean {
  if (e.k !== 'load' || buffers[e.buf]!.dtype !== 'f32') return false;
  const a = affine(e.index);
  return a !== undefined && [...a.coef.keys()].every((n) => vars.has(n));
}

/** The default schedule of one matmul kernel on a target. */
export function chooseTile(k: MatmulKernel, buffers: readonly BufferDecl[], target: GemmTarget): TileSchedule {
  const ab = k.a.dtype === k.b.dtype ? k.a.dtype : undefined;
  const mma = target.mma.find((x) => x.ab === ab && x.acc === k.accDType);
  if (!mma) {
    const bv = k.batch.map((_, i) => `b${i}`);
    const vendor = k.accDType === 'f32' && k.m >= 2 && k.n >= 2 && k.k >= 2 &&
      plainF32(k.a, buffers, new Set([...bv, 'i', 'p'])) && plainF32(k.b, buffers, new Set([...bv, 'p', 'j']));
    return { provider: vendor ? 'cublas' : 'simt', ...SIMT, a: { staging: 'registers', major: 'k' }, b: { staging: 'registers', major: 'k' } };
  }
  if (mma.family === SUBGROUP_MATRIX_FAMILY) {
    const plan = (w: 'a' | 'b') => planOperand(k, w, buffers, mma.ab);
    return chooseSubgroupMatrixTile(k, target, mma, plan) ?? { provider: 'simt', ...SIMT, a: plan('a'), b: plan('b') };
  }
  const a = planOperand(k, 'a', buffers, mma.ab);
  const b = planOperand(k, 'b', buffers, mma.ab);
  const batch = k.batch.reduce((x, y) => x * y, 1);
  const blocks = (c: FragmentShape) => Math.ceil(k.m / c.m) * Math.ceil(k.n / c.n) * batch;
  // Register staging holds a tile's worth of operand values per thread: at most 128×128 blocks.
  const registers = a.staging === 'registers' || b.staging === 'registers';
  // Two stages and the epilogue's f32 tile must fit the target's shared memory.
  const fits = CANDIDATES.filter((c) => (!registers || c.block.m * c.block.n <= 128 * 128) &&
    2 * stageBytes(c.block, a, b) <= target.sharedBytes && epilogueBytes(c.block) <= target.sharedBytes);
  if (fits.length === 0) return { provider: 'simt', ...SIMT, a, b };
  const pick = fits.find((c) => blocks(c.block) >= target.processors) ?? fits[fits.length - 1]!;
  const perStage = stageBytes(pick.block, a, b);
  const maxStages = Math.max(2, Math.min(4, Math.floor(target.sharedBytes / perStage)));
  const stages = registers ? 2 : maxStages;
  return { provider: 'tensor-core', block: pick.block, warps: pick.warps, stages, mma, a, b, source: 'default' };
}

/** The tiling stage: every matmul kernel with its schedule, every row kernel with its thread mapping. */
export function tileKernels(kernels: readonly Kernel[], buffers: readonly BufferDecl[], target: GemmTarget = SM90): Kernel[] {
  return kernels.map((k) => (k.kind === 'matmul' ? { ...k, tile: chooseTile(k, buffers, target) } : k.kind === 'loop' ? withRowMapping(k, target.processors) : k));
}

/**
 * @file Tile schedules for GEMMs on WebGPU subgroup matrices (the WGSL backend's f16 path; rendered by
 * backends/wgsl/gemmSubgroupMatrix.ts): the GemmTarget of a WebGPU device that has
 * `chromium-experimental-subgroup-matrix` and `shader-f16`, and the rule that picks a matmul's block
 * tile and subgroup layout on it. A TileSchedule like the CUDA ones (compiler/schedule/tiling.ts
 * calls chooseSubgroupMatrixTile when the target's instruction is a subgroup matrix), so the decision
 * is in the kernel IR (`kiln compile --kernels`) and testable without a GPU.
 *
 * Rule: the instruction is f16×f16→f32 16×16×16 on 32-lane subgroups; register prefetch of the next K
 * step, workgroup tiles double buffered or (the largest tile) single, plus a 16×16 f32 epilogue scratch
 * per subgroup, within the device's workgroup memory. The block is the first candidate that gives at least
 * one wave of workgroups (`processors`) and fits: 128×256×32 with 8 subgroups of 64×64 in one stage
 * (one workgroup buffer, a second barrier after the multiplies), then 128×128×32 with 8 subgroups of
 * 64×32, then 64×64×32 with 4 subgroups of 32×32 (SGM_CANDIDATES; two stages).
 */
import { SMEM_PAD, SUBGROUP_MATRIX_FAMILY } from '../../ir/kernel/tile.ts';
import type { FragmentShape, MatmulKernel, MmaInstr, OperandPlan, TileSchedule } from '../../ir/kernel/types.ts';
import type { GemmTarget } from './tiling.ts';

export { SUBGROUP_MATRIX_FAMILY };

/** The subgroup-matrix configuration Kiln uses: f16 operands, f32 accumulation, 16×16×16. */
export const SUBGROUP_MATRIX_F16: MmaInstr = { family: SUBGROUP_MATRIX_FAMILY, m: 16, n: 16, k: 16, ab: 'f16', acc: 'f32', threads: 32 };

/**
 * The GemmTarget of a WebGPU device with subgroup matrices (the WGSL backend builds the same from its
 * device: backends/wgsl/gemmSubgroupMatrix.ts sgmGemmTarget). WebGPU does not say how many
 * multiprocessors a device has: `processors` is the wave the tile rule aims for (132: an H200's SMs, the
 * device this was measured on; a smaller GPU only sees more waves).
 */
export function wgslGemmTarget(workgroupBytes: number, processors = 132): GemmTarget {
  return { name: 'wgsl-subgroup-matrix', mma: [SUBGROUP_MATRIX_F16], processors, sharedBytes: workgroupBytes, warpSize: 32 };
}

/**
 * Block tiles, largest first (bench/wgslGemmF16Probe.ts on an H200, 2026-12-02, window 1, 8192³:
 * 128×256×16 with 64×64 subgroup blocks 235 TFLOP/s, 128×128×32 with 32×64 blocks 205, 64×32 blocks
 * 179 with a k-contiguous B, 64×64×32 113; bench/RESULTS.md). Through the compiler the first reached
 * 72 TFLOP/s at 8192³, 212 since the renderer stages operands in their own layout, drops the guards of
 * aligned shapes and writes 16-bit results a word per store, with Dawn's robustness off (84 with it on;
 * RESULTS.md, fourth session, window 1: each difference measured).
 */
export const SGM_CANDIDATES: ReadonlyArray<{ block: FragmentShape; warps: { m: number; n: number }; stages?: 1 | 2 }> = [
  // One stage, bk 32 (two barriers per step of 32: the same barriers per k as two stages of 16, twice the
  // multiplies between them): 217.3 and 217.8 TFLOP/s at 8192³ where two stages of 16 gave 203.2 and 200.0
  // (bench/RESULTS.md, 2026-12-02, fourth session window 2 and s5-sgm window 1).
  { block: { m: 128, n: 256, k: 32 }, warps: { m: 2, n: 4 }, stages: 1 },
  { block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 4 } },
  { block: { m: 64, n: 64, k: 32 }, warps: { m: 2, n: 2 } },
];

/**
 * Workgroup memory of a subgroup-matrix schedule: `stages` copies of both tiles, each staged in the
 * larger of its two layouts (its own, the renderer's default, or k-contiguous: backends/wgsl/gemmSubgroupMatrix.ts
 * SgmVariant.mnStaging), and a 16×16 f32 scratch per subgroup.
 */
export function sgmScheduleBytes(block: FragmentShape, warps: { m: number; n: number }, stages = 2): number {
  const tile = (mn: number) => 2 * Math.max(mn * (block.k + SMEM_PAD), block.k * (mn + SMEM_PAD));
  return stages * (tile(block.m) + tile(block.n)) + warps.m * warps.n * 16 * 16 * 4;
}

/** The default subgroup-matrix schedule of `k` (operand plans from the tiling stage's planOperand). */
export function chooseSubgroupMatrixTile(k: MatmulKernel, target: GemmTarget, mma: MmaInstr, plan: (which: 'a' | 'b') => OperandPlan): TileSchedule | undefined {
  const a = plan('a'), b = plan('b');
  const batch = k.batch.reduce((x, y) => x * y, 1);
  const fits = SGM_CANDIDATES.filter((c) => sgmScheduleBytes(c.block, c.warps, c.stages ?? 2) <= target.sharedBytes);
  if (fits.length === 0) return undefined;
  const blocks = (c: FragmentShape) => Math.ceil(k.m / c.m) * Math.ceil(k.n / c.n) * batch;
  const pick = fits.find((c) => blocks(c.block) >= target.processors) ?? fits[fits.length - 1]!;
  return { provider: 'tensor-core', block: pick.block, warps: pick.warps, stages: pick.stages ?? 2, mma, a, b, source: 'default' };
}

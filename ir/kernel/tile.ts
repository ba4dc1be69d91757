/**
 * @file Geometry of a TileSchedule (types.ts) shared by the tiling stage and the backends that render
 * it: shared-memory tile layout (contiguous dimension innermost, rows padded by 16 bytes) and the
 * bytes a block needs.
 */
import type { FragmentShape, OperandPlan, TileSchedule } from './types.ts';

/** The MmaInstr family of WebGPU subgroup matrices (the WGSL backend's f16 GEMM). */
export const SUBGROUP_MATRIX_FAMILY = 'subgroup_matrix';

/** Padding of each shared-memory tile row, elements (16 bytes: conflict-free ldmatrix, aligned cp.async). */
export const SMEM_PAD = 8;

/** Shared-memory bytes of one pipeline stage of a 16-bit tile (both operands). */
export function stageBytes(block: FragmentShape, a: OperandPlan, b: OperandPlan): number {
  const tile = (mn: number, major: 'k' | 'mn') => (major === 'k' ? mn * (block.k + SMEM_PAD) : block.k * (mn + SMEM_PAD));
  return 2 * (tile(block.m, a.major) + tile(block.n, b.major));
}

/** Shared-memory bytes of the f32 accumulator tile the epilogue reads (reuses the pipeline's memory). */
export function epilogueBytes(block: FragmentShape): number {
  return 4 * block.m * (block.n + SMEM_PAD);
}

/** Bytes of dynamic shared memory a tensor-core schedule needs. */
export function sharedBytes(t: TileSchedule): number {
  return Math.max(t.stages * stageBytes(t.block, t.a, t.b), epilogueBytes(t.block));
}


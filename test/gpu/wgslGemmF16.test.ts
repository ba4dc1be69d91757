/**
 * The WGSL backend's f16 subgroup-matrix GEMM (backends/wgsl/gemmSubgroupMatrix.ts) against the CPU
 * interpreter, on a GPU whose WebGPU adapter has chromium-experimental-subgroup-matrix and shader-f16
 * (`KILN_BACKEND=wgsl vitest run test/gpu/wgslGemmF16.test.ts` on the GPU machine; it skips, saying
 * so, where the adapter lacks them: SwiftShader, most browsers). The cases are the tensor-core GEMM
 * cases (test/support/gemmCases.ts) in f16: shapes that are multiples of no tile, K = 1, M = 1, N = 1,
 * K not a multiple of 8, every transposition (row- and column-major staged tiles), f32 inputs cast to
 * f16 (read through the operand expression) and plain f16 inputs (vec4 views), batch broadcasting,
 * every epilogue kind; then both block tiles of the schedule rule on a subset.
 *
 * Tolerances. Inputs are f16 values in [-1, 1) (or f32 values the graph casts to f16, both sides
 * rounding them alike); a product of two f16 values is exact in f32 (22 bits), so the sums differ only
 * by accumulation: the CPU in f64, the GPU in f32 in subgroup-matrix order, at most
 * γ_K·Σ|a·b| ≤ δ := K²·2^-24·max|a|·max|b|. The matmul's result is f16 (the IR rounds it before any
 * epilogue op), and sums δ apart can round to neighbouring f16 values: one f16 ulp, 2^-10·|y| for
 * normal values (2^-24 absolute below 2^-14). Hence per element |wgsl − cpu| ≤ 2^-10·|cpu| + 2^-24 + δ
 * for the matmul outputs, and normwise max|wgsl − cpu| ≤ 2^-9·max|cpu| + δ through the fused
 * epilogues (bias + GELU, residual, tanh, AdamW: well-conditioned, the same argument as test/gpu/gemm.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import type { Backend } from '../../backends/backend.ts';
import { wgslDevice } from '../../backends/wgsl/device.ts';
import { wgslBackendWith } from '../../backends/wgsl/executable.ts';
import type { SgmVariant } from '../../backends/wgsl/gemmSubgroupMatrix.ts';
import { SGM_CANDIDATES } from '../../compiler/schedule/subgroupMatrixTiling.ts';
import type { KernelProgram, TileSchedule } from '../../ir/kernel/types.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { ALIGNED_GEMM_CASES, type GemmCase, GEMM_CASES, gemmFeeds, gemmGraph } from '../support/gemmCases.ts';

const dev = await wgslDevice().catch(() => undefined);
const has = Boolean(dev?.subgroupMatrixF16);
if (!has) console.warn(`test/gpu/wgslGemmF16.test.ts skipped: the WebGPU adapter (${dev?.adapterInfo ?? 'none'}) lacks chromium-experimental-subgroup-matrix with f16→f32 16×16×16 or shader-f16`);

const MATMUL_ONLY = new Set(['store_f32', 'store_bf16']);

/** The WGSL backend, recording the program's matmul schedules and the sources it generated; optionally every subgroup-matrix tile replaced. */
function backend(retile?: Pick<TileSchedule, 'block' | 'warps'> & { stages?: number }, sgm?: SgmVariant): Backend & { tiles: TileSchedule[]; sources: string[] } {
  const sources: string[] = [];
  const inner = wgslBackendWith({ onSource: (_name, src) => sources.push(src), ...(sgm ? { sgm } : {}) });
  const b: Backend & { tiles: TileSchedule[]; sources: string[] } = {
    ...inner, tiles: [], sources,
    compile: async (graph, program, info) => {
      let p = program as KernelProgram;
      if (retile) p = { ...p, kernels: p.kernels.map((k) => (k.kind === 'matmul' && k.tile?.mma?.family === 'subgroup_matrix' ? { ...k, tile: { ...k.tile, stages: 2, ...retile } } : k)) };
      for (const k of p.kernels) if (k.kind === 'matmul' && k.tile) b.tiles.push(k.tile);
      return inner.compile(graph, p, info);
    },
  };
  return b;
}

async function check(c: GemmCase, seed: number, be: ReturnType<typeof backend>): Promise<void> {
  const g = gemmGraph(c, 'f16');
  const { feeds: f, maxAbs } = gemmFeeds(g, seed, 'f16');
  const got = await runOnBackend(be, g, f);
  expect(be.tiles.some((t) => t.mma?.family === 'subgroup_matrix'), `${c.name}: a subgroup-matrix schedule`).toBe(true);
  expect(be.sources.some((s) => s.includes('subgroupMatrixMultiplyAccumulate')), `${c.name}: a subgroup-matrix kernel`).toBe(true);
  const want = runGraph(g, f);
  const delta = c.k * c.k * 2 ** -24 * maxAbs.a! * maxAbs.b!;
  const elementwise = MATMUL_ONLY.has(c.epilogue ?? 'store_f32');
  for (const [name, w] of Object.entries(want)) {
    const a = got[name]!.data, b = w.data;
    let worst = 0, scale = 0, bad = '';
    for (let i = 0; i < b.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      scale = Math.max(scale, Math.abs(b[i]!));
      if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
      if (elementwise && !bad && !(d <= 2 ** -10 * Math.abs(b[i]!) + 2 ** -24 + delta)) bad = `${name}[${i}]: wgsl ${a[i]} cpu ${b[i]}`;
    }
    expect(bad, c.name).toBe('');
    expect(worst, `${c.name} ${name}: max|wgsl − cpu| = ${worst} (max|cpu| ${scale})`).toBeLessThanOrEqual(2 ** -9 * scale + delta);
  }
}

const label = (c: GemmCase) => `${c.name}: ${c.batchA ? `[${c.batchA}]` : ''}${c.m}x${c.k} · ${c.batchB ? `[${c.batchB}]` : ''}${c.k}x${c.n}${c.transA ? ' tA' : ''}${c.transB ? ' tB' : ''} ${c.srcA ?? 'f16'}/${c.srcB ?? 'f16'} ${c.epilogue ?? 'store_f32'}`;
const ONLY = process.env.KILN_SGM_CASES?.split(',');

describe.skipIf(!has)('f16 subgroup-matrix GEMMs equal the CPU interpreter', () => {
  GEMM_CASES.filter((c) => !ONLY || ONLY.includes(c.name)).forEach((c, ci) =>
    it(label(c), async () => { await check(c, 3000 + ci, backend()); }, 120_000));
});

describe.skipIf(!has || Boolean(ONLY))('aligned shapes (no bounds guards, pair epilogue) equal the CPU interpreter', () => {
  ALIGNED_GEMM_CASES.forEach((c, ci) =>
    it(label(c), async () => {
      const be = backend();
      await check(c, 500 + ci, be);
      const src = be.sources.find((x) => x.includes('subgroupMatrixMultiplyAccumulate'))!;
      expect(src.includes('epi2_('), `${c.name}: pair epilogue`).toBe(c.epilogue === 'store_bf16' || c.epilogue === 'bias_gelu');
      expect(src.includes('vec4<u32>(0u)'), `${c.name}: no fetch guards`).toBe(false);
    }, 120_000));
});

const TILE_CASES = ['odd_shapes', 'k_not_mult_8', 'tAtB', 'castB_tB', 'broadcast_mixed', 'adamw_weight_grad', 'mid_tile'];
// The schedule rule's tiles (the first one stage), and the two-stage 128×256×16 tile (the default before 2026-12-02, s5-sgm).
const TWO_STAGE = { block: { m: 128, n: 256, k: 16 }, warps: { m: 2, n: 4 }, stages: 2 };
const TILES: Array<Pick<TileSchedule, 'block' | 'warps'> & { stages?: number }> = [...SGM_CANDIDATES, TWO_STAGE];
const tileCases = () => [...TILE_CASES.map((name) => GEMM_CASES.find((g) => g.name === name)!), ...ALIGNED_GEMM_CASES];
describe.skipIf(!has || Boolean(ONLY))('every subgroup-matrix block tile equals the CPU interpreter', () => {
  for (const tile of TILES)
    it(`${tile.block.m}x${tile.block.n}x${tile.block.k} subgroups ${tile.warps.m}x${tile.warps.n}${tile.stages === 1 ? ' one stage' : ''}`, async () => {
      for (const c of tileCases()) await check(c, 11, backend(tile));
    }, 300_000);
  // The renderer's other choices (SgmVariant), on the two-stage 128×256×16 tile (two K steps ahead needs two stages).
  const VARIANTS: Array<[string, SgmVariant]> = [['two K steps ahead', { prefetch: 2 }], ['constant fragment offsets', { constOffsets: true }], ['k-contiguous staging, guards, scalar epilogue', { mnStaging: 'k', guards: 'always', store: 'scalar', group: 1 }]];
  for (const [name, sgm] of VARIANTS)
    it(`128x256x16 subgroups 2x4, ${name}`, async () => {
      for (const c of tileCases()) await check(c, 12, backend(TWO_STAGE, sgm));
    }, 300_000);
});

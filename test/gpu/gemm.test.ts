/**
 * Tensor-core GEMMs on the GPU against the CPU reference interpreter (KILN_BACKEND=cuda vitest run
 * test/gpu/gemm.test.ts): the bf16 graphs of test/support/gemmCases.ts (shapes that are multiples of
 * no tile, K = 1, M = 1, N = 1, every transposition, batch broadcasting, every epilogue kind, both
 * operand stagings, every block tile the tiling stage picks), and every tile of the tuner's search
 * space (compiler/schedule/tiling.ts TUNING_TILES) on a subset of the cases.
 *
 * Tolerances. Inputs are bf16 values (or f32 values the graph casts to bf16): both sides round them
 * identically, and a product of two bf16 values is exact in f32, so the sums differ only by the
 * order and precision of accumulation: the CPU sums in f64 (exact to ~2^-53), the GPU in f32 in
 * MMA order, whose error is at most γ_K·Σ_p|a_ip·b_pj| ≤ K·2^-24·K·max|a|·max|b| =: δ. The matmul's
 * result is bf16 (the IR rounds it before any epilogue op), and two sums δ apart can round to
 * neighbouring bf16 values: one bf16 ulp, ≤ 2^-7·|y|. Hence, per element:
 *  - matmul outputs (stored as bf16 or cast to f32): |cuda − cpu| ≤ 2^-7·|cpu| + δ;
 *  - fused epilogues (bias + GELU in bf16, residual, tanh, AdamW): the ulp of the accumulator moves
 *    through well-conditioned ops (and each bf16 op rounds equal inputs equally), checked normwise:
 *    max|cuda − cpu| ≤ 2^-6·max|cpu| + δ.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import type { Backend } from '../../backends/backend.ts';
import { CudaExecutable, createCudaBackend } from '../../backends/cuda/executable.ts';
import { TUNING_TILES } from '../../compiler/schedule/tiling.ts';
import { compile } from '../../compiler/compile.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { type GemmCase, GEMM_CASES, gemmFeeds, gemmGraph } from '../support/gemmCases.ts';
import type { TileSchedule } from '../../ir/kernel/types.ts';

/** The generated kernels as the tiling stage schedules them (no measured cuBLAS schedules). */
const generated = createCudaBackend({ gemmTuning: false, gemmDefault: 'generated' });

const MATMUL_ONLY = new Set(['store_f32', 'store_bf16']);

/** Run a case on a backend and compare every output with the CPU interpreter (tolerances above). */
async function check(c: GemmCase, seed: number, backend: Backend): Promise<void> {
  const g = gemmGraph(c);
  const { feeds: f, maxAbs } = gemmFeeds(g, seed);
  const got = await runOnBackend(backend, g, f);
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
      if (elementwise && !bad && !(d <= 2 ** -7 * Math.abs(b[i]!) + delta)) bad = `${name}[${i}]: cuda ${a[i]} cpu ${b[i]}`;
    }
    expect(bad, `${c.name}`).toBe('');
    expect(worst, `${c.name} ${name}: max|cuda − cpu| = ${worst} (max|cpu| ${scale})`).toBeLessThanOrEqual(2 ** -6 * scale + delta);
  }
}

describe('tensor-core GEMMs equal the CPU interpreter', () => {
  GEMM_CASES.forEach((c, ci) =>
    it(`${c.name}: ${c.batchA ? `[${c.batchA}]` : ''}${c.m}x${c.k} · ${c.batchB ? `[${c.batchB}]` : ''}${c.k}x${c.n}${c.transA ? ' tA' : ''}${c.transB ? ' tB' : ''} ${c.srcA ?? 'bf16'}/${c.srcB ?? 'bf16'} ${c.epilogue ?? 'store_f32'}`, async () => {
      const mm = compile(gemmGraph(c)).program.kernels.filter((k) => k.kind === 'matmul');
      expect(mm.length).toBe(1);
      expect(mm[0]!.kind === 'matmul' && mm[0]!.tile?.provider).toBe('tensor-core');
      await check(c, 1000 + ci, generated);
    }, 120_000),
  );
});

/** The generated kernels with every matmul's tile replaced by `tile` (operand plans kept). */
function retiled(tile: Pick<TileSchedule, 'block' | 'warps' | 'stages'>): Backend {
  return {
    name: 'cuda', consumes: 'kernels',
    compile: async (graph, program) => {
      const kernels = program!.kernels.map((k) => (k.kind === 'matmul' && k.tile?.provider === 'tensor-core' ? { ...k, tile: { ...k.tile, ...tile } } : k));
      return new CudaExecutable(graph, { ...program!, kernels }, { gemmTuning: false, gemmDefault: 'generated' });
    },
  };
}

// Every tile the tuner may measure and pick, on edge tiles, both stagings, transpositions, batch
// broadcast and a fused epilogue.
const TILE_CASES = ['odd_shapes', 'k1', 'tAtB', 'castB_tB', 'broadcast_mixed', 'adamw_weight_grad', 'mid_tile'];
describe('every tuning tile equals the CPU interpreter', () => {
  for (const tile of TUNING_TILES)
    it(`${tile.block.m}x${tile.block.n}x${tile.block.k} warps ${tile.warps.m}x${tile.warps.n} stages ${tile.stages}`, async () => {
      for (const name of TILE_CASES) await check(GEMM_CASES.find((c) => c.name === name)!, 7, retiled(tile));
    }, 300_000);
});

/**
 * The library provider as the tuner may pick it (provider 'cublas': cuBLAS GemmEx bf16, operands that
 * are not plain strided bf16 views staged into the GEMM workspace, C into the fused epilogue kernel;
 * backends/cuda/gemmLibrary.ts), on every case. Same tolerances: cuBLAS also accumulates in f32 (its
 * order differs from the generated kernel's, within δ), and writes C in bf16 only where the IR rounds
 * the accumulator to bf16 anyway.
 */
const library = (provider: 'cublas' | 'cublaslt'): Backend => ({
  name: 'cuda', consumes: 'kernels',
  compile: async (graph, program) => {
    const kernels = program!.kernels.map((k) => (k.kind === 'matmul' && k.tile?.provider === 'tensor-core' ? { ...k, tile: { ...k.tile, provider, source: 'measured' as const } } : k));
    return new CudaExecutable(graph, { ...program!, kernels }, { gemmTuning: false });
  },
});
// cuBLASLt: its bias epilogue where the epilogue is accumulator + bias (it adds the bias to the f32
// accumulator and rounds once; the IR rounds the accumulator to bf16 first: at most one rounding of
// the output apart, inside the normwise bound), its default epilogue elsewhere.
for (const provider of ['cublas', 'cublaslt'] as const)
  describe(`the library GEMM provider ${provider} (bf16 + staging + workspace epilogue) equals the CPU interpreter`, () => {
    GEMM_CASES.forEach((c, ci) =>
      it(`${c.name} (${provider})`, async () => {
        await check(c, 2000 + ci, library(provider));
      }, 120_000),
    );
  });

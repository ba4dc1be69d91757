/**
 * The f16 subgroup-matrix GEMM's parts that run without a GPU (its numbers are checked on the GPU
 * machine by test/gpu/wgslGemmF16.test.ts):
 *  - the schedule rule (compiler/schedule/subgroupMatrixTiling.ts) as the tiling stage applies it on
 *    the WebGPU subgroup-matrix target: block tile per problem size, operand plans (plain f16 loads
 *    'async' = vec4 views, casts 'registers'), workgroup memory within the device's, a SIMT fallback
 *    where no tile fits; the CUDA target's schedules unchanged;
 *  - on SwiftShader (no shader-f16, no subgroup matrices) the path is not taken: no subgroup-matrix
 *    target, no such kernel, and the f16 GEMM still equals the CPU interpreter;
 *  - the WGSL it generates parses: Dawn on SwiftShader cannot validate a module that enables
 *    extensions the device lacks (it stops at `enable f16;`), but it parses the whole module first,
 *    so a syntax error is reported beside the extension error; the test asserts the extension error
 *    is the only one, for the rendered kernels of several shapes, transpositions and epilogues.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { wgslDevice } from '../../backends/wgsl/device.ts';
import { WgslExecutable, wgslBackend } from '../../backends/wgsl/executable.ts';
import { type SgmVariant, sgmGemmTarget, sgmGuardSplit, sgmTileOrigin } from '../../backends/wgsl/gemmSubgroupMatrix.ts';
import { compile } from '../../compiler/compile.ts';
import { SGM_CANDIDATES, sgmScheduleBytes, wgslGemmTarget } from '../../compiler/schedule/subgroupMatrixTiling.ts';
import { roundF16 } from '../../ir/dtype.ts';
import type { MatmulKernel, TileSchedule } from '../../ir/kernel/types.ts';
import { numel } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { ALIGNED_GEMM_CASES, type GemmCase, GEMM_CASES, gemmGraph } from '../support/gemmCases.ts';

const TARGET = wgslGemmTarget(48 * 1024);
const caseOf = (name: string) => [...GEMM_CASES, ...ALIGNED_GEMM_CASES].find((c) => c.name === name)!;
const matmuls = (c: GemmCase, target = TARGET) => compile(gemmGraph(c, 'f16'), { target }).program.kernels.filter((k): k is MatmulKernel => k.kind === 'matmul');
const tileOf = (c: GemmCase, target = TARGET): TileSchedule => matmuls(c, target)[0]!.tile!;

describe('subgroup-matrix schedules in the kernel IR', () => {
  it('picks the largest block whose tiles fill the device: 128×256×32 (one stage), 128×128×32 (2×4 subgroups), 64×64×32', () => {
    // 2056×4096: 17·16 = 272 tiles of 128×256; 2000×2048: 16·8 = 128 of them (< 132), 256 of 128².
    expect(tileOf(caseOf('huge_tile'))).toMatchObject({ block: { m: 128, n: 256, k: 32 }, warps: { m: 2, n: 4 }, stages: 1 });
    const big = tileOf(caseOf('big_tile'));
    expect(big).toMatchObject({ provider: 'tensor-core', block: { m: 128, n: 128, k: 32 }, warps: { m: 2, n: 4 }, stages: 2, source: 'default' });
    expect(big.mma).toEqual({ family: 'subgroup_matrix', m: 16, n: 16, k: 16, ab: 'f16', acc: 'f32', threads: 32 });
    // 520×1030: 5·9 = 45 tiles of 128² (< 132), 9·17 = 153 of 64².
    expect(tileOf(caseOf('mid_tile'))).toMatchObject({ block: { m: 64, n: 64, k: 32 }, warps: { m: 2, n: 2 } });
    expect(tileOf(caseOf('odd_shapes')).block).toEqual({ m: 64, n: 64, k: 32 });
  });

  it('plans plain 8-aligned f16 operands as copies (vec4 views), casts and misaligned K through the operand expression', () => {
    expect(tileOf(caseOf('big_tile'))).toMatchObject({ a: { staging: 'async', major: 'k' }, b: { staging: 'async', major: 'mn' } });
    expect(tileOf(caseOf('tAtB'))).toMatchObject({ a: { staging: 'async', major: 'mn' }, b: { staging: 'async', major: 'k' } });
    expect(tileOf(caseOf('castB_tB'))).toMatchObject({ a: { staging: 'async' }, b: { staging: 'registers', major: 'k' } });
    expect(tileOf(caseOf('k_not_mult_8'))).toMatchObject({ a: { staging: 'registers' } });
  });

  it('stays within the workgroup memory, and falls back to SIMT where no tile fits', () => {
    for (const c of GEMM_CASES) {
      const t = tileOf(c);
      if (t.provider === 'tensor-core') expect(sgmScheduleBytes(t.block, t.warps, t.stages), c.name).toBeLessThanOrEqual(TARGET.sharedBytes);
    }
    for (const c of SGM_CANDIDATES) expect(sgmScheduleBytes(c.block, c.warps, c.stages)).toBeLessThanOrEqual(16 * 1024 * 3);
    expect(tileOf(caseOf('big_tile'), wgslGemmTarget(16 * 1024)).provider).toBe('simt');
  });

  it('leaves the CUDA target (the default) as it was: mma.sync tiles', () => {
    const t = compile(gemmGraph(caseOf('big_tile'))).program.kernels.find((k): k is MatmulKernel => k.kind === 'matmul')!.tile!;
    expect(t.mma?.family).toBe('mma.sync');
  });
});

function feeds(c: GemmCase, seed: number): Record<string, HostTensor> {
  const g = gemmGraph(c, 'f16');
  const rnd = mulberry32(seed);
  return Object.fromEntries(g.inputs.map((i) => [i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, () => (i.name === 'v' ? 0.5 + rnd() : roundF16(2 * rnd() - 1))))]));
}

describe('on SwiftShader (no subgroup matrices)', () => {
  it('the WGSL backend has no subgroup-matrix target and renders the f16 GEMM without them, equal to the CPU interpreter', async () => {
    const dev = await wgslDevice();
    expect(dev.subgroupMatrixF16).toBe(false);
    expect(await wgslBackend.gemmTarget!()).toBeUndefined();
    const c = caseOf('odd_shapes');
    const f = feeds(c, 5);
    const sources: string[] = [];
    const be = { ...wgslBackend, compile: async (...a: Parameters<typeof wgslBackend.compile>) => { const e = await wgslBackend.compile(...a); sources.push(...(e as WgslExecutable).dispatches.flat().map((d) => d.source)); return e; } };
    const got = await runOnBackend(be, gemmGraph(c, 'f16'), f);
    expect(sources.some((s) => s.includes('subgroup_matrix'))).toBe(false);
    const want = runGraph(gemmGraph(c, 'f16'), f);
    // f32 (serial) accumulation vs the interpreter's f64, one f16 rounding apart at most (test/gpu/wgslGemmF16.test.ts).
    const delta = c.k * c.k * 2 ** -24;
    const a = got.y!.data, b = want.y!.data;
    for (let i = 0; i < b.length; i++) expect(Math.abs(a[i]! - b[i]!), `y[${i}]`).toBeLessThanOrEqual(2 ** -10 * Math.abs(b[i]!) + 2 ** -24 + delta);
  }, 120_000);
});

describe('the subgroup-matrix WGSL parses (SwiftShader stops at the extension, after parsing)', () => {
  const CASES = ['odd_shapes', 'tAtB', 'castB_tB', 'broadcast_mixed', 'bias_gelu', 'store_bf16', 'adamw_weight_grad', 'big_tile', 'huge_tile', ...ALIGNED_GEMM_CASES.map((c) => c.name)];
  // The renderer's defaults, its other choices (SgmVariant), and a one-stage tile.
  const VARIANTS: Array<{ name: string; sgm?: SgmVariant; stages?: number }> = [
    { name: 'default' }, { name: 'old', sgm: { mnStaging: 'k', guards: 'always', store: 'scalar', group: 1 } }, { name: 'one stage', stages: 1 }, { name: 'two stages', stages: 2 }, { name: 'two steps ahead', sgm: { prefetch: 2 } }, { name: 'constant offsets', sgm: { constOffsets: true } }, { name: 'constant offsets, one stage', sgm: { constOffsets: true }, stages: 1 },
  ];
  for (const v of VARIANTS)
    it(`${v.name}: ${CASES.join(', ')}`, async () => {
      const dev = await wgslDevice();
      for (const name of CASES) {
        const c = caseOf(name);
        const g = gemmGraph(c, 'f16');
        let program = compile(g, { target: TARGET }).program;
        if (v.stages) program = { ...program, kernels: program.kernels.map((k) => (k.kind === 'matmul' && k.tile ? { ...k, tile: { ...k.tile, stages: v.stages! } } : k)) };
        const sources: string[] = [];
        // Pipeline creation fails on SwiftShader (no f16): the sources are what we check.
        await WgslExecutable.create(g, program, dev, { reductions: 'serial', gemm: 'simple', subgroupMatrix: true, ...(v.sgm ? { sgm: v.sgm } : {}) }, (_n, s) => sources.push(s)).then((e) => e.dispose(), () => undefined);
        const sgm = sources.filter((s) => s.includes('subgroupMatrixMultiplyAccumulate'));
        expect(sgm.length, name).toBe(1);
        const info = await dev.device.createShaderModule({ code: sgm[0]! }).getCompilationInfo();
        const errors = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
        expect(errors, name).toEqual([`2:8 extension 'f16' is not allowed in the current environment`]);
      }
    }, 120_000);
});

describe('the pair epilogue (one plain store per 32-bit word of a 16-bit result, no atomic binding) is rendered exactly where it is valid', () => {
  // [case, epi2_ expected]: f16 results with n even take it; n odd (a word would straddle two rows),
  // f32 results (no 16-bit store) and bf16/f16 stores with other index forms do not.
  const CASES: Array<[GemmCase, boolean]> = [
    [caseOf('store_bf16'), true], [caseOf('bias_gelu'), true], [caseOf('aligned_f16'), true], [caseOf('bias_bf16_batched'), true],
    [{ name: 'odd_n_f16', m: 64, n: 75, k: 32, epilogue: 'store_bf16' }, false], [caseOf('aligned_tAtB_f32'), false], [caseOf('odd_shapes'), false],
  ];
  it(CASES.map(([c, w]) => `${c.name} ${w ? 'yes' : 'no'}`).join(', '), async () => {
    const dev = await wgslDevice();
    for (const [c, want] of CASES) {
      const g = gemmGraph(c, 'f16');
      const sources: string[] = [];
      await WgslExecutable.create(g, compile(g, { target: TARGET }).program, dev, { reductions: 'serial', gemm: 'simple', subgroupMatrix: true }, (_n, s) => sources.push(s)).then((e) => e.dispose(), () => undefined);
      const sgm = sources.find((s) => s.includes('subgroupMatrixMultiplyAccumulate'))!;
      expect(sgm.includes('epi2_('), c.name).toBe(want);
      // Where it is used, no per-element 16-bit store is left in the kernel's main.
      if (want) expect(sgm.slice(sgm.indexOf('fn main')).includes('epi_('), c.name).toBe(false);
      // ... and its 16-bit outputs are plain u32 bindings, each word one plain store (no atomics at all).
      if (want) expect(/atomic/.test(sgm), `${c.name}: atomics`).toBe(false);
    }
  }, 120_000);
});

describe('the backend builds the compiler\'s target', () => {
  it('sgmGemmTarget equals wgslGemmTarget', () => {
    expect(sgmGemmTarget(48 * 1024)).toEqual(wgslGemmTarget(48 * 1024));
  });
});

describe('the grouped tile order', () => {
  // The WGSL of sgmTileOrigin (u32 arithmetic: + * / % min) evaluated in JS.
  const origin = (gx: number, gy: number, G: number) => {
    const js = sgmTileOrigin('tl', gx, gy, 1, 1, G).join('\n').replace(/(\d+)u\b/g, '$1').replace(/\blet /g, 'const ').replace(/\bmin\(/g, 'Math.min(')
      .replace(/(\w+|\([^()]*\)) \/ (\w+)/g, 'Math.floor($1 / $2)');
    return new Function('tl', `${js}\nreturn [i0, j0];`) as (tl: number) => [number, number];
  };
  it('visits every tile of the grid exactly once', () => {
    for (const [gx, gy, G] of [[64, 64, 8], [5, 13, 8], [7, 3, 8], [1, 1, 8], [9, 17, 4], [3, 5, 1]] as const) {
      const f = origin(gx, gy, G);
      const seen = new Set<number>();
      for (let t = 0; t < gx * gy; t++) {
        const [i, j] = f(t);
        expect(i < gy && j < gx && i >= 0 && j >= 0, `${gx}x${gy}/${G} tile ${t}`).toBe(true);
        seen.add(i * gx + j);
      }
      expect(seen.size, `${gx}x${gy}/${G}`).toBe(gx * gy);
    }
  });
});

describe('bounds guards only where a tile can cross the matrix edge', () => {
  const T = { bm: 128, bn: 256, bk: 16 };
  it('sgmGuardSplit: none where the tile divides m, n, k; k only where it divides m, n; an unguarded interior copy otherwise', () => {
    expect(sgmGuardSplit(8192, 8192, 8192, T, 'edge')).toEqual({ edge: 'none' });
    expect(sgmGuardSplit(4096, 4096, 4104, T, 'edge')).toEqual({ edge: 'k' });
    // LightningDiT-XL/1's fc2 (n = 1152 = 4.5 tiles): 4 of 5 tile columns inside.
    expect(sgmGuardSplit(16384, 1152, 4608, T, 'edge')).toEqual({ edge: 'all', interior: 'none' });
    expect(sgmGuardSplit(2000, 2048, 72, { bm: 128, bn: 128, bk: 32 }, 'edge')).toEqual({ edge: 'all', interior: 'k' });
    // No tile inside along n: one guarded body.
    expect(sgmGuardSplit(4096, 200, 64, T, 'edge')).toEqual({ edge: 'all' });
    expect(sgmGuardSplit(8192, 8192, 8192, T, 'always')).toEqual({ edge: 'all' });
  });

  // [case, the interior test expected in main (undefined: one body), fetch guards left in the interior copy]
  const CASES: Array<[string, string | undefined, 'none' | 'k' | 'all']> = [
    ['odd_shapes', 'if (i0 + 64u <= 77u && j0 + 64u <= 131u) {', 'k'], ['big_tile', 'if (i0 + 128u <= 2000u && j0 + 128u <= 2048u) {', 'k'],
    ['huge_tile', 'if (i0 + 128u <= 2056u && j0 + 256u <= 4096u) {', 'k'], ['aligned_f16', undefined, 'none'], ['k_not_mult_8', 'if (i0 + 64u <= 130u && j0 + 64u <= 96u) {', 'k'],
  ];
  it(CASES.map(([c]) => c).join(', '), async () => {
    const dev = await wgslDevice();
    for (const [name, test, interior] of CASES) {
      const c = caseOf(name);
      const g = gemmGraph(c, 'f16');
      const sources: string[] = [];
      await WgslExecutable.create(g, compile(g, { target: TARGET }).program, dev, { reductions: 'serial', gemm: 'simple', subgroupMatrix: true }, (_n, s) => sources.push(s)).then((e) => e.dispose(), () => undefined);
      const src = sources.find((s) => s.includes('subgroupMatrixMultiplyAccumulate'))!;
      const main = src.slice(src.indexOf('fn main'));
      if (!test) {
        expect(main.includes(' <= '), name).toBe(false);
        expect(main.includes('vec4<u32>(0u)'), `${name}: no fetch guards`).toBe(false);
        continue;
      }
      expect(main.includes(test), `${name}: ${test}`).toBe(true);
      const [fast, edge] = main.split('  } else {');
      expect(edge, name).toBeDefined();
      // The edge copy tests m|n (i < m or j < n) in its fetches and its stores; the interior copy never does.
      const mn = new RegExp(`< ${c.m}u|< ${c.n}u|< ${c.m}i`);
      expect(mn.test(fast!.slice(fast!.indexOf(test) + test.length)), `${name}: interior tests m or n`).toBe(false);
      expect(mn.test(edge!), `${name}: edge copy tests m or n`).toBe(true);
      expect(new RegExp(`< ${c.k}u`).test(fast!), `${name}: interior tests k`).toBe(interior === 'k');
    }
  }, 120_000);
});

/**
 * Every generated CUDA module must compile: CUDA C++ from the kernel programs of random graphs and of
 * real training steps, compiled to PTX with nvcc (this machine has nvcc but no GPU; the GPU suite in
 * test/gpu runs the same code on a GPU), including every tensor-core GEMM variant of
 * test/support/gemmCases.ts as sm_90 cubins. Also pins how matmuls are planned (cuBLAS, generated
 * SGEMM, tensor cores).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import { trace } from '../../compiler/dsl/trace.ts';
import { autocast } from '../../compiler/transforms/autocast.ts';
import { TUNING_TILES } from '../../compiler/schedule/tiling.ts';
import type { Graph } from '../../ir/graph.ts';
import { I, bin, cast, iadd, imul, konst, load, ref, select } from '../../ir/kernel/expr.ts';
import type { AttentionTile, BufferDecl, Kernel, KernelProgram, Stmt } from '../../ir/kernel/types.ts';
import { attentionGradOnlyGraph, attentionGraph } from '../support/attentionGraphs.ts';
import { GEMM_CASES, gemmGraph } from '../support/gemmCases.ts';
import { randomGraph } from '../support/randomGraph.ts';
import { REDUCTION_CASES, reductionGraph } from '../support/reductionGraphs.ts';

const run = promisify(execFile);
const nvcc = await run('nvcc', ['--version']).then(() => true, () => false);

const programs: Array<[string, () => Graph]> = [
  ...Array.from({ length: 16 }, (_, s) => [`random graph ${s}`, () => randomGraph(s, { finiteF32: s % 2 === 0 })] as [string, () => Graph]),
  ...REDUCTION_CASES.map((c) => [`reductions ${c.name} (column and row kernels)`, () => reductionGraph(c)] as [string, () => Graph]),
  ['MLP training step', () => buildProgram('mlp', { train: true, batch: 16 })],
  ['transformer block training step', () => buildProgram('block', { train: true, batch: 2, size: '64x4x16' })],
  ['transformer block training step, bf16 autocast (tensor-core GEMMs)', () => autocast(buildProgram('block', { train: true, batch: 2, size: '64x4x16' }), { dtype: 'bf16' })],
  ['TarFlow training step', () => buildProgram('tarflow', { train: true, batch: 2, size: 'tinyCond' })],
  ['FAE stage Ia training step', () => buildProgram('fae', { train: true, batch: 2, size: 'tiny' })],
  // Flash attention (bf16 tensor cores), forward and backward: every head dim, causal or not, a
  // sequence length that is not a multiple of the tiles, both operand layouts (cp.async and element loads).
  ...[64, 72, 128, 256].flatMap((dim) => [false, true].map((causal) =>
    [`flash attention d${dim}${causal ? ' causal' : ''}`, () => attentionGraph({ batch: 2, heads: 3, seq: 100, dim, causal, grads: true, layout: causal ? 'bshd' : 'bhsd' })] as [string, () => Graph])),
  // The default tiles at the bench's shapes (bench/attention.sh: longer sequences pick larger tiles).
  ...(['256,16,256,72', '64,16,1024,64', '32,16,256,256', '64,16,1024,128,causal']).map((spec) => {
    const [batch, heads, seq, dim, causal] = spec.split(',');
    return [`flash attention at the bench shape ${spec}`, () => attentionGraph({ batch: +batch!, heads: +heads!, seq: +seq!, dim: +dim!, causal: causal === 'causal', grads: true })] as [string, () => Graph];
  }),
  ['flash attention backward alone d64 causal (statistics-only forward pass)', () => attentionGradOnlyGraph({ batch: 2, heads: 3, seq: 100, dim: 64, causal: true })],
  ['flash attention d36 (element loads: head dim not a multiple of 8)', () => attentionGraph({ batch: 1, heads: 2, seq: 33, dim: 36, causal: false, grads: true, layout: 'bshd' })],
];

/**
 * ptxas's notes that it serialized wgmma (C7519 warpgroup.arrive / C7517 warpgroup.wait injected: registers
 * of an in-flight wgmma touched, e.g. A fragments or zeroed accumulators written after wgmma.fence).
 */
function injectedWaits(stderr: string): string | undefined {
  const n = (stderr.match(/\(C751[79]\)/g) ?? []).length;
  return n ? `ptxas injected ${n} warpgroup arrive/wait (wgmma serialized)` : undefined;
}

describe.skipIf(!nvcc)('generated CUDA compiles with nvcc', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cuda-'));
  it('all programs (compiled to PTX for sm_90 in parallel)', async () => {
    const jobs = programs.map(async ([name, make], i) => {
      const file = join(dir, `m${i}.cu`);
      writeFileSync(file, generateCuda(compile(make()).program).source);
      try {
        if (!name.startsWith('flash attention')) {
          await run('nvcc', ['-arch=sm_90', '--ptx', '-o', join(dir, `m${i}.ptx`), file]);
          return undefined;
        }
        // Flash attention's inline PTX (mma.sync, ldmatrix, cp.async) is only checked by ptxas: assemble
        // it to a cubin, and allow no more than a word or so of local-memory spills (ptxas spills 4 bytes
        // in the causal d64/d72 forward at sequence length 100 when it settles on 128 registers).
        // sm_90a: the wgmma forward (flashAttentionWgmma.ts); NVRTC builds sm_90a on Hopper too (nvrtcPool.ts).
        const { stderr } = await run('nvcc', ['-gencode=arch=compute_90a,code=sm_90a', '-cubin', '-Xptxas', '-v', '-o', join(dir, `m${i}.cubin`), file]);
        const spills = [...stderr.matchAll(/(\d+) bytes spill stores/g)].filter((m) => Number(m[1]) > 16);
        if (spills.length) return `${name}: ${spills.length} functions spill more than 16 bytes`;
        return injectedWaits(stderr) ? `${name}: ${injectedWaits(stderr)}` : undefined;
      } catch (e) {
        return `${name}: ${String((e as { stderr?: string }).stderr ?? e).split('\n').filter((l) => l.includes('error')).slice(0, 3).join(' | ')}`;
      }
    });
    const errors = (await Promise.all(jobs)).filter((x) => x !== undefined);
    expect(errors).toEqual([]);
  }, 300_000);

  it('flash attention tile variants (the alternatives the bench measures; sm_90 cubin, no spills)', async () => {
    // Index parity picks causal: odd entries are causal.
    const variants: Array<[number, Partial<AttentionTile>, Partial<AttentionTile>]> = [
      [64, { bq: 128, warps: 8 }, { bq: 64, bk: 64, warps: 4 }],
      [72, { bq: 64, warps: 2 }, { bq: 64, bk: 128, warps: 8, dq: undefined }],
      [64, { bq: 128, warps: 4 }, { bq: 64, bk: 128, warps: 8 }],
      [128, { bq: 128, bk: 64, warps: 8 }, { bq: 32, bk: 128, warps: 8 }],
      [256, { bq: 128, warps: 8 }, { bq: 32, bk: 64, warps: 4 }],
      [72, {}, { dq: { bq: 128, bk: 32, warps: 4 } }],
      [128, {}, { dq: { bq: 64, bk: 32, warps: 4 } }],
      [256, {}, { dq: { bq: 64, bk: 32, warps: 4 } }],
      [64, { bk: 32 }, { bq: 32, bk: 128, warps: 4, dq: { bq: 128, bk: 32, warps: 4 } }],
      [128, {}, { bq: 32, bk: 128, warps: 8, dq: { bq: 64, bk: 32, warps: 4 } }],
      [128, {}, { bq: 32, bk: 128, warps: 8 }],
      [128, { bq: 128, bk: 64 }, { bq: 64, bk: 64 }],
      [256, { bq: 128, bk: 64, warps: 8 }, { bq: 32, bk: 128, warps: 8 }],
      [256, { bk: 64 }, {}],
      // wgmma (flashAttentionWgmma.ts): two blocks per SM, the overlapped forward, both backward widths.
      [64, { wgmma: { warpgroups: 2, bk: 64, minBlocks: 2 } }, { wgmma: { warpgroups: 1, bk: 64 } }],
      [64, { wgmma: { warpgroups: 2, bk: 64, minBlocks: 2 } }, { wgmma: { warpgroups: 2, bk: 128 } }],
      [128, { wgmma: { warpgroups: 1, bk: 64, minBlocks: 2 } }, { wgmma: { warpgroups: 1, bk: 64 } }],
      [128, { wgmma: { warpgroups: 1, bk: 64, minBlocks: 2, overlap: true } }, {}],
      [256, { wgmma: { warpgroups: 1, bk: 64, minBlocks: 2 } }, { wgmma: { warpgroups: 1, bk: 64 } }],
      [256, { wgmma: { warpgroups: 2, bk: 64, overlap: true } }, { wgmma: { warpgroups: 1, bk: 64 } }],
      [64, { wgmma: { warpgroups: 1, bk: 128, minBlocks: 3 } }, {}],
      [64, { wgmma: { warpgroups: 1, bk: 64, minBlocks: 4 } }, {}],
      [64, { wgmma: { warpgroups: 2, bk: 64, minBlocks: 2, overlap: true } }, {}],
      [256, {}, { wgmma: { warpgroups: 1, bk: 64, overlap: true } }],
      [64, {}, { wgmma: { warpgroups: 2, bk: 128 } }],
      // The warp-specialized forward (producer warpgroup, mbarrier rings; flashAttentionWgmma.ts).
      [64, { wgmma: { warpgroups: 2, bk: 128, overlap: true, producerWarps: 4, stages: 2 } }, {}],
      [128, { wgmma: { warpgroups: 2, bk: 128, overlap: true, producerWarps: 4, stages: 2 } }, {}],
      [256, { wgmma: { warpgroups: 2, bk: 64, overlap: true, producerWarps: 4, stages: 2 } }, {}],
      [64, { wgmma: { warpgroups: 2, bk: 128, producerWarps: 4, stages: 3 } }, {}],
      [64, { wgmma: { warpgroups: 2, bk: 64, overlap: true, producerWarps: 4, stages: 2 } }, {}],
      [128, { wgmma: { warpgroups: 2, bk: 128, overlap: true, producerWarps: 4, stages: 2, pingpong: true } }, {}],
      [64, {}, { wgmma: { warpgroups: 2, bk: 128, overlap: true, producerWarps: 4, stages: 3 } }],
      [128, {}, { wgmma: { warpgroups: 2, bk: 128, producerWarps: 4, stages: 2 } }],
    ];
    const jobs = variants.map(async ([dim, fwd, bwd], i) => {
      const p = compile(attentionGraph({ batch: 2, heads: 3, seq: 100, dim, causal: i % 2 === 1, grads: true })).program;
      const kernels: Kernel[] = p.kernels.map((k) => ((k.kind === 'attention' || k.kind === 'attention_grad') && k.tile ? { ...k, tile: { ...k.tile, ...(k.kind === 'attention' ? fwd : bwd) } } : k));
      const file = join(dir, `flash${i}.cu`);
      writeFileSync(file, generateCuda({ ...p, kernels }).source);
      try {
        const { stderr } = await run('nvcc', ['-gencode=arch=compute_90a,code=sm_90a', '-cubin', '-Xptxas', '-v', '-o', join(dir, `flash${i}.cubin`), file]);
        const spills = [...stderr.matchAll(/(\d+) bytes spill stores/g)].filter((m) => Number(m[1]) > 16);
        if (spills.length) return `d${dim} ${JSON.stringify([fwd, bwd])}: ${spills.length} functions spill more than 16 bytes`;
        return injectedWaits(stderr) ? `d${dim} ${JSON.stringify([fwd, bwd])}: ${injectedWaits(stderr)}` : undefined;
      } catch (e) {
        return `d${dim} ${JSON.stringify([fwd, bwd])}: ${String((e as { stderr?: string }).stderr ?? e).split('\n').filter((l) => l.includes('error')).slice(0, 3).join(' | ')}`;
      }
    });
    expect((await Promise.all(jobs)).filter((x) => x !== undefined)).toEqual([]);
  }, 300_000);

  it('every tensor-core GEMM variant (sm_90 cubin: mma.sync, ldmatrix, cp.async assemble; no register spills)', async () => {
    // Each case's module repeats the prelude: compile them one by one, in parallel.
    const jobs = GEMM_CASES.map(async (c, i) => {
      const file = join(dir, `gemm${i}.cu`);
      writeFileSync(file, generateCuda(compile(gemmGraph(c)).program).source);
      try {
        const { stderr } = await run('nvcc', ['-arch=sm_90', '-cubin', '-Xptxas', '-v', '-o', join(dir, `gemm${i}.cubin`), file]);
        const spill = /(\d+) bytes spill stores/.exec(stderr);
        return spill && Number(spill[1]) > 64 ? `${c.name}: ${spill[1]} bytes of register spills` : undefined;
      } catch (e) {
        return `${c.name}: ${String((e as { stderr?: string }).stderr ?? e).split('\n').filter((l) => l.includes('error')).slice(0, 3).join(' | ')}`;
      }
    });
    expect((await Promise.all(jobs)).filter((x) => x !== undefined)).toEqual([]);
  }, 300_000);

  it('every tile of the tuner search space (sm_90 cubin, async and register-staged operands, both majors)', async () => {
    const cases = GEMM_CASES.filter((c) => c.name === 'castB_tB' || c.name === 'tAtB');
    const jobs = TUNING_TILES.flatMap((tile, t) => cases.map(async (c, ci) => {
      const p = compile(gemmGraph(c)).program;
      const kernels = p.kernels.map((k) => (k.kind === 'matmul' && k.tile ? { ...k, tile: { ...k.tile, ...tile } } : k));
      const file = join(dir, `tile${t}_${ci}.cu`);
      writeFileSync(file, generateCuda({ ...p, kernels }).source);
      try {
        await run('nvcc', ['-arch=sm_90', '-cubin', '-o', join(dir, `tile${t}_${ci}.cubin`), file]);
        return undefined;
      } catch (e) {
        return `${c.name} ${tile.block.m}x${tile.block.n}x${tile.block.k}: ${String((e as { stderr?: string }).stderr ?? e).split('\n').filter((l) => l.includes('error')).slice(0, 3).join(' | ')}`;
      }
    }));
    expect((await Promise.all(jobs)).filter((x) => x !== undefined)).toEqual([]);
  }, 300_000);
});

describe('matmul planning', () => {
  it('bf16 matmuls become tensor-core GEMM kernels with their dynamic shared memory', () => {
    const m = generateCuda(compile(gemmGraph({ name: 'tc', m: 4096, n: 4096, k: 4096, transB: true })).program);
    expect(m.source).toContain('mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32');
    const [l] = m.launches.flat();
    // 32×32 blocks of 128×128, 4 warps; 4 stages × (128 + 128) rows × 40 bf16.
    expect(l).toMatchObject({ kind: 'kernel', grid: [32 * 32, 1, 1], block: [128, 1, 1], sharedBytes: 81920 });
  });

  it('plain strided f32 matmuls become cuBLAS SGEMMs; the rest generated SGEMM kernels', () => {
    const count = (relayout: boolean) => {
      const all = generateCuda(compile(buildProgram('block', { train: true, batch: 8, size: '768x12x256' }), { relayout }).program).launches.flat();
      return [all.filter((l) => l.kind === 'gemm').length, all.filter((l) => l.kind === 'kernel' && l.fn.endsWith('_matmul')).length, all.filter((l) => l.kind === 'kernel' && l.fn.endsWith('_epilogue')).length];
    };
    // [SGEMMs, generated, epilogue kernels]: the 4 matmuls that read attention's head layout through a
    // permuting view are generated kernels, unless the layout stage (compiler/schedule/layout.ts, on by
    // default) stores those buffers as the matmuls read them.
    expect(count(false)).toEqual([8, 4, 6]);
    expect(count(true)).toEqual([12, 0, 9]);
  });
});

describe('row kernel mapping (LoopKernel.rows, rendered)', () => {
  const launchesOf = (c: number, name: string) => {
    const g = reductionGraph(REDUCTION_CASES[c]!);
    const p = compile(g).program;
    const m = generateCuda(p);
    const out = g.outputs.find((o) => o.name === name)!;
    const i = p.kernels.findIndex((k) => k.nodes.includes(out.id));
    if (i < 0) throw new Error(`no kernel computes ${name}`);
    return m.launches[i]!.map((l) => l.kind === 'kernel' && [l.fn.replace(/^kiln_\w{12}\d*_loop/, 'fn'), ...l.grid, ...l.block]);
  };
  it('reductions strided along the reduced axis use the column kernel (32 grid points x 8 lanes per block)', () => {
    for (const name of ['sumTokens', 'maxTokens', 'argmaxTokens'])
      expect(launchesOf(0, name)).toEqual([['fn', 16 * 768 / 32, 1, 1, 32, 8, 1]]);
  });
  it('a small grid over a long strided extent is split: partials per chunk (grid y), then a combine pass', () => {
    // 768 channels over 16·256 rows: 24 column blocks x 16 chunks, then one thread per channel.
    expect(launchesOf(0, 'sumRows')).toEqual([['fn', 24, 16, 1, 32, 8, 1], ['fn_combine', 3, 1, 1, 256, 1, 1]]);
    // 200 channels (a partial last block) over 7·1111 rows: 30 chunks of 260 (the last 237).
    expect(launchesOf(1, 'sumRows')).toEqual([['fn', 7, 30, 1, 32, 8, 1], ['fn_combine', 1, 1, 1, 256, 1, 1]]);
    const m = generateCuda(compile(reductionGraph(REDUCTION_CASES[1]!)).program);
    // sumRows shares its kernel with sumMaxRows's two reductions (they read w along the rows: sibling
    // reductions, compiler/fuse/merge.ts): partials of 3 reductions, and one loop over each chunk.
    expect(m.scratch.map((s) => s.bytes)).toContain(3 * 30 * 200 * 4);
    const p1 = compile(reductionGraph(REDUCTION_CASES[1]!)).program;
    const k = p1.kernels.findIndex((x) => x.kind === 'loop' && x.body.filter((s) => s.k === 'reduce').length === 3);
    const fn = (m.launches[k]![0] as { fn: string }).fn;
    const pass1 = m.source.slice(m.source.indexOf(`void __launch_bounds__(256) ${fn}(`), m.source.indexOf(`void ${fn}_combine(`));
    expect(pass1.match(/for \(int \w+ = c_ \* 260 \+ ty;/g)).toHaveLength(1);
    expect(pass1).toContain('#pragma unroll 4');
  });
  it('reductions along the contiguous last axis keep one block per row', () => {
    const p = compile(reductionGraph(REDUCTION_CASES[0]!)).program;
    const m = generateCuda(p);
    const rows = p.kernels.flatMap((k, i) => (k.kind === 'loop' && k.grid.join('x') === '16x256' && k.body.some((s) => s.k === 'reduce') ? m.launches[i]! : []));
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const l of rows) expect(l.kind === 'kernel' && [l.grid[0], ...l.block]).toEqual([16 * 256, 256, 1, 1]);
  });
});

describe('elementwise points per thread (CudaOptions.elementwisePoints, an opt-in experiment)', () => {
  const g = trace('ew', (t) => {
    const x = t.input('x', [128, 256, 768], 'f32');
    return { y: x.mul(x).add(1).cast('bf16') };
  });
  it('V consecutive points of the last axis per thread, one decomposition; small or ragged grids keep one point', async () => {
    const p = compile(g).program;
    const m = generateCuda(p, { elementwisePoints: 4 });
    const ew = m.launches.flat().filter((l) => l.kind === 'kernel');
    expect(ew.map((l) => l.kind === 'kernel' && [l.grid[0], l.block[0]])).toEqual([[128 * 256 * 768 / 4 / 256, 256]]);
    // The body written out 4 times (g2 = g2_0 + 0..3); x read and y written as vectors.
    expect(m.source).toContain('const int g2 = g2_0 + 3;');
    expect(m.source).toMatch(/const float4 lv0_0 = \*reinterpret_cast<const float4\*>\(buf0 \+/);
    expect(m.source).toMatch(/\*reinterpret_cast<uint2\*>\(buf1 \+ .*\) = make_uint2\(\(\(u32\)sv0_0 \| \(\(u32\)sv0_1 << 16\)\), \(\(u32\)sv0_2 \| \(\(u32\)sv0_3 << 16\)\)\);/);
    const small = generateCuda(compile(trace('ew2', (t) => ({ y: t.input('x', [1000, 6], 'f32').neg() }))).program, { elementwisePoints: 4 });
    expect(small.source).not.toContain('g1_0');
    if (nvcc) {
      const dir = mkdtempSync(join(tmpdir(), 'kiln-ew-'));
      writeFileSync(join(dir, 'ew.cu'), m.source);
      await run('nvcc', ['-arch=sm_90', '--ptx', '-o', join(dir, 'ew.ptx'), join(dir, 'ew.cu')]);
    }
  }, 60_000);
});

describe('elementwise vector loads and stores (codegen.ts vectorPlan) on hand-made kernels', () => {
  // Buffers: x f32 [2048·2048], b bf16 [2048], y f32 and z bf16 outputs, next.x written in place of x.
  const N = 2048 * 2048;
  const buffers: BufferDecl[] = [
    { id: 0, dtype: 'f32', numel: N, kind: 'input', name: 'x' },
    { id: 1, dtype: 'bf16', numel: 2048, kind: 'input', name: 'b' },
    { id: 2, dtype: 'f32', numel: N, kind: 'output', name: 'y' },
    { id: 3, dtype: 'bf16', numel: N, kind: 'output', name: 'z' },
    { id: 4, dtype: 'f32', numel: N, kind: 'output', name: 'next.x', inPlaceOf: 0 },
  ];
  const at = (shift = 0) => iadd(iadd(imul(I.v('g0'), I.c(2048)), I.v('g1')), I.c(shift));
  const x = (shift = 0) => load(0, at(shift), 'f32');
  const program = (body: Stmt[]): KernelProgram => ({
    name: 'hand', buffers, kernels: [{ kind: 'loop', name: 'k0', nodes: [], grid: [2048, 2048], body }],
    inputs: new Map([['x', 0], ['b', 1]]), outputs: new Map([['y', 2], ['z', 3], ['next.x', 4]]), arenaBytes: 0,
  });
  const source = (body: Stmt[], V = 4) => generateCuda(program(body), { elementwisePoints: V }).source;

  it('contiguous aligned operands become vectors; a load under a select arm or off the V grid stays scalar', () => {
    const src = source([
      { k: 'let', name: 'a', value: bin('add', x(), cast(load(1, I.v('g1'), 'bf16'), 'f32')) },
      // Read only where g1 >= 4: the scalar code never reads x at a negative index, a vector load would.
      { k: 'let', name: 'c', value: select(bin('ge', I.v('g1'), I.c(4)), x(-4), konst(0, 'f32')) },
      { k: 'let', name: 'd', value: x(2) },
      { k: 'store', buf: 2, index: at(), value: bin('add', bin('add', ref('a', 'f32'), ref('c', 'f32')), ref('d', 'f32')), mode: 'set' },
      { k: 'store', buf: 3, index: at(), value: cast(ref('a', 'f32'), 'bf16'), mode: 'set' },
    ]);
    expect(src).toMatch(/const float4 lv\d_0 = \*reinterpret_cast<const float4\*>\(buf0 \+ \(.*g1_0\)+;/);
    expect(src).toMatch(/const uint2 lv\d_0 = \*reinterpret_cast<const uint2\*>\(buf1 \+ \(g1_0\)\);/);
    expect(src.match(/reinterpret_cast<const/g)?.length).toBe(2);
    // x(-4) under the select and x(+2) (not V-aligned) are read per point.
    expect(src.match(/buf0\[/g)?.length).toBe(8);
    expect(src).toContain('= make_float4(sv0_0, sv0_1, sv0_2, sv0_3);');
    expect(src).toContain('= make_uint2(');
    // Lanes of a bf16 vector: low half first (little-endian: the element at the lower address).
    expect(src).toMatch(/k_bf16_to_f32\(\(\(u16\)\(lv\d_0\.x & 0xffffu\)\)\)[^\n]*\n[\s\S]*?const int g1 = g1_0 \+ 1;[\s\S]*?lv\d_0\.x >> 16/);
    // V = 8: f32 in two float4, bf16 in one uint4.
    const v8 = source([{ k: 'store', buf: 3, index: at(), value: cast(x(), 'bf16'), mode: 'set' }], 8);
    expect(v8.match(/const float4 lv0_\d/g)?.length).toBe(2);
    expect(v8).toContain('*reinterpret_cast<uint4*>');
  });

  it('a buffer written in place of another (inPlaceOf) and read at another index keeps the points in order, scalar', () => {
    const same = source([{ k: 'store', buf: 4, index: at(), value: bin('mul', x(), konst(2, 'f32')), mode: 'set' }]);
    expect(same).toContain('reinterpret_cast<const float4*>(buf0');
    expect(same).toContain('*reinterpret_cast<float4*>(buf1');
    // Point e reads x[e + 4], which point e + 4 of the previous thread... and this thread's own stores
    // would overwrite first if the stores were deferred behind hoisted loads: no vectors at all.
    const other = source([{ k: 'store', buf: 4, index: at(), value: bin('mul', x(4), konst(2, 'f32')), mode: 'set' }]);
    expect(other).not.toContain('reinterpret_cast');
    expect(other).toContain('const int g1 = g1_0 + 3;');
  });

  it('the vector kernels compile with nvcc', async () => {
    if (!nvcc) return;
    const dir = mkdtempSync(join(tmpdir(), 'kiln-vec-'));
    const body: Stmt[] = [
      { k: 'let', name: 'a', value: bin('add', x(), cast(load(1, I.v('g1'), 'bf16'), 'f32')) },
      { k: 'store', buf: 2, index: at(), value: ref('a', 'f32'), mode: 'set' },
      { k: 'store', buf: 3, index: at(), value: cast(ref('a', 'f32'), 'bf16'), mode: 'set' },
    ];
    for (const V of [2, 4, 8]) {
      writeFileSync(join(dir, `v${V}.cu`), source(body, V));
      await run('nvcc', ['-arch=sm_90', '--ptx', '-o', join(dir, `v${V}.ptx`), join(dir, `v${V}.cu`)]);
    }
  }, 120_000);
});

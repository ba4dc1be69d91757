/**
 * The library GEMM provider's plan (backends/cuda/codegen.ts planGemm + gemmLibrary.ts), without a
 * GPU: every GEMM test case (test/support/gemmCases.ts: odd shapes, M/N/K = 1, transpositions, cast
 * operands, batch broadcast, every epilogue kind) scheduled as 'cublas' becomes a cuBLAS call — never
 * the SIMT fallback — with operands that are not plain strided bf16 views staged by a kernel of their
 * own, C in bf16 exactly when the epilogue reads only bf16(acc), and one shared GEMM workspace; the
 * generated CUDA compiles with nvcc for sm_90 (skipped without nvcc). test/gpu/gemm.test.ts runs the
 * same plans on the GPU against the CPU interpreter.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { accStoredAsBf16 } from '../../backends/cuda/gemmLibrary.ts';
import { compile } from '../../compiler/compile.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { GEMM_CASES, gemmGraph } from '../support/gemmCases.ts';

const run = promisify(execFile);
const nvcc = await run('nvcc', ['--version']).then(() => true, () => false);

/** The case's program with its matmul scheduled on a library provider. */
function libraryProgram(p: KernelProgram, provider: 'cublas' | 'cublaslt' = 'cublas'): KernelProgram {
  return { ...p, kernels: p.kernels.map((k) => (k.kind === 'matmul' && k.tile ? { ...k, tile: { ...k.tile, provider, source: 'measured' as const } } : k)) };
}

describe('library GEMM plans (cuBLAS bf16)', () => {
  for (const c of GEMM_CASES)
    it(`${c.name}: one cuBLAS call, staged operands where they are not plain bf16 views`, () => {
      const p = libraryProgram(compile(gemmGraph(c)).program);
      const m = generateCuda(p);
      const all = m.launches.flat();
      const gemms = all.filter((l) => l.kind === 'gemm');
      expect(gemms.length).toBe(1);
      const g = gemms[0]!;
      expect(g.kind === 'gemm' && g.ab).toBe('bf16');
      expect(all.some((l) => l.kind === 'kernel' && l.fn.endsWith('_matmul'))).toBe(false);
      const stages = all.filter((l) => l.kind === 'kernel' && l.fn.includes('_stage_')).length;
      if (c.srcA === 'cast' || c.srcB === 'cast') expect(stages).toBeGreaterThan(0);
      // Plain bf16 operands are read in place, except where a dim of 1 leaves no stride to read
      // (M/N/K = 1) or the two operands broadcast over different batch dims (no one batch stride).
      if (c.srcA !== 'cast' && c.srcB !== 'cast' && c.k > 1 && c.m > 1 && c.n > 1 && c.name !== 'broadcast_mixed') expect(stages).toBe(0);
      const mm = p.kernels.find((k) => k.kind === 'matmul')!;
      const epilogueKernel = all.some((l) => l.kind === 'kernel' && l.fn.endsWith('_epilogue'));
      if (mm.kind === 'matmul' && epilogueKernel) expect(g.kind === 'gemm' && g.cType).toBe(accStoredAsBf16(mm.epilogue) ? 'bf16' : 'f32');
      // At most one GEMM workspace scratch, sized for C and the staged operands.
      expect(m.scratch.length).toBeLessThanOrEqual(1);
    });

  for (const c of GEMM_CASES)
    it(`${c.name}: cuBLASLt, with its bias epilogue exactly where the epilogue is accumulator + bias`, () => {
      const m = generateCuda(libraryProgram(compile(gemmGraph(c)).program, 'cublaslt'));
      const all = m.launches.flat();
      const gemms = all.filter((l) => l.kind === 'gemm');
      expect(gemms.length).toBe(1);
      const g = gemms[0]!;
      const bias = c.epilogue === 'bias_f32' || c.epilogue === 'bias_bf16';
      expect(g.kind === 'gemm' && g.lt?.epilogue).toBe(bias ? 'bias' : 'default');
      expect(g.kind === 'gemm' && (g.lt?.workspaceBytes ?? 0) > 0).toBe(true);
      // Bias and bf16 stores: the library writes the output (no epilogue kernel). An f32 store of the
      // matmul is f32(bf16(acc)) in the IR: it keeps its epilogue kernel, which does that rounding.
      const plain = bias || c.epilogue === 'store_bf16';
      expect(all.some((l) => l.kind === 'kernel' && l.fn.endsWith('_epilogue'))).toBe(!plain);
    });

  it('an epilogue that stores C beside other outputs has the library write C into that output and reads it from there', () => {
    const c = GEMM_CASES.find((x) => x.name === 'store_and_bias')!;
    const p = libraryProgram(compile(gemmGraph(c)).program);
    const y = p.outputs.get('y')!;
    const off = generateCuda(p, { gemmOutputC: false }), on = generateCuda(p);
    const gemmOf = (m: typeof on) => m.launches.flat().find((l) => l.kind === 'gemm')!;
    expect(gemmOf(on).kind === 'gemm' && gemmOf(on).c.buf).toBe(y);
    expect(gemmOf(off).kind === 'gemm' && gemmOf(off).c.buf).toBeLessThan(0);
    // The epilogue no longer stores y (one store of z per point), and C needs no workspace.
    const stores = (m: typeof on) => m.source.slice(m.source.indexOf('_matmul_epilogue(')).match(/buf\d+\[[^\]]+\] = /g) ?? [];
    expect([stores(off).length, stores(on).length]).toEqual([2, 1]);
    expect(on.scratch.length).toBe(0);
    expect(off.scratch.length).toBe(1);
  });

  it('the epilogue reads C in bf16 only where every use of acc is bf16(acc)', () => {
    const fused = libraryProgram(compile(gemmGraph(GEMM_CASES.find((c) => c.name === 'adamw_weight_grad')!)).program);
    const mm = fused.kernels.find((k) => k.kind === 'matmul')!;
    expect(mm.kind === 'matmul' && accStoredAsBf16(mm.epilogue)).toBe(true);
    expect(accStoredAsBf16([{ k: 'store', buf: 0, mode: 'set', index: { k: 'const', v: 0, dtype: 'i32' }, value: { k: 'ref', name: 'acc', dtype: 'f32' } }])).toBe(false);
  });
});

describe.skipIf(!nvcc)('library GEMM plans compile with nvcc (sm_90)', () => {
  it('staging and epilogue kernels of every case', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-gemmlib-'));
    const file = join(dir, 'all.cu');
    // One module: the cases' kernels renamed apart (kiln_<i>_ → kiln_c<case>_<i>_), one prelude.
    const sources = GEMM_CASES.flatMap((c) => (['cublas', 'cublaslt'] as const).map((provider) => generateCuda(libraryProgram(compile(gemmGraph(c)).program, provider)).source));
    const [first, ...rest] = sources.map((s, ci) => s.replace(/kiln_(\d+)_/g, `kiln_c${ci}_$1_`));
    const prelude = first!.slice(0, first!.indexOf('// '));
    writeFileSync(file, [first, ...rest.map((s) => s.slice(s.indexOf('// ')))].join('\n'));
    await expect(run('nvcc', ['-arch=sm_90', '--ptx', '-o', join(dir, 'all.ptx'), file]).then(() => 'ok', (e) => String(e.stderr ?? e).split('\n').filter((l) => l.includes('error')).slice(0, 5).join(' | '))).resolves.toBe('ok');
    expect(prelude.length).toBeGreaterThan(0);
  }, 300_000);
});

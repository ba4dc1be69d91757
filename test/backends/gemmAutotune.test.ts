/**
 * The measured provider choice's plumbing, without a GPU (backends/cuda/gemmAutotune.ts): the
 * candidates of a matmul, the tuning program (only the buffers the candidates touch are allocated,
 * temporaries repacked without overlap), and the whole loop with a fake executable (the fastest
 * candidate is recorded in the tuning cache and applied; a failing library candidate is reported and
 * not chosen; signatures already in the cache are not measured again).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autotuneGemms, gemmCandidates, tuningProgram } from '../../backends/cuda/gemmAutotune.ts';
import { applyTuning } from '../../backends/cuda/gemmTuning.ts';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import { autocast } from '../../compiler/transforms/autocast.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { KernelProgram, MatmulKernel } from '../../ir/kernel/types.ts';
import { GEMM_CASES, gemmGraph } from '../support/gemmCases.ts';

const step = (): KernelProgram => compile(autocast(buildProgram('block', { train: true, batch: 2, size: '64x4x16' }), { dtype: 'bf16' })).program;
const bytes = (d: string) => (d === 'bf16' || d === 'f16' ? 2 : 4);

describe('GEMM autotuning (no GPU)', () => {
  it('candidates: the default tile, cuBLAS, and cuBLASLt only where the epilogue is one store', () => {
    const of = (name: string) => compile(gemmGraph(GEMM_CASES.find((c) => c.name === name)!)).program.kernels.find((k) => k.kind === 'matmul') as MatmulKernel;
    expect(gemmCandidates(of('bias_f32')).map((t) => t.provider)).toEqual(['tensor-core', 'cublas', 'cublaslt']);
    expect(gemmCandidates(of('two_stores')).map((t) => t.provider)).toEqual(['tensor-core', 'cublas']);
    expect(gemmCandidates(of('adamw_weight_grad')).map((t) => t.provider)).toEqual(['tensor-core', 'cublas']);
  });

  it('the tuning program allocates only what the candidates touch, temporaries without overlap', () => {
    const p = step();
    const mm = p.kernels.filter((k) => k.kind === 'matmul').slice(0, 3);
    const tp = tuningProgram(p, mm);
    const used = new Set(mm.flatMap((k) => [...kernelAccess(k).reads, ...kernelAccess(k).writes]));
    expect(tp.buffers.length).toBe(p.buffers.length);
    const temps = tp.buffers.filter((b) => used.has(b.id) && b.kind === 'temp').map((b) => [b.offset!, b.offset! + b.numel * bytes(b.dtype)] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < temps.length; i++) expect(temps[i]![0]).toBeGreaterThanOrEqual(temps[i - 1]![1]);
    expect(tp.arenaBytes).toBeGreaterThanOrEqual(temps[temps.length - 1]![1]);
    for (const b of tp.buffers) if (!used.has(b.id)) expect(b.numel).toBe(1);
    expect(tp.arenaBytes).toBeLessThan(p.arenaBytes + 1);
  });

  it('records the fastest candidate per signature, skips a failing library candidate, measures each signature once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-tune-'));
    const p = step();
    let calls = 0;
    // Fake device: cuBLAS is fastest except where it "fails" (every other kernel), cuBLASLt throws.
    const make = (tp: KernelProgram) => ({
      timeKernel: (i: number) => {
        calls++;
        const k = tp.kernels[i]! as MatmulKernel;
        if (k.tile!.provider === 'cublaslt') throw new Error('no algorithm');
        return k.tile!.provider === 'cublas' ? (i % 4 === 1 ? 0.5 : 2) : 1;
      },
      dispose: () => {},
    });
    const results = autotuneGemms(p, 'fake GPU', dir, make);
    expect(results.length).toBeGreaterThan(0);
    for (const r of results) {
      const fastest = Object.entries(r.ms).sort((a, b) => a[1] - b[1])[0]![0];
      expect(r.chosen).toBe(fastest);
      if ('cublaslt' in r.ms) expect(r.failed?.cublaslt).toContain('no algorithm');
    }
    const tuned = applyTuning(p, 'fake GPU', dir);
    const providers = tuned.kernels.flatMap((k) => (k.kind === 'matmul' && k.tile?.source === 'measured' ? [k.tile.provider] : []));
    expect(providers.length).toBeGreaterThan(0);
    expect(new Set(providers)).toEqual(new Set(results.map((r) => r.chosen.split(' ')[0])));
    // A cuBLASLt candidate that throws (bias epilogue case) is reported and never chosen.
    const bias = compile(gemmGraph(GEMM_CASES.find((c) => c.name === 'bias_f32')!)).program;
    const [r] = autotuneGemms(bias, 'fake GPU', dir, make);
    expect(r!.failed?.cublaslt).toContain('no algorithm');
    expect(r!.chosen).not.toBe('cublaslt');
    // Second run: everything is in the cache.
    const before = calls;
    expect(autotuneGemms(p, 'fake GPU', dir, make)).toEqual([]);
    expect(calls).toBe(before);
  });
});

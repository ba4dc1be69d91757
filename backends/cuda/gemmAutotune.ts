/**
 * @file Measured provider choice for a program's own matmul kernels: every tensor-core matmul whose
 * signature (gemmTuning.ts gemmSignature: shape, batch, dtypes, operand staging, epilogue) has no
 * entry in this device's tuning cache is timed as each candidate — the tiling stage's generated
 * kernel and the library providers (cuBLAS bf16, operands staged where they are not plain views,
 * C through the GEMM workspace into the fused epilogue kernel; cuBLASLt with its bias epilogue where
 * the epilogue is one store: gemmLibrary.ts) — on the GPU, and the
 * fastest is recorded in the cache, which the CUDA backend applies when it compiles (applyTuning).
 *
 * All candidates of all signatures are kernels of ONE tuning program (one NVRTC compile) over the
 * program's own buffer declarations, with only the buffers the candidates touch allocated (temporaries
 * repacked into a small arena): the candidates run the real kernels — fused prologues, epilogues,
 * strides — on the real shapes. Values are whatever the fresh buffers hold (zeros or stale memory);
 * only the times are used (each provider is tested for correctness by test/gpu/gemm.test.ts).
 */
import { kernelAccess } from '../../ir/kernel/access.ts';
import type { BufferDecl, Kernel, KernelProgram, MatmulKernel, TileSchedule } from '../../ir/kernel/types.ts';
import { singleStore } from './gemmLibrary.ts';
import { gemmSignature, recordTuning, tunedEntries } from './gemmTuning.ts';

/** What the tuner needs of an executable (CudaExecutable). */
export interface TimedExecutable {
  timeKernel(i: number, reps: number): number;
  dispose(): void;
}

export interface AutotuneResult {
  readonly signature: string;
  readonly kernels: number;
  /** Candidate → milliseconds per launch (the kernel and its staging/epilogue launches). */
  readonly ms: Record<string, number>;
  readonly chosen: string;
  /** Candidates that failed to run (library errors), with the error: they are not chosen. */
  readonly failed?: Record<string, string>;
}

const candidateName = (t: TileSchedule) => (t.provider === 'cublas' || t.provider === 'cublaslt' ? t.provider : `${t.provider} ${t.block.m}x${t.block.n}x${t.block.k}/s${t.stages}`);

/**
 * The candidate schedules of a tensor-core matmul: its default tile, cuBLAS, and cuBLASLt where the
 * epilogue is one store (which cuBLASLt may write itself, with its bias epilogue: gemmLibrary.ts).
 */
export function gemmCandidates(k: MatmulKernel): TileSchedule[] {
  const t = k.tile!;
  const lt: TileSchedule[] = singleStore(k.epilogue) ? [{ ...t, provider: 'cublaslt', source: 'measured' }] : [];
  // Every candidate is 'measured' (the generated one too: gemmDefault.ts moves only rule-chosen schedules to the library).
  return [{ ...t, source: 'measured' }, { ...t, provider: 'cublas', source: 'measured' }, ...lt];
}

/**
 * The tuning program: `kernels` over `p`'s buffer declarations, with the buffers they do not touch
 * shrunk to one element and the temporaries they touch repacked into a fresh arena.
 */
export function tuningProgram(p: KernelProgram, kernels: readonly Kernel[]): KernelProgram {
  const used = new Set<number>();
  for (const k of kernels) {
    const a = kernelAccess(k);
    for (const id of [...a.reads, ...a.writes]) used.add(id);
  }
  let arena = 0;
  const buffers = p.buffers.map((b): BufferDecl => {
    if (!used.has(b.id)) return { id: b.id, dtype: b.dtype, numel: 1, kind: 'temp', offset: 0 };
    if (b.kind !== 'temp') return b;
    const offset = arena;
    arena += Math.ceil((b.numel * (b.dtype === 'bf16' || b.dtype === 'f16' ? 2 : 4)) / 256) * 256;
    return { ...b, offset };
  });
  return { ...p, name: `${p.name}_gemm_tuning`, buffers, kernels, arenaBytes: Math.max(256, arena) };
}

/**
 * Measure and record the best provider for each untuned tensor-core matmul signature of `p` on
 * `device`. `make` builds an executable of a program (with the tuning cache off). Returns one result
 * per signature measured (none when every signature is already in the cache).
 */
export function autotuneGemms(p: KernelProgram, device: string, cacheDir: string, make: (p: KernelProgram) => TimedExecutable, reps = 10): AutotuneResult[] {
  const known = tunedEntries(cacheDir, device);
  const groups = new Map<string, MatmulKernel[]>();
  for (const k of p.kernels) {
    if (k.kind !== 'matmul' || k.tile?.provider !== 'tensor-core') continue;
    const sig = gemmSignature(k);
    if (known[sig]) continue;
    const g = groups.get(sig);
    if (g) g.push(k);
    else groups.set(sig, [k]);
  }
  if (groups.size === 0) return [];
  const plan: Array<{ sig: string; rep: MatmulKernel; cands: TileSchedule[]; first: number }> = [];
  const kernels: Kernel[] = [];
  for (const [sig, ks] of groups) {
    const rep = ks[0]!;
    const cands = gemmCandidates(rep);
    plan.push({ sig, rep, cands, first: kernels.length });
    cands.forEach((tile, i) => kernels.push({ ...rep, name: `${rep.name}_tune${i}`, tile }));
  }
  const exe = make(tuningProgram(p, kernels));
  const ms: number[] = [];
  const errors = new Map<number, string>();
  try {
    kernels.forEach((_, i) => {
      try {
        exe.timeKernel(i, 2);
        ms.push(exe.timeKernel(i, reps));
      } catch (e) {
        // A library candidate that cannot run this GEMM (no algorithm, bad status) is not chosen;
        // the default (generated) candidate never lands here without it being a bug: rethrow.
        if (kernels[i]!.kind === 'matmul' && kernels[i]!.tile?.provider === 'tensor-core') throw e;
        errors.set(i, (e as Error).message.slice(0, 200));
        ms.push(Infinity);
      }
    });
  } finally {
    exe.dispose();
  }
  return plan.map(({ sig, rep, cands, first }) => {
    const times = cands.map((_, i) => ms[first + i]!);
    const best = times.indexOf(Math.min(...times));
    recordTuning(cacheDir, device, rep, cands[best]!, times[best]!);
    const failed = Object.fromEntries(cands.flatMap((c, i) => (errors.has(first + i) ? [[candidateName(c), errors.get(first + i)!]] : [])));
    return {
      signature: sig, kernels: groups.get(sig)!.length, chosen: candidateName(cands[best]!),
      ms: Object.fromEntries(cands.map((c, i) => [candidateName(c), Number(times[i]!.toFixed(4))])),
      ...(Object.keys(failed).length ? { failed } : {}),
    };
  });
}

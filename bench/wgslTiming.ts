/**
 * @file Timing helpers of the WGSL benchmarks on the GPU machine: deterministic pattern feeds, the
 * KILN_GPU_LOCK mutex (an atomic mkdir, as bench/torch_baseline.py and bench/wgsl_kernels_torch.py take
 * it: processes sharing the machine compile side by side but never time at the same moment), one timed
 * submission of REPS runs (wall clock and GPU timestamps), and pipeline progress logging.
 */
import { mkdirSync, rmSync } from 'node:fs';
import type { WgslExecutable } from '../backends/wgsl/executable.ts';
import { hostTensor, type HostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';

export const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

/** Cheap deterministic feeds (no host RNG for 10⁸ values): sin patterns of amplitude 1. */
export function patternFeeds(inputs: ReadonlyArray<{ name: string; type: { shape: readonly number[] } }>): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = {};
  inputs.forEach((inp, k) => {
    const n = numel(inp.type.shape);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.7311 + k * 1.3);
    f[inp.name] = hostTensor('f32', inp.type.shape, a);
  });
  return f;
}

/** Runs `fn` holding the GPU lock KILN_GPU_LOCK=DIR (when set). */
export async function withGpu<T>(fn: () => Promise<T>): Promise<T> {
  const lock = process.env.KILN_GPU_LOCK;
  if (!lock) return fn();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Wall ms per run of one submission of 2..20 runs (about `budgetMs` in all) after a warm-up, and the GPU ms per run from timestamps (NaN without them). */
export function timeExe(exe: WgslExecutable, feeds: Record<string, HostTensor>, outs: string[], budgetMs: number): Promise<{ ms: number; gpuMs: number }> {
  return withGpu(async () => {
    await exe.run(feeds, outs);
    const one = await exe.time(1);
    const reps = Math.max(2, Math.min(20, Math.floor(budgetMs / Math.max(one, 1e-3))));
    const ms = (await exe.time(reps)) / reps;
    return { ms, gpuMs: exe.gpuMs === undefined ? NaN : exe.gpuMs / reps };
  });
}

/** Logs pipeline progress every 2 s while an executable compiles. */
export function pipelineProgress(what: string): (done: number, total: number) => void {
  let last = performance.now();
  return (done, total) => {
    if (done === total || performance.now() - last > 2000) {
      last = performance.now();
      log(`${what}: pipelines ${done}/${total}`);
    }
  };
}

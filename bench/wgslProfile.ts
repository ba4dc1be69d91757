/**
 * @file The per-dispatch GPU time of a WGSL executable (WgslExecutable.profile, timestamps around each
 * dispatch), summed by kind of work: subgroup-matrix and f32 GEMMs, attention forward and backward,
 * elementwise kernels, row kernels by their kernel-IR mapping (block per row, column, column split,
 * full reductions over a grid of one point). Median per dispatch of `runs` profiles. For
 * bench/wgslKernels.ts (PROFILE=1 in its step part).
 */
import type { Kernel, LoopKernel } from '../ir/kernel/types.ts';
import { walkStmts } from '../ir/kernel/expr.ts';
import type { WgslExecutable } from '../backends/wgsl/executable.ts';
import { isSubgroupMatrixKernel } from '../backends/wgsl/gemmSubgroupMatrix.ts';

const isRow = (k: LoopKernel) => k.body.some((s) => s.k === 'reduce' || s.k === 'loop');

function maxExtent(k: LoopKernel): number {
  let m = 1;
  walkStmts(k.body, () => {}, (s) => {
    if (s.k === 'reduce' || s.k === 'loop') m = Math.max(m, s.extent);
  });
  return m;
}

/** The profile's category of a kernel, and a short description of its problem. */
export function categoryOf(k: Kernel): { cat: string; what: string } {
  switch (k.kind) {
    case 'matmul': {
      const b = k.batch.reduce((x, y) => x * y, 1);
      return { cat: isSubgroupMatrixKernel(k) ? 'gemm-sgm' : 'gemm-other', what: `m${k.m} n${k.n} k${k.k}${b > 1 ? ` b${b}` : ''} ${k.a.dtype}` };
    }
    case 'attention': return { cat: 'attn-fwd', what: `b${k.batch.join('x')} sq${k.sq} sk${k.sk} d${k.dk}` };
    case 'attention_grad': return { cat: 'attn-bwd', what: `b${k.batch.join('x')} sq${k.sq} sk${k.sk} d${k.dk}` };
    case 'loop': {
      const total = k.grid.reduce((x, y) => x * y, 1);
      if (!isRow(k)) return { cat: 'elementwise', what: `grid ${k.grid.join('x')}` };
      const what = `grid ${k.grid.join('x') || '1'} extent ${maxExtent(k)}`;
      if (total === 1) return { cat: 'row-full', what };
      if (k.rows?.kind === 'column') return { cat: k.rows.split > 1 ? 'row-column-split' : 'row-column', what: `${what}${k.rows.split > 1 ? ` split ${k.rows.split}` : ''}` };
      return { cat: 'row-block', what };
    }
  }
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly byCategory: Record<string, { ms: number; dispatches: number }>;
  readonly top: Array<{ name: string; cat: string; what: string; ms: number; workgroups: string }>;
}

export async function profileSummary(exe: WgslExecutable, runs = 3, topN = 30): Promise<ProfileSummary> {
  const all: number[][] = [];
  let meta: Awaited<ReturnType<WgslExecutable['profile']>> = [];
  for (let r = 0; r < runs; r++) {
    meta = await exe.profile();
    meta.forEach((d, i) => (all[i] ??= []).push(d.ms));
  }
  const med = all.map((xs) => xs.sort((a, b) => a - b)[xs.length >> 1]!);
  const byCategory: Record<string, { ms: number; dispatches: number }> = {};
  const rows = meta.map((d, i) => {
    const { cat, what } = categoryOf(exe.program.kernels[d.kernel]!);
    const c = (byCategory[cat] ??= { ms: 0, dispatches: 0 });
    c.ms += med[i]!;
    c.dispatches++;
    return { name: d.name, cat, what, ms: med[i]!, workgroups: d.workgroups.join('x') };
  });
  for (const c of Object.values(byCategory)) c.ms = Math.round(c.ms * 1000) / 1000;
  const top = [...rows].sort((a, b) => b.ms - a.ms).slice(0, topN).map((r) => ({ ...r, ms: Math.round(r.ms * 1000) / 1000 }));
  return { totalMs: med.reduce((a, b) => a + b, 0), byCategory, top };
}

/**
 * The CUDA device memory plan (backends/cuda/deviceMemory.ts), checked from the generated module and the
 * program without a GPU (codegen is pure): one allocation holds parameters, state, inputs/outputs and an
 * arena in which the compiler's temporaries, the module's scratch (GEMM epilogue accumulators, attention
 * statistics shared forward → backward) and the cuBLAS workspace live by live range.
 * Properties (exact byte arithmetic), on the tiny LightningDiT training step at f32 and bf16 (cuBLAS GEMMs
 * with epilogue scratch, flash attention with its lse scratch) and the MLP training step:
 *  (a) any two arena buffers whose live ranges (kernel indices) overlap do not share a byte, except the
 *      compiler's in-place temporary pairs;
 *  (b) every buffer lies inside its section, 256-aligned; sections add up to the total;
 *  (c) `next.*` outputs written in place share their input's offset and take no memory of their own;
 *  (d) scratch is in the arena (no allocation outside the plan) and the cuBLAS workspace exists iff there are
 *      cuBLAS (not cuBLASLt) calls;
 *  (e) with the library providers (every bf16 matmul on cuBLAS or cuBLASLt: operands staged into the module's
 *      GEMM workspace, accumulators there for the epilogue kernels, cuBLASLt's own workspace a region of it,
 *      its bias epilogue) every buffer any launch names — staging kernels, library operands, bias, workspace —
 *      has its place in the one plan.
 */
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { CUBLAS_WORKSPACE_BYTES, CUBLAS_WORKSPACE_ID, planDeviceMemory } from '../../backends/cuda/deviceMemory.ts';
import { compile } from '../../compiler/compile.ts';
import { planOfProgram } from '../../backends/arena.ts';
import type { Graph } from '../../ir/graph.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { ditTrainStep, mlpTrainStep } from '../support/compilerPrograms.ts';

const bytesPer = (d: string) => (d === 'f16' || d === 'bf16' ? 2 : 4);

/** Every tensor-core matmul of `p` on a library provider (what autotune or the tuning cache may choose). */
function onLibrary(p: KernelProgram, provider: 'cublas' | 'cublaslt'): KernelProgram {
  return { ...p, kernels: p.kernels.map((k) => (k.kind === 'matmul' && k.tile?.provider === 'tensor-core' ? { ...k, tile: { ...k.tile, provider } } : k)) };
}

/** Buffer ids a library call names: operands, result, cuBLASLt bias and workspace. */
function gemmBuffers(l: { a: { buf: number }; b: { buf: number }; c: { buf: number }; lt?: { bias?: { buf: number }; workspace: { buf: number } } }): number[] {
  return [l.a.buf, l.b.buf, l.c.buf, ...(l.lt ? [l.lt.workspace.buf, ...(l.lt.bias ? [l.lt.bias.buf] : [])] : [])];
}

function check(graph: Graph, cublas: boolean, provider?: 'cublas' | 'cublaslt', remat?: 'off'): string[] {
  const c = compile(graph, remat ? { remat } : {});
  const p = provider ? onLibrary(c.program, provider) : c.program;
  const gen = generateCuda(p, { cublas });
  const m = planDeviceMemory(graph, p, gen);
  const bad: string[] = [];
  if (m.total !== m.parameters + m.state + m.io + m.arena) bad.push(`sections ${m.parameters}+${m.state}+${m.io}+${m.arena} ≠ total ${m.total}`);
  // Live ranges: temporaries from the kernels, scratch from the launches that name it.
  const live = new Map<number, [number, number]>();
  const touch = (id: number, k: number) => {
    const r = live.get(id);
    if (r) r[1] = k;
    else live.set(id, [k, k]);
  };
  p.kernels.forEach((k, i) => {
    const a = kernelAccess(k);
    for (const b of [...a.reads, ...a.writes]) if (p.buffers[b]!.kind === 'temp') touch(b, i);
  });
  gen.launches.forEach((ls, i) => {
    for (const l of ls) for (const id of l.kind === 'kernel' ? l.params : gemmBuffers(l)) if (id < 0) touch(id, i);
    if (ls.some((l) => l.kind === 'gemm' && !l.lt)) touch(CUBLAS_WORKSPACE_ID, i);
  });
  const size = (id: number) => (id === CUBLAS_WORKSPACE_ID ? CUBLAS_WORKSPACE_BYTES : id < 0 ? gen.scratch.find((s) => s.id === id)!.bytes : p.buffers[id]!.numel * bytesPer(p.buffers[id]!.dtype));
  const inPlace = planOfProgram(p).inPlace.map(([x, y]) => `${Math.min(x, y)},${Math.max(x, y)}`);
  const ids = [...live.keys()];
  for (const id of ids) {
    const o = m.offsets.get(id);
    if (o === undefined) { bad.push(`buffer ${id} has no offset`); continue; }
    if (o % 256 || o < m.arenaOffset || o + size(id) > m.total) bad.push(`buffer ${id} at ${o} (+${size(id)}) outside the arena [${m.arenaOffset}, ${m.total}) or unaligned`);
  }
  for (const x of ids)
    for (const y of ids) {
      if (x >= y) continue;
      const [a0, a1] = live.get(x)!, [b0, b1] = live.get(y)!;
      if (a0 > b1 || b0 > a1 || inPlace.includes(`${x},${y}`)) continue;
      const ox = m.offsets.get(x)!, oy = m.offsets.get(y)!;
      if (ox < oy + size(y) && oy < ox + size(x)) bad.push(`buffers ${x} [${a0},${a1}] and ${y} [${b0},${b1}] overlap at ${ox}/${oy}`);
    }
  for (const b of p.buffers) {
    if (b.kind === 'temp') continue;
    const o = m.offsets.get(b.id);
    if (o === undefined) bad.push(`${b.kind} ${b.name} has no offset`);
    else if (b.inPlaceOf !== undefined && o !== m.offsets.get(b.inPlaceOf)) bad.push(`${b.name} is in place but not at its input's offset`);
    else if (b.inPlaceOf === undefined && o + b.numel * bytesPer(b.dtype) > m.arenaOffset) bad.push(`${b.kind} ${b.name} runs into the arena`);
  }
  const gemms = gen.launches.some((ls) => ls.some((l) => l.kind === 'gemm' && !l.lt));
  if ((m.workspaceBytes > 0) !== gemms) bad.push(`workspace ${m.workspaceBytes} B with${gemms ? '' : 'out'} cuBLAS calls`);
  if (provider) {
    const all = gen.launches.flat();
    const lib = all.filter((l) => l.kind === 'gemm');
    if (lib.length === 0 || lib.some((l) => (provider === 'cublaslt') !== (l.lt !== undefined))) bad.push(`expected every library GEMM on ${provider}`);
    if (!all.some((l) => l.kind === 'kernel' && l.fn.includes('stage'))) bad.push('expected staged operands');
    if (provider === 'cublaslt' && !lib.some((l) => l.lt?.bias)) bad.push('expected a cuBLASLt bias epilogue');
  }
  if (gen.scratch.length === 0 && graph.name.includes('dit')) bad.push('expected scratch in the LightningDiT step');
  return bad;
}

describe('CUDA device memory plan', () => {
  it('tiny LightningDiT step, f32 with cuBLAS: scratch and workspace in the arena, no overlaps', () => {
    expect(check(ditTrainStep(2), true)).toEqual([]);
  });
  it('tiny LightningDiT step, bf16 (flash attention lse scratch shared forward → backward)', () => {
    expect(check(atPrecision(ditTrainStep(2), 'bf16'), true)).toEqual([]);
  });
  it('tiny LightningDiT step, bf16, every matmul on cuBLASLt: staging, accumulators, bias and its workspace in the arena; no cuBLAS workspace', () => {
    // Without remat: under the default (fused remat) this tiny step keeps its modulation GEMMs' raw outputs
    // for the backward, so no GEMM has a library bias epilogue left to check.
    expect(check(atPrecision(ditTrainStep(2), 'bf16'), true, 'cublaslt', 'off')).toEqual([]);
  });
  it('tiny LightningDiT step, bf16, every matmul on cuBLAS: staged operands in the GEMM workspace, cuBLAS workspace beside it', () => {
    expect(check(atPrecision(ditTrainStep(2), 'bf16'), true, 'cublas')).toEqual([]);
  });
  it('MLP step without cuBLAS: no workspace; every update in place', () => {
    const { graph } = mlpTrainStep({ inputs: 64, hidden: [32], classes: 10 }, 16);
    expect(check(graph, false)).toEqual([]);
    const p = compile(graph).program;
    const m = planDeviceMemory(graph, p, generateCuda(p, { cublas: false }));
    expect(m.workspaceBytes).toBe(0);
    expect(m.updatesCopied).toBe(0);
    expect(m.parameters).toBe(Math.ceil(((64 * 32) * 4) / 256) * 256 + Math.ceil((32 * 4) / 256) * 256 + Math.ceil((32 * 10 * 4) / 256) * 256 + Math.ceil((10 * 4) / 256) * 256);
  });
});

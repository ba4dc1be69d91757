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
 *  (d) scratch is in the arena (no allocation outside the plan) and the workspace exists iff there are cuBLAS calls.
 */
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { CUBLAS_WORKSPACE_BYTES, CUBLAS_WORKSPACE_ID, planDeviceMemory } from '../../backends/cuda/deviceMemory.ts';
import { compile } from '../../compiler/compile.ts';
import { planOfProgram } from '../../backends/arena.ts';
import type { Graph } from '../../ir/graph.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { atPrecision } from '../../runtime/compile.ts';
import { ditTrainStep, mlpTrainStep } from '../support/compilerPrograms.ts';

const bytesPer = (d: string) => (d === 'f16' || d === 'bf16' ? 2 : 4);

function check(graph: Graph, cublas: boolean): string[] {
  const c = compile(graph);
  const p = c.program;
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
    for (const l of ls) for (const id of l.kind === 'kernel' ? l.params : [l.a.buf, l.b.buf, l.c.buf]) if (id < 0) touch(id, i);
    if (ls.some((l) => l.kind === 'gemm')) touch(CUBLAS_WORKSPACE_ID, i);
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
  const gemms = gen.launches.some((ls) => ls.some((l) => l.kind === 'gemm'));
  if ((m.workspaceBytes > 0) !== gemms) bad.push(`workspace ${m.workspaceBytes} B with${gemms ? '' : 'out'} cuBLAS calls`);
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

/**
 * @file Compile reports: per-kernel FLOPs, bytes moved (the footprint of the buffers a kernel reads
 * and writes), arithmetic intensity, and the program's memory figures.
 */
import { kernelAccess } from '../ir/kernel/access.ts';
import type { Expr, Kernel, KernelProgram, Stmt } from '../ir/kernel/types.ts';
import type { Compiled } from './compile.ts';
import { deviceBytes, elementFlops } from './fuse/cost.ts';

export interface KernelStats {
  name: string;
  kind: Kernel['kind'];
  flops: number;
  bytes: number;
  intensity: number;
}

function exprFlops(e: Expr): number {
  switch (e.k) {
    case 'un': return elementFlops(e.op) + exprFlops(e.a);
    case 'bin': return (e.dtype === 'i32' || e.a.dtype === 'i32' ? 0 : elementFlops(e.op)) + exprFlops(e.a) + exprFlops(e.b);
    case 'select': return exprFlops(e.c) + exprFlops(e.a) + exprFlops(e.b);
    case 'cast': return exprFlops(e.a);
    case 'random': return elementFlops('random_normal');
    case 'load': return 0;
    default: return 0;
  }
}

function stmtFlops(stmts: readonly Stmt[]): number {
  let f = 0;
  for (const s of stmts) {
    switch (s.k) {
      case 'let': f += exprFlops(s.value); break;
      case 'loop': f += s.extent * stmtFlops(s.body); break;
      case 'reduce': f += s.extent * (stmtFlops(s.body) + exprFlops(s.value) + 1); break;
      case 'store': f += exprFlops(s.value) + (s.mode === 'add' ? 1 : 0); break;
    }
  }
  return f;
}

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

export function kernelFlops(k: Kernel): number {
  switch (k.kind) {
    case 'loop': return prod(k.grid) * stmtFlops(k.body);
    case 'matmul': return prod(k.batch) * k.m * k.n * (2 * k.k + stmtFlops(k.epilogue));
    case 'attention': return prod(k.batch) * k.sq * k.sk * (2 * k.dk + 2 * k.dv + 5);
    case 'attention_grad': return prod(k.batch) * k.sq * k.sk * (2 * k.dk + 2 * k.dv + 5 + 2 * k.dv + 2 * k.dk * 2);
  }
}

export function kernelStats(p: KernelProgram): KernelStats[] {
  return p.kernels.map((k) => {
    const a = kernelAccess(k);
    let bytes = 0;
    for (const b of new Set([...a.reads, ...a.writes])) bytes += p.buffers[b]!.numel * deviceBytes(p.buffers[b]!.dtype);
    const flops = kernelFlops(k);
    return { name: k.name, kind: k.kind, flops, bytes, intensity: bytes ? flops / bytes : 0 };
  });
}

const si = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${n}`);

/** What rematerialization did: mode, recomputed nodes, extra FLOPs (and their share of the program's), kept bytes. */
export function rematLine(c: Compiled, totalFlops: number): string {
  const r = c.remat;
  const why = r.reason ? ` (${r.reason})` : '';
  if (r.keptBytesBefore === 0) return `remat: ${r.mode}${why}: no backward (nothing kept for it)`;
  const kept = `forward values kept for the backward ${si(r.keptBytesAfter)}B of ${si(r.keptBytesBefore)}B`;
  if (r.recomputedNodes === 0) return `remat: ${r.mode}${why}: nothing recomputed; ${kept}`;
  const share = totalFlops > r.extraFlops ? ` (${((100 * r.extraFlops) / (totalFlops - r.extraFlops)).toFixed(1)}% more than without)` : '';
  return `remat: ${r.mode}${why}${r.blocks ? `, ${r.blocks} blocks` : ''}: ${r.recomputedNodes} nodes recomputed in the backward, extra FLOPs ${si(r.extraFlops)}${share}; ${kept}`;
}

/** A compiled program's memory by part (bytes): what `kiln compile --report` prints. */
export interface MemoryFigures {
  parameters: number;
  state: number;
  data: number;
  /** Outputs that need memory of their own (not written in place into their input). */
  outputs: number;
  constants: number;
  arena: number;
  total: number;
  updatesInPlace: number;
  updatesCopied: number;
}

export function memoryFigures(c: Pick<Compiled, 'program' | 'optimized'>): MemoryFigures {
  const p = c.program;
  const kind = new Map<number, string>();
  for (const [name, id] of p.inputs) kind.set(id, c.optimized.inputByName(name)?.kind ?? 'data');
  const bytes = (pick: (b: (typeof p.buffers)[number]) => boolean) => p.buffers.filter(pick).reduce((s, b) => s + b.numel * deviceBytes(b.dtype), 0);
  const parameters = bytes((b) => b.kind === 'input' && (kind.get(b.id) === 'param' || kind.get(b.id) === 'frozen'));
  const state = bytes((b) => b.kind === 'input' && kind.get(b.id) === 'state');
  const data = bytes((b) => b.kind === 'input' && (kind.get(b.id) ?? 'data') === 'data');
  const outputs = bytes((b) => b.kind === 'output' && b.inPlaceOf === undefined);
  const constants = bytes((b) => b.kind === 'const');
  const updates = [...p.outputs.keys()].filter((n) => n.startsWith('next.')).length;
  const updatesInPlace = p.buffers.filter((b) => b.inPlaceOf !== undefined).length;
  return {
    parameters, state, data, outputs, constants, arena: p.arenaBytes, total: parameters + state + data + outputs + constants + p.arenaBytes,
    updatesInPlace, updatesCopied: updates - updatesInPlace,
  };
}

export function formatReport(c: Compiled, opts: { stages?: boolean } = {}): string {
  const rows = kernelStats(c.program);
  const out: string[] = [];
  if (opts.stages) for (const s of c.stages) out.push(`==== after ${s.name} ====`, s.text);
  out.push(`==== report: ${c.program.name} ====`);
  out.push(`graph: ${c.optimized.nodes.length} nodes after passes; ${c.program.kernels.length} kernels`);
  const w = Math.max(6, ...rows.map((r) => r.name.length));
  out.push(`${'kernel'.padEnd(w)}  ${'kind'.padEnd(14)} ${'FLOPs'.padStart(9)} ${'bytes'.padStart(9)} ${'FLOP/B'.padStart(7)}`);
  for (const r of rows) out.push(`${r.name.padEnd(w)}  ${r.kind.padEnd(14)} ${si(r.flops).padStart(9)} ${si(r.bytes).padStart(9)} ${r.intensity.toFixed(2).padStart(7)}`);
  const tf = rows.reduce((s, r) => s + r.flops, 0), tb = rows.reduce((s, r) => s + r.bytes, 0);
  out.push(`${'total'.padEnd(w)}  ${''.padEnd(14)} ${si(tf).padStart(9)} ${si(tb).padStart(9)} ${(tb ? tf / tb : 0).toFixed(2).padStart(7)}`);
  out.push(rematLine(c, tf));
  const m = memoryFigures(c);
  out.push(
    `memory: parameters ${si(m.parameters)}B, state ${si(m.state)}B, data inputs ${si(m.data)}B, outputs ${si(m.outputs)}B, constants ${si(m.constants)}B, ` +
      `arena ${si(m.arena)}B; total ${si(m.total)}B`,
  );
  out.push(`  arena: temporaries at peak live ${si(c.plan.peakBytes)}B (${si(c.plan.totalBytes)}B without reuse, ${c.plan.inPlace.length} in place); ` +
    `state updates: ${m.updatesInPlace} written in place, ${m.updatesCopied} copied (backends add their scratch and library workspaces to the arena)`);
  return out.join('\n') + '\n';
}

/**
 * @file Compile reports: per-kernel FLOPs, bytes moved (the footprint of the buffers a kernel reads
 * and writes), arithmetic intensity, and the program's memory figures.
 */
import { kernelAccess } from '../ir/kernel/access.ts';
import type { Expr, Kernel, KernelProgram, Stmt } from '../ir/kernel/types.ts';
import type { Compiled } from './compile.ts';
import { deviceBytes, elementFlops } from './fuse/cost.ts';
import { forwardValues } from './transforms/remat.ts';

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

/**
 * What the memory plan holds at its peak (the kernel where the most temporary bytes are live), by what
 * the values are: forward values kept for the backward, by the op that makes them (matmul and attention
 * outputs, casts to a low-precision dtype, f32 elementwise values, other), and the backward's own values
 * (parameter gradients: those shaped like a parameter; other backward temporaries). Resident inputs
 * (parameters, state) are live throughout (memoryFigures); a backend's scratch (GEMM workspaces,
 * attention statistics) is placed beside these by the backend.
 */
export interface PeakLiveSet {
  /** The kernel at the peak, and the temporary bytes live there (each buffer counted, in-place pairs twice). */
  kernel: string;
  bytes: number;
  /** Forward values kept for the backward: bytes by category ('matmul', 'attention', 'cast bf16', 'f32 elementwise', 'other'). */
  kept: Record<string, number>;
  /** Backward values: parameter gradients and other temporaries. */
  gradients: number;
  backward: number;
  /** The largest live buffers: `<bytes> <op> <dtype>[shape] (kernels first..last)`, largest first. */
  largest: string[];
}

export function peakLiveSet(c: Pick<Compiled, 'program' | 'optimized' | 'fused' | 'plan'>, largest = 8): PeakLiveSet {
  const p = c.program, g = c.optimized;
  const size = (id: number) => p.buffers[id]!.numel * deviceBytes(p.buffers[id]!.dtype);
  const delta = new Array<number>(p.kernels.length + 1).fill(0);
  for (const [id, [s, e]] of c.plan.live) (delta[s]! += size(id)), (delta[e + 1]! -= size(id));
  let at = 0, best = -1;
  for (let k = 0, sum = 0; k < p.kernels.length; k++) if ((sum += delta[k]!) > best) (best = sum), (at = k);
  const valueOf = new Map<number, number>();
  for (const [v, b] of c.fused.bufferOf) valueOf.set(b, v);
  const forward = forwardValues(g);
  const paramShapes = new Set(g.inputs.filter((i) => i.kind === 'param').map((i) => `${i.type.dtype}[${i.type.shape.join(',')}]`));
  const out: PeakLiveSet = { kernel: p.kernels[at]?.name ?? '-', bytes: Math.max(0, best), kept: {}, gradients: 0, backward: 0, largest: [] };
  const rows: Array<[number, string]> = [];
  for (const [id, [s, e]] of c.plan.live) {
    if (s > at || e < at) continue;
    const v = valueOf.get(id), n = v === undefined ? undefined : g.node(v);
    const bytes = size(id), type = n ? `${n.type.dtype}[${n.type.shape.join(',')}]` : `${p.buffers[id]!.dtype}[${p.buffers[id]!.numel}]`;
    rows.push([bytes, `${si(bytes)}B ${n?.op ?? 'buffer'} ${type} (kernels ${s}..${e})`]);
    if (v !== undefined && forward.has(v)) {
      const cat = n!.op === 'matmul' || n!.op === 'attention' ? n!.op : n!.op === 'cast' && n!.type.dtype !== 'f32' ? `cast ${n!.type.dtype}` : n!.type.dtype === 'f32' ? 'f32 elementwise' : 'other';
      out.kept[cat] = (out.kept[cat] ?? 0) + bytes;
    } else if (paramShapes.has(type)) out.gradients += bytes;
    else out.backward += bytes;
  }
  out.largest = rows.sort((a, b) => b[0] - a[0]).slice(0, largest).map((r) => r[1]);
  return out;
}

/** The peak live set as one report line. */
export function peakLine(s: PeakLiveSet): string {
  const kept = Object.entries(s.kept).sort((a, b) => b[1] - a[1]);
  const total = kept.reduce((x, [, b]) => x + b, 0);
  return `  at the peak (${s.kernel}, ${si(s.bytes)}B live): forward values kept for the backward ${si(total)}B (${kept.map(([k, b]) => `${k} ${si(b)}B`).join(', ') || 'none'}); ` +
    `parameter gradients ${si(s.gradients)}B; other backward temporaries ${si(s.backward)}B`;
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
  if (c.plan.peakBytes > 0) out.push(peakLine(peakLiveSet(c)));
  return out.join('\n') + '\n';
}

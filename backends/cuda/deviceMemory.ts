/**
 * @file All device memory of a CUDA program, planned before anything is allocated: one allocation
 * holding, in order, the resident inputs (parameters and frozen weights, then optimizer/EMA state),
 * the data inputs, outputs and constants, and the arena. The arena is the compiler's memory plan
 * (temporaries) plus the backend's own buffers placed into it by live range (compiler/schedule/
 * backends/arena.ts): the generated module's scratch — its GEMM workspace (library accumulators,
 * staged bf16 operands, the cuBLASLt workspace: gemmLibrary.ts) and attention statistics — and the
 * cuBLAS workspace while cuBLAS GEMMs run. `next.*` outputs written in place (BufferDecl.inPlaceOf) take no
 * memory of their own. The figures are what `kiln compile --report --backend cuda` prints and what
 * the runtime's measured device memory is checked against.
 */
import type { Graph } from '../../ir/graph.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { type ArenaExtra, placeExtras, planOfProgram } from '../arena.ts';
import type { CudaModule } from './codegen.ts';
import type { DeviceMemoryFigures } from './errors.ts';

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const bytesPer = (d: string) => (d === 'f16' || d === 'bf16' ? 2 : 4);

/** The id of the cuBLAS workspace among the arena's extra buffers (scratch ids are -1, -2, ...). */
export const CUBLAS_WORKSPACE_ID = -1_000_000;
/** cuBLAS workspace bytes (NVIDIA's recommendation for Hopper: 32 MiB). */
export const CUBLAS_WORKSPACE_BYTES = 32 * 2 ** 20;

export interface DeviceMemoryPlan extends DeviceMemoryFigures {
  /** Byte offset in the one allocation of every buffer id (program buffers; negative: scratch and workspace). */
  readonly offsets: ReadonlyMap<number, number>;
  /** Where the arena starts in the allocation. */
  readonly arenaOffset: number;
  /** Scratch and workspace bytes placed in the arena (beyond the compiler's temporaries). */
  readonly extraBytes: number;
  /** The largest number of arena bytes live at once. */
  readonly arenaPeak: number;
  /** Updates written in place, and the ones copied after the step. */
  readonly updatesInPlace: number;
  readonly updatesCopied: number;
  /** cuBLAS workspace bytes (0 when the module has no cuBLAS (non-Lt) GEMM). */
  readonly workspaceBytes: number;
}

/** Buffer ids a launch refers to: kernel parameters, and every `{ buf }` operand of a library call, at any depth. */
function launchBuffers(l: unknown, out: number[] = []): number[] {
  if (Array.isArray(l)) for (const x of l) launchBuffers(x, out);
  else if (l && typeof l === 'object') {
    for (const [k, v] of Object.entries(l)) {
      if (k === 'params' && Array.isArray(v)) out.push(...v.filter((x): x is number => typeof x === 'number'));
      else if (k === 'buf' && typeof v === 'number') out.push(v);
      else if (v && typeof v === 'object') launchBuffers(v, out);
    }
  }
  return out;
}

/**
 * Kernel index range [first, last] in which each scratch buffer of the module is used; a scratch
 * buffer no launch names (none today) is live throughout, so it still gets memory.
 */
function scratchLive(gen: CudaModule): Map<number, [number, number]> {
  const live = new Map<number, [number, number]>();
  gen.launches.forEach((ls, k) => {
    for (const id of launchBuffers(ls)) {
      if (id >= 0) continue;
      const r = live.get(id);
      if (r) r[1] = k;
      else live.set(id, [k, k]);
    }
  });
  for (const s of gen.scratch) if (!live.has(s.id)) live.set(s.id, [0, Math.max(0, gen.launches.length - 1)]);
  return live;
}

/** Plan every byte the program needs on the device (see the file comment). */
export function planDeviceMemory(graph: Graph, program: KernelProgram, gen: CudaModule): DeviceMemoryPlan {
  const plan = planOfProgram(program);
  const offsets = new Map<number, number>();
  let at = 0;
  const put = (id: number, bytes: number) => {
    offsets.set(id, at);
    at += align(Math.max(bytes, 1));
  };
  const kindOf = new Map<number, string>();
  for (const [name, id] of program.inputs) kindOf.set(id, graph.inputByName(name)?.kind ?? 'data');
  const size = (id: number) => program.buffers[id]!.numel * bytesPer(program.buffers[id]!.dtype);
  const section = (pick: (kind: string) => boolean) => {
    const start = at;
    for (const b of program.buffers) if (b.kind === 'input' && !offsets.has(b.id) && pick(kindOf.get(b.id) ?? 'data')) put(b.id, size(b.id));
    return at - start;
  };
  const parameters = section((k) => k === 'param' || k === 'frozen');
  const state = section((k) => k === 'state');
  const ioStart = at;
  section(() => true);
  for (const b of program.buffers) if ((b.kind === 'output' || b.kind === 'const') && b.inPlaceOf === undefined && !offsets.has(b.id)) put(b.id, size(b.id));
  for (const b of program.buffers) if (b.inPlaceOf !== undefined) offsets.set(b.id, offsets.get(b.inPlaceOf)!);
  const io = at - ioStart;
  const arenaOffset = at;
  // The arena: temporaries at the compiler's offsets, scratch and workspace beside them.
  const extras: ArenaExtra[] = [];
  const live = scratchLive(gen);
  for (const s of gen.scratch) {
    const r = live.get(s.id);
    if (r) extras.push({ id: s.id, bytes: s.bytes, first: r[0], last: r[1] });
  }
  // cuBLAS (not cuBLASLt, whose workspace is a region of the module's GEMM workspace scratch) needs its own.
  const gemmAt = gen.launches.flatMap((ls, k) => (ls.some((l) => l.kind === 'gemm' && !l.lt) ? [k] : []));
  const workspaceBytes = gemmAt.length ? CUBLAS_WORKSPACE_BYTES : 0;
  if (workspaceBytes) extras.push({ id: CUBLAS_WORKSPACE_ID, bytes: workspaceBytes, first: gemmAt[0]!, last: gemmAt[gemmAt.length - 1]! });
  const placed = placeExtras(plan, program.buffers, extras);
  for (const b of program.buffers) if (b.kind === 'temp' && plan.offsets.has(b.id)) offsets.set(b.id, arenaOffset + plan.offsets.get(b.id)!);
  for (const [id, o] of placed.offsets) offsets.set(id, arenaOffset + o);
  const arena = align(Math.max(placed.arenaBytes, 0));
  const outputsInPlace = program.buffers.filter((b) => b.inPlaceOf !== undefined).length;
  const nextOutputs = [...program.outputs.keys()].filter((n) => n.startsWith('next.')).length;
  return {
    program: program.name, parameters, state, io, arena, total: arenaOffset + arena, offsets, arenaOffset,
    extraBytes: extras.reduce((s, x) => s + align(x.bytes), 0), arenaPeak: placed.peakBytes,
    updatesInPlace: outputsInPlace, updatesCopied: nextOutputs - outputsInPlace, workspaceBytes,
  };
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** The plan as one report line (`kiln compile --backend cuda`). */
export function formatDeviceMemory(m: DeviceMemoryPlan): string {
  return `device memory (one allocation): parameters ${mib(m.parameters)}, state ${mib(m.state)}, inputs/outputs/constants ${mib(m.io)}, ` +
    `arena ${mib(m.arena)} (peak live ${mib(m.arenaPeak)}; scratch and cuBLAS workspace ${mib(m.extraBytes)}); total ${mib(m.total)}; ` +
    `state updates ${m.updatesInPlace} in place, ${m.updatesCopied} copied`;
}

/**
 * @file What a library GEMM (cuBLAS / cuBLASLt, the 'cublas' and 'cublaslt' providers of a matmul's
 * TileSchedule) needs around the library call, planned by codegen.ts planGemm:
 *  - the module's GEMM workspace (`gemmWorkspace`): ONE device scratch buffer shared by every
 *    library GEMM of the module, holding a GEMM's accumulator tile C (when a fused epilogue follows)
 *    and its staged operands. Launches run in stream order and each GEMM's use of the workspace ends
 *    with its epilogue kernel, so one buffer the size of the largest need serves them all. This is
 *    the request a memory plan can take over (a workspace region of the arena instead of a scratch);
 *  - operand staging (`stageOperand`): an operand that is not a plain strided bf16 view (an f32
 *    master weight cast to bf16, a gather, a prologue) is evaluated once by a small elementwise
 *    kernel into the workspace, K-contiguous, so the library reads a plain matrix. For weights this
 *    costs one pass over the weight (a few microseconds); for large activations it costs a pass over
 *    the activation, so the measured tuner (gemmAutotune.ts) decides whether it pays;
 *  - the accumulator's storage type (`accStoredAsBf16`): when the fused epilogue only ever reads the
 *    accumulator rounded to bf16 (autocast's rounding point, `bf16(%acc)`), the library writes C in
 *    bf16 with round-to-nearest-even, the same value, and the epilogue reads half the bytes.
 */
import { walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import type { Expr, MatmulKernel, Stmt } from '../../ir/kernel/types.ts';
import type { CudaEmitter } from './gemmTensorCore.ts';

/** A strided operand view: element (vars) at buf[c + Σ coef(v)·v]; negative buf = a scratch id. */
export interface StridedOperand {
  readonly buf: number;
  readonly c: number;
  readonly coef: (v: string) => number;
}

/** The module's shared library-GEMM workspace (a scratch entry whose size grows to the largest request). */
export interface GemmWorkspace {
  readonly id: number;
  bytes: number;
}

const workspaces = new WeakMap<object, GemmWorkspace>();

/**
 * The GEMM workspace of the module whose scratch list is `scratch` (created on the first request,
 * appended to the list); `request(bytes)` makes it at least that large.
 */
export function gemmWorkspace(scratch: Array<{ readonly id: number; readonly bytes: number }>): GemmWorkspace & { request(bytes: number): number } {
  let ws = workspaces.get(scratch);
  if (!ws) {
    ws = { id: -(scratch.length + 1), bytes: 0 };
    scratch.push(ws);
    workspaces.set(scratch, ws);
  }
  const w = ws;
  return Object.assign(w, { request: (bytes: number) => ((w.bytes = Math.max(w.bytes, bytes)), w.id) });
}

export const align256 = (bytes: number) => Math.ceil(bytes / 256) * 256;

/** Does the epilogue read the accumulator only as `bf16(%acc)`? */
export function accStoredAsBf16(epilogue: readonly Stmt[]): boolean {
  let refs = 0, rounded = 0;
  walkStmts(epilogue, (e) => {
    if (e.k === 'ref' && e.name === 'acc') refs++;
    if (e.k === 'cast' && e.dtype === 'bf16' && e.a.k === 'ref' && e.a.name === 'acc') rounded++;
  });
  return refs > 0 && refs === rounded;
}

function varsOf(e: Expr): Set<string> {
  const s = new Set<string>();
  walkExpr(e, (x) => {
    if (x.k === 'var') s.add(x.name);
  });
  return s;
}

function loadsOf(e: Expr): number[] {
  const s = new Set<number>();
  walkExpr(e, (x) => {
    if (x.k === 'load') s.add(x.buf);
  });
  return [...s].sort((x, y) => x - y);
}

/**
 * Stage operand `which` of `k` into the workspace at byte offset `at`, K-contiguous: a as [batch.., M, K],
 * b as [batch.., N, K]; without batch dims when the operand uses no batch variable (a weight shared by
 * the batch: batch stride 0). Emits the staging kernel `${fn}_stage_${which}` into `out`.
 */
export function stageOperand(em: CudaEmitter, k: MatmulKernel, which: 'a' | 'b', fn: string, wsId: number, at: number, out: string[]): {
  operand: StridedOperand; bytes: number; launch: { kind: 'kernel'; fn: string; grid: [number, number, number]; block: [number, number, number]; params: number[] };
} {
  const e = which === 'a' ? k.a : k.b;
  const rowVar = which === 'a' ? 'i' : 'j';
  const rows = which === 'a' ? k.m : k.n;
  const bv = k.batch.map((_, d) => `b${d}`);
  const used = varsOf(e);
  const batched = bv.some((v, d) => used.has(v) && k.batch[d]! > 1);
  const dims = batched ? [...bv, rowVar, 'p'] : [rowVar, 'p'];
  const extents = batched ? [...k.batch, rows, k.k] : [rows, k.k];
  const total = extents.reduce((x, y) => x * y, 1);
  const name = `${fn}_stage_${which}`;
  const ids = loadsOf(e);
  const elem = at / 2;
  out.push(`extern "C" __global__ void ${name}(${em.params([...ids, wsId])}) {`);
  out.push(`  const long long t = (long long)blockIdx.x * 256 + threadIdx.x;`, `  if (t >= ${total}LL) return;`);
  em.decompose(dims, extents, 't', out, '  ');
  for (const v of bv) if (!dims.includes(v)) out.push(`  const int ${v} = 0;`);
  out.push(`  ((u16*)scr${-wsId})[${elem}LL + t] = k_f32_to_bf16(${em.expr(e)});`, '}');
  const strides = new Map<string, number>();
  let s = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    strides.set(dims[d]!, s);
    s *= extents[d]!;
  }
  return {
    operand: { buf: wsId, c: elem, coef: (v) => strides.get(v) ?? 0 },
    bytes: total * 2,
    launch: { kind: 'kernel', fn: name, grid: [Math.ceil(total / 256), 1, 1], block: [256, 1, 1], params: [...ids, wsId] },
  };
}

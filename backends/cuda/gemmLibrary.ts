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
 *  - cuBLASLt (provider 'cublaslt'): its BIAS epilogue where the fused epilogue is exactly one store
 *    of accumulator + bias (`ltBias`), so the library writes the output itself; its workspace is a
 *    region of the GEMM workspace too (LT_WORKSPACE_BYTES);
 *  - the accumulator's storage type (`accStoredAsBf16`): when the fused epilogue only ever reads the
 *    accumulator rounded to bf16 (autocast's rounding point, `bf16(%acc)`), the library writes C in
 *    bf16 with round-to-nearest-even, the same value, and the epilogue reads half the bytes.
 */
import type { DType } from '../../ir/dtype.ts';
import { affine, mapExpr, walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import type { BufferDecl, Expr, MatmulKernel, Stmt } from '../../ir/kernel/types.ts';
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
 * Stage operand `which` of `k` into the workspace at byte offset `at`: a as [batch.., M, K], b as
 * [batch.., N, K] (K-contiguous), or with M/N contiguous ([batch.., K, M|N]) where the operand's main
 * load is contiguous along M/N (its tile plan's `major`), so that the staging kernel's reads are
 * coalesced like its writes (a weight read through its transpose, dY·W); without batch dims when the
 * operand uses no batch variable (a weight shared by the batch: batch stride 0). Emits the staging
 * kernel `${fn}_stage_${which}` into `out`.
 */
export function stageOperand(em: CudaEmitter, k: MatmulKernel, which: 'a' | 'b', fn: string, wsId: number, at: number, out: string[]): {
  operand: StridedOperand; bytes: number; launch: { kind: 'kernel'; fn: string; grid: [number, number, number]; block: [number, number, number]; params: number[] };
} {
  const e = which === 'a' ? k.a : k.b;
  const rowVar = which === 'a' ? 'i' : 'j';
  const rows = which === 'a' ? k.m : k.n;
  const mnMajor = (which === 'a' ? k.tile?.a.major : k.tile?.b.major) === 'mn';
  const bv = k.batch.map((_, d) => `b${d}`);
  const used = varsOf(e);
  const batched = bv.some((v, d) => used.has(v) && k.batch[d]! > 1);
  const inner = mnMajor ? ['p', rowVar] : [rowVar, 'p'];
  const innerExt = mnMajor ? [k.k, rows] : [rows, k.k];
  const dims = batched ? [...bv, ...inner] : inner;
  const extents = batched ? [...k.batch, ...innerExt] : innerExt;
  const total = extents.reduce((x, y) => x * y, 1);
  const name = `${fn}_stage_${which}`;
  const ids = loadsOf(e);
  const elem = at / 2;
  out.push(`extern "C" __global__ void ${name}(${em.params([...ids, wsId])}) {`);
  if (total < 2 ** 31) {
    // 32-bit index arithmetic (divisions by constants are a multiply-shift; 64-bit ones cost more).
    out.push(`  const unsigned t = blockIdx.x * 256u + threadIdx.x;`, `  if (t >= ${total}u) return;`);
    let rem = 't';
    for (let d = dims.length - 1; d >= 0; d--) {
      out.push(`  const int ${dims[d]} = (int)(${rem} % ${extents[d]}u);`);
      if (d > 0) out.push(`  const unsigned q${d} = ${rem} / ${extents[d]}u;`);
      rem = `q${d}`;
    }
  } else {
    out.push(`  const long long t = (long long)blockIdx.x * 256 + threadIdx.x;`, `  if (t >= ${total}LL) return;`);
    em.decompose(dims, extents, 't', out, '  ');
  }
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

/** Bytes of cuBLASLt workspace a 'cublaslt' GEMM gets (its region of the GEMM workspace). */
export const LT_WORKSPACE_BYTES = 32 * 2 ** 20;

/** Is `e` the accumulator as autocast leaves it: %acc, bf16(%acc) or f32(bf16(%acc))? */
function isAcc(e: Expr): boolean {
  if (e.k === 'ref') return e.name === 'acc';
  if (e.k === 'cast' && e.dtype === 'bf16') return e.a.k === 'ref' && e.a.name === 'acc';
  if (e.k === 'cast' && e.dtype === 'f32') return e.a.k === 'cast' && e.a.dtype === 'bf16' && e.a.a.k === 'ref' && e.a.a.name === 'acc';
  return false;
}

/**
 * The bias of a store value cuBLASLt's BIAS epilogue computes: `[cast](acc' + bias[j])` where acc' is
 * the accumulator (isAcc) and bias a load of a buffer of the output's dtype indexed by j alone.
 * cuBLASLt adds the bias to the f32 accumulator and rounds once to the output type; the IR rounds the
 * accumulator to bf16 first (autocast's rounding point) — the results differ by at most one rounding
 * of the output type (half an ulp of bf16 in the accumulator), within the GEMM tests' bounds.
 */
export function ltBias(value: Expr, outType: DType, buffers: readonly BufferDecl[]): { buf: number; c: number } | undefined {
  const v = value.k === 'cast' && value.dtype === outType ? value.a : value;
  if (v.k !== 'bin' || v.op !== 'add') return undefined;
  const bias = (x: Expr) => {
    if (x.k !== 'load' || buffers[x.buf]!.dtype !== outType) return undefined;
    const a = affine(x.index);
    return a && a.coef.size === 1 && a.coef.get('j') === 1 ? { buf: x.buf, c: a.c } : undefined;
  };
  if (isAcc(v.a)) return bias(v.b);
  if (isAcc(v.b)) return bias(v.a);
  return undefined;
}

/**
 * The epilogue as one store when it is `let`s followed by a single store, with the lets inlined into
 * the stored value (so that patterns like ltBias see the whole expression); undefined otherwise.
 */
export function singleStore(epilogue: readonly Stmt[]): Extract<Stmt, { k: 'store' }> | undefined {
  const lets = new Map<string, Expr>();
  const inline = (e: Expr): Expr => mapExpr(e, (x) => (x.k === 'ref' && lets.has(x.name) ? lets.get(x.name)! : undefined));
  for (let i = 0; i < epilogue.length; i++) {
    const s = epilogue[i]!;
    if (s.k === 'let') lets.set(s.name, inline(s.value));
    else if (s.k === 'store' && i === epilogue.length - 1) return { ...s, value: inline(s.value), index: inline(s.index) };
    else return undefined;
  }
  return undefined;
}

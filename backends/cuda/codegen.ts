/**
 * @file CUDA C++ generation from the kernel IR. Each kernel of a KernelProgram becomes one or more
 * `extern "C" __global__` functions whose parameters are the device pointers of the buffers it
 * touches (shapes are static, so every size is a constant in the source):
 *  - elementwise loop kernels: one thread per grid point;
 *  - row kernels (with reductions or row loops): one block per grid point; reductions are strided
 *    over the block's threads and combined by warp shuffles, then across warps in a fixed order; row
 *    loops are strided too. Reductions that read along a strided axis (sums over tokens or batch:
 *    bias and modulation gradients) instead take 32 consecutive grid points per block, 8 lanes each
 *    (coalesced loads, no per-point block reduction; isColumnReduction);
 *  - matmul: shared-memory tiled GEMM over the operand expressions, epilogue per output element;
 *  - attention: one thread per query row, online softmax; attention_grad: a statistics pass, then
 *    dQ per query row and dK/dV per key row (the statistics live in scratch buffers). Attention
 *    kernels with a tensor-core `tile` (bf16 operands) are FlashAttention-2 kernels: flashAttention.ts.
 * Float math is done in f32; values of f16/bf16 type are rounded to their type after each operation,
 * as the kernel-IR interpreter does. NVRTC compiles the module at run time (driver.ts).
 */
import { createHash } from 'node:crypto';
import type { DType } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { sameExtentRuns, splittable } from '../../ir/kernel/reductions.ts';
import { I, affine, exprKey, linearIndex, mapExpr, mapStmts, walkExpr, walkStmts } from '../../ir/kernel/expr.ts';
import { stridesOf } from '../../ir/shape.ts';
import type { AttentionGradKernel, AttentionKernel, BufferDecl, Expr, KernelProgram, LoopKernel, MatmulKernel, RowMapping, Stmt } from '../../ir/kernel/types.ts';
import { debugOn, debugSource } from '../../compiler/debug.ts';
import { type CudaOptions, DEFAULT_ELEMENTWISE_POINTS } from './options.ts';
import { FlashAttention } from './flashAttention.ts';
import { LT_WORKSPACE_BYTES, accStoredAsBf16, align256, gemmWorkspace, ltBias, singleStore, stageOperand } from './gemmLibrary.ts';
import { type CudaEmitter, genTensorCoreGemm } from './gemmTensorCore.ts';
import { MMA_PTX } from './mma.ts';
import { PRELUDE } from './prelude.ts';

/** One launch of a generated function. */
export interface KernelLaunch {
  readonly kind: 'kernel';
  readonly fn: string;
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  /** Buffer ids passed as pointer parameters, in order; negative ids name scratch buffers. */
  readonly params: readonly number[];
  /** Dynamic shared memory bytes (flash attention). */
  readonly sharedBytes?: number;
}

/** A column-major cuBLAS strided-batched SGEMM: C = op(A)·op(B); operands are (buffer, element offset). */
export interface GemmLaunch {
  readonly kind: 'gemm';
  readonly ta: 0 | 1;
  readonly tb: 0 | 1;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: { readonly buf: number; readonly offset: number };
  readonly lda: number;
  readonly sA: number;
  readonly b: { readonly buf: number; readonly offset: number };
  readonly ldb: number;
  readonly sB: number;
  readonly c: { readonly buf: number; readonly offset: number };
  readonly ldc: number;
  readonly sC: number;
  readonly batch: number;
  /** Operand and result dtypes (f32 SGEMM, or bf16 operands with an f32/bf16 result). */
  readonly ab: 'f32' | 'bf16';
  readonly cType: 'f32' | 'bf16';
  /** cuBLASLt instead of cuBLAS (provider 'cublaslt'): its epilogue, bias vector and workspace region. */
  readonly lt?: {
    readonly epilogue: 'default' | 'bias';
    readonly bias?: { readonly buf: number; readonly offset: number; readonly dtype: 'f32' | 'bf16' };
    readonly workspace: { readonly buf: number; readonly offset: number };
    readonly workspaceBytes: number;
  };
}

export type Launch = KernelLaunch | GemmLaunch;

export interface Scratch {
  readonly id: number;
  readonly bytes: number;
}

/** One distinct generated source: its functions, compiled as a module of their own (parallel NVRTC). */
export interface CudaModuleUnit {
  readonly name: string;
  /** A complete module: prelude, the helpers it uses, its functions. */
  readonly source: string;
  readonly functions: readonly string[];
}

export interface CudaModule {
  /** Every distinct function as one module (what `units` compile to, in one NVRTC call). */
  readonly source: string;
  readonly units: readonly CudaModuleUnit[];
  /** Per kernel of the program (in order), its launches. */
  readonly launches: readonly (readonly Launch[])[];
  readonly scratch: readonly Scratch[];
}

const ELEMENTWISE_BLOCK = 256;

const storageType = (d: DType) => (d === 'f32' ? 'float' : d === 'f16' || d === 'bf16' ? 'u16' : d === 'i32' ? 'int' : 'u32');
const valueType = (d: DType) => (d === 'f32' || d === 'f16' || d === 'bf16' ? 'float' : d === 'i32' ? 'int' : d === 'u32' ? 'u32' : 'bool');

function floatLit(v: number): string {
  if (Number.isNaN(v)) return 'K_NAN';
  if (v === Infinity) return 'K_INF';
  if (v === -Infinity) return '(-K_INF)';
  if (Object.is(v, -0)) return '(-0.0f)';
  const s = Math.fround(v).toPrecision(9);
  return `${s.includes('e') || s.includes('.') ? s : `${s}.0`}f`;
}

class Gen {
  constructor(readonly buffers: readonly BufferDecl[], readonly options: Pick<CudaOptions, 'cublas' | 'elementwisePoints' | 'gemmOutputC' | 'columnPairs'> = {}) {}

  /** Round a float expression to its narrow dtype. */
  private narrow(code: string, d: DType): string {
    return d === 'f16' ? `k_round_f16(${code})` : d === 'bf16' ? `k_round_bf16(${code})` : code;
  }

  /**
   * While genPoints writes its V copies of a body: the current lane, each vector load's lane values
   * (by buffer and index key) and the stores collected into lane variables (their name prefix).
   */
  vector?: { lane?: number; loads: Map<string, string[]>; stores: Map<Stmt, string> };

  load(buf: number, index: string): string {
    return this.loadValue(buf, `buf${buf}[${index}]`);
  }

  /** The value (f32 for floats) of a stored element `x` of buffer `buf`. */
  loadValue(buf: number, x: string): string {
    const d = this.buffers[buf]!.dtype;
    return d === 'f16' ? `k_f16_to_f32(${x})` : d === 'bf16' ? `k_bf16_to_f32(${x})` : d === 'bool' ? `(${x} != 0u)` : x;
  }

  storeValue(buf: number, value: string): string {
    const d = this.buffers[buf]!.dtype;
    return d === 'f16' ? `k_f32_to_f16(${value})` : d === 'bf16' ? `k_f32_to_bf16(${value})` : d === 'bool' ? `((${value}) ? 1u : 0u)` : value;
  }

  expr(e: Expr): string {
    switch (e.k) {
      case 'const':
        if (e.dtype === 'bool') return e.v ? 'true' : 'false';
        if (e.dtype === 'i32') return e.v === -2147483648 ? '(-2147483647 - 1)' : `${e.v}`;
        if (e.dtype === 'u32') return `${e.v}u`;
        return floatLit(e.dtype === 'f32' ? e.v : e.v);
      case 'var': return e.name;
      case 'ref': return `v_${e.name}`;
      case 'load': {
        const lanes = this.vector?.loads.get(`${e.buf}|${exprKey(e.index)}`);
        return lanes ? lanes[this.vector!.lane!]! : this.load(e.buf, this.expr(e.index));
      }
      case 'un': return this.narrow(this.unary(e.op, this.expr(e.a), e.dtype), e.dtype);
      case 'bin': return this.narrow(this.binary(e.op, this.expr(e.a), this.expr(e.b), e.a.dtype), e.dtype);
      case 'select': return `((${this.expr(e.c)}) ? (${this.expr(e.a)}) : (${this.expr(e.b)}))`;
      case 'cast': return this.cast(this.expr(e.a), e.a.dtype, e.dtype);
      case 'random': {
        const bits = e.dtype === 'f16' ? 11 : e.dtype === 'bf16' ? 8 : 24;
        const call = e.dist === 'uniform'
          ? `k_uniform((u32)(${this.expr(e.s0)}), (u32)(${this.expr(e.s1)}), ${e.stream}u, (u32)(${this.expr(e.index)}), ${bits})`
          : `k_normal((u32)(${this.expr(e.s0)}), (u32)(${this.expr(e.s1)}), ${e.stream}u, (u32)(${this.expr(e.index)}))`;
        return this.narrow(call, e.dtype);
      }
    }
  }

  private unary(op: string, a: string, d: DType): string {
    const int = d === 'i32' || d === 'u32';
    switch (op) {
      case 'neg': return d === 'i32' ? `k_negi(${a})` : `(-(${a}))`;
      case 'abs': return d === 'i32' ? `k_absi(${a})` : d === 'u32' ? a : `fabsf(${a})`;
      case 'sign': return d === 'i32' ? `k_signi(${a})` : d === 'u32' ? `((${a}) != 0u ? 1u : 0u)` : `k_sign(${a})`;
      case 'exp': return `expf(${a})`;
      case 'log': return `logf(${a})`;
      case 'sqrt': return `sqrtf(${a})`;
      case 'rsqrt': return `(1.f / sqrtf(${a}))`;
      case 'recip': return `(1.f / (${a}))`;
      case 'sin': return `sinf(${a})`;
      case 'cos': return `cosf(${a})`;
      case 'tanh': return `tanhf(${a})`;
      case 'erf': return `erff(${a})`;
      case 'sigmoid': return `k_sigmoid(${a})`;
      case 'floor': return int ? a : `floorf(${a})`;
      case 'ceil': return int ? a : `ceilf(${a})`;
      case 'not': return `(!(${a}))`;
    }
    throw new KilnError(`cuda codegen: unary op ${op}`);
  }

  private binary(op: string, a: string, b: string, d: DType): string {
    const i = d === 'i32', u = d === 'u32';
    switch (op) {
      case 'add': return i ? `k_addi(${a}, ${b})` : `((${a}) + (${b}))`;
      case 'sub': return i ? `k_subi(${a}, ${b})` : `((${a}) - (${b}))`;
      case 'mul': return i ? `k_muli(${a}, ${b})` : `((${a}) * (${b}))`;
      case 'div': return i ? `k_divi(${a}, ${b})` : u ? `k_divu(${a}, ${b})` : `((${a}) / (${b}))`;
      case 'mod': return i ? `k_modi(${a}, ${b})` : u ? `k_modu(${a}, ${b})` : `fmodf(${a}, ${b})`;
      case 'max': return i ? `k_maxi(${a}, ${b})` : u ? `k_maxu(${a}, ${b})` : `k_max(${a}, ${b})`;
      case 'min': return i ? `k_mini(${a}, ${b})` : u ? `k_minu(${a}, ${b})` : `k_min(${a}, ${b})`;
      case 'pow': return `k_pow(${a}, ${b})`;
      case 'eq': return `((${a}) == (${b}))`;
      case 'ne': return `((${a}) != (${b}))`;
      case 'lt': return `((${a}) < (${b}))`;
      case 'le': return `((${a}) <= (${b}))`;
      case 'gt': return `((${a}) > (${b}))`;
      case 'ge': return `((${a}) >= (${b}))`;
      case 'and': return `((${a}) && (${b}))`;
      case 'or': return `((${a}) || (${b}))`;
      case 'xor': return `((${a}) != (${b}))`;
    }
    throw new KilnError(`cuda codegen: binary op ${op}`);
  }

  private cast(a: string, from: DType, to: DType): string {
    const fl = (d: DType) => d === 'f32' || d === 'f16' || d === 'bf16';
    if (to === 'bool') return `((${a}) != 0)`;
    if (from === 'bool') return fl(to) ? `((${a}) ? 1.f : 0.f)` : to === 'i32' ? `((${a}) ? 1 : 0)` : `((${a}) ? 1u : 0u)`;
    if (fl(to)) return this.narrow(`((float)(${a}))`, to);
    if (fl(from)) return to === 'i32' ? `k_f2i(${a})` : `k_f2u(${a})`;
    return to === 'i32' ? `((int)(${a}))` : `((u32)(${a}))`;
  }

  /** Elementwise statements (lets and stores), with `ind` indentation. */
  stmts(list: readonly Stmt[], ind: string, out: string[], storeGuard?: string): void {
    for (const s of list) {
      switch (s.k) {
        case 'let':
          out.push(`${ind}const ${valueType(s.value.dtype)} v_${s.name} = ${this.expr(s.value)};`);
          break;
        case 'store': {
          const lane = this.vector?.stores.get(s);
          if (lane !== undefined) {
            out.push(`${ind}${lane}${this.vector!.lane} = ${this.storeValue(s.buf, this.expr(s.value))};`);
            break;
          }
          const st = `buf${s.buf}[${this.expr(s.index)}]`;
          const raw = this.expr(s.value);
          const line = s.mode === 'add' ? this.atomicAdd(s.buf, st, raw) : `${st} = ${this.storeValue(s.buf, raw)};`;
          out.push(storeGuard ? `${ind}if (${storeGuard}) ${line}` : `${ind}${line}`);
          break;
        }
        case 'loop':
          out.push(`${ind}for (int ${s.var} = 0; ${s.var} < ${s.extent}; ${s.var}++) {`);
          this.stmts(s.body, ind + '  ', out);
          out.push(`${ind}}`);
          break;
        case 'reduce':
          throw new KilnError('cuda codegen: reduction outside a row kernel');
      }
    }
  }

  private atomicAdd(buf: number, target: string, v: string): string {
    const d = this.buffers[buf]!.dtype;
    if (d === 'f32' || d === 'i32' || d === 'u32') return `atomicAdd(&${target}, ${v});`;
    if (d === 'f16' || d === 'bf16') return `k_atomic_add_u16(&${target}, ${v}, ${d === 'bf16'});`;
    throw new KilnError(`cuda codegen: accumulating stores into ${d} buffers are not supported yet (b${buf})`);
  }
}

function params(ids: readonly number[], buffers: readonly BufferDecl[]): string {
  return ids.map((id) => (id < 0 ? `float* __restrict__ scr${-id}` : `${storageType(buffers[id]!.dtype)}* buf${id}`)).join(', ');
}

/**
 * Grid variables from a linear index (row-major over `extents`). Under 2^31 points the divisions are
 * 32-bit unsigned (a multiply-high and a shift per constant divisor; 64-bit division is a long
 * emulated sequence, which elementwise kernels pay once per element).
 */
function decompose(names: readonly string[], extents: readonly number[], linear: string, out: string[], ind: string): void {
  const narrow = extents.length > 0 && extents.reduce((a, b) => a * b, 1) <= 2 ** 31 - 1024;
  let rem = linear;
  if (narrow) {
    out.push(`${ind}const unsigned u_${linear} = (unsigned)(${linear});`);
    rem = `u_${linear}`;
  }
  for (let d = extents.length - 1; d >= 0; d--) {
    out.push(`${ind}const int ${names[d]} = (int)(${rem} % ${extents[d]}${narrow ? 'u' : ''});`);
    if (d > 0) {
      out.push(`${ind}const ${narrow ? 'unsigned' : 'long long'} q${d} = ${rem} / ${extents[d]}${narrow ? 'u' : ''};`);
      rem = `q${d}`;
    }
  }
}

const isRowKernel = (k: LoopKernel) => k.body.some((s) => s.k === 'reduce' || s.k === 'loop');

function genLoop(g: Gen, k: LoopKernel, fn: string, ids: number[], out: string[], scratch: Scratch[]): Launch[] {
  const total = k.grid.reduce((a, b) => a * b, 1);
  if (total === 0) return [];
  const gv = k.grid.map((_, i) => `g${i}`);
  const V = g.options.elementwisePoints ?? DEFAULT_ELEMENTWISE_POINTS;
  const lastExtent = k.grid[k.grid.length - 1] ?? 1;
  if (!isRowKernel(k) && V > 1 && k.grid.length > 0 && lastExtent % V === 0 && total >= V * 132 * 2048) {
    // V consecutive points of the last grid axis per thread: one decomposition for all V, the
    // contiguous aligned loads and stores as vectors (CudaOptions.elementwisePoints).
    const n = total / V;
    out.push(`extern "C" __global__ void ${fn}(${params(ids, g.buffers)}) {`);
    out.push(`  const long long t = (long long)blockIdx.x * ${ELEMENTWISE_BLOCK} + threadIdx.x;`);
    out.push(`  if (t >= ${n}LL) return;`);
    const last = gv[gv.length - 1]!;
    decompose([...gv.slice(0, -1), `${last}_v`], [...k.grid.slice(0, -1), lastExtent / V], 't', out, '  ');
    genPoints(g, k.body, last, V, out);
    out.push('}');
    return [{ kind: 'kernel', fn, grid: [Math.ceil(n / ELEMENTWISE_BLOCK), 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1], params: ids }];
  }
  if (!isRowKernel(k)) {
    out.push(`extern "C" __global__ void ${fn}(${params(ids, g.buffers)}) {`);
    out.push(`  const long long t = (long long)blockIdx.x * ${ELEMENTWISE_BLOCK} + threadIdx.x;`);
    out.push(`  if (t >= ${total}LL) return;`);
    decompose(gv, k.grid, 't', out, '  ');
    g.stmts(k.body, '  ', out);
    out.push('}');
    return [{ kind: 'kernel', fn, grid: [Math.ceil(total / ELEMENTWISE_BLOCK), 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1], params: ids }];
  }
  const rows = k.rows ?? { kind: 'block', threads: 256 };
  if (rows.kind === 'column')
    return rows.split > 1 ? genSplitColumns(g, k, fn, ids, out, total, rows, scratch) : genColumnRows(g, k, fn, ids, out, total, rows);
  // Row kernel: one block per grid point (threads: a multiple of 32, the warp-shuffle combine needs whole warps).
  const threads = rows.threads;
  if (threads % 32 !== 0 || threads > 1024) throw new KilnError(`cuda codegen: ${k.name}: a row block of ${threads} threads (a multiple of 32, at most 1024)`);
  out.push(`extern "C" __global__ void ${fn}(${params(ids, g.buffers)}) {`);
  const decl = out.length;
  out.push(`  __shared__ float red_f[${threads}];`, `  __shared__ int red_i[${threads}];`);
  out.push('  const int tid = threadIdx.x;', '  const long long t = blockIdx.x;');
  decompose(gv, k.grid, 't', out, '  ');
  const blockLoop: RowLoop = {
    open: (v, extent) => [`  for (int ${v} = tid; ${v} < ${extent}; ${v} += ${threads}) {`], ind: '    ', close: ['  }'],
  };
  for (const s of k.body) {
    switch (s.k) {
      case 'let': case 'store': case 'loop':
        rowBodyStmt(g, s, out, 'tid == 0', blockLoop);
        break;
      case 'reduce': {
        const r = reduction(s);
        out.push(`  ${r.vt} acc_${s.acc} = ${r.ident};`);
        if (s.op === 'argmax') out.push(`  int arg_${s.acc} = 0x7fffffff;`);
        out.push(`  for (int ${s.var} = tid; ${s.var} < ${s.extent}; ${s.var} += ${threads}) {`);
        g.stmts(s.body, '    ', out);
        accumulate(g, s, out, '    ');
        out.push('  }');
        if (s.op === 'argmax') {
          // Tree over shared memory (first index among equal maxima, NaN maximal).
          out.push(`  red_f[tid] = acc_${s.acc}; red_i[tid] = arg_${s.acc}; __syncthreads();`);
          out.push(`  for (int w = ${threads / 2}; w > 0; w >>= 1) {`);
          out.push('    if (tid < w) {');
          out.push('      const float a = red_f[tid], b = red_f[tid + w]; const int ia = red_i[tid], ib = red_i[tid + w];');
          out.push(`      if (${ARGMAX_TAKE_B}) { red_f[tid] = b; red_i[tid] = ib; }`);
          out.push('    }', '    __syncthreads();', '  }');
          out.push(`  const int v_${s.acc} = red_i[0] == 0x7fffffff ? 0 : red_i[0];`, '  __syncthreads();');
        } else {
          // Warp shuffles, then the warps' partials combined in a fixed order by every thread.
          out.push(`  for (int o = 16; o > 0; o >>= 1) acc_${s.acc} = ${r.combine(`acc_${s.acc}`, `__shfl_xor_sync(0xffffffffu, acc_${s.acc}, o)`)};`);
          out.push(`  if ((tid & 31) == 0) ${r.shared}[tid >> 5] = acc_${s.acc};`, '  __syncthreads();');
          out.push(`  ${r.vt} v_${s.acc} = ${r.shared}[0];`);
          if (threads > 32) out.push(`  for (int w = 1; w < ${threads / 32}; w++) v_${s.acc} = ${r.combine(`v_${s.acc}`, `${r.shared}[w]`)};`);
          out.push('  __syncthreads();');
        }
        break;
      }
    }
  }
  out.push('}');
  pruneShared(out, decl);
  return [{ kind: 'kernel', fn, grid: [total, 1, 1], block: [threads, 1, 1], params: ids }];
}

/**
 * The body of an elementwise kernel for V consecutive points `last` = last_v·V + e (e = 0..V-1) of the
 * last grid axis, written out V times (vectorPlan: which loads and stores become vectors). A vector
 * load runs once, before the V copies, and each copy reads its lane; a vector store collects the V
 * copies' values and writes them once, after the copies. Without a plan (aliasing), the V copies run
 * the scalar body in order.
 */
function genPoints(g: Gen, body: readonly Stmt[], last: string, V: number, out: string[], lanePrologue?: (e: number) => string[]): void {
  const plan = vectorPlan(g.buffers, body, last, V);
  out.push(`  const int ${last}_0 = ${last}_v * ${V};`);
  const at0 = (e: Expr) => g.expr(mapExpr(e, (x) => (x.k === 'var' && x.name === last ? { k: 'var', name: `${last}_0`, dtype: 'i32' } : undefined)));
  const loads = new Map<string, string[]>();
  plan?.loads.forEach((ld, key) => {
    const name = `lv${loads.size}_`;
    const base = `buf${ld.buf}`, idx = at0(ld.index);
    loads.set(key, vectorLoad(base, idx, g.buffers[ld.buf]!.dtype, V, name, out).map((lane) => g.loadValue(ld.buf, lane)));
  });
  const stores = new Map<Stmt, string>();
  plan?.stores.forEach((st, i) => {
    const name = `sv${i}_`;
    stores.set(st, name);
    out.push(`  ${storageType(g.buffers[(st as { buf: number }).buf]!.dtype)} ${Array.from({ length: V }, (_, e) => `${name}${e}`).join(', ')};`);
  });
  g.vector = { loads, stores };
  for (let e = 0; e < V; e++) {
    g.vector.lane = e;
    out.push(`  {`, `    const int ${last} = ${last}_0 + ${e};`, ...(lanePrologue?.(e) ?? []).map((l) => `    ${l}`));
    g.stmts(body, '    ', out);
    out.push('  }');
  }
  g.vector = undefined;
  plan?.stores.forEach((st, i) => {
    const s = st as Extract<Stmt, { k: 'store' }>;
    vectorStore(`buf${s.buf}`, at0(s.index), g.buffers[s.buf]!.dtype, V, `sv${i}_`, out);
  });
}

/** Bytes a vector access moves at once: 16 at most (float4 / uint4). */
const vectorChunk = (d: DType, V: number) => Math.min(V * (d === 'f32' ? 4 : 2), 16);

/**
 * Load V consecutive elements of `base` from `idx` (aligned to V elements) in 16-byte (or smaller)
 * chunks; returns each lane's storage value (a float, or a u16 for bf16/f16).
 */
function vectorLoad(base: string, idx: string, d: DType, V: number, name: string, out: string[]): string[] {
  const bytes = vectorChunk(d, V), per = bytes / (d === 'f32' ? 4 : 2), chunks = V / per;
  const lanes: string[] = [];
  for (let c = 0; c < chunks; c++) {
    const at = `${base} + (${idx})${c ? ` + ${c * per}` : ''}`;
    const v = `${name}${c}`;
    if (d === 'f32') {
      const ty = bytes === 16 ? 'float4' : 'float2';
      out.push(`  const ${ty} ${v} = *reinterpret_cast<const ${ty}*>(${at});`);
      lanes.push(...['x', 'y', 'z', 'w'].slice(0, per).map((f) => `${v}.${f}`));
    } else {
      const ty = bytes === 16 ? 'uint4' : bytes === 8 ? 'uint2' : 'u32';
      out.push(`  const ${ty} ${v} = *reinterpret_cast<const ${ty}*>(${at});`);
      const words = bytes === 4 ? [v] : ['x', 'y', 'z', 'w'].slice(0, bytes / 4).map((f) => `${v}.${f}`);
      for (const w of words) lanes.push(`((u16)(${w} & 0xffffu))`, `((u16)(${w} >> 16))`);
    }
  }
  return lanes;
}

/** Store the V values `name`0..`name`(V-1) (storage values) to `base` from `idx` (aligned), as vectorLoad reads them. */
function vectorStore(base: string, idx: string, d: DType, V: number, name: string, out: string[]): void {
  const bytes = vectorChunk(d, V), per = bytes / (d === 'f32' ? 4 : 2), chunks = V / per;
  for (let c = 0; c < chunks; c++) {
    const at = `${base} + (${idx})${c ? ` + ${c * per}` : ''}`;
    const lane = (e: number) => `${name}${c * per + e}`;
    if (d === 'f32') {
      const ty = bytes === 16 ? 'float4' : 'float2';
      out.push(`  *reinterpret_cast<${ty}*>(${at}) = make_${ty}(${Array.from({ length: per }, (_, e) => lane(e)).join(', ')});`);
    } else {
      const word = (w: number) => `((u32)${lane(2 * w)} | ((u32)${lane(2 * w + 1)} << 16))`;
      const n = bytes / 4;
      if (n === 1) out.push(`  *reinterpret_cast<u32*>(${at}) = ${word(0)};`);
      else out.push(`  *reinterpret_cast<uint${n}*>(${at}) = make_uint${n}(${Array.from({ length: n }, (_, w) => word(w)).join(', ')});`);
    }
  }
}

/**
 * Which loads and stores of an elementwise body run as vectors over V points along `last`: those of
 * f32/bf16/f16 buffers whose index is affine with coefficient 1 on `last` and every other coefficient
 * and the constant multiples of V (so the V elements are contiguous and V-aligned: buffers start
 * 256-byte aligned), stores with mode 'set', loads evaluated unconditionally (not inside a select's
 * arms: a vector load must not read where the scalar code would not). Loads are keyed by buffer and
 * index (one vector load serves every copy of the same load). Undefined when a buffer (by memory:
 * `inPlaceOf`, a shared arena offset) is both read and written at different indices: then the copies
 * must run in order.
 */
function vectorPlan(buffers: readonly BufferDecl[], body: readonly Stmt[], last: string, V: number):
  { loads: Map<string, { buf: number; index: Expr }>; stores: Stmt[] } | undefined {
  if (V !== 2 && V !== 4 && V !== 8) return undefined; // vectors of 2, 4 or 8 lanes (vectorLoad)
  const mem = (id: number) => { const b = buffers[id]!; return b.inPlaceOf !== undefined ? `b${b.inPlaceOf}` : b.kind === 'temp' && b.offset !== undefined ? `arena${b.offset}` : `b${id}`; };
  const fits = (buf: number, index: Expr) => {
    const d = buffers[buf]!.dtype;
    if (d !== 'f32' && d !== 'bf16' && d !== 'f16') return false;
    const a = affine(index);
    return !!a && a.coef.get(last) === 1 && a.c % V === 0 && [...a.coef].every(([v, c]) => v === last || c % V === 0);
  };
  const loads = new Map<string, { buf: number; index: Expr }>();
  const stores: Stmt[] = [];
  const touched = new Map<string, { reads: Set<string>; writes: Set<string> }>();
  const touch = (id: number, key: string, w: boolean) => {
    const t = touched.get(mem(id)) ?? { reads: new Set<string>(), writes: new Set<string>() };
    touched.set(mem(id), t);
    (w ? t.writes : t.reads).add(key);
  };
  const visit = (e: Expr, conditional: boolean): void => {
    switch (e.k) {
      case 'load':
        touch(e.buf, exprKey(e.index), false);
        if (!conditional && fits(e.buf, e.index)) loads.set(`${e.buf}|${exprKey(e.index)}`, { buf: e.buf, index: e.index });
        visit(e.index, true);
        break;
      case 'select': visit(e.c, conditional); visit(e.a, true); visit(e.b, true); break;
      case 'un': case 'cast': visit(e.a, conditional); break;
      case 'bin': visit(e.a, conditional); visit(e.b, conditional); break;
      case 'random': visit(e.s0, conditional); visit(e.s1, conditional); visit(e.index, conditional); break;
      default: break;
    }
  };
  for (const s of body) {
    if (s.k === 'let') visit(s.value, false);
    else if (s.k === 'store') {
      visit(s.value, false);
      visit(s.index, false);
      touch(s.buf, exprKey(s.index), true);
      if (s.mode === 'set' && fits(s.buf, s.index)) stores.push(s);
    } else return undefined;
  }
  for (const t of touched.values()) {
    if (t.writes.size === 0) continue;
    if (t.writes.size > 1 || [...t.reads].some((r) => !t.writes.has(r))) return undefined;
  }
  return { loads, stores };
}

/** How a row kernel's threads share a row loop: its opening lines, the body's indentation, its closing lines. */
interface RowLoop {
  open(v: string, extent: number): string[];
  readonly ind: string;
  readonly close: readonly string[];
}

/**
 * A top-level let, store or row loop of a row kernel's body (block-per-row or column): a let as it
 * is, a store under `storeGuard` (one thread of the row stores), a loop strided over the threads as
 * `loop` says.
 */
function rowBodyStmt(g: Gen, s: Exclude<Stmt, { k: 'reduce' }>, out: string[], storeGuard: string, loop: RowLoop): void {
  if (s.k === 'let') g.stmts([s], '  ', out);
  else if (s.k === 'store') g.stmts([s], '  ', out, storeGuard);
  else {
    out.push(...loop.open(s.var, s.extent));
    g.stmts(s.body, loop.ind, out);
    out.push(...loop.close);
  }
}

/** Drop the shared reduction arrays declared at out[decl], out[decl + 1] that the function's body does not use. */
function pruneShared(out: string[], decl: number): void {
  const body = out.slice(decl + 2).join('\n');
  const keep = [out[decl]!, out[decl + 1]!].filter((d) => body.includes(d.includes('red_f') ? 'red_f[' : 'red_i['));
  out.splice(decl, 2, ...keep);
}

/** Whether `b` replaces `a` in an argmax (a, ia: current; b, ib: candidate; 0x7fffffff: no index yet). */
const ARGMAX_TAKE_B = 'ib != 0x7fffffff && (ia == 0x7fffffff || (a == a && (b > a || b != b || (b == a && ib < ia))) || (a != a && b != b && ib < ia))';

type ReduceStmt = Extract<Stmt, { k: 'reduce' }>;

/** A reduction's accumulator type, identity, combine function and shared array. */
function reduction(s: ReduceStmt) {
  const vt = s.op === 'argmax' ? 'float' : valueType(s.dtype);
  const isInt = vt !== 'float';
  const ident = s.op === 'sum' ? (isInt ? '0' : '0.f') : s.op === 'max' || s.op === 'argmax' ? (isInt ? '(-2147483647 - 1)' : '(-K_INF)') : isInt ? '2147483647' : 'K_INF';
  const combine = (a: string, b: string) =>
    s.op === 'sum' ? (isInt ? `k_addi(${a}, ${b})` : `(${a} + ${b})`) : s.op === 'max' ? (isInt ? `k_maxi(${a}, ${b})` : `k_max(${a}, ${b})`) : isInt ? `k_mini(${a}, ${b})` : `k_min(${a}, ${b})`;
  return { vt, ident, combine, shared: isInt ? 'red_i' : 'red_f' };
}

/** One step of a reduction inside its loop: acc ← op(acc, value). */
function accumulate(g: Gen, s: ReduceStmt, out: string[], ind: string): void {
  const v = g.expr(s.value);
  if (s.op === 'argmax') {
    out.push(`${ind}const float x_ = ${v};`);
    out.push(`${ind}if (arg_${s.acc} == 0x7fffffff || (acc_${s.acc} == acc_${s.acc} && (x_ > acc_${s.acc} || x_ != x_))) { acc_${s.acc} = x_; arg_${s.acc} = ${s.var}; }`);
  } else out.push(`${ind}acc_${s.acc} = ${reduction(s).combine(`acc_${s.acc}`, `(${reduction(s).vt})(${v})`)};`);
}

/**
 * Independent reductions of one extent (`run`) in one loop over the reduced axis: each keeps its own
 * accumulator, combined in the same order as in a loop of its own (so every result is the same, bit
 * for bit), and each body has its own scope inside the loop (the loop variable renamed to the first
 * reduction's), so loads the bodies share are read from memory once per iteration (the compiler keeps
 * one of identical loads with no store between them). Unrolled by UNROLL_ROWS: the loads of
 * several rows are in flight at once (these loops are bound by memory latency, not arithmetic).
 * `setup`: a line before the loop (its bounds); `head`: the for-loop's header for a loop variable.
 */
function sharedRowLoop(g: Gen, run: readonly ReduceStmt[], setup: string | undefined, head: (v: string) => string, out: string[], ind: string): void {
  const v = run[0]!.var;
  for (const s of run) out.push(`${ind}${reduction(s).vt} acc_${s.acc} = ${reduction(s).ident};`);
  if (setup) out.push(`${ind}${setup}`);
  out.push(`${ind}#pragma unroll ${UNROLL_ROWS}`, `${ind}for (${head(v)}) {`);
  for (const s of run) {
    out.push(`${ind}  {`);
    if (s.var !== v) out.push(`${ind}    const int ${s.var} = ${v};`);
    g.stmts(s.body, `${ind}    `, out);
    accumulate(g, s, out, `${ind}    `);
    out.push(`${ind}  }`);
  }
  out.push(`${ind}}`);
}

/** The lets of a body that use a reduction's result (directly or through other lets): they run after the reductions. */
function lateStatements(body: readonly Stmt[]): Set<Stmt> {
  const names = new Set<string>(), late = new Set<Stmt>();
  for (const s of body) {
    if (s.k === 'reduce') names.add(s.acc);
    else if (s.k === 'let') {
      let hit = false;
      walkStmts([s], (e) => { if (e.k === 'ref' && names.has(e.name)) hit = true; });
      if (hit) {
        names.add(s.name);
        late.add(s);
      }
    }
  }
  return late;
}

/** Rows of a column kernel's reduction loop unrolled together (sharedRowLoop). */
const UNROLL_ROWS = 4;

type ColumnMapping = Extract<RowMapping, { kind: 'column' }>;

/**
 * A column kernel (LoopKernel.rows 'column', compiler/schedule/rowMapping.ts): `points` consecutive
 * grid points per block (threadIdx.x: coalesced loads along the last grid axis), `lanes` threads each
 * along the reduced axis (threadIdx.y), their partials combined through shared memory in lane order.
 */
function genColumnRows(g: Gen, k: LoopKernel, fn: string, ids: number[], out: string[], total: number, m: ColumnMapping): Launch[] {
  const P = m.points, L = m.lanes;
  const gv = k.grid.map((_, i) => `g${i}`);
  out.push(`extern "C" __global__ void __launch_bounds__(${P * L}) ${fn}(${params(ids, g.buffers)}) {`);
  const decl = out.length;
  out.push(`  __shared__ float red_f[${L}][${P + 1}];`, `  __shared__ int red_i[${L}][${P + 1}];`);
  out.push('  const int tx = threadIdx.x, ty = threadIdx.y;');
  out.push(`  const long long t_ = (long long)blockIdx.x * ${P} + tx;`, `  const bool live = t_ < ${total}LL;`);
  // Threads past the end compute on grid point 0 (valid indices) and store nothing; all take part in the barriers.
  out.push('  const long long t = live ? t_ : 0;');
  decompose(gv, k.grid, 't', out, '  ');
  const laneLoop: RowLoop = {
    open: (v, extent) => [`  for (int ${v} = ty; ${v} < ${extent}; ${v} += ${L}) {`, '    if (live) {'], ind: '      ', close: ['    }', '  }'],
  };
  if (splittable(k)) {
    // Independent reductions: the lets they use first, then one loop per extent (sharedRowLoop),
    // each combined across lanes, then the rest of the body in order.
    const reduces = k.body.filter((s): s is ReduceStmt => s.k === 'reduce');
    const late = lateStatements(k.body);
    for (const s of k.body) if (s.k === 'let' && !late.has(s)) g.stmts([s], '  ', out);
    for (const run of sameExtentRuns(reduces)) sharedRowLoop(g, run, undefined, (v) => `int ${v} = ty; ${v} < ${run[0]!.extent}; ${v} += ${L}`, out, '  ');
    for (const s of reduces) {
      const r = reduction(s);
      out.push(`  ${r.shared}[ty][tx] = acc_${s.acc};`, '  __syncthreads();');
      out.push(`  ${r.vt} v_${s.acc} = ${r.shared}[0][tx];`);
      out.push(`  for (int w = 1; w < ${L}; w++) v_${s.acc} = ${r.combine(`v_${s.acc}`, `${r.shared}[w][tx]`)};`);
      out.push('  __syncthreads();');
    }
    for (const s of k.body) if (s.k === 'store' || (s.k === 'let' && late.has(s))) rowBodyStmt(g, s, out, 'live && ty == 0', laneLoop);
    out.push('}');
    pruneShared(out, decl);
    return [{ kind: 'kernel', fn, grid: [Math.ceil(total / P), 1, 1], block: [P, L, 1], params: ids }];
  }
  for (const s of k.body) {
    switch (s.k) {
      case 'let': case 'store': case 'loop':
        rowBodyStmt(g, s, out, 'live && ty == 0', laneLoop);
        break;
      case 'reduce': {
        const r = reduction(s);
        out.push(`  ${r.vt} acc_${s.acc} = ${r.ident};`);
        if (s.op === 'argmax') out.push(`  int arg_${s.acc} = 0x7fffffff;`);
        out.push(`  for (int ${s.var} = ty; ${s.var} < ${s.extent}; ${s.var} += ${L}) {`);
        g.stmts(s.body, '    ', out);
        accumulate(g, s, out, '    ');
        out.push('  }');
        if (s.op === 'argmax') {
          out.push(`  red_f[ty][tx] = acc_${s.acc}; red_i[ty][tx] = arg_${s.acc}; __syncthreads();`);
          out.push('  float am_ = red_f[0][tx]; int ai_ = red_i[0][tx];');
          out.push(`  for (int w = 1; w < ${L}; w++) { const float a = am_, b = red_f[w][tx]; const int ia = ai_, ib = red_i[w][tx]; if (${ARGMAX_TAKE_B}) { am_ = b; ai_ = ib; } }`);
          out.push(`  const int v_${s.acc} = ai_ == 0x7fffffff ? 0 : ai_;`, '  __syncthreads();');
        } else {
          out.push(`  ${r.shared}[ty][tx] = acc_${s.acc};`, '  __syncthreads();');
          out.push(`  ${r.vt} v_${s.acc} = ${r.shared}[0][tx];`);
          out.push(`  for (int w = 1; w < ${L}; w++) v_${s.acc} = ${r.combine(`v_${s.acc}`, `${r.shared}[w][tx]`)};`);
          out.push('  __syncthreads();');
        }
        break;
      }
    }
  }
  out.push('}');
  pruneShared(out, decl);
  return [{ kind: 'kernel', fn, grid: [Math.ceil(total / P), 1, 1], block: [P, L, 1], params: ids }];
}

/**
 * A split column kernel (rows 'column' with split S > 1: small grids over long extents, the bias
 * gradients). Pass 1 (`fn`, grid [⌈total/points⌉, S]) reduces chunk blockIdx.y of each reduction's
 * extent (⌈extent/S⌉ long) for `points` grid points per block, `lanes` lanes each, and writes every
 * reduction's partial to scratch at [reduction][chunk][point] (coalesced). Pass 2 (`fn_combine`, one
 * thread per grid point) combines the S partials in chunk order (deterministic: the same sums in the
 * same order every run) and runs the kernel's lets and stores. The compiler only splits kernels whose
 * reductions are independent float sums/max/min followed by lets and stores (rowMapping.ts splittable).
 */
function genSplitColumns(g: Gen, k: LoopKernel, fn: string, ids: number[], out: string[], total: number, m: ColumnMapping, scratch: Scratch[]): Launch[] {
  const P = m.points, L = m.lanes, S = m.split;
  const gv = k.grid.map((_, i) => `g${i}`);
  const reduces = k.body.filter((s): s is ReduceStmt => s.k === 'reduce');
  if (k.body.some((s) => s.k === 'loop') || reduces.some((r) => r.op === 'argmax' || reduction(r).vt !== 'float'))
    throw new KilnError(`cuda codegen: ${k.name}: a split column kernel holds only float sum/max/min reductions, lets and stores`);
  const scr = -(scratch.length + 1);
  scratch.push({ id: scr, bytes: reduces.length * S * total * 4 });
  const all = [...ids, scr];
  const slot = (j: number, chunk: string, point: string) => `scr${-scr}[(long long)(${j * S} + ${chunk}) * ${total}LL + ${point}]`;
  const pairs = columnPairs(g, k, reduces);
  if (pairs) genSplitPairs(g, k, fn, all, out, total, m, reduces, pairs, slot);
  else {
  // Pass 1: partials. Lets that use a reduction's result belong to pass 2.
  out.push(`extern "C" __global__ void __launch_bounds__(${P * L}) ${fn}(${params(all, g.buffers)}) {`);
  out.push(`  __shared__ float red_f[${L}][${P + 1}];`);
  out.push('  const int tx = threadIdx.x, ty = threadIdx.y, c_ = blockIdx.y;');
  out.push(`  const long long t_ = (long long)blockIdx.x * ${P} + tx;`, `  const bool live = t_ < ${total}LL;`);
  out.push('  const long long t = live ? t_ : 0;');
  decompose(gv, k.grid, 't', out, '  ');
  const late = lateStatements(k.body);
  for (const s of k.body) if (s.k === 'let' && !late.has(s)) g.stmts([s], '  ', out);
  // Reductions of one extent share one loop over the chunk (sharedRowLoop).
  for (const run of sameExtentRuns(reduces)) {
    const chunk = Math.ceil(run[0]!.extent / S);
    out.push('  {');
    sharedRowLoop(g, run, `const int end_ = min(${run[0]!.extent}, (c_ + 1) * ${chunk});`, (v) => `int ${v} = c_ * ${chunk} + ty; ${v} < end_; ${v} += ${L}`, out, '    ');
    for (const s of run) {
      const r = reduction(s), j = reduces.indexOf(s);
      out.push(`    red_f[ty][tx] = acc_${s.acc};`, '    __syncthreads();');
      out.push(`    if (ty == 0 && live) {`, `      ${r.vt} v_ = red_f[0][tx];`);
      out.push(`      for (int w = 1; w < ${L}; w++) v_ = ${r.combine('v_', 'red_f[w][tx]')};`);
      out.push(`      ${slot(j, 'c_', 't_')} = v_;`, '    }', '    __syncthreads();');
    }
    out.push('  }');
  }
  out.push('}');
  }
  // Pass 2: combine the partials in chunk order, then the lets and stores.
  out.push(`extern "C" __global__ void ${fn}_combine(${params(all, g.buffers)}) {`);
  out.push(`  const long long t = (long long)blockIdx.x * ${ELEMENTWISE_BLOCK} + threadIdx.x;`, `  if (t >= ${total}LL) return;`);
  decompose(gv, k.grid, 't', out, '  ');
  let j = 0;
  for (const s of k.body) {
    if (s.k === 'reduce') {
      const r = reduction(s);
      out.push(`  ${r.vt} v_${s.acc} = ${slot(j, '0', 't')};`);
      out.push(`  for (int c = 1; c < ${S}; c++) v_${s.acc} = ${r.combine(`v_${s.acc}`, slot(j, 'c', 't'))};`);
      j++;
    } else g.stmts([s], '  ', out);
  }
  out.push('}');
  return [
    { kind: 'kernel', fn, grid: [Math.ceil(total / (pairs ? 2 : 1) / P), S, 1], block: [P, L, 1], params: all },
    { kind: 'kernel', fn: `${fn}_combine`, grid: [Math.ceil(total / ELEMENTWISE_BLOCK), 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1], params: all },
  ];
}

type VectorLoads = NonNullable<ReturnType<typeof vectorPlan>>['loads'];

/**
 * Two consecutive grid points per thread for a split column kernel whose reductions read 2-byte data
 * (CudaOptions.columnPairs): a warp then reads 64 consecutive bf16 values (128 bytes) of a row, as the f32
 * kernels do, where one point per thread reads 64 bytes. The loads that fit (vectorPlan) are read as 32-bit
 * pairs; undefined (one point per thread) when the option is off, the last grid extent is odd or no
 * 2-byte load fits.
 */
function columnPairs(g: Gen, k: LoopKernel, reduces: readonly ReduceStmt[]): VectorLoads | undefined {
  if (g.options.columnPairs !== true || k.grid.length === 0 || k.grid[k.grid.length - 1]! % 2 !== 0) return undefined;
  const body: Stmt[] = reduces.flatMap((r) => [...r.body, { k: 'let' as const, name: `val_${r.acc}`, value: r.value }]);
  const plan = vectorPlan(g.buffers, body, `g${k.grid.length - 1}`, 2);
  if (!plan || ![...plan.loads.values()].some((ld) => ['bf16', 'f16'].includes(g.buffers[ld.buf]!.dtype))) return undefined;
  return plan.loads;
}

/**
 * Pass 1 of a split column kernel at two grid points per thread (columnPairs): the lets before the
 * reductions once per point (renamed _l0, _l1), then per run of one extent one loop over the chunk whose
 * iteration reads the paired loads once and runs every reduction's body for point 0, then point 1, each
 * into its own accumulator (the same sums in the same order as one point per thread), then the partials
 * of each point, as genSplitColumns writes them.
 */
function genSplitPairs(g: Gen, k: LoopKernel, fn: string, all: readonly number[], out: string[], total: number, m: ColumnMapping, reduces: readonly ReduceStmt[], loads: VectorLoads, slot: (j: number, chunk: string, point: string) => string): void {
  const P = m.points, L = m.lanes, S = m.split, V = 2;
  const n = k.grid.length, last = `g${n - 1}`;
  const gv = k.grid.map((_, i) => `g${i}`);
  out.push(`extern "C" __global__ void __launch_bounds__(${P * L}) ${fn}(${params([...all], g.buffers)}) {`);
  out.push(`  __shared__ float red_f[${L}][${P + 1}];`);
  out.push('  const int tx = threadIdx.x, ty = threadIdx.y, c_ = blockIdx.y;');
  out.push(`  const long long t_ = (long long)blockIdx.x * ${P} + tx;`, `  const bool live = t_ < ${total / V}LL;`);
  out.push('  const long long t = live ? t_ : 0;');
  decompose([...gv.slice(0, -1), `${last}_v`], [...k.grid.slice(0, -1), k.grid[n - 1]! / V], 't', out, '  ');
  out.push(`  const int ${last}_0 = ${last}_v * ${V};`);
  const late = lateStatements(k.body);
  const early = k.body.filter((s): s is Extract<Stmt, { k: 'let' }> => s.k === 'let' && !late.has(s));
  const names = new Set(early.map((s) => s.name));
  for (let e = 0; e < V; e++) {
    const at: Expr = { k: 'bin', op: 'add', a: { k: 'var', name: `${last}_0`, dtype: 'i32' }, b: { k: 'const', v: e, dtype: 'i32' }, dtype: 'i32' };
    g.stmts(mapStmts(early, (x) => (x.k === 'var' && x.name === last ? at : x.k === 'ref' && names.has(x.name) ? { ...x, name: `${x.name}_l${e}` } : undefined), (nm) => `${nm}_l${e}`), '  ', out);
  }
  const at0 = (ix: Expr) => g.expr(mapExpr(ix, (x) => (x.k === 'var' && x.name === last ? { k: 'var', name: `${last}_0`, dtype: 'i32' } : undefined)));
  for (const run of sameExtentRuns(reduces)) {
    const chunk = Math.ceil(run[0]!.extent / S), v = run[0]!.var;
    out.push('  {');
    for (const s of run) for (let e = 0; e < V; e++) out.push(`    ${reduction(s).vt} acc_${s.acc}_l${e} = ${reduction(s).ident};`);
    out.push(`    const int end_ = min(${run[0]!.extent}, (c_ + 1) * ${chunk});`);
    out.push(`    #pragma unroll ${UNROLL_ROWS}`, `    for (int ${v} = c_ * ${chunk} + ty; ${v} < end_; ${v} += ${L}) {`);
    for (const s of run) if (s.var !== v) out.push(`      const int ${s.var} = ${v};`);
    // The paired loads of this run's bodies (those whose index uses only this run's variables).
    const mine = new Set(run.map((s) => s.var));
    const lanes = new Map<string, string[]>();
    loads.forEach((ld, key) => {
      let ok = true;
      walkExpr(ld.index, (x) => { if (x.k === 'var' && x.name !== last && !gv.includes(x.name) && !mine.has(x.name)) ok = false; });
      if (!ok) return;
      const o: string[] = [];
      const ls = vectorLoad(`buf${ld.buf}`, at0(ld.index), g.buffers[ld.buf]!.dtype, V, `pv${lanes.size}_`, o);
      out.push(...o.map((l) => `    ${l}`));
      lanes.set(key, ls.map((x) => g.loadValue(ld.buf, x)));
    });
    for (let e = 0; e < V; e++) {
      out.push('      {', `        const int ${last} = ${last}_0 + ${e};`);
      for (const s of early) out.push(`        const ${valueType(s.value.dtype)} v_${s.name} = v_${s.name}_l${e};`);
      g.vector = { loads: lanes, stores: new Map(), lane: e };
      for (const s of run) {
        out.push('        {');
        g.stmts(s.body, '          ', out);
        out.push(`          acc_${s.acc}_l${e} = ${reduction(s).combine(`acc_${s.acc}_l${e}`, `(${reduction(s).vt})(${g.expr(s.value)})`)};`);
        out.push('        }');
      }
      g.vector = undefined;
      out.push('      }');
    }
    out.push('    }');
    for (const s of run)
      for (let e = 0; e < V; e++) {
        const r = reduction(s), j = reduces.indexOf(s);
        out.push(`    red_f[ty][tx] = acc_${s.acc}_l${e};`, '    __syncthreads();');
        out.push(`    if (ty == 0 && live) {`, `      ${r.vt} v_ = red_f[0][tx];`);
        out.push(`      for (int w = 1; w < ${L}; w++) v_ = ${r.combine('v_', 'red_f[w][tx]')};`);
        out.push(`      ${slot(j, 'c_', `t_ * ${V} + ${e}`)} = v_;`, '    }', '    __syncthreads();');
      }
    out.push('  }');
  }
  out.push('}');
}

/**
 * Register-blocked SGEMM: a block of 16×16 threads computes a 64×64 output tile, each thread a 4×4
 * sub-tile strided by 16 (coalesced loads and stores); K advances in slices of 16 staged in shared
 * memory. Operands are read through their expressions (views and prologue folded in), fastest along p.
 */
function genMatmul(g: Gen, k: MatmulKernel, fn: string, ids: number[], out: string[]): Launch[] {
  const batch = k.batch.reduce((a, b) => a * b, 1);
  if (batch === 0 || k.m === 0 || k.n === 0) return [];
  const bv = k.batch.map((_, i) => `b${i}`);
  const BM = 64, BN = 64, BK = 16;
  out.push(`extern "C" __global__ void __launch_bounds__(256) ${fn}(${params(ids, g.buffers)}) {`);
  out.push(`  __shared__ float As[${BK}][${BM}];`, `  __shared__ float Bs[${BK}][${BN}];`);
  out.push('  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;');
  out.push(`  const int i0 = blockIdx.y * ${BM}, j0 = blockIdx.x * ${BN};`);
  out.push('  const long long bt = blockIdx.z;');
  decompose(bv, k.batch, 'bt', out, '  ');
  out.push('  float acc[4][4];', '  #pragma unroll', '  for (int r = 0; r < 4; r++) {', '    #pragma unroll', '    for (int c = 0; c < 4; c++) acc[r][c] = 0.f;', '  }');
  out.push(`  for (int p0 = 0; p0 < ${k.k}; p0 += ${BK}) {`);
  out.push('    #pragma unroll', '    for (int q = 0; q < 4; q++) {');
  out.push('      const int e = tid + 256 * q, rr = e / 16, pp = e % 16;');
  out.push(`      { const int i = i0 + rr, p = p0 + pp; As[pp][rr] = (i < ${k.m} && p < ${k.k}) ? (float)(${g.expr(k.a)}) : 0.f; }`);
  out.push(`      { const int j = j0 + rr, p = p0 + pp; Bs[pp][rr] = (p < ${k.k} && j < ${k.n}) ? (float)(${g.expr(k.b)}) : 0.f; }`);
  out.push('    }', '    __syncthreads();');
  out.push('    #pragma unroll', `    for (int kk = 0; kk < ${BK}; kk++) {`);
  out.push('      float a_[4], b_[4];', '      #pragma unroll', '      for (int r = 0; r < 4; r++) { a_[r] = As[kk][ty + 16 * r]; b_[r] = Bs[kk][tx + 16 * r]; }');
  out.push('      #pragma unroll', '      for (int r = 0; r < 4; r++) {', '        #pragma unroll', '        for (int c = 0; c < 4; c++) acc[r][c] += a_[r] * b_[c];', '      }');
  out.push('    }', '    __syncthreads();', '  }');
  out.push('  #pragma unroll', '  for (int r = 0; r < 4; r++) {', '    #pragma unroll', '    for (int c = 0; c < 4; c++) {');
  out.push('      const int i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;');
  out.push(`      if (i < ${k.m} && j < ${k.n}) {`);
  out.push(`        const ${valueType(k.accDType)} v_acc = (${valueType(k.accDType)})acc[r][c];`);
  g.stmts(k.epilogue, '        ', out);
  out.push('      }', '    }', '  }', '}');
  return [{ kind: 'kernel', fn, grid: [Math.ceil(k.n / BN), Math.ceil(k.m / BM), batch], block: [16, 16, 1], params: ids }];
}

/** The strides of an operand load `load(buf, c + Σ coef·var)` of a buffer of dtype `d`, or undefined. */
function strided(e: Expr, buffers: readonly BufferDecl[], vars: readonly string[], d: 'f32' | 'bf16'): { buf: number; c: number; coef: (v: string) => number } | undefined {
  if (e.k !== 'load' || buffers[e.buf]!.dtype !== d) return undefined;
  const a = affine(e.index);
  if (!a || [...a.coef.keys()].some((v) => !vars.includes(v))) return undefined;
  return { buf: e.buf, c: a.c, coef: (v) => a.coef.get(v) ?? 0 };
}

/** One stride for the flattened batch index when the operand's batch coefficients are consistent. */
function batchStride(coef: (v: string) => number, batch: readonly number[]): number | undefined {
  if (batch.length === 0) return 0;
  const last = coef(`b${batch.length - 1}`);
  let expect = last;
  for (let d = batch.length - 1; d >= 0; d--) {
    if (coef(`b${d}`) !== expect && batch[d]! > 1) return undefined;
    expect *= batch[d]!;
  }
  return last;
}

/**
 * Plan a matmul kernel as a library GEMM — a cuBLAS SGEMM when both operands are strided views of f32
 * buffers, cuBLAS GemmEx bf16 where the schedule's provider is 'cublas' — computing C (row-major
 * [batch, m, n]) as its column-major transpose Cᵀ = Bᵀ·Aᵀ. bf16 operands that are not plain strided
 * views are staged first (gemmLibrary.ts). The epilogue then runs as an elementwise kernel over C in
 * the module's GEMM workspace (C in bf16 when the epilogue only reads bf16(acc)), unless it is just
 * "store acc", in which case the library writes the output buffer itself.
 */
function planGemm(g: Gen, k: MatmulKernel, fn: string, out: string[], scratch: Scratch[], em: CudaEmitter): Launch[] | undefined {
  if (g.options.cublas === false || k.accDType !== 'f32') return undefined;
  // f32 operands: SGEMM (the default for plain strided f32); bf16: only where the schedule says so.
  const provider = k.tile?.provider;
  const ab = (provider === 'cublas' || provider === 'cublaslt') && k.a.dtype === 'bf16' && k.b.dtype === 'bf16' ? 'bf16' : 'f32';
  const lt = ab === 'bf16' && provider === 'cublaslt';
  if (ab === 'f32' && (k.m < 2 || k.n < 2 || k.k < 2)) return undefined;
  const bv = k.batch.map((_, i) => `b${i}`);
  const batch = k.batch.reduce((x, y) => x * y, 1);
  const vars = [...bv, 'i', 'j'];
  const identity = affine(linearIndex(vars.map((v) => I.v(v)), stridesOf([...k.batch, k.m, k.n])))!;
  const only = singleStore(k.epilogue);
  const outType = only ? g.buffers[only.buf]!.dtype : undefined;
  const storesIdentity = only?.k === 'store' && only.mode === 'set' && (outType === 'f32' || (ab === 'bf16' && outType === 'bf16')) && sameAffine(affine(only.index), identity);
  // cuBLASLt's BIAS epilogue: the one store is accumulator + bias[j] (gemmLibrary.ts ltBias).
  const bias = lt && storesIdentity ? ltBias(only.value, outType!, g.buffers) : undefined;
  const direct = storesIdentity && (bias !== undefined || only.value.k === 'ref' || (only.value.k === 'cast' && only.value.a.k === 'ref'));
  // The workspace: [C (unless direct or into an output) | staged a | staged b | cuBLASLt workspace], each 256-byte aligned.
  const cType = direct ? (outType as 'f32' | 'bf16') : ab === 'bf16' && accStoredAsBf16(k.epilogue) ? 'bf16' : 'f32';
  // One of several stores is C itself: the library writes it there, and the epilogue kernel reads it from there.
  const accOut = direct || lt || g.options.gemmOutputC === false ? undefined : accIdentityStore(k, identity, cType, g.buffers);
  const cBytes = direct || accOut ? 0 : align256(batch * k.m * k.n * (cType === 'bf16' ? 2 : 4));
  let used = cBytes;
  let workspace: ReturnType<typeof gemmWorkspace> | undefined;
  const ws = () => (workspace ??= gemmWorkspace(scratch));
  const staging: Launch[] = [];
  const stagingSource: string[] = [];
  // Column-major layouts: X (n×k) = Bᵀ from B[p][j] = mem[c + p·sP + j·sJ]; Y (k×m) = Aᵀ from A[i][p] = mem[c + i·sI + p·sP].
  const layoutB = (B: { coef: (v: string) => number }): [0 | 1, number] | undefined => {
    const [sJ, sP] = [B.coef('j'), B.coef('p')];
    return sJ === 1 && sP >= k.n ? [0, sP] : sP === 1 && sJ >= k.k ? [1, sJ] : undefined;
  };
  const layoutA = (A: { coef: (v: string) => number }): [0 | 1, number] | undefined => {
    const [sI, sP] = [A.coef('i'), A.coef('p')];
    return sP === 1 && sI >= k.k ? [0, sI] : sI === 1 && sP >= k.m ? [1, sP] : undefined;
  };
  // A plain strided view the library can read as it is, else (bf16) the operand staged K-contiguous.
  const operand = (which: 'a' | 'b') => {
    const plain = strided(which === 'a' ? k.a : k.b, g.buffers, [...bv, ...(which === 'a' ? ['i', 'p'] : ['p', 'j'])], ab);
    if (plain && (which === 'a' ? layoutA(plain) : layoutB(plain)) && batchStride(plain.coef, k.batch) !== undefined) return plain;
    if (ab !== 'bf16') return undefined;
    const st = stageOperand(em, k, which, fn, ws().id, used, stagingSource);
    used += align256(st.bytes);
    staging.push(st.launch);
    return st.operand;
  };
  const A = operand('a');
  const B = operand('b');
  if (!A || !B) return undefined;
  const sA = batchStride(A.coef, k.batch)!, sB = batchStride(B.coef, k.batch)!;
  const [ta, lda] = layoutB(B)!;
  const [tb, ldb] = layoutA(A)!;
  const ltWorkspace = lt ? used : 0;
  if (lt) used += LT_WORKSPACE_BYTES;
  if (used > 0) ws().request(used);
  out.push(...stagingSource);
  const gemm = (c: { buf: number; offset: number }): GemmLaunch => ({
    kind: 'gemm', ta, tb, m: k.n, n: k.m, k: k.k, a: { buf: B.buf, offset: B.c }, lda, sA: sB, b: { buf: A.buf, offset: A.c }, ldb, sB: sA,
    c, ldc: k.n, sC: k.m * k.n, batch, ab, cType,
    ...(lt ? { lt: {
      epilogue: bias ? 'bias' as const : 'default' as const, workspace: { buf: ws().id, offset: ltWorkspace }, workspaceBytes: LT_WORKSPACE_BYTES,
      ...(bias ? { bias: { buf: bias.buf, offset: bias.c, dtype: outType as 'f32' | 'bf16' } } : {}),
    } } : {}),
  });
  if (direct) return [...staging, gemm({ buf: only.buf, offset: 0 })];
  const total = batch * k.m * k.n;
  const acc = kernelAccess({ ...k, a: I.c(0), b: I.c(0) });
  const ids = [...new Set([...acc.reads, ...acc.writes])];
  const cId = accOut ? accOut.buf : ws().id;
  const all = accOut ? ids : [...ids, cId];
  const epilogue = accOut ? k.epilogue.filter((st) => st !== accOut) : k.epilogue;
  out.push(`extern "C" __global__ void ${fn}_epilogue(${params(all, g.buffers)}) {`);
  const V = g.options.elementwisePoints ?? DEFAULT_ELEMENTWISE_POINTS;
  const cBase = accOut ? `buf${cId}` : cType === 'bf16' ? `((const u16*)scr${-cId})` : `scr${-cId}`;
  if (V > 1 && k.n % V === 0 && total >= V * 132 * 2048) {
    // V consecutive outputs along j per thread, C and the epilogue's operands read as vectors (genPoints).
    out.push(`  const long long t = (long long)blockIdx.x * ${ELEMENTWISE_BLOCK} + threadIdx.x;`, `  if (t >= ${total / V}LL) return;`);
    decompose([...vars.slice(0, -1), 'j_v'], [...k.batch, k.m, k.n / V], 't', out, '  ');
    const c = vectorLoad(cBase, `t * ${V}`, cType, V, 'cv_', out);
    genPoints(g, epilogue, 'j', V, out, (e) => [`const float v_acc = ${cType === 'bf16' ? `k_bf16_to_f32(${c[e]})` : c[e]};`]);
    out.push('}');
    return [...staging, gemm({ buf: cId, offset: 0 }), { kind: 'kernel', fn: `${fn}_epilogue`, grid: [Math.ceil(total / V / ELEMENTWISE_BLOCK), 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1], params: all }];
  }
  out.push(`  const long long t = (long long)blockIdx.x * ${ELEMENTWISE_BLOCK} + threadIdx.x;`, `  if (t >= ${total}LL) return;`);
  decompose(vars, [...k.batch, k.m, k.n], 't', out, '  ');
  out.push(`  const float v_acc = ${cType === 'bf16' ? `k_bf16_to_f32(${cBase}[t])` : `${cBase}[t]`};`);
  g.stmts(epilogue, '  ', out);
  out.push('}');
  return [...staging, gemm({ buf: cId, offset: 0 }), { kind: 'kernel', fn: `${fn}_epilogue`, grid: [Math.ceil(total / ELEMENTWISE_BLOCK), 1, 1], block: [ELEMENTWISE_BLOCK, 1, 1], params: all }];
}

/**
 * A top-level epilogue store of the accumulator as it is (or cast to C's type `cType`) at the output's
 * identity index, into a temporary or output of C's type, beside other statements: the library can write C into
 * that buffer itself (the same values: C holds acc rounded to cType, which the store would write), and
 * the epilogue kernel reads C from it and runs the rest (C is written once instead of twice: the bf16
 * pre-bias copies the backward keeps, LightningDiT-B/1 batch 128: 12 × 150 MB for the qkv projections
 * alone). Only where nothing the kernel reads shares the buffer's memory (the library writes it before
 * the epilogue reads its operands), and never an in-place output.
 */
function accIdentityStore(k: MatmulKernel, identity: ReturnType<typeof affine>, cType: 'f32' | 'bf16', buffers: readonly BufferDecl[]): Extract<Stmt, { k: 'store' }> | undefined {
  const lets = new Map<string, Expr>();
  const inline = (e: Expr): Expr => mapExpr(e, (x) => (x.k === 'ref' && lets.has(x.name) ? lets.get(x.name)! : undefined));
  const bytes = (b: BufferDecl) => b.numel * (b.dtype === 'f16' || b.dtype === 'bf16' ? 2 : 4);
  const reads = kernelAccess(k).reads;
  const overlaps = (b: BufferDecl) => [...reads].some((r) => {
    const x = buffers[r]!;
    if (r === b.id) return true;
    return x.kind === 'temp' && x.offset !== undefined && b.offset !== undefined && x.offset < b.offset + bytes(b) && b.offset < x.offset + bytes(x);
  });
  for (const s of k.epilogue) {
    if (s.k === 'let') lets.set(s.name, inline(s.value));
    if (s.k !== 'store' || s.mode !== 'set') continue;
    const b = buffers[s.buf]!, v = inline(s.value);
    const isAcc = (v.k === 'ref' && v.name === 'acc' && cType === 'f32') || (v.k === 'cast' && v.dtype === cType && v.a.k === 'ref' && v.a.name === 'acc');
    if (isAcc && (b.kind === 'temp' || b.kind === 'output') && b.dtype === cType && b.inPlaceOf === undefined && sameAffine(affine(inline(s.index)), identity) && !overlaps(b)) return s;
  }
  return undefined;
}

function sameAffine(a: ReturnType<typeof affine>, b: ReturnType<typeof affine>): boolean {
  if (!a || !b || a.c !== b.c) return false;
  const keys = new Set([...a.coef.keys(), ...b.coef.keys()]);
  return [...keys].every((k) => (a.coef.get(k) ?? 0) === (b.coef.get(k) ?? 0));
}

function genAttention(g: Gen, k: AttentionKernel | AttentionGradKernel, fn: string, ids: number[], out: string[], scratch: Scratch[]): Launch[] {
  const batch = k.batch.reduce((a, b) => a * b, 1);
  const rows = batch * k.sq, cols = batch * k.sk;
  if (rows === 0) return [];
  const bv = k.batch.map((_, i) => `b${i}`);
  const blocks = (n: number) => Math.ceil(n / 128);
  const head = (name: string, prm: number[], count: number, idxVar: 's' | 't', extent: number) => {
    out.push(`extern "C" __global__ void ${name}(${params(prm, g.buffers)}) {`);
    out.push('  const long long row = (long long)blockIdx.x * 128 + threadIdx.x;');
    out.push(`  if (row >= ${count}LL) return;`);
    decompose([...bv, idxVar], [...k.batch, extent], 'row', out, '  ');
  };
  /** `const int name = value;` unless the name already holds that value (no self-initialization). */
  const bind = (name: string, value: string) => (name === value ? '' : `const int ${name} = ${value}; `);
  const score = (qs: string, kt: string) =>
    `{ float sc_ = 0.f; for (int d = 0; d < ${k.dk}; d++) { float qv_, kv_; { ${bind('s', qs)}qv_ = ${g.expr(k.q)}; } { ${bind('t', kt)}kv_ = ${g.expr(k.key)}; } sc_ += qv_ * kv_; } score = sc_ * ${floatLit(k.scale)}; }`;
  if (k.kind === 'attention') {
    head(fn, ids, rows, 's', k.sq);
    out.push('  float m = -K_INF, l = 0.f;', `  float acc[${k.dv}];`, `  for (int e = 0; e < ${k.dv}; e++) acc[e] = 0.f;`);
    out.push(`  for (int t = 0; t < ${k.sk}; t++) {`);
    if (k.causal) out.push('    if (t > s) break;');
    out.push(`    float score; ${score('s', 't')}`);
    out.push('    const float mn = k_max(m, score), corr = expf(m - mn), pw = expf(score - mn);');
    out.push('    l = l * corr + pw;');
    out.push(`    for (int e = 0; e < ${k.dv}; e++) acc[e] = acc[e] * corr + pw * (${g.expr(k.v)});`);
    out.push('    m = mn;', '  }');
    out.push(`  for (int e = 0; e < ${k.dv}; e++) buf${k.out.buf}[${g.expr(k.out.index)}] = ${g.storeValue(k.out.buf, 'acc[e] / l')};`);
    out.push('}');
    return [{ kind: 'kernel', fn, grid: [blocks(rows), 1, 1], block: [128, 1, 1], params: ids }];
  }
  // Backward. Scratch: per query row, lse and D = Σ_e dO·O.
  const lse = -(scratch.length + 1), dsum = -(scratch.length + 2);
  scratch.push({ id: lse, bytes: rows * 4 }, { id: dsum, bytes: rows * 4 });
  const launches: Launch[] = [];
  const all = [...ids, lse, dsum];
  head(`${fn}_stats`, all, rows, 's', k.sq);
  out.push('  float m = -K_INF, l = 0.f;');
  out.push(`  for (int t = 0; t < ${k.sk}; t++) {`);
  if (k.causal) out.push('    if (t > s) break;');
  out.push(`    float score; ${score('s', 't')}`);
  out.push('    const float mn = k_max(m, score); l = l * expf(m - mn) + expf(score - mn); m = mn;', '  }');
  out.push(`  float dsum_ = 0.f; for (int e = 0; e < ${k.dv}; e++) dsum_ += (${g.expr(k.dout)}) * (${g.expr(k.o)});`);
  out.push(`  scr${-lse}[row] = m + logf(l);`, `  scr${-dsum}[row] = dsum_;`, '}');
  launches.push({ kind: 'kernel', fn: `${fn}_stats`, grid: [blocks(rows), 1, 1], block: [128, 1, 1], params: all });
  const rowOf = (sVar: string) => `(${bv.length ? `${linearOf(bv, k.batch)} * ${k.sq} + ` : ''}${sVar})`;
  // P(s,t) and dP(s,t) − D_s for the current (b*, s, t)
  const pAndDs = (sVar: string, tVar: string) => [
    `      float score; ${score(sVar, tVar)}`,
    `      const float P = expf(score - scr${-lse}[${rowOf(sVar)}]);`,
    `      float dP = 0.f; for (int e = 0; e < ${k.dv}; e++) { float dov_, vv_; { ${bind('s', sVar)}dov_ = ${g.expr(k.dout)}; } { ${bind('t', tVar)}vv_ = ${g.expr(k.v)}; } dP += dov_ * vv_; }`,
    `      const float dS = P * (dP - scr${-dsum}[${rowOf(sVar)}]) * ${floatLit(k.scale)};`,
  ];
  if (k.dQ) {
    head(`${fn}_dq`, all, rows, 's', k.sq);
    out.push(`  float dq[${k.dk}];`, `  for (int d = 0; d < ${k.dk}; d++) dq[d] = 0.f;`);
    out.push(`  for (int t2 = 0; t2 < ${k.sk}; t2++) {`);
    if (k.causal) out.push('    if (t2 > s) break;');
    out.push('    {', ...pAndDs('s', 't2'));
    out.push(`      for (int d = 0; d < ${k.dk}; d++) { const int t = t2; dq[d] += dS * (${g.expr(k.key)}); }`, '    }', '  }');
    out.push(`  for (int d = 0; d < ${k.dk}; d++) buf${k.dQ.buf}[${g.expr(k.dQ.index)}] = ${g.storeValue(k.dQ.buf, 'dq[d]')};`, '}');
    launches.push({ kind: 'kernel', fn: `${fn}_dq`, grid: [blocks(rows), 1, 1], block: [128, 1, 1], params: all });
  }
  if (k.dK || k.dV) {
    head(`${fn}_dkv`, all, cols, 't', k.sk);
    out.push(`  float dk[${k.dk}], dv[${k.dv}];`, `  for (int d = 0; d < ${k.dk}; d++) dk[d] = 0.f;`, `  for (int e = 0; e < ${k.dv}; e++) dv[e] = 0.f;`);
    out.push(`  for (int s2 = ${k.causal ? 't' : '0'}; s2 < ${k.sq}; s2++) {`, '    {', ...pAndDs('s2', 't'));
    out.push(`      for (int e = 0; e < ${k.dv}; e++) { const int s = s2; dv[e] += P * (${g.expr(k.dout)}); }`);
    out.push(`      for (int d = 0; d < ${k.dk}; d++) { const int s = s2; dk[d] += dS * (${g.expr(k.q)}); }`, '    }', '  }');
    if (k.dK) out.push(`  for (int d = 0; d < ${k.dk}; d++) buf${k.dK.buf}[${g.expr(k.dK.index)}] = ${g.storeValue(k.dK.buf, 'dk[d]')};`);
    if (k.dV) out.push(`  for (int e = 0; e < ${k.dv}; e++) buf${k.dV.buf}[${g.expr(k.dV.index)}] = ${g.storeValue(k.dV.buf, 'dv[e]')};`);
    out.push('}');
    launches.push({ kind: 'kernel', fn: `${fn}_dkv`, grid: [blocks(cols), 1, 1], block: [128, 1, 1], params: all });
  }
  return launches;
}

function linearOf(vars: readonly string[], extents: readonly number[]): string {
  let e = '0';
  vars.forEach((v, i) => (e = `(${e} * ${extents[i]} + ${v})`));
  return e;
}

/**
 * Generate the CUDA code of a kernel program. Each kernel's functions are position-independent: their
 * parameters are the buffers' base pointers in the order the kernel first touches them, named by that
 * order (buf0, buf1, ...; scratch scr0, ...), and the functions are named by a hash of their text, so
 * kernels that differ only in which buffers they touch (the same layer, twelve times) have one source,
 * compiled once (`units`: one per distinct source, for parallel NVRTC). `source` is all of them as one
 * module. KILN_DEBUG=source prints each kernel's source (compiler/debug.ts debugSource).
 */
export function generateCuda(p: KernelProgram, options: Pick<CudaOptions, 'cublas' | 'tensorCores' | 'elementwisePoints' | 'flashWgmma' | 'gemmOutputC' | 'columnPairs'> = {}): CudaModule {
  for (const b of p.buffers)
    if (b.numel >= 2 ** 31) throw new KilnError(`cuda codegen: buffer b${b.id} has ${b.numel} elements; 32-bit indexing supports < 2^31`);
  const g = new Gen(p.buffers, options);
  const emitter: CudaEmitter = {
    buffers: p.buffers, expr: (e) => g.expr(e), stmts: (l, ind, o) => g.stmts(l, ind, o),
    params: (ids) => params(ids, p.buffers), decompose,
  };
  const tensorCores = options.tensorCores !== false;
  const scratch: Scratch[] = [];
  // wgmma attention unless the options say the target lacks it (build.ts codegenOptions: sm_90 only).
  const flash = new FlashAttention({ buffers: p.buffers, expr: (e) => g.expr(e), storeValue: (b, v) => g.storeValue(b, v), params: (ids) => params(ids, p.buffers) }, options.flashWgmma !== false);
  const units: CudaUnit[] = [];
  const unitOf = new Map<string, CudaUnit>();
  const names = new Set<string>();
  const headers = { mma: false, flash: '' };
  const launches = p.kernels.map((k, i) => {
    // The buffers in the order the kernel touches them (kernelAccess lists them in body order).
    const a = kernelAccess(k);
    const ids = [...new Set([...a.reads, ...a.writes])];
    const fn = `kiln_${i}_${k.kind}`;
    const out: string[] = [];
    const ls = ((): Launch[] => {
      switch (k.kind) {
        case 'loop': return genLoop(g, k, fn, ids, out, scratch);
        case 'matmul':
          if (tensorCores && k.tile?.provider === 'tensor-core') {
            const tc = genTensorCoreGemm(emitter, k, fn, ids, out);
            return [{ kind: 'kernel' as const, fn: tc.fn, grid: tc.grid, block: tc.block, sharedBytes: tc.shmem, params: ids }];
          }
          return planGemm(g, k, fn, out, scratch, emitter) ?? genMatmul(g, k, fn, ids, out);
        case 'attention': case 'attention_grad': return k.tile ? flash.generate(k, fn, ids, out, scratch) : genAttention(g, k, fn, ids, out, scratch);
      }
    })();
    // Shared device helpers go to the module header, once.
    const own = out.filter((t) => {
      if (!t.startsWith(FLASH_HELPERS_MARK)) return true;
      headers.flash = t;
      return false;
    });
    if (own.length === 0) return ls;
    const u = canonicalUnit(own.join('\n'), fn);
    let unit = unitOf.get(u.text);
    if (!unit) {
      let name = `kiln_${u.hash}_${k.kind}`;
      for (let n = 1; names.has(name); n++) name = `kiln_${u.hash}${n}_${k.kind}`;
      names.add(name);
      const text = u.text.replaceAll(FN_MARK, name);
      const needs = { mma: usesAny(text, MMA_NAMES), flash: usesAny(text, FLASH_NAMES) };
      headers.mma ||= needs.mma;
      unit = { name, text, functions: ls.flatMap((l) => (l.kind === 'kernel' ? [l.fn.replace(fn, name)] : [])), needs };
      unitOf.set(u.text, unit);
      units.push(unit);
    }
    const name = unit.name;
    return ls.map((l) => (l.kind === 'kernel' ? { ...l, fn: l.fn.replace(fn, name) } : l));
  });
  const header = (needs: { mma: boolean; flash: boolean }) => [PRELUDE, ...(needs.mma ? [MMA_PTX] : []), ...(needs.flash ? [headers.flash] : [])];
  if (debugOn('source'))
    p.kernels.forEach((k, i) => {
      const fns = new Set(launches[i]!.flatMap((l) => (l.kind === 'kernel' ? [l.fn] : [])));
      const unit = units.find((u) => u.functions.some((f) => fns.has(f)));
      const gemms = launches[i]!.flatMap((l) => (l.kind === 'gemm' ? [`// launch: cuBLAS SGEMM m=${l.m} n=${l.n} k=${l.k} batch=${l.batch} (column-major, ta=${l.ta} tb=${l.tb})`] : []));
      const args = launches[i]!.flatMap((l) => (l.kind === 'kernel' ? [`// launch: ${l.fn}(${l.params.map((id) => (id < 0 ? `scratch${-id}` : `b${id}`)).join(', ')})`] : []));
      debugSource('cuda', k.name, k.nodes, [...(unit ? [unit.text] : []), ...args, ...gemms].join('\n'));
    });
  const all = { mma: units.some((u) => u.needs.mma), flash: units.some((u) => u.needs.flash) };
  return {
    source: [...header(all), ...units.map((u) => u.text)].join('\n') + '\n',
    units: units.map((u) => ({ name: u.name, source: [...header(u.needs), u.text].join('\n') + '\n', functions: u.functions })),
    launches,
    scratch,
  };
}

/** The first line of the flash-attention helpers (emitted once per module by FlashAttention). */
const FLASH_HELPERS_MARK = '\n// ---- flash attention helpers';
/** Placeholder for a unit's function-name prefix in its canonical text. */
const FN_MARK = '@KILN_FN@';
/** Device functions the MMA wrappers define (a unit using one gets MMA_PTX in its module). */
const MMA_NAMES = [...MMA_PTX.matchAll(/__device__[^(]*?\b(\w+)\(/g)].map((m) => m[1]!);
const FLASH_NAMES = ['fa_'];
const usesAny = (text: string, names: readonly string[]) => names.some((n) => text.includes(n));

interface CudaUnitDraft {
  readonly name: string;
  readonly text: string;
  readonly functions: readonly string[];
  readonly needs: { readonly mma: boolean; readonly flash: boolean };
}
type CudaUnit = CudaUnitDraft;

/**
 * A kernel's functions with buffer and scratch parameters renumbered by first appearance (buf0, buf1,
 * ...; scr0, ...; one simultaneous renaming, so the new names cannot capture old ones), merge prefixes of local names renumbered likewise, and its function-name prefix `fn`
 * replaced by FN_MARK: the same text for kernels that
 * differ only in which buffers they touch. `hash`: a short name for it.
 */
function canonicalUnit(text: string, fn: string): { text: string; hash: string } {
  const rename = new Map<string, string>();
  let nb = 0, ns = 0;
  // Kernel merging prefixes the names of what it merges in (m<counter>_, a counter over the program).
  const prefixes = new Map<string, string>();
  const canon = text
    .replace(new RegExp(`\\b${fn}`, 'g'), FN_MARK)
    .replace(/(?<![A-Za-z0-9])m(\d+)_/g, (m) => {
      let r = prefixes.get(m);
      if (!r) prefixes.set(m, (r = `m${prefixes.size}_`));
      return r;
    })
    .replace(/\b(buf|scr)(\d+)\b/g, (m, kind: string) => {
      let r = rename.get(m);
      if (!r) rename.set(m, (r = kind === 'buf' ? `buf${nb++}` : `scr${ns++}`));
      return r;
    });
  return { text: canon, hash: createHash('sha256').update(canon).digest('hex').slice(0, 12) };
}

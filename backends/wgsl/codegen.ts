/**
 * @file WGSL generation from the kernel IR. Each kernel of a KernelProgram becomes one or more compute
 * shaders ("dispatches"), each a complete WGSL module with its own bindings:
 *  - elementwise loop kernels: one invocation per grid point (workgroups of 256);
 *  - row kernels (reductions or row loops): one workgroup per grid point; reductions are strided over
 *    the workgroup's invocations and combined by a tree in workgroup memory (argmax keeps the first
 *    maximum, NaN maximal, as the interpreter);
 *  - matmul: tiled GEMM, operand tiles staged in workgroup memory, each invocation a TM×TN register
 *    block; operands are read through their expressions (views and prologue folded in), the epilogue
 *    runs per output element;
 *  - attention: flash-style, one invocation per query row with an online softmax over the keys (no
 *    sq×sk matrix); attention_grad: a statistics pass (logsumexp and D = Σ dO·O per row, in scratch),
 *    then dQ per query row and dK/dV per key row, recomputing P from the statistics. With
 *    `attention: 'tiled'` (the default on GPUs) the same passes tiled in workgroup memory (attention.ts).
 * Binding model: the executable places every IR buffer in one of a few large GPU buffers (arena,
 * inputs, outputs); a dispatch binds each GPU buffer it touches once, as a window (offset + size) that
 * covers the IR buffers it uses, split into several windows only where a window would exceed
 * maxStorageBufferBindingSize. Every binding is `array<u32>` (values are bitcast), or
 * `array<atomic<u32>>` where the kernel stores 16-bit values (two per word) or accumulates ('add'
 * stores: CAS loops for floats, WGSL has no f32 atomics). Grids beyond the per-dimension workgroup
 * limit are folded into two dimensions. Offsets are constants in the source.
 * Float math is f32; f16/bf16 values are rounded to their type after each operation, as the
 * interpreter does. WGSL has no f64 and no 64-bit integers: none are needed (indices are i32, Philox
 * uses u32 halves).
 */
import type { DType } from '../../ir/dtype.ts';
import { KilnError } from '../../ir/errors.ts';
import { kernelAccess } from '../../ir/kernel/access.ts';
import { affine, walkStmts } from '../../ir/kernel/expr.ts';
import type { AttentionGradKernel, AttentionKernel, BufferDecl, Expr, Kernel, KernelProgram, LoopKernel, MatmulKernel, RowMapping, Stmt } from '../../ir/kernel/types.ts';
import { isSubgroupMatrixKernel, renderSubgroupMatrixMatmul, type SgmVariant } from './gemmSubgroupMatrix.ts';
import type { WorkgroupAttentionPass, WorkgroupAttentionTile } from './attentionTiling.ts';
import { type AttentionEmitter, tiledAttention } from './attention.ts';
import { WGSL_PRELUDE } from './prelude.ts';

/** Where an IR buffer (or a scratch buffer, negative id) lives: GPU buffer index and byte offset. */
export interface Placement {
  readonly gpu: number;
  readonly offset: number;
}

export interface WgslLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxStorageBuffersPerShaderStage: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  /** Workgroup memory per workgroup (bytes; WebGPU's default 16384 where absent). */
  readonly maxComputeWorkgroupStorageSize?: number;
}

export interface WgslBinding {
  readonly gpu: number;
  readonly offset: number;
  readonly size: number;
  /** Declared `read` (layout 'read-only-storage'): the dispatch writes nothing in this GPU buffer. */
  readonly readOnly?: boolean;
}

export interface WgslDispatch {
  readonly name: string;
  /** The module's WGSL: depends only on the kernel's structure (no kernel name, no buffer offsets). */
  readonly source: string;
  readonly workgroups: readonly [number, number, number];
  /** Storage windows, bindings 0..n-1; binding n is the offsets uniform. */
  readonly bindings: readonly WgslBinding[];
  /** The offsets uniform: element offset of each slot's IR buffer in its window (shared by a kernel's parts). */
  readonly offsets: readonly number[];
}

export interface Scratch {
  readonly id: number;
  readonly bytes: number;
}

/** Matmul register blocking: each invocation of a 16×16 workgroup computes TM×TN outputs; K steps by BK. */
export interface GemmTile {
  readonly tm: number;
  readonly tn: number;
  readonly bk: number;
  /**
   * Each invocation owns contiguous 4-row/4-column blocks (strided by 64) and reads the staged tiles
   * as vec4 (one 128-bit workgroup-memory load per 4 values); tm and tn multiples of 4.
   */
  readonly vec?: boolean;
}

export interface WgslOptions {
  /**
   * Tiled GEMM with this register block (default DEFAULT_GEMM), 'simple': one invocation per output,
   * no workgroup memory, or 'wide': the 128×128 tile of genMatmulWide (f32 accumulation; others take
   * DEFAULT_GEMM), or a choice per problem (m, n, k and the batch size).
   */
  readonly gemm?: GemmTile | 'simple' | 'wide' | ((m: number, n: number, k: number, batch: number) => GemmTile | 'wide');
  /** Row kernels: 'workgroup' (strided over a workgroup, tree-combined in workgroup memory) or 'serial' (one invocation per row). */
  readonly reductions?: 'workgroup' | 'serial';
  /**
   * The device runs f16 subgroup matrices: matmul kernels whose kernel-IR tile is a subgroup-matrix
   * schedule are rendered by gemmSubgroupMatrix.ts (others, and every kernel without this, as above).
   */
  readonly subgroupMatrix?: boolean;
  /** Rendering choices of the subgroup-matrix GEMM (benchmarks; the defaults are the measured faster ones). */
  readonly sgm?: SgmVariant;
  /** Attention: 'tiled' (K/V tiles in workgroup memory, backends/wgsl/attention.ts) or 'rows' (one invocation per query / key row; the default). */
  readonly attention?: 'tiled' | 'rows';
  /** Tiled attention: tiles per pass instead of attentionTiling.ts's choice (where they fit). */
  readonly attentionTiles?: Partial<Record<WorkgroupAttentionPass, WorkgroupAttentionTile>>;
  /** Tiled attention: the forward's softmax in registers with subgroup shuffles, native or emulated (attention.ts's AttentionEmitter.subgroups). */
  readonly attentionSubgroups?: 'native' | 'emulated';
  /**
   * Row kernels with workgroup reductions: 'ir' (the default) renders the kernel IR's mapping
   * (LoopKernel.rows: column kernels, split in two passes where the compiler says so); 'block' one
   * workgroup per grid point for every row kernel (the mapping before column kernels; benchmarks).
   */
  readonly rowMapping?: 'ir' | 'block';
  /** Elementwise kernels with 16-bit stores: two neighbouring points per invocation, whole-word stores, where they pair up (default on; false: one point per invocation, atomic half-word stores). */
  readonly elementwisePairs?: boolean;
}

export const DEFAULT_GEMM: GemmTile = { tm: 4, tn: 4, bk: 16 };

/**
 * The tile per problem on real GPUs: the wide 128×128 GEMM where its tiles fill the device (at least
 * WIDE_MIN_TILES of them; bench/wgslGemmProbe.ts measured its structure at 38.7 TFLOP/s at 4096³ on an
 * H200, 2026-12-02, where the 8x4 tile gave 17.7), else 4x4/bk16 (best at 1024³ on the H200,
 * bench/RESULTS.md, 2026-12-01: 10.4 TFLOP/s vs 5.3-9 for the other register tiles).
 */
export function measuredGemmTile(m: number, n: number, _k: number, batch = 1): GemmTile | 'wide' {
  return Math.ceil(m / 128) * Math.ceil(n / 128) * batch >= WIDE_MIN_TILES ? 'wide' : DEFAULT_GEMM;
}

export const deviceBytes = (d: DType) => (d === 'f16' || d === 'bf16' ? 2 : 4);
const is16 = (d: DType) => d === 'f16' || d === 'bf16';
const isFloatT = (d: DType) => d === 'f32' || d === 'f16' || d === 'bf16';

/**
 * Scratch buffers: per attention_grad kernel, its statistics (per query row: logsumexp and D); per
 * split column kernel (LoopKernel.rows 'column' with split > 1), its partials (reductions × split ×
 * grid points), id −(2i + 1) for kernel i.
 */
export function scratchOf(p: KernelProgram): Scratch[] {
  const out: Scratch[] = [];
  p.kernels.forEach((k, i) => {
    if (k.kind === 'loop' && k.rows?.kind === 'column' && k.rows.split > 1) {
      const reduces = k.body.filter((s) => s.k === 'reduce').length;
      out.push({ id: -(2 * i + 1), bytes: Math.max(4, reduces * k.rows.split * k.grid.reduce((a, b) => a * b, 1) * 4) });
    }
    if (k.kind === 'loop' && isRowKernel(k) && blockSplitOf(k) > 1) out.push({ id: -(2 * i + 1), bytes: 4 * blockSplitOf(k) * k.grid.reduce((a, b) => a * b, 1) });
    if (k.kind !== 'attention_grad') return;
    const rows = k.batch.reduce((a, b) => a * b, 1) * k.sq;
    out.push({ id: -(2 * i + 1), bytes: rows * 4 }, { id: -(2 * i + 2), bytes: rows * 4 });
  });
  return out;
}

const f32Bits = (v: number) => {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, v);
  return b.getUint32(0);
};

function floatLit(v: number, opaque: boolean): string {
  const f = Math.fround(v);
  if (!Number.isFinite(f) || Object.is(f, -0) || (f !== 0 && Math.abs(f) < 1.1754943508222875e-38) || opaque)
    return `kf(0x${f32Bits(f).toString(16)}u)`;
  const s = f.toPrecision(9);
  return `${s.includes('e') || s.includes('.') ? s : `${s}.0`}f`;
}

const constTree = new WeakMap<Expr, boolean>();
function isConstTree(e: Expr): boolean {
  let r = constTree.get(e);
  if (r !== undefined) return r;
  switch (e.k) {
    case 'const': r = true; break;
    case 'var': case 'ref': case 'load': case 'random': r = false; break;
    case 'un': case 'cast': r = isConstTree(e.a); break;
    case 'bin': r = isConstTree(e.a) && isConstTree(e.b); break;
    case 'select': r = isConstTree(e.c) && isConstTree(e.a) && isConstTree(e.b); break;
  }
  constTree.set(e, r);
  return r;
}

const valueType = (d: DType) => (isFloatT(d) ? 'f32' : d === 'i32' ? 'i32' : d === 'u32' ? 'u32' : 'bool');
const v = (name: string) => `v_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
const x = (name: string) => `x_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;

interface Window {
  /** Binding variable name. */
  readonly name: string;
  /** Element offset of the IR buffer in the window (16-bit buffers: in halves). */
  readonly base: number;
  readonly atomic: boolean;
}

interface Bound {
  readonly name: string;
  /** The WGSL expression of the buffer's element offset in its window: a slot of the offsets uniform. */
  readonly base: string;
  readonly atomic: boolean;
}

/** The WGSL expression of slot `s` of the offsets uniform (vec4-packed, as uniform arrays need 16-byte strides). */
const offsetSlot = (s: number) => `U_.o[${s >> 2}].${'xyzw'[s & 3]}`;

/**
 * Renders expressions and statements of one dispatch, given where its buffers are bound. Buffer offsets
 * are not in the source: each IR buffer gets a slot of the dispatch's offsets uniform when the
 * generated code first touches it, so structurally equal kernels (the same layer in every block, its
 * forward and backward copies) have byte-equal sources and share one pipeline.
 */
class Gen {
  /** The element offset of each slot, in slot order (the offsets uniform's contents). */
  readonly slots: number[] = [];
  private readonly slotOf = new Map<number, number>();

  private readonly valueNames = new Map<string, string>();
  private readonly loopNames = new Map<string, string>();

  /** Where set, 16-bit 'set' stores call this with the half index and the value's bits (u32) instead of storing (pairEpilogue). */
  store16?: (buf: number, half: string, bits: string) => string;

  constructor(readonly buffers: readonly BufferDecl[], readonly windows: ReadonlyMap<number, Window>) {}

  /** The name of the binding holding buffer `buf` and whether it is atomic. */
  binding(buf: number): { name: string; atomic: boolean } {
    const b = this.b(buf);
    return { name: b.name, atomic: b.atomic };
  }

  /** A slot of the offsets uniform holding `value` (another binding's base), as a WGSL expression. */
  rawSlot(value: number): string {
    return offsetSlot(this.slots.push(value) - 1);
  }

  /**
   * The WGSL name of the kernel IR value `name`: numbered in order of first use (IR names carry the
   * kernel's own prefixes, which would make equal kernels differ), except the matmul accumulator
   * `acc`, which the epilogue function takes by that name.
   */
  v(name: string): string {
    if (name === 'acc') return v(name);
    let r = this.valueNames.get(name);
    if (r === undefined) this.valueNames.set(name, (r = `v${this.valueNames.size}`));
    return r;
  }

  /**
   * The WGSL name of the loop or reduction variable `name` (declared by the caller's `for`): numbered
   * in order of first use, as values are (IR loop variables carry fusion prefixes that differ between
   * equal layers); grid variables and the other kernels' fixed names stay x_<name>.
   */
  lv(name: string): string {
    let r = this.loopNames.get(name);
    if (r === undefined) this.loopNames.set(name, (r = `x_l${this.loopNames.size}`));
    return r;
  }

  private b(buf: number): Bound {
    const w = this.windows.get(buf);
    if (!w) throw new KilnError(`wgsl codegen: buffer b${buf} is not bound`);
    let s = this.slotOf.get(buf);
    if (s === undefined) {
      s = this.slots.push(w.base) - 1;
      this.slotOf.set(buf, s);
    }
    return { name: w.name, base: offsetSlot(s), atomic: w.atomic };
  }

  private dtype(buf: number): DType {
    return buf < 0 ? 'f32' : this.buffers[buf]!.dtype;
  }

  private word(buf: number, index: string): string {
    const b = this.b(buf);
    const at = `${b.name}[${b.base} + ${index}]`;
    return b.atomic ? `atomicLoad(&${at})` : at;
  }

  load(buf: number, index: string): string {
    const d = this.dtype(buf);
    if (is16(d)) {
      const b = this.b(buf);
      return `${d === 'f16' ? 'k_f16_to_f32' : 'k_bf16_to_f32'}(r16_${b.name}(u32(${b.base} + ${index})))`;
    }
    const w = this.word(buf, index);
    return d === 'f32' ? `bitcast<f32>(${w})` : d === 'i32' ? `bitcast<i32>(${w})` : d === 'u32' ? w : `(${w} != 0u)`;
  }

  /** A statement storing `value` (of the buffer's value type) at `index`. */
  store(buf: number, index: string, value: string, mode: 'set' | 'add'): string {
    const d = this.dtype(buf);
    const b = this.b(buf);
    if (is16(d)) {
      const h = `u32(${b.base} + ${index})`;
      const bits = `${d === 'f16' ? 'k_f32_to_f16' : 'k_f32_to_bf16'}(${value})`;
      if (mode === 'set' && this.store16) return this.store16(buf, h, bits);
      return mode === 'add' ? `add16_${b.name}(${h}, ${value}, ${d === 'bf16'});` : `w16_${b.name}(${h}, ${bits});`;
    }
    const at = `${b.name}[${b.base} + ${index}]`;
    if (mode === 'add') {
      if (d === 'f32') return `addf_${b.name}(${b.base} + ${index}, ${value});`;
      if (d === 'i32') return `atomicAdd(&${at}, bitcast<u32>(${value}));`;
      if (d === 'u32') return `atomicAdd(&${at}, ${value});`;
      throw new KilnError(`wgsl codegen: accumulating stores into ${d} buffers are not supported (b${buf})`);
    }
    const bits = d === 'f32' || d === 'i32' ? `bitcast<u32>(${value})` : d === 'u32' ? value : `select(0u, 1u, ${value})`;
    return b.atomic ? `atomicStore(&${at}, ${bits});` : `${at} = ${bits};`;
  }

  private narrow(code: string, d: DType): string {
    return d === 'f16' ? `k_round_f16(${code})` : d === 'bf16' ? `k_round_bf16(${code})` : code;
  }

  private lit(e: Expr & { k: 'const' }, opaque: boolean): string {
    switch (e.dtype) {
      case 'bool': return e.v ? 'true' : 'false';
      case 'i32': {
        const s = e.v === -2147483648 ? 'bitcast<i32>(0x80000000u)' : `${e.v | 0}i`;
        return opaque ? `ki(${s})` : s;
      }
      case 'u32': return opaque ? `ku(${e.v >>> 0}u)` : `${e.v >>> 0}u`;
      default: return floatLit(e.v, opaque);
    }
  }

  expr(e: Expr, opaque = false): string {
    const o = opaque || (e.k !== 'const' && isConstTree(e));
    switch (e.k) {
      case 'const': return this.lit(e, o);
      case 'var': return this.loopNames.get(e.name) ?? x(e.name);
      case 'ref': return this.v(e.name);
      case 'load': return this.load(e.buf, this.expr(e.index));
      case 'un': return this.narrow(this.unary(e.op, this.expr(e.a, o), e.a.dtype), e.dtype);
      case 'bin': return this.narrow(this.binary(e.op, e.a, e.b, o), e.dtype);
      case 'select': return `select(${this.expr(e.b, o)}, ${this.expr(e.a, o)}, ${this.expr(e.c, o)})`;
      case 'cast': return this.cast(this.expr(e.a, o), e.a.dtype, e.dtype);
      case 'random': {
        const u = (a: Expr) => (a.dtype === 'u32' ? this.expr(a) : a.dtype === 'i32' ? `bitcast<u32>(${this.expr(a)})` : `u32(${this.expr(a)})`);
        const bits = e.dtype === 'f16' ? 11 : e.dtype === 'bf16' ? 8 : 24;
        const call = e.dist === 'uniform'
          ? `k_uniform(${u(e.s0)}, ${u(e.s1)}, ${e.stream >>> 0}u, ${u(e.index)}, ${bits}u)`
          : `k_normal(${u(e.s0)}, ${u(e.s1)}, ${e.stream >>> 0}u, ${u(e.index)})`;
        return this.narrow(call, e.dtype);
      }
    }
  }

  private unary(op: string, a: string, d: DType): string {
    const int = d === 'i32' || d === 'u32';
    switch (op) {
      case 'neg': return d === 'u32' ? `(0u - ${a})` : `(-(${a}))`;
      case 'abs': return d === 'u32' ? a : `abs(${a})`;
      case 'sign': return d === 'i32' ? `sign(${a})` : d === 'u32' ? `select(0u, 1u, ${a} != 0u)` : `k_sign(${a})`;
      case 'exp': return `k_exp(${a})`;
      case 'log': return `k_log(${a})`;
      case 'sqrt': return `k_sqrt(${a})`;
      case 'rsqrt': return `(1.0f / k_sqrt(${a}))`;
      case 'recip': return `(1.0f / (${a}))`;
      case 'sin': return `k_sin(${a})`;
      case 'cos': return `k_cos(${a})`;
      case 'tanh': return `k_tanh(${a})`;
      case 'erf': return `k_erf(${a})`;
      case 'sigmoid': return `k_sigmoid(${a})`;
      case 'floor': return int ? a : `floor(${a})`;
      case 'ceil': return int ? a : `ceil(${a})`;
      case 'not': return `(!(${a}))`;
    }
    throw new KilnError(`wgsl codegen: unary op ${op}`);
  }

  private binary(op: string, ea: Expr, eb: Expr, o: boolean): string {
    let a = this.expr(ea, o), b = this.expr(eb, o);
    const d = ea.dtype;
    if (d === 'bool') {
      if (op === 'max' || op === 'add') return `(${a} || ${b})`;
      if (op === 'min' || op === 'mul') return `(${a} && ${b})`;
      if (['lt', 'le', 'gt', 'ge'].includes(op)) [a, b] = [`select(0u, 1u, ${a})`, `select(0u, 1u, ${b})`];
    }
    const i = d === 'i32', u = d === 'u32';
    const posConst = eb.k === 'const' && eb.v > 0 && !o;
    switch (op) {
      case 'add': return `(${a} + ${b})`;
      case 'sub': return `(${a} - ${b})`;
      case 'mul': return `(${a} * ${b})`;
      case 'div': return (i || u) && posConst ? `(${a} / ${b})` : i ? `k_divi(${a}, ${b})` : u ? `k_divu(${a}, ${b})` : `(${a} / ${b})`;
      case 'mod': return (i || u) && posConst ? `(${a} % ${b})` : i ? `k_modi(${a}, ${b})` : u ? `k_modu(${a}, ${b})` : `k_fmod(${a}, ${b})`;
      case 'max': return i || u ? `max(${a}, ${b})` : `k_max(${a}, ${b})`;
      case 'min': return i || u ? `min(${a}, ${b})` : `k_min(${a}, ${b})`;
      case 'pow': return `k_pow(${a}, ${b})`;
      case 'eq': return `(${a} == ${b})`;
      case 'ne': return isFloatT(d) ? `(${a} != ${b} || k_isnan(${a}) || k_isnan(${b}))` : `(${a} != ${b})`;
      case 'lt': return `(${a} < ${b})`;
      case 'le': return `(${a} <= ${b})`;
      case 'gt': return `(${a} > ${b})`;
      case 'ge': return `(${a} >= ${b})`;
      case 'and': return `(${a} && ${b})`;
      case 'or': return `(${a} || ${b})`;
      case 'xor': return `(${a} != ${b})`;
    }
    throw new KilnError(`wgsl codegen: binary op ${op}`);
  }

  private cast(a: string, from: DType, to: DType): string {
    if (to === 'bool') return from === 'bool' ? a : isFloatT(from) ? `((bitcast<u32>(${a}) & 0x7fffffffu) != 0u)` : `(${a} != ${from === 'i32' ? '0i' : '0u'})`;
    if (from === 'bool') return isFloatT(to) ? `select(0.0f, 1.0f, ${a})` : to === 'i32' ? `select(0i, 1i, ${a})` : `select(0u, 1u, ${a})`;
    if (isFloatT(to)) return this.narrow(isFloatT(from) ? a : `f32(${a})`, to);
    if (isFloatT(from)) return to === 'i32' ? `k_f2i(${a})` : `k_f2u(${a})`;
    if (from === to) return a;
    return to === 'i32' ? `bitcast<i32>(${a})` : `bitcast<u32>(${a})`;
  }

  /** Lets, stores and sequential loops. */
  stmts(list: readonly Stmt[], ind: string, out: string[], storeGuard?: string): void {
    for (const s of list) {
      switch (s.k) {
        case 'let':
          out.push(`${ind}let ${this.v(s.name)}: ${valueType(s.value.dtype)} = ${this.expr(s.value)};`);
          break;
        case 'store': {
          const line = this.store(s.buf, this.expr(s.index), this.expr(s.value), s.mode);
          out.push(storeGuard ? `${ind}if (${storeGuard}) { ${line} }` : `${ind}${line}`);
          break;
        }
        case 'loop':
          out.push(`${ind}for (var ${this.lv(s.var)}: i32 = 0i; ${this.lv(s.var)} < ${s.extent}i; ${this.lv(s.var)}++) {`);
          this.stmts(s.body, ind + '  ', out);
          out.push(`${ind}}`);
          break;
        case 'reduce':
          this.serialReduce(s, ind, out);
          break;
      }
    }
  }

  /** A reduction run by one invocation, in loop order (exactly the interpreter's order). */
  serialReduce(s: Stmt & { k: 'reduce' }, ind: string, out: string[]): void {
    const vd = s.op === 'argmax' ? s.value.dtype : s.dtype;
    const vt = valueType(vd);
    const isF = vt === 'f32';
    const acc = this.v(s.acc);
    const narrow = (e: string) => (s.dtype === 'f16' ? `k_round_f16(${e})` : s.dtype === 'bf16' ? `k_round_bf16(${e})` : e);
    const ident = s.op === 'sum' ? (isF ? '0.0f' : vt === 'i32' ? '0i' : '0u')
      : s.op === 'max' ? (isF ? '-k_inf()' : vt === 'i32' ? 'bitcast<i32>(0x80000000u)' : '0u')
        : s.op === 'min' ? (isF ? 'k_inf()' : vt === 'i32' ? '2147483647i' : '4294967295u') : isF ? '-k_inf()' : vt === 'i32' ? 'bitcast<i32>(0x80000000u)' : '0u';
    const tmp = `r_${acc}`;
    out.push(`${ind}var ${tmp}: ${vt} = ${ident};`);
    if (s.op === 'argmax') out.push(`${ind}var ${tmp}_i: i32 = -1i;`);
    out.push(`${ind}for (var ${this.lv(s.var)}: i32 = 0i; ${this.lv(s.var)} < ${s.extent}i; ${this.lv(s.var)}++) {`);
    this.stmts(s.body, ind + '  ', out);
    const val = this.expr(s.value);
    if (s.op === 'sum') out.push(`${ind}  ${tmp} = ${narrow(`(${tmp} + ${vt}(${val}))`)};`);
    else if (s.op === 'max' || s.op === 'min') out.push(`${ind}  ${tmp} = ${isF ? `k_${s.op}` : s.op}(${tmp}, ${vt}(${val}));`);
    else {
      out.push(`${ind}  let xv_: ${vt} = ${val};`);
      out.push(`${ind}  if (${tmp}_i < 0i || (${isF ? `!k_isnan(${tmp}) && ` : ''}(xv_ > ${tmp}${isF ? ' || k_isnan(xv_)' : ''}))) { ${tmp} = xv_; ${tmp}_i = ${this.lv(s.var)}; }`);
    }
    out.push(`${ind}}`);
    out.push(s.op === 'argmax' ? `${ind}let ${acc}: i32 = max(${tmp}_i, 0i);` : `${ind}let ${acc}: ${vt} = ${tmp};`);
  }
}

/** Which buffers a kernel stores into with 16-bit words or accumulates into (they need atomic bindings). */
function atomicBuffers(k: Kernel, buffers: readonly BufferDecl[]): Set<number> {
  const out = new Set<number>();
  const stmts = k.kind === 'loop' ? k.body : k.kind === 'matmul' ? k.epilogue : [];
  walkStmts(stmts, () => {}, (s) => {
    if (s.k === 'store' && (s.mode === 'add' || is16(buffers[s.buf]!.dtype))) out.add(s.buf);
  });
  if (k.kind === 'attention' && is16(k.out.dtype)) out.add(k.out.buf);
  if (k.kind === 'attention_grad') for (const t of [k.dQ, k.dK, k.dV]) if (t && is16(buffers[t.buf]!.dtype)) out.add(t.buf);
  return out;
}

const alignDown = (n: number, a: number) => Math.floor(n / a) * a;
const align4 = (n: number) => Math.ceil(n / 4) * 4;

/**
 * Bind the buffers `ids` of a dispatch: per GPU buffer, windows over the IR buffers' byte ranges (sorted
 * by offset; overlapping ranges, as in-place reuse makes, share a window), each at most the binding
 * size limit. Returns the bindings and, per IR buffer, its binding and element base.
 */
function bindWindows(
  kernel: string, ids: readonly number[], atomic: ReadonlySet<number>, written: ReadonlySet<number>, place: (id: number) => Placement, bytesOf: (id: number) => number, elemOf: (id: number) => number,
  limits: WgslLimits, gpuSize: (gpu: number) => number, splitAtomic = false,
): { bindings: WgslBinding[]; bound: Map<number, Window>; atomicBinding: boolean[] } {
  const items = ids.map((id) => ({ id, ...place(id), bytes: Math.max(4, align4(bytesOf(id))) })).sort((a, b) => a.gpu - b.gpu || a.offset - b.offset);
  const max = alignDown(limits.maxStorageBufferBindingSize, 4);
  const bindings: Array<{ gpu: number; offset: number; end: number; ids: number[]; atomic: boolean }> = [];
  for (const it of items) {
    if (it.bytes > max) throw new KilnError(`wgsl: kernel ${kernel}: buffer b${it.id} (${it.bytes} B) exceeds maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize} B)`);
    const cur = bindings[bindings.length - 1];
    const end = it.offset + it.bytes;
    const at = atomic.has(it.id);
    // splitAtomic: a buffer needing atomics starts a window of its own (and the next plain one another), unless it overlaps the current window.
    if (cur && cur.gpu === it.gpu && (it.offset < cur.end || ((!splitAtomic || cur.atomic === at) && Math.max(cur.end, end) - cur.offset <= max))) {
      if (Math.max(cur.end, end) - cur.offset > max)
        throw new KilnError(`wgsl: kernel ${kernel}: overlapping buffers span more than maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize} B)`);
      cur.end = Math.max(cur.end, end);
      cur.ids.push(it.id);
      cur.atomic ||= at;
    } else {
      const start = alignDown(it.offset, 256);
      if (cur && cur.gpu === it.gpu && start < cur.end) throw new KilnError(`wgsl: kernel ${kernel}: buffer b${it.id} at ${it.offset} is not 256-byte aligned`);
      bindings.push({ gpu: it.gpu, offset: start, end, ids: [it.id], atomic: at });
    }
  }
  if (bindings.length > limits.maxStorageBuffersPerShaderStage)
    throw new KilnError(`wgsl: kernel ${kernel} needs ${bindings.length} storage buffer bindings; the device allows ${limits.maxStorageBuffersPerShaderStage} per shader stage`);
  const bound = new Map<number, Window>();
  const atomicBinding: boolean[] = [];
  bindings.forEach((w, bi) => {
    const at = w.ids.some((id) => atomic.has(id));
    atomicBinding.push(at);
    for (const id of w.ids) bound.set(id, { name: `B${bi}`, base: (place(id).offset - w.offset) / elemOf(id), atomic: at });
    w.end = Math.min(align4(w.end), gpuSize(w.gpu));
  });
  // Read-only where no window of the same GPU buffer is written (WebGPU forbids writable and read-only
  // storage usage of one buffer in a dispatch).
  const writtenGpus = new Set(bindings.filter((w) => w.ids.some((id) => written.has(id) || atomic.has(id))).map((w) => w.gpu));
  return { bindings: bindings.map((w) => ({ gpu: w.gpu, offset: w.offset, size: w.end - w.offset, readOnly: !writtenGpus.has(w.gpu) })), bound, atomicBinding };
}

/** Binding declarations (the storage windows, `views` vec4 views after them, then the offsets uniform with `slots` slots) and per-binding access helpers. */
function bindingDecls(atomicBinding: readonly boolean[], readOnly: readonly boolean[], views: readonly string[], slots: number): { decls: string[]; helpers: string[] } {
  const decls: string[] = [
    ...views.map((name, i) => `@group(0) @binding(${atomicBinding.length + i}) var<storage, read> ${name}: array<vec4<f32>>;`),
    `struct Offsets_ { o: array<vec4<i32>, ${Math.max(1, Math.ceil(slots / 4))}> }`, `@group(0) @binding(${atomicBinding.length + views.length}) var<uniform> U_: Offsets_;`,
  ];
  const out: string[] = [];
  atomicBinding.forEach((at, i) => {
    const B = `B${i}`;
    decls.push(`@group(0) @binding(${i}) var<storage, ${readOnly[i] ? 'read' : 'read_write'}> ${B}: array<${at ? 'atomic<u32>' : 'u32'}>;`);
    const w = (h: string) => (at ? `atomicLoad(&${B}[${h}])` : `${B}[${h}]`);
    out.push(`fn r16_${B}(h: u32) -> u32 { return (${w('h >> 1u')} >> ((h & 1u) * 16u)) & 0xffffu; }`);
    if (at) {
      out.push(`fn w16_${B}(h: u32, bits: u32) { let s = (h & 1u) * 16u; atomicAnd(&${B}[h >> 1u], ~(0xffffu << s)); atomicOr(&${B}[h >> 1u], bits << s); }`);
      out.push(`fn addf_${B}(i: i32, x: f32) { var old = atomicLoad(&${B}[i]); loop { let r = atomicCompareExchangeWeak(&${B}[i], old, bitcast<u32>(bitcast<f32>(old) + x)); if (r.exchanged) { break; } old = r.old_value; } }`);
      out.push(
        `fn add16_${B}(h: u32, x: f32, bf: bool) { let s = (h & 1u) * 16u; var old = atomicLoad(&${B}[h >> 1u]); loop { let cur = (old >> s) & 0xffffu; ` +
          `let f = select(k_f16_to_f32(cur), k_bf16_to_f32(cur), bf) + x; let nb = select(k_f32_to_f16(f), k_f32_to_bf16(f), bf); ` +
          `let r = atomicCompareExchangeWeak(&${B}[h >> 1u], old, (old & ~(0xffffu << s)) | (nb << s)); if (r.exchanged) { break; } old = r.old_value; } }`,
      );
    }
  });
  return { decls, helpers: out };
}

/** Workgroup counts for `n` workgroups, folded into two dimensions; the shader recovers the linear id. */
function fold(n: number, limits: WgslLimits, kernel: string): [number, number, number] {
  const m = limits.maxComputeWorkgroupsPerDimension;
  const nx = Math.min(n, m);
  const ny = Math.ceil(n / nx);
  if (ny > m) throw new KilnError(`wgsl: kernel ${kernel} needs ${n} workgroups (more than ${m}² folded)`);
  return [nx, ny, 1];
}

function entry(wg: [number, number], total: number, nx: number): string[] {
  return [
    `@compute @workgroup_size(${wg[0]}, ${wg[1]}, 1)`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lix: u32) {',
    `  let wg = wid.x + wid.y * ${nx}u;`,
    `  if (wg >= ${total}u) { return; }`,
  ];
}

/** `let x_name: i32 = ...` for each var of a row-major decomposition of `linear` (an i32 expression). */
function decompose(names: readonly string[], extents: readonly number[], linear: string, out: string[], ind: string): void {
  let rem = linear;
  for (let d = extents.length - 1; d >= 0; d--) {
    out.push(`${ind}let ${x(names[d]!)}: i32 = ${d === 0 ? rem : `${rem} % ${extents[d]}i`};`);
    if (d > 0) {
      out.push(`${ind}let q${d}_: i32 = ${rem} / ${extents[d]}i;`);
      rem = `q${d}_`;
    }
  }
}

const ELEMENTWISE_WG = 256;
const isRowKernel = (k: LoopKernel) => k.body.some((s) => s.k === 'reduce' || s.k === 'loop');

interface Ctx {
  readonly g: Gen;
  readonly limits: WgslLimits;
  readonly name: string;
  readonly decls: string[];
  readonly opts: WgslOptions;
  /** The kernel's scratch buffer id (split column kernels: the partials). */
  readonly scratch?: number;
  /** Bind IR buffer `buf` a second time as array<vec4<f32>> (its own window); its binding name and vec4 base, or undefined where it cannot be (alignment, binding count). */
  readonly vec4View?: (buf: number) => { name: string; base: string } | undefined;
}

function genLoop(c: Ctx, k: LoopKernel): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const total = k.grid.reduce((a, b) => a * b, 1);
  if (total === 0) return [];
  const gv = k.grid.map((_, i) => `g${i}`);
  const out: string[] = [];
  if (!isRowKernel(k) || c.opts.reductions === 'serial') {
    const paired = isRowKernel(k) ? undefined : genPairedElementwise(c, k);
    if (paired) return paired;
    const wgs = Math.ceil(total / ELEMENTWISE_WG);
    const w = fold(wgs, c.limits, c.name);
    out.push(...entry([ELEMENTWISE_WG, 1], wgs, w[0]));
    out.push(`  let t_ = wg * ${ELEMENTWISE_WG}u + lix;`, `  if (t_ >= ${total}u) { return; }`);
    decompose(gv, k.grid, 'i32(t_)', out, '  ');
    c.g.stmts(k.body, '  ', out);
    out.push('}');
    return [{ body: out, workgroups: w }];
  }
  if (k.rows?.kind === 'column' && c.opts.rowMapping !== 'block') return k.rows.split > 1 ? genSplitColumns(c, k, k.rows) : genColumns(c, k, k.rows);
  let maxRow = 1;
  walkStmts(k.body, () => {}, (s) => {
    if (s.k === 'reduce' || s.k === 'loop') maxRow = Math.max(maxRow, s.extent);
  });
  const T = Math.min(c.limits.maxComputeInvocationsPerWorkgroup, 256, Math.max(32, 2 ** Math.ceil(Math.log2(maxRow))));
  const S = c.opts.rowMapping === 'block' ? 1 : blockSplitOf(k);
  if (S > 1) return genSplitBlock(c, k, S, T);
  const w = fold(total, c.limits, c.name);
  c.decls.push(`var<workgroup> red_f: array<f32, ${T}>;`, `var<workgroup> red_i: array<i32, ${T}>;`, `var<workgroup> red_u: array<u32, ${T}>;`, `var<workgroup> red_a: array<i32, ${T}>;`);
  out.push(...entry([T, 1], total, w[0]));
  out.push('  let tid = i32(lix);');
  decompose(gv, k.grid, 'i32(wg)', out, '  ');
  for (const s of k.body) {
    switch (s.k) {
      case 'let':
        c.g.stmts([s], '  ', out);
        break;
      case 'store':
        c.g.stmts([s], '  ', out, 'tid == 0i');
        break;
      case 'loop':
        if (c.opts.elementwisePairs !== false && pairable(c.g.buffers, c.g.windows, s.body, s.var, s.extent)) pairedRowLoop(c, s, T, out);
        else {
          out.push(`  for (var ${c.g.lv(s.var)}: i32 = tid; ${c.g.lv(s.var)} < ${s.extent}i; ${c.g.lv(s.var)} += ${T}i) {`);
          c.g.stmts(s.body, '    ', out);
          out.push('  }');
        }
        break;
      case 'reduce':
        genReduce(c, s, T, out);
        break;
    }
  }
  out.push('}');
  return [{ body: out, workgroups: w }];
}

type ReduceStmt = Stmt & { k: 'reduce' };
type ColumnMapping = Extract<RowMapping, { kind: 'column' }>;

/** A reduction's value type, identity and combine function (f16/bf16 sums rounded after each step, as the interpreter). */
function reduction(s: ReduceStmt) {
  const vt = valueType(s.op === 'argmax' ? s.value.dtype : s.dtype);
  const isF = vt === 'f32';
  const narrow = (e: string) => (s.dtype === 'f16' ? `k_round_f16(${e})` : s.dtype === 'bf16' ? `k_round_bf16(${e})` : e);
  const ident = s.op === 'sum'
    ? (isF ? '0.0f' : vt === 'i32' ? '0i' : '0u')
    : s.op === 'max' || s.op === 'argmax'
      ? (isF ? '-k_inf()' : vt === 'i32' ? 'bitcast<i32>(0x80000000u)' : '0u')
      : isF ? 'k_inf()' : vt === 'i32' ? '2147483647i' : '4294967295u';
  const combine = (a: string, b: string) =>
    s.op === 'sum' ? narrow(`(${a} + ${b})`) : s.op === 'max' ? (isF ? `k_max(${a}, ${b})` : `max(${a}, ${b})`) : isF ? `k_min(${a}, ${b})` : `min(${a}, ${b})`;
  return { vt, isF, ident, combine, shared: isF ? 'red_f' : vt === 'i32' ? 'red_i' : 'red_u' };
}

/** Whether argmax candidate (b_, ib_) replaces the current (a_, ia_): the first maximum, NaN maximal (index −1: none yet). */
const argmaxTake = (isF: boolean) => {
  const an = isF ? 'k_isnan(a_)' : 'false', bn = isF ? 'k_isnan(b_)' : 'false';
  return `ib_ >= 0i && (ia_ < 0i || (!${an} && (b_ > a_ || ${bn} || (b_ == a_ && ib_ < ia_))) || (${an} && ${bn} && ib_ < ia_))`;
};

/** One accumulation step of `s` inside its loop (acc ← op(acc, value); argmax keeps the first maximum). */
function accumulate(c: Ctx, s: ReduceStmt, acc: string, arg: string, out: string[], ind: string): void {
  const r = reduction(s);
  const val = c.g.expr(s.value);
  if (s.op === 'argmax') {
    out.push(`${ind}let xv_: ${r.vt} = ${val};`);
    out.push(`${ind}if (${arg} < 0i || (${r.isF ? `!k_isnan(${acc}) && ` : ''}(xv_ > ${acc}${r.isF ? ' || k_isnan(xv_)' : ''}))) { ${acc} = xv_; ${arg} = ${c.g.lv(s.var)}; }`);
  } else out.push(`${ind}${acc} = ${r.combine(acc, `${r.vt}(${val})`)};`);
}

/**
 * A column kernel (LoopKernel.rows 'column', compiler/schedule/rowMapping.ts; the CUDA backend renders
 * the same mapping): workgroups of `points` × `lanes` invocations, lid.x the grid point (consecutive
 * points: loads coalesced along the last grid axis), lid.y the lane along the reduced axis; the lanes'
 * partials are combined through workgroup memory in lane order by every invocation of the point.
 * Invocations past the last point compute on point 0 and store nothing (all reach the barriers).
 */
function genColumns(c: Ctx, k: LoopKernel, m: ColumnMapping): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const P = m.points, L = m.lanes;
  const total = k.grid.reduce((a, b) => a * b, 1);
  const nb = Math.ceil(total / P);
  const w = fold(nb, c.limits, c.name);
  c.decls.push(`var<workgroup> red_f: array<f32, ${P * L}>;`, `var<workgroup> red_i: array<i32, ${P * L}>;`, `var<workgroup> red_u: array<u32, ${P * L}>;`, `var<workgroup> red_a: array<i32, ${P * L}>;`);
  const out: string[] = [...entry([P, L], nb, w[0])];
  out.push('  let tx = i32(lid.x); let ty = i32(lid.y);', `  let t_ = i32(wg) * ${P}i + tx;`, `  let live = t_ < ${total}i;`, '  let t = select(0i, t_, live);');
  decompose(k.grid.map((_, i) => `g${i}`), k.grid, 't', out, '  ');
  for (const s of k.body) {
    if (s.k === 'let') c.g.stmts([s], '  ', out);
    else if (s.k === 'store') c.g.stmts([s], '  ', out, 'live && ty == 0i');
    else if (s.k === 'loop') {
      out.push(`  for (var ${c.g.lv(s.var)}: i32 = ty; ${c.g.lv(s.var)} < ${s.extent}i; ${c.g.lv(s.var)} += ${L}i) {`, '    if (live) {');
      c.g.stmts(s.body, '      ', out);
      out.push('    }', '  }');
    } else {
      const r = reduction(s);
      const acc = `acc_${c.g.v(s.acc)}`, arg = `arg_${c.g.v(s.acc)}`;
      out.push(`  var ${acc}: ${r.vt} = ${r.ident};`);
      if (s.op === 'argmax') out.push(`  var ${arg}: i32 = -1i;`);
      out.push(`  for (var ${c.g.lv(s.var)}: i32 = ty; ${c.g.lv(s.var)} < ${s.extent}i; ${c.g.lv(s.var)} += ${L}i) {`);
      c.g.stmts(s.body, '    ', out);
      accumulate(c, s, acc, arg, out, '    ');
      out.push('  }');
      out.push(`  ${r.shared}[ty * ${P}i + tx] = ${acc};`);
      if (s.op === 'argmax') out.push(`  red_a[ty * ${P}i + tx] = ${arg};`);
      out.push('  workgroupBarrier();');
      if (s.op === 'argmax') {
        out.push(`  var am_: ${r.vt} = ${r.shared}[tx]; var ai_: i32 = red_a[tx];`);
        out.push(`  for (var l_: i32 = 1i; l_ < ${L}i; l_++) { let a_ = am_; let ia_ = ai_; let b_ = ${r.shared}[l_ * ${P}i + tx]; let ib_ = red_a[l_ * ${P}i + tx]; if (${argmaxTake(r.isF)}) { am_ = b_; ai_ = ib_; } }`);
        out.push(`  let ${c.g.v(s.acc)}: i32 = max(ai_, 0i);`);
      } else {
        out.push(`  var cv_${acc}: ${r.vt} = ${r.shared}[tx];`);
        out.push(`  for (var l_: i32 = 1i; l_ < ${L}i; l_++) { cv_${acc} = ${r.combine(`cv_${acc}`, `${r.shared}[l_ * ${P}i + tx]`)}; }`);
        out.push(`  let ${c.g.v(s.acc)}: ${r.vt} = cv_${acc};`);
      }
      out.push('  workgroupBarrier();');
    }
  }
  out.push('}');
  return [{ body: out, workgroups: w }];
}

/**
 * A split column kernel (rows 'column' with split S > 1: small grids over long extents, the bias
 * gradients; the compiler splits only kernels whose reductions are independent float sums/max/min
 * followed by lets and stores). Pass 1 (⌈points/P⌉·S workgroups) reduces chunk c of each reduction
 * (⌈extent/S⌉ long) for P points, L lanes each, and writes the partials to scratch at
 * [reduction][chunk][point]; pass 2 (one invocation per point) combines the S partials in chunk order
 * (deterministic) and runs the kernel's lets and stores.
 */
function genSplitColumns(c: Ctx, k: LoopKernel, m: ColumnMapping): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const P = m.points, L = m.lanes, S = m.split;
  const total = k.grid.reduce((a, b) => a * b, 1);
  const reduces = k.body.filter((s): s is ReduceStmt => s.k === 'reduce');
  if (k.body.some((s) => s.k === 'loop') || reduces.some((r) => r.op === 'argmax' || reduction(r).vt !== 'f32') || c.scratch === undefined)
    throw new KilnError(`wgsl codegen: ${c.name}: a split column kernel holds only float sum/max/min reductions, lets and stores`);
  const scr = c.scratch;
  const gv = k.grid.map((_, i) => `g${i}`);
  const slot = (j: number, chunk: string, point: string) => `(${j * S}i + ${chunk}) * ${total}i + ${point}`;
  const nb = Math.ceil(total / P);
  const w1 = fold(nb * S, c.limits, c.name);
  const p1: string[] = ['//decls', `var<workgroup> red_f: array<f32, ${P * L}>;`, '//end', ...entry([P, L], nb * S, w1[0])];
  p1.push('  let tx = i32(lid.x); let ty = i32(lid.y);', `  let c_ = i32(wg) / ${nb}i;`, `  let t_ = (i32(wg) % ${nb}i) * ${P}i + tx;`, `  let live = t_ < ${total}i;`, '  let t = select(0i, t_, live);');
  decompose(gv, k.grid, 't', p1, '  ');
  // Pass 1 evaluates the lets that do not use a reduction's result (the reductions' bodies may use them).
  const late = new Set<string>(reduces.map((r) => r.acc));
  const usesLate = (st: readonly Stmt[]) => {
    let hit = false;
    walkStmts(st, (e) => { if (e.k === 'ref' && late.has(e.name)) hit = true; });
    return hit;
  };
  for (const s of k.body) if (s.k === 'let') { if (usesLate([s])) late.add(s.name); else c.g.stmts([s], '  ', p1); }
  reduces.forEach((s, j) => {
    const r = reduction(s);
    const chunk = Math.ceil(s.extent / S);
    const acc = `acc_${c.g.v(s.acc)}`;
    p1.push('  {', `    var ${acc}: f32 = ${r.ident};`, `    let end_ = min(${s.extent}i, (c_ + 1i) * ${chunk}i);`);
    p1.push(`    for (var ${c.g.lv(s.var)}: i32 = c_ * ${chunk}i + ty; ${c.g.lv(s.var)} < end_; ${c.g.lv(s.var)} += ${L}i) {`);
    c.g.stmts(s.body, '      ', p1);
    accumulate(c, s, acc, '', p1, '      ');
    p1.push('    }', `    red_f[ty * ${P}i + tx] = ${acc};`, '    workgroupBarrier();');
    p1.push('    if (ty == 0i && live) {', '      var v_: f32 = red_f[tx];');
    p1.push(`      for (var l_: i32 = 1i; l_ < ${L}i; l_++) { v_ = ${r.combine('v_', `red_f[l_ * ${P}i + tx]`)}; }`);
    p1.push(`      ${c.g.store(scr, slot(j, 'c_', 't_'), 'v_', 'set')}`, '    }', '    workgroupBarrier();', '  }');
  });
  p1.push('}');
  // Pass 2: one invocation per grid point.
  const wgs = Math.ceil(total / ELEMENTWISE_WG);
  const w2 = fold(wgs, c.limits, c.name);
  const p2: string[] = [...entry([ELEMENTWISE_WG, 1], wgs, w2[0]), `  let t_ = wg * ${ELEMENTWISE_WG}u + lix;`, `  if (t_ >= ${total}u) { return; }`, '  let t = i32(t_);'];
  decompose(gv, k.grid, 't', p2, '  ');
  let j = 0;
  for (const s of k.body) {
    if (s.k !== 'reduce') { c.g.stmts([s], '  ', p2); continue; }
    const r = reduction(s);
    const v = c.g.v(s.acc);
    p2.push(`  var cv_${v}: f32 = ${c.g.load(scr, slot(j, '0i', 't'))};`);
    p2.push(`  for (var c_: i32 = 1i; c_ < ${S}i; c_++) { cv_${v} = ${r.combine(`cv_${v}`, c.g.load(scr, slot(j, 'c_', 't')))}; }`);
    p2.push(`  let ${v}: f32 = cv_${v};`);
    j++;
  }
  p2.push('}');
  return [{ body: p1, workgroups: w1 }, { body: p2, workgroups: w2 }];
}

/**
 * A reduction strided over the T invocations of a workgroup (over `range`, a chunk of its extent, in a
 * split kernel's first pass), combined by a tree in workgroup memory; every invocation gets the result.
 */
function genReduce(c: Ctx, s: ReduceStmt, T: number, out: string[], range?: { start: string; end: string }): void {
  const r = reduction(s);
  const sh = r.shared;
  const acc = `acc_${c.g.v(s.acc)}`, arg = `arg_${c.g.v(s.acc)}`;
  out.push(`  var ${acc}: ${r.vt} = ${r.ident};`);
  if (s.op === 'argmax') out.push(`  var ${arg}: i32 = -1i;`);
  out.push(`  for (var ${c.g.lv(s.var)}: i32 = ${range ? `${range.start} + ` : ''}tid; ${c.g.lv(s.var)} < ${range?.end ?? `${s.extent}i`}; ${c.g.lv(s.var)} += ${T}i) {`);
  c.g.stmts(s.body, '    ', out);
  accumulate(c, s, acc, arg, out, '    ');
  out.push('  }');
  if (s.op === 'argmax') {
    out.push(`  ${sh}[tid] = ${acc}; red_a[tid] = ${arg};`, '  workgroupBarrier();');
    out.push(`  for (var w_: i32 = ${T / 2}i; w_ > 0i; w_ = w_ >> 1u) {`);
    out.push('    if (tid < w_) {');
    out.push(`      let a_ = ${sh}[tid]; let b_ = ${sh}[tid + w_]; let ia_ = red_a[tid]; let ib_ = red_a[tid + w_];`);
    out.push(`      let take_ = ${argmaxTake(r.isF)};`);
    out.push(`      if (take_) { ${sh}[tid] = b_; red_a[tid] = ib_; }`);
    out.push('    }', '    workgroupBarrier();', '  }');
    out.push(`  let ${c.g.v(s.acc)}: i32 = max(red_a[0], 0i);`, '  workgroupBarrier();');
  } else {
    out.push(`  ${sh}[tid] = ${acc};`, '  workgroupBarrier();');
    out.push(`  for (var w_: i32 = ${T / 2}i; w_ > 0i; w_ = w_ >> 1u) {`);
    out.push(`    if (tid < w_) { ${sh}[tid] = ${r.combine(`${sh}[tid]`, `${sh}[tid + w_]`)}; }`);
    out.push('    workgroupBarrier();', '  }');
    out.push(`  let ${c.g.v(s.acc)}: ${r.vt} = ${sh}[0];`, '  workgroupBarrier();');
  }
}

/** Block-per-point row kernels with at most this many points over extents this long are split (blockSplitOf). */
const BLOCK_SPLIT_MAX_POINTS = 16;
const BLOCK_SPLIT_CHUNK = 8192;
const BLOCK_SPLIT_MAX = 1024;

/**
 * The chunk count of a block-per-point row kernel run in two passes (1: not split): a few grid points
 * (a full reduction: a loss, a norm's Σx² over a whole tensor) over an extent long enough that one
 * workgroup per point leaves the GPU idle, whose body is lets, one float sum/max/min, then lets and
 * stores (so pass 2 combines one partial per chunk and runs the rest).
 */
export function blockSplitOf(k: LoopKernel): number {
  if (k.rows?.kind === 'column') return 1;
  const total = k.grid.reduce((a, b) => a * b, 1);
  const at = k.body.findIndex((s) => s.k === 'reduce');
  const r = k.body[at];
  if (total > BLOCK_SPLIT_MAX_POINTS || !r || r.k !== 'reduce' || r.op === 'argmax' || !isFloatT(r.dtype)) return 1;
  if (k.body.some((s, i) => s.k === 'loop' || (s.k === 'reduce' && i !== at) || (s.k === 'store' && i < at))) return 1;
  return Math.max(1, Math.min(BLOCK_SPLIT_MAX, Math.floor(r.extent / BLOCK_SPLIT_CHUNK)));
}

/**
 * A block-per-point row kernel in two passes (blockSplitOf): pass 1, one workgroup of T per (chunk,
 * point), reduces its chunk (⌈extent/S⌉ long) as genReduce does and writes the partial to scratch at
 * [chunk][point]; pass 2, one invocation per point, combines the S partials in chunk order
 * (deterministic) and runs the lets and stores.
 */
function genSplitBlock(c: Ctx, k: LoopKernel, S: number, T: number): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const total = k.grid.reduce((a, b) => a * b, 1);
  const gv = k.grid.map((_, i) => `g${i}`);
  const at = k.body.findIndex((s) => s.k === 'reduce');
  const s = k.body[at] as ReduceStmt;
  if (c.scratch === undefined) throw new KilnError(`wgsl codegen: ${c.name}: a split row kernel needs its scratch buffer`);
  const chunk = Math.ceil(s.extent / S);
  const w1 = fold(total * S, c.limits, c.name);
  const p1: string[] = ['//decls', `var<workgroup> red_f: array<f32, ${T}>;`, '//end', ...entry([T, 1], total * S, w1[0])];
  p1.push('  let tid = i32(lix);', `  let c_ = i32(wg) / ${total}i;`, `  let t = i32(wg) % ${total}i;`);
  decompose(gv, k.grid, 't', p1, '  ');
  for (const st of k.body.slice(0, at)) c.g.stmts([st], '  ', p1);
  genReduce(c, s, T, p1, { start: `c_ * ${chunk}i`, end: `min(${s.extent}i, (c_ + 1i) * ${chunk}i)` });
  p1.push(`  if (tid == 0i) { ${c.g.store(c.scratch, `c_ * ${total}i + t`, c.g.v(s.acc), 'set')} }`, '}');
  const wgs = Math.ceil(total / ELEMENTWISE_WG);
  const w2 = fold(wgs, c.limits, c.name);
  const p2: string[] = [...entry([ELEMENTWISE_WG, 1], wgs, w2[0]), `  let t_ = wg * ${ELEMENTWISE_WG}u + lix;`, `  if (t_ >= ${total}u) { return; }`, '  let t = i32(t_);'];
  decompose(gv, k.grid, 't', p2, '  ');
  const v = c.g.v(s.acc);
  for (const st of k.body) {
    if (st !== s) { c.g.stmts([st], '  ', p2); continue; }
    p2.push(`  var cv_${v}: f32 = ${c.g.load(c.scratch, 't')};`);
    p2.push(`  for (var c_: i32 = 1i; c_ < ${S}i; c_++) { cv_${v} = ${reduction(s).combine(`cv_${v}`, c.g.load(c.scratch, `c_ * ${total}i + t`))}; }`);
    p2.push(`  let ${v}: f32 = cv_${v};`);
  }
  p2.push('}');
  return [{ body: p1, workgroups: w1 }, { body: p2, workgroups: w2 }];
}

/**
 * `fn epi2_(batch…, x_i, x_j, v_acc0, v_acc1)`: a matmul epilogue for the two outputs (i, j) and
 * (i, j + 1), j even, that writes each 16-bit store's 32-bit word whole with one store (no atomic
 * read-modify-write; the epilogue per element needs two atomics per 16-bit store, as neighbouring
 * invocations may own the word's other half). Valid, and rendered, only where the epilogue is lets and
 * stores, n is even, has at least one 16-bit 'set' store, and every such store's index is j + (even multiples of the
 * other variables) + an even constant, at an even element offset in its binding (then the word is the
 * pair's own: no other invocation writes it), and no 16-bit stored buffer is also read; else undefined.
 */
function pairEpilogue(g: Gen, k: MatmulKernel, bparams: readonly string[]): string[] | undefined {
  const halves = pairHalves(g, k.epilogue, 'j', k.n);
  if (!halves) return undefined;
  const N = 2 * halves.pairs.length;
  const out = [
    `fn epih_(${[...bparams, 'x_i: i32', 'x_j: i32', 'v_acc: f32'].join(', ')}) -> array<u32, ${N}> {`, `  var r_: array<u32, ${N}>;`, ...halves.body, '  return r_;', '}',
    `fn epi2_(${[...bparams, 'x_i: i32', 'x_j: i32', 'v_acc0: f32', 'v_acc1: f32'].join(', ')}) {`,
    `  let p0 = epih_(${[...bparams.map((p) => p.split(':')[0]!), 'x_i', 'x_j', 'v_acc0'].join(', ')});`,
    `  let p1 = epih_(${[...bparams.map((p) => p.split(':')[0]!), 'x_i', 'x_j + 1i', 'v_acc1'].join(', ')});`,
  ];
  out.push(...pairWords(g, halves.pairs, '  '), '}');
  return out;
}

/**
 * The statements `stmts` of one element (i, j) with each 16-bit 'set' store's half index and bits put
 * in `r_` (not stored), where two neighbours along `v` (v even, v + 1) can write each such store's
 * 32-bit word whole: `extent` of `v` even, only lets and stores, every 16-bit 'set' store's index v +
 * (even multiples of the other variables) + an even constant at an even element offset in its binding
 * (the word is the pair's own: no other invocation writes it), and no 16-bit stored buffer read; else
 * undefined. `pairs`: the stored buffer of each (half, bits) slot pair of `r_`.
 */
function pairHalves(g: Gen, stmts: readonly Stmt[], v: string, extent: number): { body: string[]; pairs: number[] } | undefined {
  if (!pairable(g.buffers, g.windows, stmts, v, extent)) return undefined;
  const pairs: number[] = [];
  g.store16 = (buf, half, bits) => {
    const i = pairs.push(buf) - 1;
    return `r_[${2 * i}] = ${half}; r_[${2 * i + 1}] = ${bits};`;
  };
  const body: string[] = [];
  g.stmts(stmts, '  ', body);
  g.store16 = undefined;
  return { body, pairs };
}

/** The buffers whose 16-bit stores in `stmts` pair up along `v` (pairHalves' conditions), or undefined where they do not. */
function pairable(buffers: readonly BufferDecl[], windows: ReadonlyMap<number, Window>, stmts: readonly Stmt[], v: string, extent: number): Set<number> | undefined {
  if (extent % 2) return undefined;
  const stored = new Set<number>();
  for (const s of stmts) {
    if (s.k === 'let') continue;
    if (s.k !== 'store') return undefined;
    if (!is16(buffers[s.buf]!.dtype)) continue;
    const a = s.mode === 'set' ? affine(s.index) : undefined;
    const base = windows.get(s.buf)?.base;
    if (!a || base === undefined || a.coef.get(v) !== 1 || [...a.coef].some(([n, c]) => n !== v && c % 2 !== 0) || (a.c + base) % 2 !== 0) return undefined;
    stored.add(s.buf);
  }
  if (stored.size === 0) return undefined;
  let readsStored = false;
  walkStmts(stmts, (e) => { if (e.k === 'load' && stored.has(e.buf)) readsStored = true; });
  return readsStored ? undefined : stored;
}

/**
 * The buffers kernel `k` will store whole words of (pairs of 16-bit values, see pairHalves): its
 * elementwise body or its subgroup-matrix GEMM's epilogue, where they pair up. Their windows need not
 * be atomic (no half-word read-modify-writes): plain loads and stores in the whole window.
 */
function pairedStores(k: Kernel, buffers: readonly BufferDecl[], windows: ReadonlyMap<number, Window>, opts: WgslOptions): Set<number> | undefined {
  if (k.kind === 'loop' && !isRowKernel(k) && k.grid.length > 0 && opts.elementwisePairs !== false)
    return pairable(buffers, windows, k.body, `g${k.grid.length - 1}`, k.grid[k.grid.length - 1]!);
  if (k.kind === 'matmul' && opts.subgroupMatrix && isSubgroupMatrixKernel(k) && (opts.sgm?.store ?? 'pairs') === 'pairs' && opts.sgm?.pairBinding !== 'atomic') return pairable(buffers, windows, k.epilogue, 'j', k.n);
  // Block-per-row kernels (workgroup reductions, not column-mapped or split): every 16-bit store in a paired row loop.
  if (k.kind === 'loop' && isRowKernel(k) && opts.reductions !== 'serial' && opts.elementwisePairs !== false && (k.rows?.kind !== 'column' || opts.rowMapping === 'block') && (opts.rowMapping === 'block' || blockSplitOf(k) === 1)) {
    const all = new Set<number>();
    for (const s of k.body) {
      const p = s.k === 'loop' ? pairable(buffers, windows, s.body, s.var, s.extent) : undefined;
      if (p) for (const b of p) all.add(b);
      else {
        let st16 = false;
        walkStmts([s], () => {}, (t) => { if (t.k === 'store' && is16(buffers[t.buf]!.dtype)) st16 = true; });
        if (st16) return undefined;
      }
    }
    // A buffer stored in pairs by one loop and read by another statement keeps its atomics.
    let read = false;
    walkStmts(k.body, (e) => { if (e.k === 'load' && all.has(e.buf)) read = true; });
    return all.size && !read ? all : undefined;
  }
  return undefined;
}

/**
 * A row loop of a block-per-row kernel whose 16-bit stores pair up along its variable (pairable): the
 * invocations stride over pairs of neighbours; the body runs for both (each in its own block, its
 * 16-bit stores' halves and bits kept in p0 / p1), then each word is written whole.
 */
function pairedRowLoop(c: Ctx, s: Stmt & { k: 'loop' }, T: number, out: string[]): void {
  const pairs: number[] = [];
  const copy = (q: 0 | 1) => {
    const body: string[] = [];
    let n = 0;
    c.g.store16 = (buf, half, bits) => {
      if (q === 0) pairs.push(buf);
      const i = n++;
      return `p${q}[${2 * i}] = ${half}; p${q}[${2 * i + 1}] = ${bits};`;
    };
    c.g.stmts(s.body, '      ', body);
    c.g.store16 = undefined;
    return body;
  };
  const v = c.g.lv(s.var);
  const b0 = copy(0), b1 = copy(1);
  const N = 2 * pairs.length;
  out.push(`  for (var pq_: i32 = tid; pq_ < ${s.extent / 2}i; pq_ += ${T}i) {`, `    var p0: array<u32, ${N}>; var p1: array<u32, ${N}>;`);
  out.push(`    {`, `      let ${v}: i32 = 2i * pq_;`, ...b0, '    }', '    {', `      let ${v}: i32 = 2i * pq_ + 1i;`, ...b1, '    }');
  out.push(...pairWords(c.g, pairs, '    '), '  }');
}

/** The word stores of a pair: element v's halves `p0`, element v + 1's `p1` (pairHalves). */
function pairWords(g: Gen, pairs: readonly number[], ind: string): string[] {
  return pairs.map((buf, i) => {
    const b = g.binding(buf), at = `${b.name}[p0[${2 * i}] >> 1u]`, w = `p0[${2 * i + 1}] | (p1[${2 * i + 1}] << 16u)`;
    return b.atomic ? `${ind}atomicStore(&${at}, ${w});` : `${ind}${at} = ${w};`;
  });
}

/**
 * An elementwise kernel whose 16-bit stores pair up along the last grid axis (pairHalves): one
 * invocation per two neighbouring points, each 32-bit word written whole by one store (not two atomic
 * read-modify-writes per value); the element function `elh_` runs once per point of the pair.
 */
function genPairedElementwise(c: Ctx, k: LoopKernel): Array<{ body: string[]; workgroups: [number, number, number] }> | undefined {
  const last = k.grid.length - 1;
  if (last < 0 || c.opts.elementwisePairs === false) return undefined;
  const gv = k.grid.map((_, i) => `g${i}`);
  const halves = pairHalves(c.g, k.body, gv[last]!, k.grid[last]!);
  if (!halves) return undefined;
  const N = 2 * halves.pairs.length;
  const params = gv.map((q) => `${x(q)}: i32`).join(', ');
  const fn = [`fn elh_(${params}) -> array<u32, ${N}> {`, `  var r_: array<u32, ${N}>;`, ...halves.body, '  return r_;', '}'];
  const total = k.grid.reduce((a, b) => a * b, 1) / 2;
  const wgs = Math.ceil(total / ELEMENTWISE_WG);
  const w = fold(wgs, c.limits, c.name);
  const out: string[] = ['//decls', ...fn, '//end', ...entry([ELEMENTWISE_WG, 1], wgs, w[0])];
  out.push(`  let t_ = wg * ${ELEMENTWISE_WG}u + lix;`, `  if (t_ >= ${total}u) { return; }`);
  const names = [...gv.slice(0, last), 'pq_'];
  decompose(names, [...k.grid.slice(0, last), k.grid[last]! / 2], 'i32(t_)', out, '  ');
  const args = (j: string) => [...gv.slice(0, last).map((q) => x(q)), j].join(', ');
  out.push(`  let p0 = elh_(${args(`2i * ${x('pq_')}`)});`, `  let p1 = elh_(${args(`2i * ${x('pq_')} + 1i`)});`);
  out.push(...pairWords(c.g, halves.pairs, '  '), '}');
  return [{ body: out, workgroups: w }];
}

/**
 * Tiled GEMM over operand expressions: a 16×16 workgroup computes a (16·TM)×(16·TN) output tile, each
 * invocation a TM×TN block strided by 16 (coalesced); K advances by BK, both operand tiles staged in
 * workgroup memory. Operand loads and the epilogue are functions (inlined by the driver).
 */
function genMatmul(c: Ctx, k: MatmulKernel): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const batch = k.batch.reduce((a, b) => a * b, 1);
  if (batch === 0 || k.m === 0 || k.n === 0) return [];
  const picked = typeof c.opts.gemm === 'function' ? c.opts.gemm(k.m, k.n, k.k, batch) : c.opts.gemm;
  const wide = picked === 'wide' && k.accDType === 'f32';
  const chosen = picked === undefined || picked === 'simple' || picked === 'wide' ? DEFAULT_GEMM : picked;
  const { tm: TM, tn: TN, bk: BK } = chosen;
  const cast = k.accDType === 'f32' ? (q: string) => q : (q: string) => (k.accDType === 'i32' ? `k_f2i(${q})` : `${valueType(k.accDType)}(${q})`);
  const BM = 16 * TM, BN = 16 * TN;
  const bv = k.batch.map((_, i) => `b${i}`);
  const bparams = bv.map((b) => `${x(b)}: i32`);
  const bargs = bv.map((b) => x(b));
  const g = c.g;
  const d = c.decls;
  const intAcc = k.accDType === 'i32' || k.accDType === 'u32';
  const ot = intAcc ? valueType(k.accDType) : 'f32';
  d.push(`fn lda_(${[...bparams, 'x_i: i32', 'x_p: i32'].join(', ')}) -> ${ot} { return ${ot}(${g.expr(k.a)}); }`);
  d.push(`fn ldb_(${[...bparams, 'x_p: i32', 'x_j: i32'].join(', ')}) -> ${ot} { return ${ot}(${g.expr(k.b)}); }`);
  const sgmPair = c.opts.subgroupMatrix && isSubgroupMatrixKernel(k) && (c.opts.sgm?.store ?? 'pairs') === 'pairs' ? pairEpilogue(g, k, bparams) : undefined;
  // With the pair epilogue, the stored windows may be plain (pairedStores): no per-element epilogue (its half-word stores need atomics).
  if (!sgmPair) {
    const epi: string[] = [];
    g.stmts(k.epilogue, '  ', epi);
    d.push(`fn epi_(${[...bparams, 'x_i: i32', 'x_j: i32', `v_acc: ${valueType(k.accDType)}`].join(', ')}) {`, ...epi, '}');
  }
  if (c.opts.subgroupMatrix && isSubgroupMatrixKernel(k)) {
    const pair = sgmPair;
    if (pair) d.push(...pair);
    return renderSubgroupMatrixMatmul(k, {
      decls: d, bargs, bv, vec4View: c.vec4View, batchLets: (out) => decompose(bv, k.batch, 'i32(bt)', out, '  '), grid: (total) => fold(total, c.limits, c.name),
      ...(pair ? { pair: 'epi2_' } : {}), ...(c.opts.sgm ? { variant: c.opts.sgm } : {}),
    });
  }
  if (c.opts.gemm === 'simple' || intAcc) {
    const total = batch * k.m * k.n;
    const wgs = Math.ceil(total / 64);
    const w = fold(wgs, c.limits, c.name);
    const out: string[] = [...entry([64, 1], wgs, w[0])];
    out.push(`  let t_ = i32(wg) * 64i + i32(lix);`, `  if (t_ >= ${total}i) { return; }`);
    decompose([...bv, 'i', 'j'], [...k.batch, k.m, k.n], 't_', out, '  ');
    out.push(`  var acc_: ${ot} = ${ot}(0);`, `  for (var p_: i32 = 0i; p_ < ${k.k}i; p_++) { acc_ = acc_ + lda_(${[...bargs, 'x_i', 'p_'].join(', ')}) * ldb_(${[...bargs, 'p_', 'x_j'].join(', ')}); }`);
    out.push(`  epi_(${[...bargs, 'x_i', 'x_j', intAcc ? 'acc_' : cast('acc_')].join(', ')});`, '}');
    return [{ body: out, workgroups: w }];
  }
  const tile = chosen;
  if (wide) return genMatmulWide(c, k, bargs, bv, batch);
  if (tile.vec) return genMatmulVec(c, k, tile, bparams, bargs, bv, batch, cast);
  d.push(`var<workgroup> As: array<f32, ${BK * BM}>;`, `var<workgroup> Bs: array<f32, ${BK * BN}>;`);
  const gx = Math.ceil(k.n / BN), gy = Math.ceil(k.m / BM);
  const total = gx * gy * batch;
  const w = fold(total, c.limits, c.name);
  const out: string[] = [];
  out.push(...entry([16, 16], total, w[0]));
  out.push('  let tx = i32(lid.x); let ty = i32(lid.y); let tid = ty * 16i + tx;');
  out.push(`  let bt = i32(wg) / ${gx * gy}i; let tile = i32(wg) % ${gx * gy}i;`);
  out.push(`  let i0 = (tile / ${gx}i) * ${BM}i; let j0 = (tile % ${gx}i) * ${BN}i;`);
  decompose(bv, k.batch, 'bt', out, '  ');
  for (let r = 0; r < TM; r++) for (let cc = 0; cc < TN; cc++) out.push(`  var c${r}_${cc}: f32 = 0.0f;`);
  out.push(`  for (var p0: i32 = 0i; p0 < ${k.k}i; p0 += ${BK}i) {`);
  // Stage A (BM×BK) and B (BK×BN): 256 invocations, fastest along p for A and along j for B.
  out.push(`    for (var e_: i32 = tid; e_ < ${BM * BK}i; e_ += 256i) {`);
  out.push(`      let rr = e_ / ${BK}i; let pp = e_ % ${BK}i; let ii = i0 + rr; let pg = p0 + pp;`);
  out.push(`      var av: f32 = 0.0f; if (ii < ${k.m}i && pg < ${k.k}i) { av = lda_(${[...bargs, 'ii', 'pg'].join(', ')}); }`);
  out.push(`      As[pp * ${BM}i + rr] = av;`, '    }');
  out.push(`    for (var e_: i32 = tid; e_ < ${BN * BK}i; e_ += 256i) {`);
  out.push(`      let pp = e_ / ${BN}i; let cc = e_ % ${BN}i; let jj = j0 + cc; let pg = p0 + pp;`);
  out.push(`      var bv_: f32 = 0.0f; if (jj < ${k.n}i && pg < ${k.k}i) { bv_ = ldb_(${[...bargs, 'pg', 'jj'].join(', ')}); }`);
  out.push(`      Bs[pp * ${BN}i + cc] = bv_;`, '    }');
  out.push('    workgroupBarrier();');
  out.push(`    for (var kk: i32 = 0i; kk < ${BK}i; kk++) {`);
  for (let r = 0; r < TM; r++) out.push(`      let a${r} = As[kk * ${BM}i + ty + ${16 * r}i];`);
  for (let cc = 0; cc < TN; cc++) out.push(`      let b${cc} = Bs[kk * ${BN}i + tx + ${16 * cc}i];`);
  for (let r = 0; r < TM; r++) for (let cc = 0; cc < TN; cc++) out.push(`      c${r}_${cc} = c${r}_${cc} + a${r} * b${cc};`);
  out.push('    }', '    workgroupBarrier();', '  }');
  for (let r = 0; r < TM; r++)
    for (let cc = 0; cc < TN; cc++)
      out.push(`  { let ii = i0 + ty + ${16 * r}i; let jj = j0 + tx + ${16 * cc}i; if (ii < ${k.m}i && jj < ${k.n}i) { epi_(${[...bargs, 'ii', 'jj', cast(`c${r}_${cc}`)].join(', ')}); } }`);
  out.push('}');
  return [{ body: out, workgroups: w }];
}

/** The vec4 variant of the tiled GEMM (see GemmTile.vec); operand functions and epilogue already declared. */
function genMatmulVec(
  c: Ctx, k: MatmulKernel, tile: GemmTile, _bparams: string[], bargs: string[], bv: string[], batch: number, cast: (q: string) => string,
): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const { tm: TM, tn: TN, bk: BK } = tile;
  if (TM % 4 || TN % 4) throw new KilnError(`wgsl codegen: vec4 GEMM tiles need tm, tn multiples of 4 (got ${TM}x${TN})`);
  const BM = 16 * TM, BN = 16 * TN, RB = TM / 4, CB = TN / 4;
  c.decls.push(`var<workgroup> As: array<vec4<f32>, ${(BK * BM) / 4}>;`, `var<workgroup> Bs: array<vec4<f32>, ${(BK * BN) / 4}>;`);
  const gx = Math.ceil(k.n / BN), gy = Math.ceil(k.m / BM);
  const total = gx * gy * batch;
  const w = fold(total, c.limits, c.name);
  const out: string[] = [...entry([16, 16], total, w[0])];
  out.push('  let tx = i32(lid.x); let ty = i32(lid.y); let tid = ty * 16i + tx;');
  out.push(`  let bt = i32(wg) / ${gx * gy}i; let tile = i32(wg) % ${gx * gy}i;`);
  out.push(`  let i0 = (tile / ${gx}i) * ${BM}i; let j0 = (tile % ${gx}i) * ${BN}i;`);
  decompose(bv, k.batch, 'bt', out, '  ');
  for (let rb = 0; rb < RB; rb++) for (let r = 0; r < 4; r++) for (let cb = 0; cb < CB; cb++) out.push(`  var c${rb}_${r}_${cb}: vec4<f32> = vec4<f32>(0.0f);`);
  out.push(`  for (var p0: i32 = 0i; p0 < ${k.k}i; p0 += ${BK}i) {`);
  // A tile element (rr, pp) → As[pp][rr / 4][rr % 4]; B tile element (pp, cc) → Bs[pp][cc / 4][cc % 4].
  out.push(`    for (var e_: i32 = tid; e_ < ${BM * BK}i; e_ += 256i) {`);
  out.push(`      let rr = e_ / ${BK}i; let pp = e_ % ${BK}i; let ii = i0 + rr; let pg = p0 + pp;`);
  out.push(`      var av: f32 = 0.0f; if (ii < ${k.m}i && pg < ${k.k}i) { av = lda_(${[...bargs, 'ii', 'pg'].join(', ')}); }`);
  out.push(`      As[pp * ${BM / 4}i + (rr >> 2u)][rr & 3i] = av;`, '    }');
  out.push(`    for (var e_: i32 = tid; e_ < ${BN * BK}i; e_ += 256i) {`);
  out.push(`      let pp = e_ / ${BN}i; let cc = e_ % ${BN}i; let jj = j0 + cc; let pg = p0 + pp;`);
  out.push(`      var bv_: f32 = 0.0f; if (jj < ${k.n}i && pg < ${k.k}i) { bv_ = ldb_(${[...bargs, 'pg', 'jj'].join(', ')}); }`);
  out.push(`      Bs[pp * ${BN / 4}i + (cc >> 2u)][cc & 3i] = bv_;`, '    }');
  out.push('    workgroupBarrier();');
  out.push(`    for (var kk: i32 = 0i; kk < ${BK}i; kk++) {`);
  for (let rb = 0; rb < RB; rb++) out.push(`      let a${rb} = As[kk * ${BM / 4}i + ${rb * 16}i + ty];`);
  for (let cb = 0; cb < CB; cb++) out.push(`      let b${cb} = Bs[kk * ${BN / 4}i + ${cb * 16}i + tx];`);
  for (let rb = 0; rb < RB; rb++) for (let r = 0; r < 4; r++) for (let cb = 0; cb < CB; cb++) out.push(`      c${rb}_${r}_${cb} = fma(vec4<f32>(a${rb}[${r}]), b${cb}, c${rb}_${r}_${cb});`);
  out.push('    }', '    workgroupBarrier();', '  }');
  for (let rb = 0; rb < RB; rb++)
    for (let r = 0; r < 4; r++)
      for (let cb = 0; cb < CB; cb++)
        for (let q = 0; q < 4; q++)
          out.push(`  { let ii = i0 + ${rb * 64 + r}i + ty * 4i; let jj = j0 + ${cb * 64 + q}i + tx * 4i; if (ii < ${k.m}i && jj < ${k.n}i) { epi_(${[...bargs, 'ii', 'jj', cast(`c${rb}_${r}_${cb}[${q}]`)].join(', ')}); } }`);
  out.push('}');
  return [{ body: out, workgroups: w }];
}

/**
 * Output tiles below which the wide GEMM would leave the device idle (one wave of 128×128 tiles on an
 * H200's 132 multiprocessors, the tiling stage's rule in compiler/schedule/tiling.ts); smaller
 * problems take DEFAULT_GEMM's 64×64 tiles.
 */
export const WIDE_MIN_TILES = 132;

/** How a wide-GEMM operand is read: as vec4s of a plain strided f32 load, contiguous along k or along m|n, or element by element through its expression. */
type WideOperand = { kind: 'vec4'; major: 'k' | 'mn'; view: { name: string; base: string }; index: (b: readonly string[], mn: string, p: string) => string } | { kind: 'scalar' };

function wideOperand(c: Ctx, k: MatmulKernel, which: 'a' | 'b'): WideOperand {
  const e = which === 'a' ? k.a : k.b;
  const mnVar = which === 'a' ? 'i' : 'j';
  const mnExtent = which === 'a' ? k.m : k.n;
  if (e.k !== 'load' || e.dtype !== 'f32' || !c.vec4View) return { kind: 'scalar' };
  const aff = affine(e.index);
  const bvars = k.batch.map((_, i) => `b${i}`);
  if (!aff || ![...aff.coef.keys()].every((n) => n === mnVar || n === 'p' || bvars.includes(n))) return { kind: 'scalar' };
  const coef = (n: string) => aff.coef.get(n) ?? 0;
  const major = coef('p') === 1 && k.k % 4 === 0 ? 'k' : coef(mnVar) === 1 && mnExtent % 4 === 0 ? 'mn' : undefined;
  const unit = major === 'k' ? 'p' : mnVar;
  if (!major || aff.c % 4 !== 0 || ![...aff.coef].every(([n, v]) => n === unit || v % 4 === 0)) return { kind: 'scalar' };
  const view = c.vec4View(e.buf);
  if (!view) return { kind: 'scalar' };
  // The element index c + Σ coef·var, in vec4s (every term but the unit-stride one a multiple of 4, which is 4-aligned where it is read).
  const index = (b: readonly string[], mn: string, p: string) => {
    const terms = [`${aff.c}i`, ...[...aff.coef].map(([n, v]) => `${v}i * ${n === 'p' ? p : n === mnVar ? mn : b[bvars.indexOf(n)]!}`)];
    return `((${terms.join(' + ')}) >> 2u)`;
  };
  return { kind: 'vec4', major, view, index };
}

/**
 * The wide f32 GEMM (f32 accumulation): a 16×16 workgroup computes a 128×128 output tile, each
 * invocation 8×8 outputs as 2×2 blocks of 4×4 (rows ty·4.., 64 + ty·4..; columns tx·4.., 64 + tx·4..),
 * K in steps of 16 with both operand tiles in workgroup memory as vec4s along m and n (A transposed),
 * and the next K step's operand values loaded into registers while this one is computed. Plain
 * strided f32 operands are read as vec4 through a second binding of their buffer (contiguous along k:
 * scattered transposed into the tile; along m|n: stored as is); other operands element by element
 * through their expressions. bench/wgslGemmProbe.ts measured this structure at 38.7 TFLOP/s at 4096³
 * on an H200 (76% of PyTorch fp32, 2026-12-02).
 */
function genMatmulWide(c: Ctx, k: MatmulKernel, bargs: string[], bv: string[], batch: number): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const BK = 16;
  const A = wideOperand(c, k, 'a'), B = wideOperand(c, k, 'b');
  c.decls.push(`var<workgroup> As: array<vec4<f32>, ${BK * 32}>;`, `var<workgroup> Bs: array<vec4<f32>, ${BK * 32}>;`);
  const gx = Math.ceil(k.n / 128), gy = Math.ceil(k.m / 128);
  const total = gx * gy * batch;
  const w = fold(total, c.limits, c.name);
  const out: string[] = [...entry([16, 16], total, w[0])];
  out.push('  let tx = i32(lid.x); let ty = i32(lid.y); let tid = ty * 16i + tx;');
  out.push(`  let bt = i32(wg) / ${gx * gy}i; let tile = i32(wg) % ${gx * gy}i;`);
  out.push(`  let i0 = (tile / ${gx}i) * 128i; let j0 = (tile % ${gx}i) * 128i;`);
  decompose(bv, k.batch, 'bt', out, '  ');
  const bx = bv.map((b) => x(b));
  // Per operand: the register prefetch (declare + fill for k0) and the store of the registers into the tile.
  const fetch: string[] = [], store: string[] = [], decl: string[] = [];
  const plan = (op: WideOperand, which: 'a' | 'b') => {
    const T = which === 'a' ? 'As' : 'Bs', ext = which === 'a' ? k.m : k.n, o0 = which === 'a' ? 'i0' : 'j0', pre = `r${which}`;
    if (op.kind === 'vec4') {
      for (let q = 0; q < 2; q++) {
        decl.push(`  var ${pre}${q}: vec4<f32>;`);
        const e = `(tid + ${256 * q}i)`;
        if (op.major === 'k') {
          // 128 rows × 4 vec4s along k: row e / 4, k4 e % 4.
          const mn = `(${o0} + ${e} / 4i)`, pg = `(k0 + (${e} % 4i) * 4i)`;
          fetch.push(`    ${pre}${q} = vec4<f32>(0.0f); if (${mn} < ${ext}i && ${pg} < ${k.k}i) { ${pre}${q} = ${op.view.name}[${op.view.base} + ${op.index(bx, mn, pg)}]; }`);
          for (let t = 0; t < 4; t++) store.push(`    ${T}[((${e} % 4i) * 4i + ${t}i) * 32i + (${e} / 4i) / 4i][(${e} / 4i) % 4i] = ${pre}${q}[${t}];`);
        } else {
          // 16 k rows × 32 vec4s along m|n.
          const mn = `(${o0} + (${e} % 32i) * 4i)`, pg = `(k0 + ${e} / 32i)`;
          fetch.push(`    ${pre}${q} = vec4<f32>(0.0f); if (${mn} < ${ext}i && ${pg} < ${k.k}i) { ${pre}${q} = ${op.view.name}[${op.view.base} + ${op.index(bx, mn, pg)}]; }`);
          store.push(`    ${T}[${e}] = ${pre}${q};`);
        }
      }
    } else {
      // 2048 elements, 8 per invocation: A fastest along k (rows of 16), B fastest along n.
      for (let q = 0; q < 8; q++) {
        decl.push(`  var ${pre}${q}: f32;`);
        const f = `(tid + ${256 * q}i)`;
        const [mnl, pl] = which === 'a' ? [`(${f} / 16i)`, `(${f} % 16i)`] : [`(${f} % 128i)`, `(${f} / 128i)`];
        const mn = `(${o0} + ${mnl})`, pg = `(k0 + ${pl})`;
        const ld = which === 'a' ? `lda_(${[...bargs, mn, pg].join(', ')})` : `ldb_(${[...bargs, pg, mn].join(', ')})`;
        fetch.push(`    ${pre}${q} = 0.0f; if (${mn} < ${ext}i && ${pg} < ${k.k}i) { ${pre}${q} = ${ld}; }`);
        store.push(`    ${T}[${pl} * 32i + ${mnl} / 4i][${mnl} % 4i] = ${pre}${q};`);
      }
    }
  };
  plan(A, 'a');
  plan(B, 'b');
  for (let r = 0; r < 8; r++) for (let cc = 0; cc < 2; cc++) out.push(`  var c${r}_${cc}: vec4<f32> = vec4<f32>(0.0f);`);
  out.push(...decl);
  out.push('  {', '    let k0 = 0i;', ...fetch, '  }');
  out.push(`  for (var k0: i32 = 0i; k0 < ${k.k}i; k0 += ${BK}i) {`);
  out.push(...store, '    workgroupBarrier();');
  out.push(`    if (k0 + ${BK}i < ${k.k}i) {`, `      let kn = k0 + ${BK}i;`, ...fetch.map((l) => l.replaceAll('k0', 'kn')), '    }');
  out.push(`    for (var kk: i32 = 0i; kk < ${BK}i; kk++) {`);
  out.push('      let a0 = As[kk * 32i + ty]; let a1 = As[kk * 32i + 16i + ty]; let b0 = Bs[kk * 32i + tx]; let b1 = Bs[kk * 32i + 16i + tx];');
  for (let r = 0; r < 8; r++) for (let cc = 0; cc < 2; cc++) out.push(`      c${r}_${cc} = fma(vec4<f32>(a${r >> 2}[${r & 3}]), b${cc}, c${r}_${cc});`);
  out.push('    }', '    workgroupBarrier();', '  }');
  for (let r = 0; r < 8; r++)
    for (let cc = 0; cc < 2; cc++)
      for (let q = 0; q < 4; q++)
        out.push(`  { let ii = i0 + ${(r < 4 ? 0 : 64) + (r & 3)}i + ty * 4i; let jj = j0 + ${cc * 64 + q}i + tx * 4i; if (ii < ${k.m}i && jj < ${k.n}i) { epi_(${[...bargs, 'ii', 'jj', `c${r}_${cc}[${q}]`].join(', ')}); } }`);
  out.push('}');
  return [{ body: out, workgroups: w }];
}

const ATT_WG = 64;

function genAttention(c: Ctx, k: AttentionKernel | AttentionGradKernel, scratch: readonly number[]): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const batch = k.batch.reduce((a, b) => a * b, 1);
  const rows = batch * k.sq, cols = batch * k.sk;
  if (rows === 0) return [];
  const g = c.g;
  const bv = k.batch.map((_, i) => `b${i}`);
  const bp = bv.map((b) => `${x(b)}: i32`);
  const ba = bv.map((b) => x(b));
  const fn = (name: string, vars: string[], e: Expr) => `fn ${name}(${[...bp, ...vars.map((q) => `x_${q}: i32`)].join(', ')}) -> f32 { return f32(${g.expr(e)}); }`;
  const common = [fn('ldq_', ['s', 'd'], k.q), fn('ldk_', ['t', 'd'], k.key), fn('ldv_', ['t', 'e'], k.v)];
  const args = (...rest: string[]) => [...ba, ...rest].join(', ');
  const sto = (name: string, vars: string[], t: { buf: number; index: Expr }) =>
    `fn ${name}(${[...bp, ...vars.map((q) => `x_${q}: i32`), 'val: f32'].join(', ')}) { ${g.store(t.buf, g.expr(t.index), 'val', 'set')} }`;
  const head = (count: number, idx: 's' | 't', extent: number, out: string[]) => {
    const wgs = Math.ceil(count / ATT_WG);
    const w = fold(wgs, c.limits, c.name);
    out.push(...entry([ATT_WG, 1], wgs, w[0]));
    out.push(`  let row = i32(wg) * ${ATT_WG}i + i32(lix);`, `  if (row >= ${count}i) { return; }`);
    decompose([...bv, idx], [...k.batch, extent], 'row', out, '  ');
    return w;
  };
  const scale = floatLit(k.scale, false);
  const score = (sv: string, tv: string) => `  { var sc_: f32 = 0.0f; for (var d_: i32 = 0i; d_ < ${k.dk}i; d_++) { sc_ = sc_ + q_[d_] * ldk_(${args(tv, 'd_')}); } score = sc_ * ${scale}; }`;
  const loadQ = (sv: string) => `  var q_: array<f32, ${k.dk}>; for (var d_: i32 = 0i; d_ < ${k.dk}i; d_++) { q_[d_] = ldq_(${args(sv, 'd_')}); }`;
  if (c.opts.attention === 'tiled') {
    const tiled = tiledAttention(k, attentionEmitter(c, k, bv, fn, sto, scratch));
    if (tiled) return tiled;
  }
  if (k.kind === 'attention') {
    c.decls.push(...common, sto('sto_', ['s', 'e'], k.out));
    const out: string[] = [];
    const w = head(rows, 's', k.sq, out);
    out.push(loadQ('x_s'));
    out.push('  var m = -k_inf(); var l = 0.0f;', `  var acc: array<f32, ${k.dv}>;`);
    out.push(`  for (var t_: i32 = 0i; t_ < ${k.causal ? `min(x_s + 1i, ${k.sk}i)` : `${k.sk}i`}; t_++) {`);
    out.push('    var score: f32;', score('x_s', 't_'));
    out.push('    let mn = k_max(m, score); let corr = k_exp(m - mn); let pw = k_exp(score - mn);');
    out.push('    l = l * corr + pw;');
    out.push(`    for (var e_: i32 = 0i; e_ < ${k.dv}i; e_++) { acc[e_] = acc[e_] * corr + pw * ldv_(${args('t_', 'e_')}); }`);
    out.push('    m = mn;', '  }');
    out.push(`  for (var e_: i32 = 0i; e_ < ${k.dv}i; e_++) { sto_(${args('x_s', 'e_', 'acc[e_] / l')}); }`, '}');
    return [{ body: out, workgroups: w }];
  }
  const [lse, dsum] = scratch as [number, number];
  const res: Array<{ body: string[]; workgroups: [number, number, number] }> = [];
  const rowOf = (sv: string) => (bv.length ? `(${linearOf(ba, k.batch)} * ${k.sq}i + ${sv})` : sv);
  // Each pass is its own module: declarations are per dispatch (set by the caller via c.decls), so we
  // return bodies with their own extra declarations through a marker.
  const stats: string[] = ['//decls', ...common, fn('ldo_', ['s', 'e'], k.o), fn('lddo_', ['s', 'e'], k.dout), '//end'];
  {
    const w = head(rows, 's', k.sq, stats);
    stats.push(loadQ('x_s'));
    stats.push('  var m = -k_inf(); var l = 0.0f;');
    stats.push(`  for (var t_: i32 = 0i; t_ < ${k.causal ? `min(x_s + 1i, ${k.sk}i)` : `${k.sk}i`}; t_++) {`);
    stats.push('    var score: f32;', score('x_s', 't_'));
    stats.push('    let mn = k_max(m, score); l = l * k_exp(m - mn) + k_exp(score - mn); m = mn;', '  }');
    stats.push(`  var ds_: f32 = 0.0f; for (var e_: i32 = 0i; e_ < ${k.dv}i; e_++) { ds_ = ds_ + lddo_(${args('x_s', 'e_')}) * ldo_(${args('x_s', 'e_')}); }`);
    stats.push(`  ${g.store(lse, 'row', 'm + k_log(l)', 'set')}`, `  ${g.store(dsum, 'row', 'ds_', 'set')}`, '}');
    res.push({ body: stats, workgroups: w });
  }
  const pAndDs = (sv: string, tv: string) => [
    '      var score: f32;',
    score(sv, tv),
    `      let P = k_exp(score - ${g.load(lse, rowOf(sv))});`,
    `      var dP: f32 = 0.0f; for (var e_: i32 = 0i; e_ < ${k.dv}i; e_++) { dP = dP + lddo_(${args(sv, 'e_')}) * ldv_(${args(tv, 'e_')}); }`,
    `      let dS = P * (dP - ${g.load(dsum, rowOf(sv))}) * ${scale};`,
  ];
  if (k.dQ) {
    const out: string[] = ['//decls', ...common, fn('lddo_', ['s', 'e'], k.dout), sto('stq_', ['s', 'd'], k.dQ), '//end'];
    const w = head(rows, 's', k.sq, out);
    out.push(loadQ('x_s'));
    out.push(`  var dq: array<f32, ${k.dk}>;`);
    out.push(`  for (var t_: i32 = 0i; t_ < ${k.causal ? `min(x_s + 1i, ${k.sk}i)` : `${k.sk}i`}; t_++) {`, '    {', ...pAndDs('x_s', 't_'));
    out.push(`      for (var d_: i32 = 0i; d_ < ${k.dk}i; d_++) { dq[d_] = dq[d_] + dS * ldk_(${args('t_', 'd_')}); }`, '    }', '  }');
    out.push(`  for (var d_: i32 = 0i; d_ < ${k.dk}i; d_++) { stq_(${args('x_s', 'd_', 'dq[d_]')}); }`, '}');
    res.push({ body: out, workgroups: w });
  }
  if (k.dK || k.dV) {
    const out: string[] = ['//decls', ...common, fn('lddo_', ['s', 'e'], k.dout)];
    if (k.dK) out.push(sto('stk_', ['t', 'd'], k.dK));
    if (k.dV) out.push(sto('stv_', ['t', 'e'], k.dV));
    out.push('//end');
    const w = head(cols, 't', k.sk, out);
    out.push(`  var dk: array<f32, ${k.dk}>; var dv: array<f32, ${k.dv}>;`);
    out.push(`  for (var s_: i32 = ${k.causal ? 'x_t' : '0i'}; s_ < ${k.sq}i; s_++) {`);
    out.push(`    ${loadQ('s_').trim()}`, '    {', ...pAndDs('s_', 'x_t'));
    out.push(`      for (var e_: i32 = 0i; e_ < ${k.dv}i; e_++) { dv[e_] = dv[e_] + P * lddo_(${args('s_', 'e_')}); }`);
    out.push(`      for (var d_: i32 = 0i; d_ < ${k.dk}i; d_++) { dk[d_] = dk[d_] + dS * q_[d_]; }`, '    }', '  }');
    if (k.dK) out.push(`  for (var d_: i32 = 0i; d_ < ${k.dk}i; d_++) { stk_(${args('x_t', 'd_', 'dk[d_]')}); }`);
    if (k.dV) out.push(`  for (var e_: i32 = 0i; e_ < ${k.dv}i; e_++) { stv_(${args('x_t', 'e_', 'dv[e_]')}); }`);
    out.push('}');
    res.push({ body: out, workgroups: w });
  }
  return res;
}

/** What backends/wgsl/attention.ts needs of this module: the kernel's loaders and stores, entry points, statistics. */
function attentionEmitter(
  c: Ctx, k: AttentionKernel | AttentionGradKernel, bv: readonly string[], fn: (name: string, vars: string[], e: Expr) => string,
  sto: (name: string, vars: string[], t: { buf: number; index: Expr }) => string, scratch: readonly number[],
): AttentionEmitter {
  const fns: Record<string, string> = { ldq_: fn('ldq_', ['s', 'd'], k.q), ldk_: fn('ldk_', ['t', 'd'], k.key), ldv_: fn('ldv_', ['t', 'e'], k.v) };
  if (k.kind === 'attention') fns.sto_ = sto('sto_', ['s', 'e'], k.out);
  else {
    fns.ldo_ = fn('ldo_', ['s', 'e'], k.o);
    fns.lddo_ = fn('lddo_', ['s', 'e'], k.dout);
    if (k.dQ) fns.stq_ = sto('stq_', ['s', 'd'], k.dQ);
    if (k.dK) fns.stk_ = sto('stk_', ['t', 'd'], k.dK);
    if (k.dV) fns.stv_ = sto('stv_', ['t', 'e'], k.dV);
  }
  return {
    fns,
    entry: (count, size) => {
      const w = fold(count, c.limits, c.name);
      return { lines: entry([size, 1], count, w[0]), workgroups: w };
    },
    batchVars: (linear) => {
      const out: string[] = [];
      decompose(bv, k.batch, linear, out, '  ');
      return out;
    },
    args: (...rest) => [...bv.map((b) => x(b)), ...rest].join(', '),
    statLoad: (s, row) => c.g.load(scratch[s]!, row),
    statStore: (s, row, value) => c.g.store(scratch[s]!, row, value, 'set'),
    scale: floatLit(k.scale, false),
    storageBytes: c.limits.maxComputeWorkgroupStorageSize ?? 16384,
    ...(c.opts.attentionTiles ? { tiles: c.opts.attentionTiles } : {}),
    ...(c.opts.attentionSubgroups ? { subgroups: c.opts.attentionSubgroups } : {}),
  };
}

function linearOf(vars: readonly string[], extents: readonly number[]): string {
  let e = '0i';
  vars.forEach((q, i) => (e = `(${e} * ${extents[i]}i + ${q})`));
  return e;
}

export interface WgslProgramLayout {
  readonly place: (id: number) => Placement;
  readonly gpuSize: (gpu: number) => number;
}

/** The prelude functions `code` calls, transitively, in prelude order (shader compilers pay for every function). */
const PRELUDE_FNS: Array<{ name: string; text: string }> = WGSL_PRELUDE.split(/\n(?=fn |\/\*\*)/).map((t) => t.trim()).filter(Boolean).reduce(
  (acc, t) => {
    const m = /fn (\w+)\(/.exec(t);
    const last = acc[acc.length - 1];
    if (!m && last) last.text += `\n${t}`;
    else if (m) {
      if (last && !last.name) { last.name = m[1]!; last.text += `\n${t}`; } else acc.push({ name: m[1]!, text: t });
    } else acc.push({ name: '', text: t });
    return acc;
  },
  [] as Array<{ name: string; text: string }>,
);

export function preludeFor(code: string): string {
  const need = new Set<string>();
  const visit = (text: string) => {
    for (const f of PRELUDE_FNS)
      if (!need.has(f.name) && new RegExp(`\\b${f.name}\\(`).test(text)) {
        need.add(f.name);
        visit(f.text.slice(f.text.indexOf('{')));
      }
  };
  visit(code);
  return PRELUDE_FNS.filter((f) => need.has(f.name)).map((f) => f.text).join('\n');
}

/** Generate the dispatches of every kernel of `p` (per kernel, in program order). */
export function generateWgsl(p: KernelProgram, layout: WgslProgramLayout, limits: WgslLimits, opts: WgslOptions = {}): WgslDispatch[][] {
  for (const b of p.buffers)
    if (b.numel >= 2 ** 31) throw new KilnError(`wgsl codegen: buffer b${b.id} has ${b.numel} elements; 32-bit indexing supports < 2^31`);
  const scratch = scratchOf(p);
  const elemOf = (id: number) => (id < 0 ? 4 : deviceBytes(p.buffers[id]!.dtype));
  const bytesOf = (id: number) => (id < 0 ? scratch.find((s) => s.id === id)!.bytes : p.buffers[id]!.numel * deviceBytes(p.buffers[id]!.dtype));
  return p.kernels.map((k, i) => {
    const a = kernelAccess(k);
    const splitCols = k.kind === 'loop' && isRowKernel(k) && (k.rows?.kind === 'column' ? k.rows.split > 1 : blockSplitOf(k) > 1) && opts.rowMapping !== 'block' && opts.reductions !== 'serial';
    const sc = k.kind === 'attention_grad' ? [-(2 * i + 1), -(2 * i + 2)] : splitCols ? [-(2 * i + 1)] : [];
    const ids = [...new Set([...a.reads, ...a.writes, ...sc])].sort((q, r) => q - r);
    const name = `${i}:${k.name}`;
    const written = new Set([...a.writes, ...sc]);
    let atomic = atomicBuffers(k, p.buffers);
    let { bindings, bound, atomicBinding } = bindWindows(name, ids, atomic, written, layout.place, bytesOf, elemOf, limits, layout.gpuSize);
    // Stores of whole 16-bit pairs need no atomics: bind again without them (the windows' places do not change).
    const paired = pairedStores(k, p.buffers, bound, opts);
    if (paired) {
      atomic = new Set([...atomic].filter((b) => !paired.has(b)));
      ({ bindings, bound, atomicBinding } = bindWindows(name, ids, atomic, written, layout.place, bytesOf, elemOf, limits, layout.gpuSize));
    }
    // The buffers that need atomics (half-word or accumulating stores) in windows of their own, so that the
    // other buffers (a kernel's operands) are read with plain loads, where the bindings fit the device's
    // limit and the windows stay disjoint (256-byte aligned starts); else one window per span, as above.
    if (atomic.size && atomicBinding.some((a) => a)) {
      try {
        ({ bindings, bound, atomicBinding } = bindWindows(name, ids, atomic, written, layout.place, bytesOf, elemOf, limits, layout.gpuSize, true));
      } catch (e) {
        if (!(e instanceof KilnError)) throw e;
      }
    }
    const g = new Gen(p.buffers, bound);
    const decls: string[] = [];
    // Second bindings of buffers as array<vec4<f32>> (the wide GEMM's operands), each its own window.
    const views: Array<{ name: string; binding: WgslBinding }> = [];
    const vec4View = (buf: number) => {
      if (bindings.length + views.length + 1 > limits.maxStorageBuffersPerShaderStage) return undefined;
      const pl = layout.place(buf);
      if (!bindings.some((w) => w.gpu === pl.gpu && w.readOnly)) return undefined;
      const off = alignDown(pl.offset, 256);
      const end = Math.min(Math.ceil((pl.offset + bytesOf(buf)) / 16) * 16, layout.gpuSize(pl.gpu));
      if ((pl.offset - off) % 16 !== 0 || end - off > limits.maxStorageBufferBindingSize) return undefined;
      const vname = `V${views.length}`;
      views.push({ name: vname, binding: { gpu: pl.gpu, offset: off, size: end - off, readOnly: true } });
      return { name: vname, base: g.rawSlot((pl.offset - off) / 16) };
    };
    const c: Ctx = { g, limits, name, decls, opts, vec4View, ...(splitCols ? { scratch: -(2 * i + 1) } : {}) };
    const bodies = k.kind === 'loop' ? genLoop(c, k) : k.kind === 'matmul' ? genMatmul(c, k) : genAttention(c, k, sc);
    return bodies.map((b, j) => {
      let body = b.body;
      const extra: string[] = [];
      if (body[0] === '//decls') {
        const end = body.indexOf('//end');
        extra.push(...body.slice(1, end));
        body = body.slice(end + 1);
      }
      const bd = bindingDecls(atomicBinding, bindings.map((w) => !!w.readOnly), views.map((x) => x.name), g.slots.length);
      const rest = [...decls, ...extra, ...body].join('\n');
      const code = [...bd.decls, ...bd.helpers.filter((h) => rest.includes(`${/fn (\w+)\(/.exec(h)![1]}(`)), rest].join('\n');
      // Directives (the subgroup-matrix GEMM's enables) must precede every declaration.
      const directive = (l: string) => /^(enable|diagnostic)\b/.test(l);
      const lines = code.split('\n');
      const source = ['// kiln kernel', ...lines.filter(directive), preludeFor(code), ...lines.filter((l) => !directive(l))].join('\n') + '\n';
      return { name: bodies.length > 1 ? `${name}#${j}` : name, source, workgroups: b.workgroups, bindings: [...bindings, ...views.map((x) => x.binding)], offsets: g.slots };
    });
  });
}

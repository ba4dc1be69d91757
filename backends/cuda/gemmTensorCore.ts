/**
 * @file Tensor-core GEMM kernels rendered from a matmul kernel's TileSchedule (ir/kernel/types.ts,
 * decided by compiler/schedule/tiling.ts): one block per `block` tile (grouped raster over the M×N
 * tile grid for L2 reuse, batch on grid.z), warps.m × warps.n warps each owning a warp tile of
 * mma.sync m16n8k16 fragments (mma.ts), K in slices of block.k through a ring of `stages`
 * shared-memory buffers:
 *  - 'async' operands: 16-byte cp.async copies straight from the strided buffer (zero-filled past
 *    the edges), `stages − 1` tiles in flight;
 *  - 'registers' operands: the operand expression (prologue, casts, gathers) evaluated per element
 *    one tile ahead into registers, converted to the MMA dtype, stored to shared memory after the
 *    current tile's MMAs (so its global latency overlaps them).
 * Tiles are stored with their contiguous dimension innermost (the operand's `major`) and 16 bytes of
 * row padding (conflict-free ldmatrix); ldmatrix.trans turns M/N-major tiles into fragments, so every
 * transposition is a plain load. Edges are predicated on M, N and K, so any shape works (K = 1 …).
 * The epilogue runs once per output element from an f32 tile in shared memory (the pipeline's
 * memory, reused), with coalesced stores: the fused epilogue statements of the IR, unchanged.
 */
import { KilnError } from '../../ir/errors.ts';
import { affine } from '../../ir/kernel/expr.ts';
import type { BufferDecl, Expr, MatmulKernel, OperandPlan, Stmt, TileSchedule } from '../../ir/kernel/types.ts';
import { SMEM_PAD, sharedBytes } from '../../ir/kernel/tile.ts';
import { mmaFunction } from './mma.ts';

/** What the tensor-core generator needs from the module's expression generator (codegen.ts). */
export interface CudaEmitter {
  readonly buffers: readonly BufferDecl[];
  expr(e: Expr): string;
  stmts(list: readonly Stmt[], ind: string, out: string[]): void;
  params(ids: readonly number[]): string;
  decompose(names: readonly string[], extents: readonly number[], linear: string, out: string[], ind: string): void;
}

export interface TensorCoreLaunch {
  readonly fn: string;
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly shmem: number;
}

/** Rows of M tiles walked together by the block raster (L2 reuse of the B operand). */
const RASTER_GROUP = 8;

interface Operand {
  readonly which: 'a' | 'b';
  readonly plan: OperandPlan;
  readonly e: Expr;
  /** i for a, j for b. */
  readonly mnVar: string;
  readonly mnExtent: number;
  /** Block extent along mn (BM or BN). */
  readonly bmn: number;
  /** Shared tile: rows × cols (cols contiguous), row stride, elements per stage. */
  readonly rows: number;
  readonly cols: number;
  readonly stride: number;
  readonly stage: number;
  /** Block-origin variable along mn (i0 or j0). */
  readonly origin: string;
}

function operand(k: MatmulKernel, t: TileSchedule, which: 'a' | 'b'): Operand {
  const plan = t[which];
  const bmn = which === 'a' ? t.block.m : t.block.n;
  const [rows, cols] = plan.major === 'k' ? [bmn, t.block.k] : [t.block.k, bmn];
  const stride = cols + SMEM_PAD;
  return {
    which, plan, e: which === 'a' ? k.a : k.b, mnVar: which === 'a' ? 'i' : 'j', mnExtent: which === 'a' ? k.m : k.n, bmn,
    rows, cols, stride, stage: rows * stride, origin: which === 'a' ? 'i0' : 'j0',
  };
}

/** Render a tensor-core GEMM kernel (lines into `out`) and return its launch. */
export function genTensorCoreGemm(g: CudaEmitter, k: MatmulKernel, fn: string, ids: readonly number[], out: string[]): TensorCoreLaunch {
  const t = k.tile;
  if (!t || t.provider !== 'tensor-core' || !t.mma) throw new KilnError(`cuda codegen: ${k.name} has no tensor-core schedule`);
  if (k.accDType !== 'f32' || (t.mma.ab !== 'bf16' && t.mma.ab !== 'f16')) throw new KilnError(`cuda codegen: ${k.name}: tensor-core GEMM needs bf16/f16 operands and an f32 accumulator`);
  const ab = t.mma.ab;
  const { m: BM, n: BN, k: BK } = t.block;
  const S = t.stages, T = t.warps.m * t.warps.n * 32;
  const WTM = BM / t.warps.m, WTN = BN / t.warps.n, MI = WTM / 16, NI = WTN / 8;
  if (!Number.isInteger(MI) || !Number.isInteger(NI) || NI % 2 !== 0 || BK % 16 !== 0 || S < 2)
    throw new KilnError(`cuda codegen: ${k.name}: unsupported tile ${BM}x${BN}x${BK} warps ${t.warps.m}x${t.warps.n} stages ${S}`);
  const A = operand(k, t, 'a'), B = operand(k, t, 'b');
  const gx = Math.ceil(k.n / BN), gy = Math.ceil(k.m / BM);
  const batch = k.batch.reduce((x, y) => x * y, 1);
  const bv = k.batch.map((_, i) => `b${i}`);
  const toBits = ab === 'bf16' ? 'k_f32_to_bf16' : 'k_f32_to_f16';
  const o = out;

  o.push(`extern "C" __global__ void __launch_bounds__(${T}, 1) ${fn}(${g.params(ids)}) {`);
  o.push('  extern __shared__ __align__(16) unsigned char k_smem[];');
  o.push(`  u16* const sA = (u16*)k_smem;`, `  u16* const sB = sA + ${S * A.stage};`);
  o.push('  const u32 smemBase = k_smem_addr(k_smem);');
  o.push('  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;');
  o.push(`  const int wm = warp / ${t.warps.n}, wn = warp % ${t.warps.n};`);
  // Grouped raster: consecutive blocks cover RASTER_GROUP rows of M tiles, column by column.
  o.push(`  const int L_ = blockIdx.x, grp_ = L_ / ${RASTER_GROUP * gx}, first_ = grp_ * ${RASTER_GROUP};`);
  o.push(`  const int gsz_ = min(${gy} - first_, ${RASTER_GROUP}), in_ = L_ % ${RASTER_GROUP * gx};`);
  o.push(`  const int i0 = (first_ + in_ % gsz_) * ${BM}, j0 = (in_ / gsz_) * ${BN};`);
  o.push('  const long long bt = blockIdx.z;');
  g.decompose(bv, k.batch, 'bt', o, '  ');
  o.push(`  float acc[${MI}][${NI}][4];`);
  o.push('  #pragma unroll', `  for (int x = 0; x < ${MI * NI * 4}; x++) (&acc[0][0][0])[x] = 0.f;`);

  // Per-operand loaders.
  for (const X of [A, B]) {
    const name = X.which.toUpperCase();
    const sm = X.which === 'a' ? 'sA' : 'sB';
    const mnOf = (row: string, col: string) => (X.plan.major === 'k' ? [row, col] : [col, row]);
    if (X.plan.staging === 'async') {
      if (X.e.k !== 'load') throw new KilnError(`cuda codegen: ${k.name}: async operand ${X.which} is not a load`);
      const aff = affine(X.e.index);
      if (!aff) throw new KilnError(`cuda codegen: ${k.name}: async operand ${X.which} has a non-affine index`);
      const c = (v: string) => aff.coef.get(v) ?? 0;
      const off = [`${aff.c}`, ...bv.filter((v) => c(v) !== 0).map((v) => `${c(v)} * ${v}`)].join(' + ');
      o.push(`  const u16* const src${name} = buf${X.e.buf} + (${off});`);
      // Per chunk of this thread (fixed for the whole K loop): shared byte offset, global offset at
      // kt = 0, in-range along mn, offset along k within the tile. Edge predicates only where a dim
      // is not a multiple of the block.
      const cpr = X.cols / 8, chunks = X.rows * cpr, per = Math.ceil(chunks / T);
      const [mn, kk] = mnOf('row_', 'col_');
      const mnEdge = X.mnExtent % X.bmn !== 0, kEdge = k.k % BK !== 0;
      const stageBytes = X.which === 'a' ? `${2 * X.stage}` : `${2 * X.stage}`;
      const base = X.which === 'a' ? 'smemBase' : `smemBase + ${2 * S * A.stage}`;
      for (let q = 0; q < per; q++) {
        const v = `${name}${q}`;
        o.push(`  const int e${v} = tid + ${q * T};`);
        o.push(`  const int row${v} = e${v} / ${cpr}, col${v} = (e${v} % ${cpr}) * 8;`);
        const [mnQ, kkQ] = [mn!.replace('row_', `row${v}`).replace('col_', `col${v}`), kk!.replace('row_', `row${v}`).replace('col_', `col${v}`)];
        o.push(`  const u32 d${v} = ${base} + (row${v} * ${X.stride} + col${v}) * 2;`);
        o.push(`  const int o${v} = (${X.origin} + ${mnQ}) * ${c(X.mnVar)} + ${kkQ} * ${c('p')};`);
        o.push(`  const int k${v} = ${kkQ};`);
        const conds = [chunks % T !== 0 ? `e${v} < ${chunks}` : '', mnEdge ? `${X.origin} + ${mnQ} < ${X.mnExtent}` : ''].filter(Boolean);
        o.push(`  const bool ok${v} = ${conds.length ? conds.join(' && ') : 'true'};`);
      }
      o.push(`  auto load${name} = [&](int kt, int s) {`);
      for (let q = 0; q < per; q++) {
        const v = `${name}${q}`;
        const ok = kEdge ? `ok${v} && kt * ${BK} + k${v} < ${k.k}` : `ok${v}`;
        o.push(`    { const bool ok_ = ${ok}; k_cp_async16(d${v} + s * ${stageBytes}, src${name} + (ok_ ? o${v} + kt * ${BK * c('p')} : 0), ok_); }`);
      }
      o.push('  };');
      o.push(`  auto fetch${name} = [&](int kt) {};`, `  auto put${name} = [&](int s) {};`);
    } else {
      // Two adjacent elements (along the contiguous dim) per thread and step, packed in one u32.
      const pairs = (X.rows * X.cols) / 2, per = Math.ceil(pairs / T), half = X.cols / 2;
      const [mn, kk] = mnOf('row_', 'col_');
      const guard = pairs % T !== 0 ? `e_ < ${pairs} && ` : '';
      o.push(`  u32 reg${name}[${per}];`);
      o.push(`  auto load${name} = [&](int kt, int s) {};`);
      o.push(`  auto fetch${name} = [&](int kt) {`);
      o.push('    #pragma unroll', `    for (int q = 0; q < ${per}; q++) {`);
      o.push(`      const int e_ = tid + q * ${T};`);
      o.push(`      const int row_ = e_ / ${half}, c0_ = (e_ % ${half}) * 2;`);
      o.push('      u32 v2_ = 0u;');
      o.push('      #pragma unroll', '      for (int h_ = 0; h_ < 2; h_++) {');
      o.push('        const int col_ = c0_ + h_;');
      o.push(`        const int ${X.mnVar} = ${X.origin} + ${mn}, p = kt * ${BK} + ${kk};`);
      o.push(`        if (${guard}${X.mnVar} < ${X.mnExtent} && p < ${k.k}) v2_ |= (u32)${toBits}(${operandValue(g, X.e, ab)}) << (16 * h_);`);
      o.push('      }');
      o.push(`      reg${name}[q] = v2_;`);
      o.push('    }', '  };');
      o.push(`  auto put${name} = [&](int s) {`);
      o.push(`    u16* const dst = ${sm} + s * ${X.stage};`);
      o.push('    #pragma unroll', `    for (int q = 0; q < ${per}; q++) {`);
      o.push(`      const int e_ = tid + q * ${T};`);
      if (pairs % T !== 0) o.push(`      if (e_ >= ${pairs}) break;`);
      o.push(`      *(u32*)&dst[(e_ / ${half}) * ${X.stride} + (e_ % ${half}) * 2] = reg${name}[q];`);
      o.push('    }', '  };');
    }
  }

  // MMAs of one shared-memory stage.
  const mma = mmaFunction(ab);
  // Per-lane ldmatrix byte offsets within a stage; fragment offsets are compile-time constants.
  const aLane = A.plan.major === 'k'
    ? `((wm * ${WTM} + ((lane >> 3) & 1) * 8 + (lane & 7)) * ${A.stride} + (lane >> 4) * 8) * 2`
    : `(((lane >> 4) * 8 + (lane & 7)) * ${A.stride} + wm * ${WTM} + ((lane >> 3) & 1) * 8) * 2`;
  const bLane = B.plan.major === 'k'
    ? `((wn * ${WTN} + (lane >> 4) * 8 + (lane & 7)) * ${B.stride} + ((lane >> 3) & 1) * 8) * 2`
    : `((((lane >> 3) & 1) * 8 + (lane & 7)) * ${B.stride} + wn * ${WTN} + (lane >> 4) * 8) * 2`;
  o.push(`  const u32 aLane = smemBase + ${aLane};`, `  const u32 bLane = smemBase + ${2 * S * A.stage} + ${bLane};`);
  const aFrag = (mi: string, kk: string) => (A.plan.major === 'k' ? `(${mi} * ${16 * A.stride} + ${kk} * 16) * 2` : `(${kk} * ${16 * A.stride} + ${mi} * 16) * 2`);
  const bFrag = (n2: string, kk: string) => (B.plan.major === 'k' ? `(${n2} * ${16 * B.stride} + ${kk} * 16) * 2` : `(${kk} * ${16 * B.stride} + ${n2} * 16) * 2`);
  o.push('  auto compute = [&](int s) {');
  o.push(`    const u32 a_ = aLane + s * ${2 * A.stage}, b_ = bLane + s * ${2 * B.stage};`);
  o.push('    #pragma unroll', `    for (int kk = 0; kk < ${BK / 16}; kk++) {`);
  o.push(`      u32 af[${MI}][4];`);
  o.push('      #pragma unroll', `      for (int mi = 0; mi < ${MI}; mi++) ${A.plan.major === 'k' ? 'k_ldmatrix_x4' : 'k_ldmatrix_x4_trans'}(af[mi], a_ + ${aFrag('mi', 'kk')});`);
  // B fragments two n8 columns at a time, used right away (fewer live registers).
  o.push('      #pragma unroll', `      for (int n2 = 0; n2 < ${NI / 2}; n2++) {`, '        u32 r_[4];');
  o.push(`        ${B.plan.major === 'k' ? 'k_ldmatrix_x4' : 'k_ldmatrix_x4_trans'}(r_, b_ + ${bFrag('n2', 'kk')});`);
  o.push('        #pragma unroll', `        for (int mi = 0; mi < ${MI}; mi++) {`);
  o.push(`          ${mma}(acc[mi][2 * n2], af[mi], &r_[0]);`, `          ${mma}(acc[mi][2 * n2 + 1], af[mi], &r_[2]);`, '        }', '      }');
  o.push('    }', '  };');

  // Pipeline: stages − 1 tiles in flight; one commit group per tile (empty past the end).
  o.push(`  const int KT = ${Math.ceil(k.k / BK)};`);
  o.push('  #pragma unroll', `  for (int s = 0; s < ${S - 1}; s++) {`);
  o.push('    if (s < KT) { loadA(s, s); loadB(s, s); fetchA(s); fetchB(s); putA(s); putB(s); }', '    k_cp_async_commit();', '  }');
  o.push(`  int rs = 0, ws = ${S - 1};`);
  o.push('  for (int kt = 0; kt < KT; kt++) {');
  o.push(`    k_cp_async_wait<${S - 2}>();`, '    __syncthreads();');
  o.push(`    const int nt = kt + ${S - 1};`, '    const bool more = nt < KT;');
  o.push('    if (more) { loadA(nt, ws); loadB(nt, ws); fetchA(nt); fetchB(nt); }', '    k_cp_async_commit();');
  o.push('    compute(rs);');
  o.push('    if (more) { putA(ws); putB(ws); }');
  o.push(`    rs = rs + 1 == ${S} ? 0 : rs + 1;`, `    ws = ws + 1 == ${S} ? 0 : ws + 1;`, '  }');
  o.push('  k_cp_async_wait<0>();', '  __syncthreads();');

  // Epilogue: fragments → f32 tile in shared memory → one pass over the tile's elements.
  const CS = BN + SMEM_PAD;
  o.push('  float* const sC = (float*)k_smem;');
  o.push('  #pragma unroll', `  for (int mi = 0; mi < ${MI}; mi++) {`, '    #pragma unroll', `    for (int ni = 0; ni < ${NI}; ni++) {`);
  o.push(`      const int r_ = wm * ${WTM} + mi * 16 + (lane >> 2), c_ = wn * ${WTN} + ni * 8 + 2 * (lane & 3);`);
  o.push(`      *(float2*)&sC[r_ * ${CS} + c_] = make_float2(acc[mi][ni][0], acc[mi][ni][1]);`);
  o.push(`      *(float2*)&sC[(r_ + 8) * ${CS} + c_] = make_float2(acc[mi][ni][2], acc[mi][ni][3]);`);
  o.push('    }', '  }', '  __syncthreads();');
  o.push(`  for (int e_ = tid; e_ < ${BM * BN}; e_ += ${T}) {`);
  o.push(`    const int i = i0 + e_ / ${BN}, j = j0 + e_ % ${BN};`);
  o.push(`    if (i < ${k.m} && j < ${k.n}) {`);
  o.push(`      const float v_acc = sC[(e_ / ${BN}) * ${CS} + e_ % ${BN}];`);
  g.stmts(k.epilogue, '      ', o);
  o.push('    }', '  }', '}');
  return { fn, grid: [gx * gy, 1, batch], block: [T, 1, 1], shmem: sharedBytes(t) };
}

/** The operand's value as a float already representable in the MMA dtype (a final cast's rounding is left to the store). */
function operandValue(g: CudaEmitter, e: Expr, ab: 'bf16' | 'f16'): string {
  if (e.k === 'cast' && e.dtype === ab && (e.a.dtype === 'f32' || e.a.dtype === ab)) return `(float)(${g.expr(e.a)})`;
  return g.expr(e);
}

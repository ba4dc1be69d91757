/**
 * @file FlashAttention-2 on bf16 tensor cores (mma.sync m16n8k16, ldmatrix, cp.async) for attention
 * kernels that carry a `tile` (compiler/schedule/attentionTiling.ts). Generated per kernel with every
 * size a constant; operands are read through their kernel-IR expressions (folded views), with 16-byte
 * cp.async copies when an operand is a bf16 load contiguous along the head dim, else element by element.
 *
 * Forward (one block = `bq` query rows, 16 or 32 per warp): S = Q·Kᵀ per K/V tile of `bk` rows, online
 * softmax in base 2 (scale·log2 e folded into one FMA before ex2.approx), P rounded to bf16 for O += P·V, f32 accumulators; the
 * log-sum-exp (base 2) of each row goes to a scratch buffer the backward of the same operands reuses.
 * Backward (one block = `bk` key rows, 16 or 32 per warp): a preprocess computes D = rowsum(dO∘O) and zeroes
 * an f32 dQ accumulator; the main kernel walks the query tiles, recomputes P = exp2(S − lse), and
 * accumulates dV += Pᵀ·dO and dK += dSᵀ·Q in registers (dS = P∘(dP − D), dP = dO·Vᵀ), and adds
 * dQ += dS·K through shared memory with 8-byte f32 reductions into global memory; a last pass scales dQ
 * into its output. With `tile.dq`, dQ is instead a pass of its own (no accumulator, no reductions): query
 * blocks walk the key tiles as the forward does, recompute P and dP, and keep dQ += dS·K in registers.
 * The PTX helpers (fa_ldsm, fa_mma, fa_exp2, fa_red2, ...) live in mma.ts (FLASH_ATTENTION_PTX).
 * Head dims are zero-padded to multiples of 16 in shared memory (72 → 80), rows past the sequence
 * are zero (keys masked, queries with lse = +∞), causal masks t ≤ s (top-left), as the CPU oracle.
 */
import { KilnError } from '../../ir/errors.ts';
import { affine, exprKey } from '../../ir/kernel/expr.ts';
import { type FlashLaunch, wgmmaBackward, wgmmaBackwardApplies, wgmmaForward, wgmmaForwardApplies, type WgmmaContext } from './flashAttentionWgmma.ts';
import { FLASH_ATTENTION_PTX } from './mma.ts';
import type { AttentionGradKernel, AttentionKernel, AttentionTile, BufferDecl, Expr } from '../../ir/kernel/types.ts';

/** What the flash generator needs from the module's code generator. */
export interface FlashCodegen {
  readonly buffers: readonly BufferDecl[];
  /** C++ of an expression (floats as float, indices as int). */
  expr(e: Expr): string;
  /** C++ of `value` converted to buffer `buf`'s storage type. */
  storeValue(buf: number, value: string): string;
  /** The parameter list for buffer ids (negative: f32 scratch). */
  params(ids: readonly number[]): string;
}

export type { FlashLaunch };

interface ScratchDecl {
  readonly id: number;
  readonly bytes: number;
}

const LOG2E = 1.4426950408889634;
/**
 * Diagnostics (setFlashProbe; wrong results on purpose). Timing probes for bench/attention.ts: `nodq`
 * drops the backward's dQ product (mma.sync), `nored` keeps the product but (practically) never reduces it
 * into global memory (mma.sync and wgmma). Deliberate bugs that the GPU tests must catch: `nocausal` drops the forward's causal
 * mask, `dqmask` lets the dQ pass see 16 keys past the diagonal, `wgbwdmask` drops the wgmma backward's causal mask.
 */
export type FlashProbe = 'nodq' | 'nored' | 'nocausal' | 'dqmask' | 'wgbwdmask';
let activeProbe: FlashProbe | undefined;
/** Set (or clear) the diagnostic for the kernels generated from now on (read by no one else: callers at the edge set it). */
export function setFlashProbe(p: FlashProbe | undefined): void {
  activeProbe = p;
}
const probe = (): FlashProbe | undefined => activeProbe;
const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

function f32(v: number): string {
  const s = Math.fround(v).toPrecision(9);
  return `${s.includes('e') || s.includes('.') ? s : `${s}.0`}f`;
}


/** A tile of an operand to stage in shared memory: rows rowStart.. (< rowLimit) × cols 0..colsPad-1. */
interface TileLoad {
  readonly op: Expr;
  readonly rowVar: string;
  readonly colVar: string;
  readonly rows: number;
  readonly rowStart: string;
  readonly rowLimit: number;
  readonly cols: number;
  readonly colsPad: number;
  readonly stride: number;
  readonly dst: string;
  readonly threads: number;
}

/** Generates the flash-attention functions of one CUDA module (helpers once; lse shared forward → backward). */
export class FlashAttention {
  private helpersEmitted = false;
  /** Operands (q, k, v, sizes) → the lse scratch a forward kernel of this module writes. */
  private readonly lseOf = new Map<string, number>();

  private readonly wg: WgmmaContext;

  /**
   * `wgmmaTarget`: whether the GPU the kernels are generated for runs wgmma (sm_90: NVRTC builds sm_90a
   * there; build.ts codegenOptions); false renders every attention kernel with mma.sync.
   */
  constructor(private readonly cg: FlashCodegen, private readonly wgmmaTarget = true) {
    this.wg = {
      buffers: cg.buffers, expr: (e) => cg.expr(e), storeValue: (b, v) => cg.storeValue(b, v), params: (ids) => cg.params(ids),
      batchVars: () => undefined, contiguous: (e, r, c, n) => contiguousBf16(e, cg.buffers, r, c, n),
    };
  }

  generate(k: AttentionKernel | AttentionGradKernel, fn: string, ids: readonly number[], out: string[], scratch: ScratchDecl[]): FlashLaunch[] {
    if (!k.tile) throw new KilnError(`cuda flash attention: kernel ${k.name} has no tile`);
    const rows = prod(k.batch) * k.sq;
    if (rows === 0 || k.sk === 0) return [];
    if (!this.helpersEmitted) {
      out.push(FLASH_ATTENTION_PTX);
      this.helpersEmitted = true;
    }
    const key = operandKey(k);
    if (k.kind === 'attention') {
      const lse = newScratch(scratch, rows * 4);
      this.lseOf.set(key, lse);
      return [this.forward(k, k.tile, fn, ids, lse, false, out)];
    }
    const launches: FlashLaunch[] = [];
    let lse = this.lseOf.get(key);
    if (lse === undefined) {
      // No forward of these operands in this module: a statistics-only forward pass first.
      lse = newScratch(scratch, rows * 4);
      const wide = Math.max(k.tile.dkPad, k.tile.dvPad);
      const ft: AttentionTile = { bq: 64, bk: wide <= 128 ? 64 : 32, warps: 4, stages: 2, dkPad: k.tile.dkPad, dvPad: k.tile.dvPad, dkvChunks: 1 };
      const qkIds = [...new Set([...bufsOf(k.q), ...bufsOf(k.key)])].sort((a, b) => a - b);
      launches.push(this.forward(k, ft, `${fn}_lse`, qkIds, lse, true, out));
    }
    const dsum = newScratch(scratch, rows * 4);
    const wgBwd = this.wgmmaTarget && wgmmaBackwardApplies(k, k.tile, this.wg);
    const dqPass = k.dQ && !wgBwd && k.tile.dq;
    const dqAcc = k.dQ && !dqPass ? newScratch(scratch, rows * k.dk * 4) : undefined;
    launches.push(this.preprocess(k, `${fn}_pre`, ids, dsum, dqAcc, out));
    if (wgBwd) {
      const ctx: WgmmaContext = { ...this.wg, batchVars: (linear, o) => this.batchVars(k, linear, o) };
      launches.push(wgmmaBackward(ctx, k, k.tile, `${fn}_bwd`, ids, lse, dsum, dqAcc, f32(k.scale * LOG2E), f32(k.scale), probe() !== 'wgbwdmask', out, probe() === 'nored'));
    } else launches.push(this.backward(k, k.tile, `${fn}_bwd`, ids, lse, dsum, dqAcc, out));
    if (dqPass) launches.push(this.dqPass(k, dqPass, k.tile.dkPad, k.tile.dvPad, `${fn}_dqk`, ids, lse, dsum, out));
    else if (dqAcc !== undefined) launches.push(this.dqStore(k, `${fn}_dq`, ids, dqAcc, out));
    return launches;
  }

  private batchVars(k: AttentionKernel | AttentionGradKernel, linear: string, out: string[], ind = '  '): void {
    let rem = linear;
    for (let i = k.batch.length - 1; i >= 0; i--) {
      out.push(`${ind}const int b${i} = (int)(${rem} % ${k.batch[i]});`);
      if (i > 0) {
        out.push(`${ind}const long long bq${i} = ${rem} / ${k.batch[i]};`);
        rem = `bq${i}`;
      }
    }
  }

  /** Lines that stage one operand tile (bf16) into shared memory; no wait, no barrier. */
  private load(t: TileLoad, ind: string): string[] {
    const bufs = this.cg.buffers;
    const fast = contiguousBf16(t.op, bufs, t.rowVar, t.colVar, t.cols);
    const per = t.colsPad / 8;
    if (fast) {
      const base = [`${fast.c}`, ...[...fast.coef].filter(([v]) => v !== t.rowVar && v !== t.colVar).map(([v, c]) => `(long long)${c} * ${v}`)].join(' + ');
      const rowCoef = fast.coef.get(t.rowVar) ?? 0;
      return [
        `${ind}{`,
        `${ind}  const u16* base_ = buf${fast.buf} + (${base});`,
        `${ind}  const u32 sd_ = fa_saddr(${t.dst});`,
        `${ind}  #pragma unroll`,
        `${ind}  for (int ch_ = tid; ch_ < ${t.rows * per}; ch_ += ${t.threads}) {`,
        `${ind}    const int r_ = ch_ / ${per}, c_ = (ch_ % ${per}) * 8, row_ = ${t.rowStart} + r_;`,
        `${ind}    const bool ok_ = row_ < ${t.rowLimit} && c_ < ${t.cols};`,
        `${ind}    fa_cp16(sd_ + (u32)((r_ * ${t.stride} + c_) * 2), ok_ ? base_ + (long long)row_ * ${rowCoef} + c_ : buf${fast.buf}, ok_);`,
        `${ind}  }`,
        `${ind}}`,
      ];
    }
    return [
      `${ind}for (int el_ = tid; el_ < ${t.rows * t.colsPad}; el_ += ${t.threads}) {`,
      `${ind}  const int r_ = el_ / ${t.colsPad}, c_ = el_ % ${t.colsPad};`,
      `${ind}  float x_ = 0.f;`,
      `${ind}  { const int ${t.rowVar} = ${t.rowStart} + r_; const int ${t.colVar} = c_; if (${t.rowVar} < ${t.rowLimit} && ${t.colVar} < ${t.cols}) x_ = ${this.cg.expr(t.op)}; }`,
      `${ind}  ${t.dst}[r_ * ${t.stride} + c_] = k_f32_to_bf16(x_);`,
      `${ind}}`,
    ];
  }

  /**
   * Lines that stage key tile rows start.. (`BK` rows) into stage `stage` of `Ks` and, with `withV`, of `Vs`
   * (the K/V tile walk of the forward and of the dQ pass); no wait, no barrier.
   */
  private kvTileLoad(k: AttentionKernel | AttentionGradKernel, g: { BK: number; KST: number; VST: number; DKP: number; DVP: number; threads: number; withV: boolean }, stage: string, start: string, ind: string): string[] {
    const { BK, KST, VST, DKP, DVP, threads } = g;
    return [
      ...this.load({ op: k.key, rowVar: 't', colVar: 'd', rows: BK, rowStart: start, rowLimit: k.sk, cols: k.dk, colsPad: DKP, stride: KST, dst: `(Ks + ${stage} * ${BK * KST})`, threads }, ind),
      ...(g.withV ? this.load({ op: k.v, rowVar: 't', colVar: 'e', rows: BK, rowStart: start, rowLimit: k.sk, cols: k.dv, colsPad: DVP, stride: VST, dst: `(Vs + ${stage} * ${BK * VST})`, threads }, ind) : []),
    ];
  }

  private forward(k: AttentionKernel | AttentionGradKernel, t: AttentionTile, fn: string, ids: readonly number[], lse: number, statsOnly: boolean, out: string[]): FlashLaunch {
    if (!statsOnly && this.wgmmaTarget && wgmmaForwardApplies(k, t, this.wg)) {
      const ctx: WgmmaContext = { ...this.wg, batchVars: (linear, o) => this.batchVars(k, linear, o) };
      return wgmmaForward(ctx, k, t, fn, ids, lse, f32(k.scale * LOG2E), probe() !== 'nocausal', out);
    }
    const { bq: BQ, bk: BK, warps: NW, dkPad: DKP, dvPad: DVP } = t;
    const threads = NW * 32;
    // MT m16 row tiles per warp: each K/V fragment read from shared memory feeds 2·MT tensor-core products.
    const MT = BQ / (NW * 16), WR = 16 * MT;
    const QST = DKP + 8, KST = DKP + 8, VST = DVP + 8;
    const nQ = Math.ceil(k.sq / BQ), nK = Math.ceil(k.sk / BK);
    const qInRegs = MT * (DKP / 4 + (statsOnly ? 0 : DVP / 2) + BK / 2) <= 176;
    const sharedBytes = 2 * (BQ * QST + 2 * BK * KST + (statsOnly ? 0 : 2 * BK * VST));
    const prm = [...ids, lse];
    const S2 = f32(k.scale * LOG2E);
    const mts = Array.from({ length: MT }, (_, i) => i);
    const L: string[] = [];
    L.push(`extern "C" __global__ void __launch_bounds__(${threads}) ${fn}(${this.cg.params(prm)}) {`);
    L.push('  extern __shared__ __align__(16) u16 fa_sm[];');
    L.push(`  u16* Qs = fa_sm; u16* Ks = Qs + ${BQ * QST};${statsOnly ? '' : ` u16* Vs = Ks + ${2 * BK * KST};`}`);
    L.push(`  const u32 sQs = fa_saddr(Qs), sKs = sQs + ${2 * BQ * QST};${statsOnly ? '' : ` const u32 sVs = sKs + ${4 * BK * KST};`}`);
    L.push('  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c4 = lane & 3;');
    // Lane parts of the ldmatrix addresses (bytes), once per thread; the unrolled loads add constants.
    L.push(`  const u32 lQ = sQs + 2 * ((warp * ${WR} + (lane & 15)) * ${QST} + (lane >> 4) * 8), lK = 2 * (((lane & 7) + ((lane >> 4) << 3)) * ${KST} + ((lane >> 3) & 1) * 8);`);
    if (!statsOnly) L.push(`  const u32 lV = 2 * (((lane & 7) + ((lane >> 3) & 1) * 8) * ${VST} + (lane >> 4) * 8);`);
    L.push(`  const int qt = ${k.causal ? `${nQ - 1} - ` : ''}(int)(blockIdx.x % ${nQ}u);`);
    L.push(`  const long long bt = blockIdx.x / ${nQ}u;`);
    this.batchVars(k, 'bt', L);
    L.push(`  const int q0 = qt * ${BQ};`);
    L.push(`  const int nT = ${k.causal ? `min(${nK}, (min(q0 + ${BQ}, ${k.sq}) - 1) / ${BK} + 1)` : `${nK}`};`);
    const kvLoad = (stage: string, start: string, ind: string) => this.kvTileLoad(k, { BK, KST, VST, DKP, DVP, threads, withV: !statsOnly }, stage, start, ind);
    L.push(...this.load({ op: k.q, rowVar: 's', colVar: 'd', rows: BQ, rowStart: 'q0', rowLimit: k.sq, cols: k.dk, colsPad: DKP, stride: QST, dst: 'Qs', threads }, '  '));
    L.push(...kvLoad('0', '0', '  '));
    L.push('  fa_commit();');
    if (!statsOnly) L.push(`  float o[${MT}][${DVP / 8}][4];`, '  #pragma unroll', `  for (int mt = 0; mt < ${MT}; mt++)`, '  #pragma unroll', `  for (int n = 0; n < ${DVP / 8}; n++) { o[mt][n][0] = 0.f; o[mt][n][1] = 0.f; o[mt][n][2] = 0.f; o[mt][n][3] = 0.f; }`);
    // Running maxima m (raw scores) and sums l of rows g and g + 8 of each row tile.
    L.push(`  float m[${MT}][2], l[${MT}][2];`, '  #pragma unroll', `  for (int mt = 0; mt < ${MT}; mt++) { m[mt][0] = -K_INF; m[mt][1] = -K_INF; l[mt][0] = 0.f; l[mt][1] = 0.f; }`);
    L.push(`  const int w0 = q0 + warp * ${WR};`);
    if (qInRegs) L.push(`  u32 qf[${MT}][${DKP / 16}][4];`);
    // The tile loop stays a loop (short constant trip counts would otherwise be unrolled, and spill).
    L.push('  #pragma unroll 1', '  for (int j = 0; j < nT; j++) {');
    L.push('    fa_wait_all(); __syncthreads();');
    if (qInRegs) {
      L.push('    if (j == 0) {', '      #pragma unroll', `      for (int mt = 0; mt < ${MT}; mt++)`, '      #pragma unroll', `      for (int kk = 0; kk < ${DKP / 16}; kk++) fa_ldsm(qf[mt][kk], lQ, mt * ${16 * QST} + kk * 16);`, '    }');
    }
    L.push('    if (j + 1 < nT) {', '      const int nx = (j + 1) & 1, t0n = (j + 1) * ' + BK + ';', ...kvLoad('nx', 't0n', '      '), '    }');
    L.push('    fa_commit();');
    L.push(`    const u32 sKc = sKs + (j & 1) * ${2 * BK * KST} + lK;${statsOnly ? '' : ` const u32 sVc = sVs + (j & 1) * ${2 * BK * VST} + lV;`}`);
    L.push(`    float sc[${MT}][${BK / 8}][4];`, '    #pragma unroll', `    for (int mt = 0; mt < ${MT}; mt++)`, '    #pragma unroll', `    for (int n = 0; n < ${BK / 8}; n++) { sc[mt][n][0] = 0.f; sc[mt][n][1] = 0.f; sc[mt][n][2] = 0.f; sc[mt][n][3] = 0.f; }`);
    L.push('    #pragma unroll', `    for (int kk = 0; kk < ${DKP / 16}; kk++) {`);
    if (!qInRegs) L.push(`      u32 qa[${MT}][4];`, ...mts.map((mt) => `      fa_ldsm(qa[${mt}], lQ, ${mt * 16 * QST} + kk * 16);`));
    const qa = (mt: number) => (qInRegs ? `qf[${mt}][kk]` : `qa[${mt}]`);
    L.push('      #pragma unroll', `      for (int n = 0; n < ${BK / 16}; n++) {`);
    L.push(`        u32 b[4]; fa_ldsm(b, sKc, n * ${16 * KST} + kk * 16);`);
    for (const mt of mts) L.push(`        fa_mma(sc[${mt}][2 * n], ${qa(mt)}, b[0], b[1]); fa_mma(sc[${mt}][2 * n + 1], ${qa(mt)}, b[2], b[3]);`);
    L.push('      }', '    }');
    L.push(`    const int t0 = j * ${BK};`);
    L.push(`    const bool edge = t0 + ${BK} > ${k.sk}${k.causal ? ` || t0 + ${BK - 1} > w0` : ''};`);
    L.push('    #pragma unroll', `    for (int mt = 0; mt < ${MT}; mt++) {`);
    L.push('      const int r0 = w0 + mt * 16 + g, r1 = r0 + 8;');
    L.push('      float mx0 = -K_INF, mx1 = -K_INF;');
    L.push('      #pragma unroll', `      for (int n = 0; n < ${BK / 8}; n++) {`, '        #pragma unroll', '        for (int q = 0; q < 4; q++) {');
    L.push('          float x = sc[mt][n][q];');
    L.push(`          if (edge) { const int tt = t0 + n * 8 + 2 * c4 + (q & 1); if (tt >= ${k.sk}${k.causal && probe() !== 'nocausal' ? ' || tt > (q < 2 ? r0 : r1)' : ''}) x = -K_INF; }`);
    L.push('          sc[mt][n][q] = x;', '          if (q < 2) mx0 = fmaxf(mx0, x); else mx1 = fmaxf(mx1, x);', '        }', '      }');
    L.push('      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1)); mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));');
    L.push('      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1)); mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));');
    L.push('      const float mn0 = fmaxf(m[mt][0], mx0), mn1 = fmaxf(m[mt][1], mx1);');
    // Scaled maxima (0 for rows with nothing visible yet, so that exp2 sees −∞, never ∞ − ∞).
    L.push(`      const float mu0 = mn0 == -K_INF ? 0.f : mn0 * ${S2}, mu1 = mn1 == -K_INF ? 0.f : mn1 * ${S2};`);
    L.push(`      const float cr0 = fa_exp2(m[mt][0] * ${S2} - mu0), cr1 = fa_exp2(m[mt][1] * ${S2} - mu1);`);
    L.push('      m[mt][0] = mn0; m[mt][1] = mn1;');
    L.push('      float ls0 = 0.f, ls1 = 0.f;');
    L.push('      #pragma unroll', `      for (int n = 0; n < ${BK / 8}; n++) {`);
    L.push(`        sc[mt][n][0] = fa_exp2(fmaf(sc[mt][n][0], ${S2}, -mu0)); sc[mt][n][1] = fa_exp2(fmaf(sc[mt][n][1], ${S2}, -mu0));`);
    L.push(`        sc[mt][n][2] = fa_exp2(fmaf(sc[mt][n][2], ${S2}, -mu1)); sc[mt][n][3] = fa_exp2(fmaf(sc[mt][n][3], ${S2}, -mu1));`);
    L.push('        ls0 += sc[mt][n][0] + sc[mt][n][1]; ls1 += sc[mt][n][2] + sc[mt][n][3];', '      }');
    L.push('      l[mt][0] = l[mt][0] * cr0 + ls0; l[mt][1] = l[mt][1] * cr1 + ls1;');
    if (!statsOnly) L.push('      #pragma unroll', `      for (int n = 0; n < ${DVP / 8}; n++) { o[mt][n][0] *= cr0; o[mt][n][1] *= cr0; o[mt][n][2] *= cr1; o[mt][n][3] *= cr1; }`);
    L.push('    }');
    if (!statsOnly) {
      L.push('    #pragma unroll', `    for (int kk = 0; kk < ${BK / 16}; kk++) {`);
      L.push(`      u32 pa[${MT}][4];`);
      for (const mt of mts) L.push(`      pa[${mt}][0] = fa_pack(sc[${mt}][2 * kk][0], sc[${mt}][2 * kk][1]); pa[${mt}][1] = fa_pack(sc[${mt}][2 * kk][2], sc[${mt}][2 * kk][3]); pa[${mt}][2] = fa_pack(sc[${mt}][2 * kk + 1][0], sc[${mt}][2 * kk + 1][1]); pa[${mt}][3] = fa_pack(sc[${mt}][2 * kk + 1][2], sc[${mt}][2 * kk + 1][3]);`);
      L.push('      #pragma unroll', `      for (int n = 0; n < ${DVP / 16}; n++) {`);
      L.push(`        u32 b[4]; fa_ldsm_t(b, sVc, kk * ${16 * VST} + n * 16);`);
      for (const mt of mts) L.push(`        fa_mma(o[${mt}][2 * n], pa[${mt}], b[0], b[1]); fa_mma(o[${mt}][2 * n + 1], pa[${mt}], b[2], b[3]);`);
      L.push('      }', '    }');
    }
    L.push('  }');
    L.push('  fa_wait_all();');
    L.push('  #pragma unroll', `  for (int mt = 0; mt < ${MT}; mt++) {`);
    L.push('    const int r0 = w0 + mt * 16 + g, r1 = r0 + 8;');
    L.push('    float l0 = l[mt][0], l1 = l[mt][1];');
    L.push('    l0 += __shfl_xor_sync(0xffffffffu, l0, 1); l0 += __shfl_xor_sync(0xffffffffu, l0, 2);');
    L.push('    l1 += __shfl_xor_sync(0xffffffffu, l1, 1); l1 += __shfl_xor_sync(0xffffffffu, l1, 2);');
    L.push(`    if (c4 == 0) { if (r0 < ${k.sq}) scr${-lse}[bt * ${k.sq} + r0] = m[mt][0] * ${S2} + log2f(l0); if (r1 < ${k.sq}) scr${-lse}[bt * ${k.sq} + r1] = m[mt][1] * ${S2} + log2f(l1); }`);
    if (!statsOnly && k.kind === 'attention') {
      L.push('    const float i0 = 1.f / l0, i1 = 1.f / l1;');
      L.push('    #pragma unroll', `    for (int n = 0; n < ${DVP / 8}; n++) {`, '      #pragma unroll', '      for (int q = 0; q < 4; q++) {');
      L.push(`        const int s = q < 2 ? r0 : r1; const int e = n * 8 + 2 * c4 + (q & 1);`);
      L.push(`        if (s < ${k.sq} && e < ${k.dv}) buf${k.out.buf}[${this.cg.expr(k.out.index)}] = ${this.cg.storeValue(k.out.buf, 'o[mt][n][q] * (q < 2 ? i0 : i1)')};`);
      L.push('      }', '    }');
    }
    L.push('  }');
    L.push('}');
    out.push(...L);
    return { kind: 'kernel', fn, grid: [nQ * prod(k.batch), 1, 1], block: [threads, 1, 1], params: prm, sharedBytes };
  }

  /** D[row] = Σ_e dO·O (one warp per query row) and dQacc[row, :] = 0 (when dQ is reduced into dQacc). */
  private preprocess(k: AttentionGradKernel, fn: string, ids: readonly number[], dsum: number, dqAcc: number | undefined, out: string[]): FlashLaunch {
    const rows = prod(k.batch) * k.sq;
    const prm = dqAcc === undefined ? [...ids, dsum] : [...ids, dsum, dqAcc];
    out.push(`extern "C" __global__ void __launch_bounds__(256) ${fn}(${this.cg.params(prm)}) {`);
    out.push('  const int lane = threadIdx.x & 31;', '  const long long row = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);', `  if (row >= ${rows}LL) return;`);
    out.push(`  const int s = (int)(row % ${k.sq});`, `  const long long bt = row / ${k.sq};`);
    this.batchVars(k, 'bt', out);
    out.push(`  float acc = 0.f;`, `  for (int e = lane; e < ${k.dv}; e += 32) acc += (${this.cg.expr(k.dout)}) * (${this.cg.expr(k.o)});`);
    out.push('  #pragma unroll', '  for (int w = 16; w > 0; w >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, w);');
    out.push(`  if (lane == 0) scr${-dsum}[row] = acc;`);
    if (dqAcc !== undefined) out.push(`  for (int d = lane; d < ${k.dk}; d += 32) scr${-dqAcc}[row * ${k.dk} + d] = 0.f;`);
    out.push('}');
    return { kind: 'kernel', fn, grid: [Math.ceil(rows / 8), 1, 1], block: [256, 1, 1], params: prm, sharedBytes: 0 };
  }

  /** dQ = scale · dQacc, stored through the kernel's dQ index. */
  private dqStore(k: AttentionGradKernel, fn: string, ids: readonly number[], dqAcc: number, out: string[]): FlashLaunch {
    const total = prod(k.batch) * k.sq * k.dk;
    const prm = [...ids, dqAcc];
    out.push(`extern "C" __global__ void __launch_bounds__(256) ${fn}(${this.cg.params(prm)}) {`);
    out.push('  const long long i_ = (long long)blockIdx.x * 256 + threadIdx.x;', `  if (i_ >= ${total}LL) return;`);
    out.push(`  const int d = (int)(i_ % ${k.dk});`, `  const long long row = i_ / ${k.dk};`, `  const int s = (int)(row % ${k.sq});`, `  const long long bt = row / ${k.sq};`);
    this.batchVars(k, 'bt', out);
    out.push(`  buf${k.dQ!.buf}[${this.cg.expr(k.dQ!.index)}] = ${this.cg.storeValue(k.dQ!.buf, `scr${-dqAcc}[i_] * ${f32(k.scale)}`)};`, '}');
    return { kind: 'kernel', fn, grid: [Math.ceil(total / 256), 1, 1], block: [256, 1, 1], params: prm, sharedBytes: 0 };
  }

  /**
   * dQ without reductions: one block = `bq` query rows (16·MT per warp, as the forward) walks the key
   * tiles, recomputes P = exp2(S − lse) and dP = dO·Vᵀ, and accumulates dQ += dS·K in registers
   * (dS = P∘(dP − D)), then stores scale·dQ through the kernel's dQ index.
   */
  private dqPass(k: AttentionGradKernel, t: { bq: number; bk: number; warps: number }, DKP: number, DVP: number, fn: string, ids: readonly number[], lse: number, dsum: number, out: string[]): FlashLaunch {
    const { bq: BQ, bk: BK, warps: NW } = t;
    const threads = NW * 32;
    const MT = BQ / (NW * 16), WR = 16 * MT;
    const QST = DKP + 8, OST = DVP + 8, KST = DKP + 8, VST = DVP + 8;
    const nQ = Math.ceil(k.sq / BQ), nK = Math.ceil(k.sk / BK);
    const sharedBytes = 2 * (BQ * QST + BQ * OST + 2 * BK * KST + 2 * BK * VST);
    const prm = [...ids, lse, dsum];
    const S2 = f32(k.scale * LOG2E);
    const mts = Array.from({ length: MT }, (_, i) => i);
    const L: string[] = [];
    L.push(`extern "C" __global__ void __launch_bounds__(${threads}) ${fn}(${this.cg.params(prm)}) {`);
    L.push('  extern __shared__ __align__(16) u16 fa_sm[];');
    L.push(`  u16* Qs = fa_sm; u16* Os = Qs + ${BQ * QST}; u16* Ks = Os + ${BQ * OST}; u16* Vs = Ks + ${2 * BK * KST};`);
    L.push(`  const u32 sQs = fa_saddr(Qs), sOs = sQs + ${2 * BQ * QST}, sKs = sOs + ${2 * BQ * OST}, sVs = sKs + ${4 * BK * KST};`);
    L.push('  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c4 = lane & 3;');
    L.push(`  const int qt = ${k.causal ? `${nQ - 1} - ` : ''}(int)(blockIdx.x % ${nQ}u);`);
    L.push(`  const long long bt = blockIdx.x / ${nQ}u;`);
    this.batchVars(k, 'bt', L);
    L.push(`  const int q0 = qt * ${BQ};`);
    L.push(`  const int nT = ${k.causal ? `min(${nK}, (min(q0 + ${BQ}, ${k.sq}) - 1) / ${BK} + 1)` : `${nK}`};`);
    const kvLoad = (stage: string, start: string, ind: string) => this.kvTileLoad(k, { BK, KST, VST, DKP, DVP, threads, withV: true }, stage, start, ind);
    L.push(...this.load({ op: k.q, rowVar: 's', colVar: 'd', rows: BQ, rowStart: 'q0', rowLimit: k.sq, cols: k.dk, colsPad: DKP, stride: QST, dst: 'Qs', threads }, '  '));
    L.push(...this.load({ op: k.dout, rowVar: 's', colVar: 'e', rows: BQ, rowStart: 'q0', rowLimit: k.sq, cols: k.dv, colsPad: DVP, stride: OST, dst: 'Os', threads }, '  '));
    L.push(...kvLoad('0', '0', '  '));
    L.push('  fa_commit();');
    L.push(`  const int w0 = q0 + warp * ${WR};`);
    // Row statistics (rows past the sequence: lse = +∞, so P = 0).
    L.push(`  float ls[${MT}][2], dd[${MT}][2];`, '  #pragma unroll', `  for (int mt = 0; mt < ${MT}; mt++)`, '  #pragma unroll', '  for (int h = 0; h < 2; h++) {');
    L.push(`    const int r = w0 + mt * 16 + g + h * 8;`, `    ls[mt][h] = r < ${k.sq} ? scr${-lse}[bt * ${k.sq} + r] : K_INF; dd[mt][h] = r < ${k.sq} ? scr${-dsum}[bt * ${k.sq} + r] : 0.f;`, '  }');
    L.push(`  float dq[${MT}][${DKP / 8}][4];`, '  #pragma unroll', `  for (int mt = 0; mt < ${MT}; mt++)`, '  #pragma unroll', `  for (int n = 0; n < ${DKP / 8}; n++) { dq[mt][n][0] = 0.f; dq[mt][n][1] = 0.f; dq[mt][n][2] = 0.f; dq[mt][n][3] = 0.f; }`);
    // The tile loop stays a loop (short constant trip counts would otherwise be unrolled, and spill).
    L.push('  #pragma unroll 1', '  for (int j = 0; j < nT; j++) {');
    L.push('    fa_wait_all(); __syncthreads();');
    L.push('    if (j + 1 < nT) {', '      const int nx = (j + 1) & 1, t0n = (j + 1) * ' + BK + ';', ...kvLoad('nx', 't0n', '      '), '    }');
    L.push('    fa_commit();');
    L.push(`    const u32 sKc = sKs + (j & 1) * ${2 * BK * KST}, sVc = sVs + (j & 1) * ${2 * BK * VST};`);
    /** acc[mt] (rows of this warp × BK keys) = A (rows of `aBase`, row-major) · Bᵀ (rows of `bBase`). */
    const rowsTimesKeys = (acc: string, aBase: string, aStride: number, bBase: string, bStride: number, kSteps: number) => {
      L.push(`    float ${acc}[${MT}][${BK / 8}][4];`, '    #pragma unroll', `    for (int mt = 0; mt < ${MT}; mt++)`, '    #pragma unroll', `    for (int n = 0; n < ${BK / 8}; n++) { ${acc}[mt][n][0] = 0.f; ${acc}[mt][n][1] = 0.f; ${acc}[mt][n][2] = 0.f; ${acc}[mt][n][3] = 0.f; }`);
      L.push('    #pragma unroll', `    for (int kk = 0; kk < ${kSteps}; kk++) {`);
      L.push(`      u32 a[${MT}][4];`, ...mts.map((mt) => `      fa_ldsm(a[${mt}], s${aBase}, (warp * ${WR} + ${mt * 16} + (lane & 15)) * ${aStride} + kk * 16 + (lane >> 4) * 8);`));
      L.push('      #pragma unroll', `      for (int n = 0; n < ${BK / 16}; n++) {`);
      L.push(`        u32 b[4]; fa_ldsm(b, s${bBase}, (n * 16 + (lane & 7) + ((lane >> 4) << 3)) * ${bStride} + kk * 16 + ((lane >> 3) & 1) * 8);`);
      for (const mt of mts) L.push(`        fa_mma(${acc}[${mt}][2 * n], a[${mt}], b[0], b[1]); fa_mma(${acc}[${mt}][2 * n + 1], a[${mt}], b[2], b[3]);`);
      L.push('      }', '    }');
    };
    rowsTimesKeys('sc', 'Qs', QST, 'Kc', KST, DKP / 16);
    rowsTimesKeys('dp', 'Os', OST, 'Vc', VST, DVP / 16);
    L.push(`    const int t0 = j * ${BK};`);
    L.push('    #pragma unroll', `    for (int mt = 0; mt < ${MT}; mt++)`, '    #pragma unroll', `    for (int n = 0; n < ${BK / 8}; n++) {`, '      #pragma unroll', '      for (int q = 0; q < 4; q++) {');
    L.push('        const int h = q >> 1, tt = t0 + n * 8 + 2 * c4 + (q & 1), r = w0 + mt * 16 + g + h * 8;');
    L.push(`        float p = fa_exp2(fmaf(sc[mt][n][q], ${S2}, -ls[mt][h]));`);
    L.push(`        if (tt >= ${k.sk}${k.causal ? (probe() === 'dqmask' ? ' || tt > r + 16' : ' || tt > r') : ''}) p = 0.f;`);
    L.push('        dp[mt][n][q] = p * (dp[mt][n][q] - dd[mt][h]);', '      }', '    }');
    // dQ += dS K
    L.push('    #pragma unroll', `    for (int kk = 0; kk < ${BK / 16}; kk++) {`);
    L.push(`      u32 pa[${MT}][4];`);
    for (const mt of mts) L.push(`      pa[${mt}][0] = fa_pack(dp[${mt}][2 * kk][0], dp[${mt}][2 * kk][1]); pa[${mt}][1] = fa_pack(dp[${mt}][2 * kk][2], dp[${mt}][2 * kk][3]); pa[${mt}][2] = fa_pack(dp[${mt}][2 * kk + 1][0], dp[${mt}][2 * kk + 1][1]); pa[${mt}][3] = fa_pack(dp[${mt}][2 * kk + 1][2], dp[${mt}][2 * kk + 1][3]);`);
    L.push('      #pragma unroll', `      for (int n = 0; n < ${DKP / 16}; n++) {`);
    L.push(`        u32 b[4]; fa_ldsm_t(b, sKc, (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ${KST} + n * 16 + (lane >> 4) * 8);`);
    for (const mt of mts) L.push(`        fa_mma(dq[${mt}][2 * n], pa[${mt}], b[0], b[1]); fa_mma(dq[${mt}][2 * n + 1], pa[${mt}], b[2], b[3]);`);
    L.push('      }', '    }');
    L.push('  }');
    L.push('  fa_wait_all();');
    L.push('  #pragma unroll', `  for (int mt = 0; mt < ${MT}; mt++)`, '  #pragma unroll', `  for (int n = 0; n < ${DKP / 8}; n++) {`, '    #pragma unroll', '    for (int q = 0; q < 4; q++) {');
    L.push(`      const int s = w0 + mt * 16 + g + (q >> 1) * 8, d = n * 8 + 2 * c4 + (q & 1);`);
    L.push(`      if (s < ${k.sq} && d < ${k.dk}) buf${k.dQ!.buf}[${this.cg.expr(k.dQ!.index)}] = ${this.cg.storeValue(k.dQ!.buf, `dq[mt][n][q] * ${f32(k.scale)}`)};`);
    L.push('    }', '  }');
    L.push('}');
    out.push(...L);
    return { kind: 'kernel', fn, grid: [nQ * prod(k.batch), 1, 1], block: [threads, 1, 1], params: prm, sharedBytes };
  }

  private backward(k: AttentionGradKernel, t: AttentionTile, fn: string, ids: readonly number[], lse: number, dsum: number, dqAcc: number | undefined, out: string[]): FlashLaunch {
    const { bq: BQ, bk: BK, warps: NW, dkPad: DKP, dvPad: DVP, dkvChunks: NCH } = t;
    const threads = NW * 32;
    // KT m16 key tiles per warp: each Q / dO fragment read from shared memory feeds 2·KT products.
    const KT = BK / (NW * 16), WR = 16 * KT;
    const KST = DKP + 8, VST = DVP + 8, SST = BQ + 8;
    const DKC = DKP / NCH, DVC = DVP / NCH;
    const RG = BQ / 16, CG = NW / RG, DQC = DKP / CG;
    const nQ = Math.ceil(k.sq / BQ), nK = Math.ceil(k.sk / BK);
    const sharedBytes = 2 * (BK * KST + BK * VST + 2 * BQ * KST + 2 * BQ * VST + (dqAcc === undefined ? 0 : BK * SST)) + 4 * 4 * BQ;
    const prm = dqAcc === undefined ? [...ids, lse, dsum] : [...ids, lse, dsum, dqAcc];
    const S2 = f32(k.scale * LOG2E);
    const kts = Array.from({ length: KT }, (_, i) => i);
    const L: string[] = [];
    L.push(`extern "C" __global__ void __launch_bounds__(${threads}) ${fn}(${this.cg.params(prm)}) {`);
    L.push('  extern __shared__ __align__(16) u16 fa_sm[];');
    L.push(`  u16* Ks = fa_sm; u16* Vs = Ks + ${BK * KST}; u16* Qs = Vs + ${BK * VST}; u16* Os = Qs + ${2 * BQ * KST}; u16* Ss = Os + ${2 * BQ * VST};`);
    L.push(`  const u32 sKs = fa_saddr(Ks), sVs = sKs + ${2 * BK * KST}, sQs = sVs + ${2 * BK * VST}, sOs = sQs + ${4 * BQ * KST}, sSs = sOs + ${4 * BQ * VST};`);
    L.push(`  float* Ls = (float*)(Ss + ${dqAcc === undefined ? 0 : BK * SST}); float* Ds = Ls + ${2 * BQ};`);
    L.push('  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c4 = lane & 3;');
    L.push(`  const int kt = (int)(blockIdx.x % ${nK}u);`, `  const long long bt = blockIdx.x / ${nK}u;`);
    this.batchVars(k, 'bt', L);
    L.push(`  const int k0 = kt * ${BK};`, `  const int iStart = ${k.causal ? `k0 / ${BQ}` : '0'};`);
    L.push(...this.load({ op: k.key, rowVar: 't', colVar: 'd', rows: BK, rowStart: 'k0', rowLimit: k.sk, cols: k.dk, colsPad: DKP, stride: KST, dst: 'Ks', threads }, '  '));
    L.push(...this.load({ op: k.v, rowVar: 't', colVar: 'e', rows: BK, rowStart: 'k0', rowLimit: k.sk, cols: k.dv, colsPad: DVP, stride: VST, dst: 'Vs', threads }, '  '));
    const issue = (tile: string, stage: string, ind: string) => [
      `${ind}{`,
      `${ind}  const int st_ = ${stage}, s0_ = (${tile}) * ${BQ};`,
      ...this.load({ op: k.q, rowVar: 's', colVar: 'd', rows: BQ, rowStart: 's0_', rowLimit: k.sq, cols: k.dk, colsPad: DKP, stride: KST, dst: `(Qs + st_ * ${BQ * KST})`, threads }, ind + '  '),
      ...this.load({ op: k.dout, rowVar: 's', colVar: 'e', rows: BQ, rowStart: 's0_', rowLimit: k.sq, cols: k.dv, colsPad: DVP, stride: VST, dst: `(Os + st_ * ${BQ * VST})`, threads }, ind + '  '),
      `${ind}  if (tid < ${BQ}) { const int s_ = s0_ + tid; Ls[st_ * ${BQ} + tid] = s_ < ${k.sq} ? scr${-lse}[bt * ${k.sq} + s_] : K_INF; Ds[st_ * ${BQ} + tid] = s_ < ${k.sq} ? scr${-dsum}[bt * ${k.sq} + s_] : 0.f; }`,
      `${ind}}`,
    ];
    const zero = (name: string, n: number, ind: string, tiles = KT) => [`${ind}float ${name}[${tiles}][${n}][4];`, `${ind}#pragma unroll`, `${ind}for (int x = 0; x < ${tiles}; x++)`, `${ind}#pragma unroll`, `${ind}for (int n = 0; n < ${n}; n++) { ${name}[x][n][0] = 0.f; ${name}[x][n][1] = 0.f; ${name}[x][n][2] = 0.f; ${name}[x][n][3] = 0.f; }`];
    /** acc[kt] (16·KT × 16·nb) += A[kt] (rows of this warp in `aSrc`, row-major) · B from `bLoad`. */
    const rowProduct = (acc: string, aBase: string, aStride: number, kSteps: number, nTiles: number, bAddr: string, ind: string) => {
      L.push(`${ind}#pragma unroll`, `${ind}for (int kk = 0; kk < ${kSteps}; kk++) {`);
      L.push(`${ind}  u32 a[${KT}][4];`);
      for (const x of kts) L.push(`${ind}  fa_ldsm(a[${x}], s${aBase}, (warp * ${WR} + ${x * 16} + (lane & 15)) * ${aStride} + kk * 16 + (lane >> 4) * 8);`);
      L.push(`${ind}  #pragma unroll`, `${ind}  for (int n = 0; n < ${nTiles}; n++) {`);
      L.push(`${ind}    u32 b[4]; fa_ldsm(b, ${bAddr});`);
      for (const x of kts) L.push(`${ind}    fa_mma(${acc}[${x}][2 * n], a[${x}], b[0], b[1]); fa_mma(${acc}[${x}][2 * n + 1], a[${x}], b[2], b[3]);`);
      L.push(`${ind}  }`, `${ind}}`);
    };
    /** acc[kt] += (the bf16 rounding of the C fragments src[kt], as A) · B (transposing loads). */
    const fragProduct = (acc: string, src: string, kSteps: number, nTiles: number, bAddr: string, ind: string) => {
      L.push(`${ind}#pragma unroll`, `${ind}for (int kk = 0; kk < ${kSteps}; kk++) {`);
      L.push(`${ind}  u32 a[${KT}][4];`);
      for (const x of kts) L.push(`${ind}  a[${x}][0] = fa_pack(${src}[${x}][2 * kk][0], ${src}[${x}][2 * kk][1]); a[${x}][1] = fa_pack(${src}[${x}][2 * kk][2], ${src}[${x}][2 * kk][3]); a[${x}][2] = fa_pack(${src}[${x}][2 * kk + 1][0], ${src}[${x}][2 * kk + 1][1]); a[${x}][3] = fa_pack(${src}[${x}][2 * kk + 1][2], ${src}[${x}][2 * kk + 1][3]);`);
      L.push(`${ind}  #pragma unroll`, `${ind}  for (int n = 0; n < ${nTiles}; n++) {`);
      L.push(`${ind}    u32 b[4]; fa_ldsm_t(b, ${bAddr});`);
      for (const x of kts) L.push(`${ind}    fa_mma(${acc}[${x}][2 * n], a[${x}], b[0], b[1]); fa_mma(${acc}[${x}][2 * n + 1], a[${x}], b[2], b[3]);`);
      L.push(`${ind}  }`, `${ind}}`);
    };
    L.push('  int it = 0;', `  const int ta = k0 + warp * ${WR} + g;`);
    L.push('  #pragma unroll 1', `  for (int ch = 0; ch < ${NCH}; ch++) {`);
    L.push(...zero('dk', DKC / 8, '    '), ...zero('dv', DVC / 8, '    '));
    L.push(`    if (iStart < ${nQ}) {`, ...issue('iStart', 'it & 1', '      '), '    }', '    fa_commit();');
    L.push('    #pragma unroll 1', `    for (int i = iStart; i < ${nQ}; i++, it++) {`);
    L.push('      fa_wait_all(); __syncthreads();');
    L.push(`      if (i + 1 < ${nQ}) {`, ...issue('i + 1', '(it + 1) & 1', '        '), '      }', '      fa_commit();');
    L.push(`      const int st = it & 1, s0 = i * ${BQ};`);
    L.push(`      const u32 sQc = sQs + st * ${2 * BQ * KST}, sOc = sOs + st * ${2 * BQ * VST}; const float* Lc = Ls + st * ${BQ}; const float* Dc = Ds + st * ${BQ};`);
    // S^T = K Q^T
    L.push(...zero('sc', BQ / 8, '      '));
    rowProduct('sc', 'Ks', KST, DKP / 16, BQ / 16, `sQc, (n * 16 + (lane & 7) + ((lane >> 4) << 3)) * ${KST} + kk * 16 + ((lane >> 3) & 1) * 8`, '      ');
    // P^T
    L.push('      #pragma unroll', `      for (int x = 0; x < ${KT}; x++)`, '      #pragma unroll', `      for (int n = 0; n < ${BQ / 8}; n++) {`, '        #pragma unroll', '        for (int q = 0; q < 4; q++) {');
    L.push('          const int sl = n * 8 + 2 * c4 + (q & 1), tt = ta + x * 16 + (q < 2 ? 0 : 8);');
    L.push(`          float p = fa_exp2(fmaf(sc[x][n][q], ${S2}, -Lc[sl]));`);
    L.push(`          if (tt >= ${k.sk}${k.causal ? ' || s0 + sl < tt' : ''}) p = 0.f;`);
    L.push('          sc[x][n][q] = p;', '        }', '      }');
    // dV += P^T dO
    fragProduct('dv', 'sc', BQ / 16, DVC / 16, `sOc, (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ${VST} + ch * ${DVC} + n * 16 + (lane >> 4) * 8`, '      ');
    // dP^T = V dO^T
    L.push(...zero('dp', BQ / 8, '      '));
    rowProduct('dp', 'Vs', VST, DVP / 16, BQ / 16, `sOc, (n * 16 + (lane & 7) + ((lane >> 4) << 3)) * ${VST} + kk * 16 + ((lane >> 3) & 1) * 8`, '      ');
    // dS^T = P^T (dP^T - D)
    L.push('      #pragma unroll', `      for (int x = 0; x < ${KT}; x++)`, '      #pragma unroll', `      for (int n = 0; n < ${BQ / 8}; n++) {`, '        #pragma unroll');
    L.push('        for (int q = 0; q < 4; q++) dp[x][n][q] = sc[x][n][q] * (dp[x][n][q] - Dc[n * 8 + 2 * c4 + (q & 1)]);', '      }');
    // dK += dS^T Q
    fragProduct('dk', 'dp', BQ / 16, DKC / 16, `sQc, (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ${KST} + ch * ${DKC} + n * 16 + (lane >> 4) * 8`, '      ');
    if (dqAcc !== undefined && probe() !== 'nodq') {
      L.push('      if (ch == 0) {');
      L.push('        #pragma unroll', `        for (int x = 0; x < ${KT}; x++)`, '        #pragma unroll', `        for (int n = 0; n < ${BQ / 8}; n++) {`);
      L.push(`          *(u32*)(Ss + (warp * ${WR} + x * 16 + g) * ${SST} + n * 8 + 2 * c4) = fa_pack(dp[x][n][0], dp[x][n][1]);`);
      L.push(`          *(u32*)(Ss + (warp * ${WR} + x * 16 + g + 8) * ${SST} + n * 8 + 2 * c4) = fa_pack(dp[x][n][2], dp[x][n][3]);`, '        }');
      L.push('        __syncthreads();');
      L.push(`        const int rg = warp % ${RG}, cg = warp / ${RG};`);
      L.push(...zero('dq', DQC / 8, '        ', 1));
      L.push('        #pragma unroll', `        for (int kk = 0; kk < ${BK / 16}; kk++) {`);
      L.push(`          u32 a[4]; fa_ldsm_t(a, sSs, (kk * 16 + (lane & 7) + ((lane >> 4) << 3)) * ${SST} + rg * 16 + ((lane >> 3) & 1) * 8);`);
      L.push('          #pragma unroll', `          for (int n = 0; n < ${DQC / 16}; n++) {`);
      L.push(`            u32 b[4]; fa_ldsm_t(b, sKs, (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ${KST} + cg * ${DQC} + n * 16 + (lane >> 4) * 8);`);
      L.push('            fa_mma(dq[0][2 * n], a, b[0], b[1]); fa_mma(dq[0][2 * n + 1], a, b[2], b[3]);', '          }', '        }');
      if (k.dk % 2 === 0) {
        // Pairs of adjacent columns (2·c4, 2·c4 + 1) in one 8-byte reduction; dk even keeps them aligned.
        L.push('        #pragma unroll', `        for (int n = 0; n < ${DQC / 8}; n++) {`, '          #pragma unroll', '          for (int h = 0; h < 2; h++) {');
        L.push(`            const int s = s0 + rg * 16 + g + h * 8, d = cg * ${DQC} + n * 8 + 2 * c4;`);
        L.push(`            if (s < ${k.sq} && d < ${k.dk}${probe() === 'nored' ? ' && dq[0][n][2 * h] == 1234.5f' : ''}) fa_red2(&scr${-dqAcc!}[(bt * ${k.sq} + s) * ${k.dk} + d], dq[0][n][2 * h], dq[0][n][2 * h + 1]);`);
        L.push('          }', '        }', '      }');
      } else {
        L.push('        #pragma unroll', `        for (int n = 0; n < ${DQC / 8}; n++) {`, '          #pragma unroll', '          for (int q = 0; q < 4; q++) {');
        L.push(`            const int s = s0 + rg * 16 + g + (q < 2 ? 0 : 8), d = cg * ${DQC} + n * 8 + 2 * c4 + (q & 1);`);
        L.push(`            if (s < ${k.sq} && d < ${k.dk}) atomicAdd(&scr${-dqAcc!}[(bt * ${k.sq} + s) * ${k.dk} + d], dq[0][n][q]);`);
        L.push('          }', '        }', '      }');
      }
    }
    L.push('    }');
    const store = (acc: string, tgt: { buf: number; index: Expr } | undefined, col: 'd' | 'e', cols: number, real: number, scale: string) => {
      if (!tgt) return;
      L.push('    #pragma unroll', `    for (int x = 0; x < ${KT}; x++)`, '    #pragma unroll', `    for (int n = 0; n < ${cols / 8}; n++) {`, '      #pragma unroll', '      for (int q = 0; q < 4; q++) {');
      L.push(`        const int t = ta + x * 16 + (q < 2 ? 0 : 8), ${col} = ch * ${cols} + n * 8 + 2 * c4 + (q & 1);`);
      L.push(`        if (t < ${k.sk} && ${col} < ${real}) buf${tgt.buf}[${this.cg.expr(tgt.index)}] = ${this.cg.storeValue(tgt.buf, `${acc}[x][n][q]${scale}`)};`);
      L.push('      }', '    }');
    };
    store('dk', k.dK, 'd', DKC, k.dk, ` * ${f32(k.scale)}`);
    store('dv', k.dV, 'e', DVC, k.dv, '');
    L.push('  }', '  fa_wait_all();', '}');
    out.push(...L);
    return { kind: 'kernel', fn, grid: [nK * prod(k.batch), 1, 1], block: [threads, 1, 1], params: prm, sharedBytes };
  }
}

function newScratch(scratch: ScratchDecl[], bytes: number): number {
  const id = -(scratch.length + 1);
  scratch.push({ id, bytes });
  return id;
}

function operandKey(k: AttentionKernel | AttentionGradKernel): string {
  return [exprKey(k.q), exprKey(k.key), exprKey(k.v), k.batch.join('x'), k.sq, k.sk, k.dk, k.dv, k.causal, k.scale].join('|');
}

function bufsOf(e: Expr): number[] {
  const out: number[] = [];
  const walk = (x: Expr): void => {
    switch (x.k) {
      case 'load': out.push(x.buf); walk(x.index); break;
      case 'un': case 'cast': walk(x.a); break;
      case 'bin': walk(x.a); walk(x.b); break;
      case 'select': walk(x.c); walk(x.a); walk(x.b); break;
      case 'random': walk(x.s0); walk(x.s1); walk(x.index); break;
      default: break;
    }
  };
  walk(e);
  return out;
}

/** `load(bf16 buf, c + Σ coef·var)` with unit stride along `colVar` and 16-byte aligned rows: cp.async-able. */
function contiguousBf16(e: Expr, buffers: readonly BufferDecl[], rowVar: string, colVar: string, cols: number): { buf: number; c: number; coef: Map<string, number> } | undefined {
  if (e.k !== 'load' || buffers[e.buf]!.dtype !== 'bf16' || cols % 8 !== 0) return undefined;
  const a = affine(e.index);
  if (!a || a.coef.get(colVar) !== 1 || a.c % 8 !== 0) return undefined;
  for (const [v, c] of a.coef) {
    if (v === colVar) continue;
    if (v !== rowVar && !/^b\d+$/.test(v)) return undefined;
    if (c % 8 !== 0) return undefined;
  }
  return { buf: e.buf, ...a };
}

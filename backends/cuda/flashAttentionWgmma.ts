/**
 * @file The Hopper (sm_90a) flash-attention forward: warpgroup MMA (wgmma.mma_async m64nNk16 bf16 → f32)
 * for attention kernels whose tile carries `wgmma` (compiler/schedule/attentionTiling.ts). One block =
 * `warpgroups` warpgroups × 64 query rows; the block walks the keys in tiles of `bk` rows, double-buffered
 * with cp.async. S = Q·Kᵀ reads both operands from shared memory (K-major descriptors); O += P·V takes P
 * from registers (the S accumulators rounded to bf16: the accumulator layout of wgmma is the A-fragment
 * layout) and V from shared memory (N-major descriptor, transposed B). Online softmax as the mma.sync
 * forward (flashAttention.ts), base 2, the log-sum-exp saved for the backward in the same format.
 * Warp-specialized forward (`producerWarps`, FlashAttention-3's structure with cp.async in place of TMA):
 * a producer warpgroup streams K/V tiles into `stages`-deep rings guarded by mbarriers (full: the tile's
 * cp.async group completed and fenced into the async proxy; empty: every consumer thread's wgmma reading
 * it completed), the consumer warpgroups never synchronize the block; setmaxnreg gives them the registers;
 * `pingpong` makes the two consumers take turns issuing their products (named barriers).
 *
 * Shared-memory layout (the 128-byte swizzle of wgmma / TMA): an operand tile of R rows × D columns
 * (D a multiple of 64) is D/64 column blocks of R rows × 128 bytes; the 16-byte chunk c of row r sits at
 * chunk c ⊕ (r mod 8) of its row; blocks start at multiples of 1024 bytes. K-major descriptors (Q, K):
 * SBO = 1024 (8-row groups), a k16 step inside a 128-byte row adds 32 bytes to the start address, the next
 * column block R·128. N-major (V as B of P·V, rows = keys = the K dimension): LBO = R·128 (the next 64
 * columns), SBO = 1024 (the next 8 keys), a k16 step = 16 rows = 2048 bytes.
 * Requires operands that are bf16 loads contiguous along the head dim (16-byte cp.async), head dims that
 * are multiples of 64 up to 256: `wgmmaForwardApplies`; otherwise the mma.sync kernel runs.
 */
import type { AttentionGradKernel, AttentionKernel, AttentionTile, BufferDecl, Expr } from '../../ir/kernel/types.ts';

/** What the generator needs from flashAttention.ts. */
export interface WgmmaContext {
  readonly buffers: readonly BufferDecl[];
  expr(e: Expr): string;
  storeValue(buf: number, value: string): string;
  params(ids: readonly number[]): string;
  /** Lines declaring b0.. (batch indices) from the linear batch index `linear`. */
  batchVars(linear: string, out: string[]): void;
  /** `load(bf16 buf, c + Σ coef·var)` contiguous along colVar (cp.async-able), else undefined. */
  contiguous(e: Expr, rowVar: string, colVar: string, cols: number): { buf: number; c: number; coef: Map<string, number> } | undefined;
}

/** A generated attention kernel's launch (the mma.sync and the wgmma emitters return the same). */
export interface FlashLaunch {
  readonly kind: 'kernel';
  readonly fn: string;
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly params: readonly number[];
  readonly sharedBytes: number;
}

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

/** Whether the wgmma forward can render this kernel (else the mma.sync forward). */
export function wgmmaForwardApplies(k: AttentionKernel | AttentionGradKernel, t: AttentionTile, ctx: Pick<WgmmaContext, 'contiguous'>): boolean {
  if (!t.wgmma) return false;
  if (k.dk % 64 !== 0 || k.dv % 64 !== 0 || k.dk > 256 || k.dv > 256) return false;
  return ctx.contiguous(k.q, 's', 'd', k.dk) !== undefined && ctx.contiguous(k.key, 't', 'd', k.dk) !== undefined && ctx.contiguous(k.v, 't', 'e', k.dv) !== undefined;
}

/**
 * `asm volatile` of one wgmma with `n/2` f32 accumulators acc[n/8][4]; A from a descriptor or 4 registers;
 * `accumulate` (a C++ int): 0 overwrites the accumulators (the first k-step of a product: no zeroing
 * instructions, which the compiler would otherwise be free to sink past the fence, making ptxas serialize).
 */
function wgmmaAsm(n: number, acc: string, a: { desc: string } | { regs: string }, bDesc: string, transB: 0 | 1, accumulate = '1'): string {
  const nAcc = n / 2;
  const accs = Array.from({ length: nAcc }, (_, i) => `%${i}`).join(', ');
  const ops = Array.from({ length: nAcc }, (_, i) => `"+f"(${acc}[${i >> 2}][${i & 3}])`).join(', ');
  if ('desc' in a) {
    return `asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %${nAcc + 2}, 0;\\nwgmma.mma_async.sync.aligned.m64n${n}k16.f32.bf16.bf16 {${accs}}, %${nAcc}, %${nAcc + 1}, p, 1, 1, 0, ${transB};\\n}\\n" : ${ops} : "l"(${a.desc}), "l"(${bDesc}), "r"(${accumulate}));`;
  }
  const ar = [0, 1, 2, 3].map((i) => `%${nAcc + i}`).join(', ');
  return `asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %${nAcc + 5}, 0;\\nwgmma.mma_async.sync.aligned.m64n${n}k16.f32.bf16.bf16 {${accs}}, {${ar}}, %${nAcc + 4}, p, 1, 1, ${transB};\\n}\\n" : ${ops} : "r"(${a.regs}[0]), "r"(${a.regs}[1]), "r"(${a.regs}[2]), "r"(${a.regs}[3]), "l"(${bDesc}), "r"(${accumulate}));`;
}

/** The constant high part of a 128-byte-swizzle descriptor (LBO, SBO = 1024, swizzle mode 1), as C++. */
export function descHi(lboBytes: number): string {
  const v = (BigInt(lboBytes >> 4) << 16n) | (BigInt(1024 >> 4) << 32n) | (1n << 62n);
  return `0x${v.toString(16)}ull`;
}

const WG_FENCE = 'asm volatile("wgmma.fence.sync.aligned;" ::: "memory");';
/**
 * Pins the registers of `name[rows][4]` (f32 accumulators, or u32 A fragments with `u32`) at this point of
 * the program (CUTLASS's warpgroup_fence_operand): before wgmma.fence, so that the compiler writes none of
 * them between the fence and the wgmma (ptxas would serialize every wgmma); after wgmma.wait_group, so
 * that no read of them moves above the wait.
 */
function pin(name: string, rows: number, u32 = false): string {
  const c = u32 ? 'r' : 'f';
  return `#pragma unroll\nfor (int i_ = 0; i_ < ${rows}; i_++) asm volatile("" : "+${c}"(${name}[i_][0]), "+${c}"(${name}[i_][1]), "+${c}"(${name}[i_][2]), "+${c}"(${name}[i_][3]) :: "memory");`;
}
const COMMIT = 'asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");';
const WAIT = (n: number) => `asm volatile("wgmma.wait_group.sync.aligned ${n};" ::: "memory");`;
/** pin() as lines indented by `ind`. */
const pinAt = (name: string, rows: number, ind: string, u32 = false) => pin(name, rows, u32).split('\n').map((x) => ind + x);
const WG_COMMIT_WAIT = 'asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");';

/**
 * Lines that stage `rows` rows (rowStart.., < rowLimit, zero past it) × `cols` columns of a contiguous
 * bf16 operand into the swizzled layout at shared address `dst` (a multiple of 1024); no wait, no barrier.
 */
function swizzledLoad(ctx: WgmmaContext, op: Expr, rowVar: string, colVar: string, rows: number, rowStart: string, rowLimit: number, cols: number, dst: string, threads: number, ind: string): string[] {
  const fast = ctx.contiguous(op, rowVar, colVar, cols)!;
  const base = [`${fast.c}`, ...[...fast.coef].filter(([v]) => v !== rowVar && v !== colVar).map(([v, c]) => `(long long)${c} * ${v}`)].join(' + ');
  const rowCoef = fast.coef.get(rowVar) ?? 0;
  const per = cols / 8;
  return [
    `${ind}{`,
    `${ind}  const u16* base_ = buf${fast.buf} + (${base});`,
    `${ind}  #pragma unroll`,
    `${ind}  for (int ch_ = tid; ch_ < ${rows * per}; ch_ += ${threads}) {`,
    `${ind}    const int r_ = ch_ / ${per}, c_ = ch_ % ${per}, row_ = ${rowStart} + r_;`,
    `${ind}    const bool ok_ = row_ < ${rowLimit};`,
    `${ind}    fa_cp16(${dst} + (u32)((c_ >> 3) * ${rows * 128} + r_ * 128 + (((c_ & 7) ^ (r_ & 7)) << 4)), ok_ ? base_ + (long long)row_ * ${rowCoef} + c_ * 8 : buf${fast.buf}, ok_);`,
    `${ind}  }`,
    `${ind}}`,
  ];
}

/**
 * Registers per thread after setmaxnreg (multiples of 8; 128·(56 + 2·224) ≤ 65536; the block starts at
 * 168 = 65536 / 384). At 40 the producers' address arithmetic spilled (ptxas: 8 bytes in the forward, 48-56
 * in the backward); at 224 the backward's consumers fit head dim 64 with the overlap, 128 without it.
 */
const WS_PRODUCER_REGS = 56, WS_CONSUMER_REGS = 224;
/** mbarrier (shared address `a`, a C++ u32 expression) wait for phase parity `ph`, spinning on try_wait. */
const mbWait = (a: string, ph: string) => `asm volatile("{\\n.reg .pred P;\\nWAIT:\\nmbarrier.try_wait.parity.shared::cta.b64 P, [%0], %1;\\n@!P bra WAIT;\\n}\\n" :: "r"(${a}), "r"((u32)(${ph})) : "memory");`;
/** mbarrier arrive (release) by this thread. */
const mbArrive = (a: string) => `asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(${a}) : "memory");`;

/**
 * The producer warpgroup of the warp-specialized forward (FlashAttention-3's layout, with cp.async in
 * place of TMA): barriers `sBar` (full K, full V, empty K, empty V; `ST` each), initialized by thread 0;
 * then the last warpgroup drops to WS_PRODUCER_REGS registers (the consumers rise to WS_CONSUMER_REGS) and streams Q (with K_0), K_j and V_j into
 * the ST-stage rings, one cp.async group per tile. A group is retired (waited, fenced into the async
 * proxy, arrived on its full barrier by every producer thread) once 2·(ST−1) newer groups are in flight,
 * so the consumers' needs (K_j at their step j, V_{j−1} with the overlap) never wait on a stage they hold.
 * Leaves the C++ `if (producer) {` open; the caller closes it and emits the consumers' branch.
 */
function wsProducer(ctx: WgmmaContext, k: AttentionKernel | AttentionGradKernel, L: string[], g: { NWG: number; BQ: number; BK: number; DK: number; DV: number; ST: number; kBytes: number; vBytes: number }): void {
  const { NWG, BQ, BK, DK, DV, ST, kBytes, vBytes } = g;
  const D = 2 * (ST - 1);
  L.push(`  const u32 sBar = sV + ${ST * vBytes}u;`);
  L.push('  if (tid == 0) {', `    for (int s_ = 0; s_ < ${2 * ST}; s_++) asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(sBar + s_ * 8u), "r"(128u) : "memory");`);
  L.push(`    for (int s_ = ${2 * ST}; s_ < ${4 * ST}; s_++) asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(sBar + s_ * 8u), "r"(${NWG * 128}u) : "memory");`, '  }');
  L.push('  __syncthreads();');
  L.push(`  if (wg == ${NWG}) {`, `  asm volatile("setmaxnreg.dec.sync.aligned.u32 ${WS_PRODUCER_REGS};");`);
  L.push(`  {`, `    const int tid = threadIdx.x - ${NWG * 128};`, '    int issued = 0, retired = 0;');
  // Group n: K_{n/2} (n even), V_{n/2} (n odd); its full barrier.
  const full = (n: string) => `(sBar + (((${n}) & 1) * ${ST} + ((${n}) >> 1) % ${ST}) * 8u)`;
  const retire = (ind: string) => [
    `${ind}fa_commit(); issued++;`,
    `${ind}if (issued - retired > ${D}) { asm volatile("cp.async.wait_group ${D};" ::: "memory"); asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); ${mbArrive(full('retired'))} retired++; }`,
  ];
  L.push('    #pragma unroll 1', '    for (int j = 0; j < nT; j++) {');
  L.push(`      const int st = j % ${ST}, n = j / ${ST};`);
  L.push(`      if (n > 0) ${mbWait(`(sBar + (${2 * ST} + st) * 8u)`, '(n - 1) & 1')}`);
  L.push('      if (j == 0) {', ...swizzledLoad(ctx, k.q, 's', 'd', BQ, 'q0', k.sq, DK, 'sQ', 128, '        '), '      }');
  L.push(...swizzledLoad(ctx, k.key, 't', 'd', BK, `j * ${BK}`, k.sk, DK, `(sK + st * ${kBytes}u)`, 128, '      '));
  L.push(...retire('      '));
  L.push(`      if (n > 0) ${mbWait(`(sBar + (${3 * ST} + st) * 8u)`, '(n - 1) & 1')}`);
  L.push(...swizzledLoad(ctx, k.v, 't', 'e', BK, `j * ${BK}`, k.sk, DV, `(sV + st * ${vBytes}u)`, 128, '      '));
  L.push(...retire('      '));
  L.push('    }');
  L.push('    asm volatile("cp.async.wait_group 0;" ::: "memory"); asm volatile("fence.proxy.async.shared::cta;" ::: "memory");');
  L.push(`    for (; retired < issued; retired++) ${mbArrive(full('retired'))}`);
  L.push('  }');
}

/** The wgmma forward kernel (see the file comment); `lse`: the f32 scratch of the row log-sum-exps. */
export function wgmmaForward(ctx: WgmmaContext, k: AttentionKernel | AttentionGradKernel, t: AttentionTile, fn: string, ids: readonly number[], lse: number, s2: string, causalMask: boolean, out: string[]): FlashLaunch {
  const w = t.wgmma!;
  const NWG = w.warpgroups, BQ = 64 * NWG, BK = w.bk, DK = k.dk, DV = k.dv;
  // Warp-specialized (producerWarps > 0): one producer warpgroup after the NWG consumer warpgroups.
  const ws = (w.producerWarps ?? 0) > 0, ST = ws ? (w.stages ?? 2) : 2;
  const threads = NWG * 128 + (ws ? 128 : 0);
  const nQ = Math.ceil(k.sq / BQ), nK = Math.ceil(k.sk / BK);
  const qBytes = BQ * DK * 2, kBytes = BK * DK * 2, vBytes = BK * DV * 2;
  const sharedBytes = qBytes + ST * kBytes + ST * vBytes + 1024 + (ws ? 32 * ST : 0);
  const prm = [...ids, lse];
  const kOut = k.kind === 'attention' ? k.out : undefined;
  const L: string[] = [];
  const minBlocks = ws ? 1 : w.minBlocks;
  L.push(`extern "C" __global__ void __launch_bounds__(${threads}${minBlocks ? `, ${minBlocks}` : ''}) ${fn}(${ctx.params(prm)}) {`);
  L.push('  extern __shared__ __align__(16) u16 fa_sm[];');
  // The swizzle pattern is a function of the shared address: the tiles start at multiples of 1024.
  L.push('  const u32 sQ = (fa_saddr(fa_sm) + 1023u) & ~1023u;');
  L.push(`  const u32 sK = sQ + ${qBytes}u, sV = sK + ${ST * kBytes}u;`);
  L.push('  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, c4 = lane & 3;');
  L.push(`  const int qt = ${k.causal ? `${nQ - 1} - ` : ''}(int)(blockIdx.x % ${nQ}u);`);
  L.push(`  const long long bt = blockIdx.x / ${nQ}u;`);
  ctx.batchVars('bt', L);
  L.push(`  const int q0 = qt * ${BQ};`);
  L.push(`  const int nT = ${k.causal ? `min(${nK}, (min(q0 + ${BQ}, ${k.sq}) - 1) / ${BK} + 1)` : `${nK}`};`);
  const kvLoad = (stage: string, start: string, ind: string) => [
    ...swizzledLoad(ctx, k.key, 't', 'd', BK, start, k.sk, DK, `(sK + (${stage}) * ${kBytes}u)`, threads, ind),
    ...swizzledLoad(ctx, k.v, 't', 'e', BK, start, k.sk, DV, `(sV + (${stage}) * ${vBytes}u)`, threads, ind),
  ];
  if (ws) {
    wsProducer(ctx, k, L, { NWG, BQ, BK, DK, DV, ST, kBytes, vBytes });
    L.push(`  } else {`, `  asm volatile("setmaxnreg.inc.sync.aligned.u32 ${WS_CONSUMER_REGS};");`);
  } else {
    L.push(...swizzledLoad(ctx, k.q, 's', 'd', BQ, 'q0', k.sq, DK, 'sQ', threads, '  '));
    L.push(...kvLoad('0', '0', '  '));
    L.push('  fa_commit();');
  }
  L.push(`  float o[${DV / 8}][4];`, '  #pragma unroll', `  for (int n = 0; n < ${DV / 8}; n++) { o[n][0] = 0.f; o[n][1] = 0.f; o[n][2] = 0.f; o[n][3] = 0.f; }`);
  L.push('  float m0 = -K_INF, m1 = -K_INF, l0 = 0.f, l1 = 0.f;');
  L.push('  const int r0 = q0 + wg * 64 + warp * 16 + g, r1 = r0 + 8;');
  // This warpgroup's 64 query rows: 8 swizzle atoms of 1024 bytes into each column block of Q.
  L.push('  const u32 sQw = sQ + wg * 8192;');
  const SYNC = 'fa_wait_all(); asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); __syncthreads();';
  /** Issue S = Q·K_j (K tile in shared address `sKc`) into `sc` (overwritten by the first k-step); no commit. */
  const issueS = (sKc: string, ind: string) => {
    L.push(...pin('sc', BK / 8).split('\n').map((x) => ind + x), `${ind}${WG_FENCE}`);
    L.push(`${ind}#pragma unroll`, `${ind}for (int kk = 0; kk < ${DK / 16}; kk++) {`);
    L.push(`${ind}  const unsigned long long da = ${descHi(16)} | (unsigned long long)((sQw + (kk >> 2) * ${BQ * 128} + (kk & 3) * 32) >> 4);`);
    L.push(`${ind}  const unsigned long long db = ${descHi(16)} | (unsigned long long)((${sKc} + (kk >> 2) * ${BK * 128} + (kk & 3) * 32) >> 4);`);
    L.push(`${ind}  ${wgmmaAsm(BK, 'sc', { desc: 'da' }, 'db', 0, '(int)(kk > 0)')}`);
    L.push(`${ind}}`);
  };
  /** Mask tile j of `sc`, update the running max/sum, turn sc into P; declares cr0, cr1 (O's rescaling). */
  const softmax = (j: string, ind: string) => {
    L.push(`${ind}const int t0 = (${j}) * ${BK};`);
    L.push(`${ind}const bool edge = t0 + ${BK} > ${k.sk}${k.causal ? ` || t0 + ${BK - 1} > q0 + wg * 64 + warp * 16` : ''};`);
    L.push(`${ind}float mx0 = -K_INF, mx1 = -K_INF;`);
    L.push(`${ind}#pragma unroll`, `${ind}for (int n = 0; n < ${BK / 8}; n++) {`, `${ind}  #pragma unroll`, `${ind}  for (int q = 0; q < 4; q++) {`);
    L.push(`${ind}    float x = sc[n][q];`);
    L.push(`${ind}    if (edge) { const int tt = t0 + n * 8 + 2 * c4 + (q & 1); if (tt >= ${k.sk}${k.causal && causalMask ? ' || tt > (q < 2 ? r0 : r1)' : ''}) x = -K_INF; }`);
    L.push(`${ind}    sc[n][q] = x;`, `${ind}    if (q < 2) mx0 = fmaxf(mx0, x); else mx1 = fmaxf(mx1, x);`, `${ind}  }`, `${ind}}`);
    L.push(`${ind}mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1)); mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));`);
    L.push(`${ind}mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1)); mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));`);
    L.push(`${ind}const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);`);
    // Scaled maxima (0 for rows with nothing visible yet, so that exp2 sees −∞, never ∞ − ∞).
    L.push(`${ind}const float mu0 = mn0 == -K_INF ? 0.f : mn0 * ${s2}, mu1 = mn1 == -K_INF ? 0.f : mn1 * ${s2};`);
    L.push(`${ind}const float cr0 = fa_exp2(m0 * ${s2} - mu0), cr1 = fa_exp2(m1 * ${s2} - mu1);`);
    L.push(`${ind}m0 = mn0; m1 = mn1;`);
    L.push(`${ind}float ls0 = 0.f, ls1 = 0.f;`);
    L.push(`${ind}#pragma unroll`, `${ind}for (int n = 0; n < ${BK / 8}; n++) {`);
    L.push(`${ind}  sc[n][0] = fa_exp2(fmaf(sc[n][0], ${s2}, -mu0)); sc[n][1] = fa_exp2(fmaf(sc[n][1], ${s2}, -mu0));`);
    L.push(`${ind}  sc[n][2] = fa_exp2(fmaf(sc[n][2], ${s2}, -mu1)); sc[n][3] = fa_exp2(fmaf(sc[n][3], ${s2}, -mu1));`);
    L.push(`${ind}  ls0 += sc[n][0] + sc[n][1]; ls1 += sc[n][2] + sc[n][3];`, `${ind}}`);
    L.push(`${ind}l0 = l0 * cr0 + ls0; l1 = l1 * cr1 + ls1;`);
  };
  const rescale = (ind: string) => L.push(`${ind}#pragma unroll`, `${ind}for (int n = 0; n < ${DV / 8}; n++) { o[n][0] *= cr0; o[n][1] *= cr0; o[n][2] *= cr1; o[n][3] *= cr1; }`);
  const pack = (ind: string) => L.push(`${ind}#pragma unroll`, `${ind}for (int kk = 0; kk < ${BK / 16}; kk++) { pa[kk][0] = fa_pack(sc[2 * kk][0], sc[2 * kk][1]); pa[kk][1] = fa_pack(sc[2 * kk][2], sc[2 * kk][3]); pa[kk][2] = fa_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]); pa[kk][3] = fa_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3]); }`);
  /** Issue O += P·V (P: the bf16 fragments `pa`, V tile at shared address `sVc`); no commit. */
  const issuePV = (sVc: string, ind: string) => {
    L.push(...[pin('o', DV / 8), pin('pa', BK / 16, true)].join('\n').split('\n').map((x) => ind + x), `${ind}${WG_FENCE}`);
    L.push(`${ind}#pragma unroll`, `${ind}for (int kk = 0; kk < ${BK / 16}; kk++) {`);
    L.push(`${ind}  const unsigned long long dv = ${descHi(BK * 128)} | (unsigned long long)((${sVc} + kk * 2048) >> 4);`);
    L.push(`${ind}  ${wgmmaAsm(DV, 'o', { regs: 'pa[kk]' }, 'dv', 1)}`);
    L.push(`${ind}}`);
  };
  L.push(`  float sc[${BK / 8}][4]; u32 pa[${BK / 16}][4];`);
  if (ws) {
    // Consumers: wait for K_j / V_j (full barriers: the producer's cp.async groups, completed and
    // fenced), hand each stage back (empty barriers) once the wgmma reading it has completed.
    const bar = (kind: 0 | 1 | 2 | 3, st: string) => `(sBar + (${kind * ST} + (${st})) * 8u)`;
    if (!w.overlap) {
      L.push('  #pragma unroll 1', '  for (int j = 0; j < nT; j++) {');
      L.push(`    const int st = j % ${ST}, ph = (j / ${ST}) & 1;`);
      L.push(`    ${mbWait(bar(0, 'st'), 'ph')}`);
      issueS(`(sK + st * ${kBytes}u)`, '    ');
      L.push(`    ${COMMIT} ${WAIT(0)}`, ...pinAt('sc', BK / 8, '    '));
      L.push(`    ${mbArrive(bar(2, 'st'))}`);
      softmax('j', '    ');
      rescale('    ');
      pack('    ');
      L.push(`    ${mbWait(bar(1, 'st'), 'ph')}`);
      issuePV(`(sV + st * ${vBytes}u)`, '    ');
      L.push(`    ${COMMIT} ${WAIT(0)}`, ...pinAt('o', DV / 8, '    '));
      L.push(`    ${mbArrive(bar(3, 'st'))}`);
      L.push('  }');
    } else {
      // Ping-pong (FlashAttention-3's warpgroup scheduling): the two consumer warpgroups take turns to
      // issue their products (named barriers 1 + wg: this warpgroup's turn), so that one's softmax runs
      // under the other's wgmma. Warpgroup 1 gives 0 the first turn and skips its last hand-over (each
      // barrier then sees as many arrivals as waits).
      const pp = w.pingpong === true;
      const turn = (ind: string) => { if (pp) L.push(`${ind}asm volatile("bar.sync %0, 256;" :: "r"(1 + wg) : "memory");`); };
      const handOver = (ind: string, last = false) => { if (pp) L.push(`${ind}${last ? 'if (wg == 0) ' : ''}asm volatile("bar.arrive %0, 256;" :: "r"(2 - wg) : "memory");`); };
      if (pp) L.push('  if (wg == 1) asm volatile("bar.arrive 1, 256;" ::: "memory");');
      L.push(`  ${mbWait(bar(0, '0'), '0')}`);
      turn('  ');
      issueS('sK', '  ');
      L.push(`  ${COMMIT}`);
      handOver('  ');
      L.push(`  ${WAIT(0)}`, ...pinAt('sc', BK / 8, '  '));
      L.push(`  ${mbArrive(bar(2, '0'))}`);
      L.push('  {');
      softmax('0', '    ');
      L.push('  }');
      pack('  ');
      L.push('  #pragma unroll 1', '  for (int j = 1; j < nT; j++) {');
      L.push(`    const int st = j % ${ST}, ph = (j / ${ST}) & 1, sp = (j - 1) % ${ST}, pp = ((j - 1) / ${ST}) & 1;`);
      L.push(`    ${mbWait(bar(0, 'st'), 'ph')}`);
      turn('    ');
      issueS(`(sK + st * ${kBytes}u)`, '    ');
      L.push(`    ${COMMIT}`);
      L.push(`    ${mbWait(bar(1, 'sp'), 'pp')}`);
      issuePV(`(sV + sp * ${vBytes}u)`, '    ');
      L.push(`    ${COMMIT}`);
      handOver('    ');
      L.push(`    ${WAIT(1)}`, ...pinAt('sc', BK / 8, '    '));
      L.push(`    ${mbArrive(bar(2, 'st'))}`);
      softmax('j', '    ');
      L.push(`    ${WAIT(0)}`, ...pinAt('o', DV / 8, '    '));
      L.push(`    ${mbArrive(bar(3, 'sp'))}`);
      rescale('    ');
      pack('    ');
      L.push('  }');
      L.push('  {', `    const int sp = (nT - 1) % ${ST}, pp = ((nT - 1) / ${ST}) & 1;`, `    ${mbWait(bar(1, 'sp'), 'pp')}`);
      turn('    ');
      issuePV(`(sV + sp * ${vBytes}u)`, '    ');
      L.push(`    ${COMMIT}`);
      handOver('    ', true);
      L.push(`    ${WAIT(0)}`, ...pinAt('o', DV / 8, '    '), '  }');
    }
  } else if (!w.overlap) {
    L.push('  #pragma unroll 1', '  for (int j = 0; j < nT; j++) {');
    // cp.async writes through the generic proxy; wgmma reads through the async proxy.
    L.push(`    ${SYNC}`);
    L.push(`    if (j + 1 < nT) {`, ...kvLoad('(j + 1) & 1', `(j + 1) * ${BK}`, '      '), '    }');
    L.push('    fa_commit();');
    issueS(`(sK + (j & 1) * ${kBytes}u)`, '    ');
    L.push(`    ${COMMIT} ${WAIT(0)}`, ...pinAt('sc', BK / 8, '    '));
    softmax('j', '    ');
    rescale('    ');
    pack('    ');
    issuePV(`(sV + (j & 1) * ${vBytes}u)`, '    ');
    L.push(`    ${COMMIT} ${WAIT(0)}`, ...pinAt('o', DV / 8, '    '));
    L.push('  }');
  } else {
    // Intra-warpgroup overlap (FlashAttention-3): S_j = Q·K_j is in flight while the tensor cores run
    // O += P_{j−1}·V_{j−1} and the softmax of S_j waits only for S_j. Loads at step j: K_{j+1}, V_j.
    L.push(`  ${SYNC}`);
    L.push('  if (nT > 1) {', ...swizzledLoad(ctx, k.key, 't', 'd', BK, `${BK}`, k.sk, DK, `(sK + ${kBytes}u)`, threads, '    '), '  }', '  fa_commit();');
    issueS('sK', '  ');
    L.push(`  ${COMMIT} ${WAIT(0)}`, ...pinAt('sc', BK / 8, '  '));
    L.push('  {');
    softmax('0', '    ');
    L.push('  }');
    pack('  ');
    L.push('  #pragma unroll 1', '  for (int j = 1; j < nT; j++) {');
    L.push(`    ${SYNC}`);
    L.push(`    if (j + 1 < nT) {`, ...swizzledLoad(ctx, k.key, 't', 'd', BK, `(j + 1) * ${BK}`, k.sk, DK, `(sK + ((j + 1) & 1) * ${kBytes}u)`, threads, '      '), '    }');
    L.push(...swizzledLoad(ctx, k.v, 't', 'e', BK, `j * ${BK}`, k.sk, DV, `(sV + (j & 1) * ${vBytes}u)`, threads, '    '));
    L.push('    fa_commit();');
    issueS(`(sK + (j & 1) * ${kBytes}u)`, '    ');
    L.push(`    ${COMMIT}`);
    issuePV(`(sV + ((j - 1) & 1) * ${vBytes}u)`, '    ');
    L.push(`    ${COMMIT} ${WAIT(1)}`, ...pinAt('sc', BK / 8, '    '));
    softmax('j', '    ');
    L.push(`    ${WAIT(0)}`, ...pinAt('o', DV / 8, '    '));
    rescale('    ');
    pack('    ');
    L.push('  }');
    L.push(`  ${SYNC}`);
    issuePV(`(sV + ((nT - 1) & 1) * ${vBytes}u)`, '  ');
    L.push(`  ${COMMIT} ${WAIT(0)}`, ...pinAt('o', DV / 8, '  '));
  }
  L.push('  fa_wait_all();');
  L.push('  l0 += __shfl_xor_sync(0xffffffffu, l0, 1); l0 += __shfl_xor_sync(0xffffffffu, l0, 2);');
  L.push('  l1 += __shfl_xor_sync(0xffffffffu, l1, 1); l1 += __shfl_xor_sync(0xffffffffu, l1, 2);');
  L.push(`  if (c4 == 0) { if (r0 < ${k.sq}) scr${-lse}[bt * ${k.sq} + r0] = m0 * ${s2} + log2f(l0); if (r1 < ${k.sq}) scr${-lse}[bt * ${k.sq} + r1] = m1 * ${s2} + log2f(l1); }`);
  if (kOut) {
    L.push('  const float i0 = 1.f / l0, i1 = 1.f / l1;');
    L.push('  #pragma unroll', `  for (int n = 0; n < ${DV / 8}; n++) {`, '    #pragma unroll', '    for (int q = 0; q < 4; q++) {');
    L.push('      const int s = q < 2 ? r0 : r1; const int e = n * 8 + 2 * c4 + (q & 1);');
    L.push(`      if (s < ${k.sq}) buf${kOut.buf}[${ctx.expr(kOut.index)}] = ${ctx.storeValue(kOut.buf, 'o[n][q] * (q < 2 ? i0 : i1)')};`);
    L.push('    }', '  }');
  }
  if (ws) L.push('  }');
  L.push('}');
  out.push(...L);
  return { kind: 'kernel', fn, grid: [nQ * prod(k.batch), 1, 1], block: [threads, 1, 1], params: prm, sharedBytes };
}

/** Whether the wgmma backward can render this kernel (else the mma.sync backward). */
export function wgmmaBackwardApplies(k: AttentionGradKernel, t: AttentionTile, ctx: Pick<WgmmaContext, 'contiguous'>): boolean {
  if (!t.wgmma || t.wgmma.bk !== 64 * t.wgmma.warpgroups) return false;
  if (k.dk % 64 !== 0 || k.dv % 64 !== 0 || k.dk > 256 || k.dv > 256) return false;
  // Above 128, two column passes (the accumulators of half of dK, dV and dQ each): halves of 64-column blocks.
  if (Math.max(k.dk, k.dv) > 128 && (k.dk % 128 !== 0 || k.dv % 128 !== 0)) return false;
  // Warp-specialized: 2 consumer warpgroups, head dims up to 128 (one column pass).
  if (t.wgmma.producerWarps && (t.wgmma.warpgroups !== 2 || Math.max(k.dk, k.dv) > 128)) return false;
  return ctx.contiguous(k.q, 's', 'd', k.dk) !== undefined && ctx.contiguous(k.key, 't', 'd', k.dk) !== undefined &&
    ctx.contiguous(k.v, 't', 'e', k.dv) !== undefined && ctx.contiguous(k.dout, 's', 'e', k.dv) !== undefined;
}

/**
 * The wgmma backward main kernel: one block = `warpgroups` warpgroups × 64 key rows (bk = bq = 64 per
 * warpgroup) walks the query tiles (cp.async double buffer of Q, dO, lse, D). Per tile, each warpgroup:
 * Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (shared × shared), Pᵀ = exp2(Sᵀ − lse), dSᵀ = Pᵀ∘(dPᵀ − D), dV += Pᵀ·dO and
 * dK += dSᵀ·Q (A from registers, B N-major), dSᵀ written transposed into shared memory as dS (K-major,
 * one 64-key column block per warpgroup); after a barrier, dQ(64 query rows of this warpgroup) = dS·K
 * (K N-major) is added into the f32 accumulator `dqAcc` with 8-byte reductions.
 */
export function wgmmaBackward(ctx: WgmmaContext, k: AttentionGradKernel, t: AttentionTile, fn: string, ids: readonly number[], lse: number, dsum: number, dqAcc: number | undefined, s2: string, scale: string, causalMask: boolean, out: string[], noReduce = false): FlashLaunch {
  const NWG = t.wgmma!.warpgroups, BK = 64 * NWG, DK = k.dk, DV = k.dv;
  // Warp-specialized (producerWarps): a producer warpgroup streams the query tiles (64 rows) into a
  // `stages`-deep ring; the 2 consumer warpgroups split the dQ columns (wsBackward's comment).
  const ws = (t.wgmma!.producerWarps ?? 0) > 0, ST = ws ? (t.wgmma!.stages ?? 2) : 2;
  const BQ = ws ? 64 : 64 * NWG;
  const pipe = t.wgmma!.overlap === true;
  // Column passes: each accumulates DK/NCH columns of dK and dQ and DV/NCH of dV (S and dP recomputed).
  const NCH = Math.max(DK, DV) > 128 ? 2 : 1, DKC = DK / NCH, DVC = DV / NCH;
  const threads = NWG * 128 + (ws ? 128 : 0), loaders = ws ? 128 : threads;
  const nQ = Math.ceil(k.sq / BQ), nK = Math.ceil(k.sk / BK);
  const kB = BK * DK * 2, vB = BK * DV * 2, qB = BQ * DK * 2, oB = BQ * DV * 2, sB = BQ * BK * 2;
  // dS double-buffered with ws (one consumer barrier per tile).
  const nS = ws ? 2 : 1;
  const sharedBytes = kB + vB + ST * qB + ST * oB + nS * sB + 2 * 4 * ST * BQ + (ws ? 16 * ST : 0) + 1024;
  const prm = dqAcc === undefined ? [...ids, lse, dsum] : [...ids, lse, dsum, dqAcc];
  const L: string[] = [];
  const minBlocks = ws ? 1 : t.wgmma!.minBlocks;
  L.push(`extern "C" __global__ void __launch_bounds__(${threads}${minBlocks ? `, ${minBlocks}` : ''}) ${fn}(${ctx.params(prm)}) {`);
  L.push('  extern __shared__ __align__(16) u16 fa_sm[];');
  L.push('  const u32 sK = (fa_saddr(fa_sm) + 1023u) & ~1023u;');
  L.push(`  const u32 sV = sK + ${kB}u, sQ = sV + ${vB}u, sO = sQ + ${ST * qB}u, sS = sO + ${ST * oB}u;`);
  L.push(`  float* Ls = (float*)((char*)fa_sm + (sS + ${nS * sB}u - fa_saddr(fa_sm))); float* Ds = Ls + ${ST * BQ};`);
  L.push('  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, c4 = lane & 3;');
  L.push(`  const int kt = (int)(blockIdx.x % ${nK}u);`, `  const long long bt = blockIdx.x / ${nK}u;`);
  ctx.batchVars('bt', L);
  L.push(`  const int k0 = kt * ${BK}, iStart = ${k.causal ? `k0 / ${BQ}` : '0'};`);
  const kvLoad = (ind: string) => [
    ...swizzledLoad(ctx, k.key, 't', 'd', BK, 'k0', k.sk, DK, 'sK', loaders, ind),
    ...swizzledLoad(ctx, k.v, 't', 'e', BK, 'k0', k.sk, DV, 'sV', loaders, ind),
  ];
  if (!ws) L.push(...kvLoad('  '));
  const issue = (tile: string, stage: string, ind: string) => [
    `${ind}{`,
    `${ind}  const int st_ = ${stage}, s0_ = (${tile}) * ${BQ};`,
    ...swizzledLoad(ctx, k.q, 's', 'd', BQ, 's0_', k.sq, DK, `(sQ + st_ * ${qB}u)`, loaders, ind + '  '),
    ...swizzledLoad(ctx, k.dout, 's', 'e', BQ, 's0_', k.sq, DV, `(sO + st_ * ${oB}u)`, loaders, ind + '  '),
    `${ind}  if (tid < ${BQ}) { const int s_ = s0_ + tid; Ls[st_ * ${BQ} + tid] = s_ < ${k.sq} ? scr${-lse}[bt * ${k.sq} + s_] : K_INF; Ds[st_ * ${BQ} + tid] = s_ < ${k.sq} ? scr${-dsum}[bt * ${k.sq} + s_] : 0.f; }`,
    `${ind}}`,
  ];
  const zero = (name: string, n: number, ind: string) => [`${ind}float ${name}[${n}][4];`, `${ind}#pragma unroll`, `${ind}for (int n = 0; n < ${n}; n++) { ${name}[n][0] = 0.f; ${name}[n][1] = 0.f; ${name}[n][2] = 0.f; ${name}[n][3] = 0.f; }`];
  // ws barriers: full[ST] (the producer's 128 threads), empty[ST] (the consumers' threads).
  const full = (st: string) => `(sBar + (${st}) * 8u)`, empty = (st: string) => `(sBar + (${ST} + (${st})) * 8u)`;
  if (ws) {
    L.push(`  const u32 sBar = (sS + ${nS * sB + 2 * 4 * ST * BQ}u + 7u) & ~7u;`);
    L.push('  if (tid == 0) {', `    for (int s_ = 0; s_ < ${ST}; s_++) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(${full('s_')}), "r"(128u) : "memory"); asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(${empty('s_')}), "r"(${NWG * 128}u) : "memory"); }`, '  }');
    L.push('  __syncthreads();');
    // Producer: K and V with the first query tile, then one cp.async group per query tile, retired (waited,
    // fenced into the async proxy, arrived) once ST − 1 newer ones are in flight.
    L.push(`  if (wg == ${NWG}) {`, `  asm volatile("setmaxnreg.dec.sync.aligned.u32 ${WS_PRODUCER_REGS};");`);
    L.push('  {', `    const int tid = threadIdx.x - ${NWG * 128};`, '    int issued = 0, retired = 0;');
    L.push('    #pragma unroll 1', `    for (int i = iStart, it = 0; i < ${nQ}; i++, it++) {`);
    L.push(`      const int st = it % ${ST}, n = it / ${ST};`);
    L.push(`      if (n > 0) ${mbWait(empty('st'), '(n - 1) & 1')}`);
    L.push('      if (it == 0) {', ...kvLoad('        '), '      }');
    L.push(...issue('i', 'st', '      '));
    L.push('      fa_commit(); issued++;');
    L.push(`      if (issued - retired > ${ST - 1}) { asm volatile("cp.async.wait_group ${ST - 1};" ::: "memory"); asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); ${mbArrive(full(`retired % ${ST}`))} retired++; }`);
    L.push('    }');
    L.push('    asm volatile("cp.async.wait_group 0;" ::: "memory"); asm volatile("fence.proxy.async.shared::cta;" ::: "memory");');
    L.push(`    for (; retired < issued; retired++) ${mbArrive(full(`retired % ${ST}`))}`);
    L.push('  }');
    L.push('  } else {', `  asm volatile("setmaxnreg.inc.sync.aligned.u32 ${WS_CONSUMER_REGS};");`);
  }
  L.push('  int it = 0;');
  L.push('  #pragma unroll 1', `  for (int ch = 0; ch < ${NCH}; ch++) {`);
  if (!ws) L.push(`  if (iStart < ${nQ}) {`, ...issue('iStart', 'it & 1', '    '), '  }', '  fa_commit();');
  L.push(...zero('dk', DKC / 8, '  '), ...zero('dv', DVC / 8, '  '));
  // This warpgroup's 64 key rows of K and V: 8 swizzle atoms into each column block.
  L.push('  const u32 sKw = sK + wg * 8192, sVw = sV + wg * 8192;');
  L.push('  const int ta = k0 + wg * 64 + warp * 16 + g;');
  L.push('  #pragma unroll 1', `  for (int i = iStart; i < ${nQ}; i++, it++) {`);
  if (ws) L.push(`    const int st = it % ${ST}, s0 = i * ${BQ};`, `    ${mbWait(full('st'), `(it / ${ST}) & 1`)}`);
  else {
    L.push('    fa_wait_all(); asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); __syncthreads();');
    L.push(`    if (i + 1 < ${nQ}) {`, ...issue('i + 1', '(it + 1) & 1', '      '), '    }', '    fa_commit();');
    L.push(`    const int st = it & 1, s0 = i * ${BQ};`);
  }
  L.push(`    const u32 sQc = sQ + st * ${qB}u, sOc = sO + st * ${oB}u; const float* Lc = Ls + st * ${BQ}; const float* Dc = Ds + st * ${BQ};`);
  L.push(`    float sc[${BQ / 8}][4], dp[${BQ / 8}][4];`);
  L.push(...pinAt('sc', BQ / 8, '    '), ...pinAt('dp', BQ / 8, '    '), `    ${WG_FENCE}`);
  L.push('    #pragma unroll', `    for (int kk = 0; kk < ${DK / 16}; kk++) {`);
  L.push(`      const unsigned long long da = ${descHi(16)} | (unsigned long long)((sKw + (kk >> 2) * ${BK * 128} + (kk & 3) * 32) >> 4);`);
  L.push(`      const unsigned long long db = ${descHi(16)} | (unsigned long long)((sQc + (kk >> 2) * ${BQ * 128} + (kk & 3) * 32) >> 4);`);
  L.push(`      ${wgmmaAsm(BQ, 'sc', { desc: 'da' }, 'db', 0, '(int)(kk > 0)')}`);
  L.push('    }');
  if (pipe) L.push(`    ${COMMIT}`);
  L.push('    #pragma unroll', `    for (int kk = 0; kk < ${DV / 16}; kk++) {`);
  L.push(`      const unsigned long long da = ${descHi(16)} | (unsigned long long)((sVw + (kk >> 2) * ${BK * 128} + (kk & 3) * 32) >> 4);`);
  L.push(`      const unsigned long long db = ${descHi(16)} | (unsigned long long)((sOc + (kk >> 2) * ${BQ * 128} + (kk & 3) * 32) >> 4);`);
  L.push(`      ${wgmmaAsm(BQ, 'dp', { desc: 'da' }, 'db', 0, '(int)(kk > 0)')}`);
  L.push('    }');
  // Pᵀ and dSᵀ (rows: keys ta, ta + 8; columns: queries), rounded to the bf16 A fragments of the dV and dK
  // products before their fence (A registers written after wgmma.fence make ptxas serialize every wgmma).
  // With `overlap`, P is computed while dP = V·dOᵀ runs, dS while dV += Pᵀ·dO runs.
  L.push(`    u32 pP[${BQ / 16}][4], pS[${BQ / 16}][4];`);
  const probs = () => {
    L.push('    #pragma unroll', `    for (int n = 0; n < ${BQ / 8}; n++) {`, '      #pragma unroll', '      for (int q = 0; q < 4; q++) {');
    L.push('        const int sl = n * 8 + 2 * c4 + (q & 1), tt = ta + (q < 2 ? 0 : 8);');
    L.push(`        float p = fa_exp2(fmaf(sc[n][q], ${s2}, -Lc[sl]));`);
    L.push(`        if (tt >= ${k.sk}${k.causal && causalMask ? ' || s0 + sl < tt' : ''}) p = 0.f;`);
    L.push('        sc[n][q] = p;', '      }');
    // Fragment (kk, i): i = 0, 1 from n = 2kk (rows g, g + 8), i = 2, 3 from n = 2kk + 1.
    L.push('      pP[n >> 1][(n & 1) * 2] = fa_pack(sc[n][0], sc[n][1]); pP[n >> 1][(n & 1) * 2 + 1] = fa_pack(sc[n][2], sc[n][3]);', '    }');
  };
  const dsT = () => {
    L.push('    #pragma unroll', `    for (int n = 0; n < ${BQ / 8}; n++) {`, '      float s_[4];', '      #pragma unroll', '      for (int q = 0; q < 4; q++) s_[q] = sc[n][q] * (dp[n][q] - Dc[n * 8 + 2 * c4 + (q & 1)]);');
    L.push('      pS[n >> 1][(n & 1) * 2] = fa_pack(s_[0], s_[1]); pS[n >> 1][(n & 1) * 2 + 1] = fa_pack(s_[2], s_[3]);', '    }');
  };
  const dvProduct = () => {
    L.push('    #pragma unroll', `    for (int kk = 0; kk < ${BQ / 16}; kk++) {`);
    L.push(`      const unsigned long long db = ${descHi(BQ * 128)} | (unsigned long long)((sOc + ch * ${(DVC / 64) * BQ * 128} + kk * 2048) >> 4);`);
    L.push(`      ${wgmmaAsm(DVC, 'dv', { regs: 'pP[kk]' }, 'db', 1)}`);
    L.push('    }');
  };
  const dkProduct = () => {
    L.push('    #pragma unroll', `    for (int kk = 0; kk < ${BQ / 16}; kk++) {`);
    L.push(`      const unsigned long long db = ${descHi(BQ * 128)} | (unsigned long long)((sQc + ch * ${(DKC / 64) * BQ * 128} + kk * 2048) >> 4);`);
    L.push(`      ${wgmmaAsm(DKC, 'dk', { regs: 'pS[kk]' }, 'db', 1)}`);
    L.push('    }');
  };
  if (pipe) {
    // Groups: S, dP; then dV, dK. wait_group 1 = all but the newest group complete.
    L.push(`    ${COMMIT} ${WAIT(1)}`, ...pinAt('sc', BQ / 8, '    '));
    probs();
    L.push(...pinAt('pP', BQ / 16, '    ', true), ...pinAt('dv', DVC / 8, '    '), `    ${WG_FENCE}`);
    dvProduct();
    L.push(`    ${COMMIT} ${WAIT(1)}`, ...pinAt('dp', BQ / 8, '    '));
    dsT();
    L.push(...pinAt('pS', BQ / 16, '    ', true), ...pinAt('dk', DKC / 8, '    '), `    ${WG_FENCE}`);
    dkProduct();
  } else {
    L.push(`    ${WG_COMMIT_WAIT}`, ...pinAt('sc', BQ / 8, '    '), ...pinAt('dp', BQ / 8, '    '));
    probs();
    dsT();
    L.push(...pinAt('pP', BQ / 16, '    ', true), ...pinAt('pS', BQ / 16, '    ', true), ...pinAt('dv', DVC / 8, '    '), ...pinAt('dk', DKC / 8, '    '), `    ${WG_FENCE}`);
    dvProduct();
    dkProduct();
  }
  L.push(`    ${COMMIT}`);
  if (dqAcc !== undefined) {
    // dS (rows: queries, columns: keys; K-major for dQ = dS·K): column block wg, swizzled; key r = warp·16 + g (+8).
    // Written while the dV and dK products run (it only reads their A registers).
    L.push('    {');
    L.push(`      u16* dS_ = (u16*)((char*)fa_sm + (sS - fa_saddr(fa_sm))) + wg * ${BQ * 64}${ws ? ` + (it & 1) * ${BQ * BK}` : ''};`);
    L.push('      #pragma unroll', `      for (int n = 0; n < ${BQ / 8}; n++) {`, '        #pragma unroll', '        for (int q = 0; q < 4; q++) {');
    L.push('          const int c = n * 8 + 2 * c4 + (q & 1), r = warp * 16 + g + (q < 2 ? 0 : 8);');
    L.push('          const u32 w_ = pS[n >> 1][(n & 1) * 2 + (q >> 1)];');
    L.push('          dS_[c * 64 + ((((r >> 3) ^ (c & 7)) << 3) | (r & 7))] = (u16)((q & 1) ? (w_ >> 16) : (w_ & 0xffffu));');
    L.push('        }', '      }');
    L.push('    }');
  }
  L.push(`    ${WAIT(0)}`, ...pinAt('dv', DVC / 8, '    '), ...pinAt('dk', DKC / 8, '    '));
  // ws: the stage's Q, dO, lse, D are read (the products completed): hand it back to the producer.
  if (ws && dqAcc === undefined) L.push(`    ${mbArrive(empty('st'))}`);
  if (ws && dqAcc !== undefined) {
    // The consumers' barrier (named barrier 1): both halves of dS written. Warpgroup wg then computes dQ's
    // columns wg·DK/2.. over all 128 keys (B: K, N-major, from the 64-column block wg) where DK/2 is a
    // whole 64-column block; at head dim 64 warpgroup 0 computes all of dQ (a 32-column half would start
    // 64 bytes into the swizzled rows: not a canonical wgmma layout).
    const split = DK % 128 === 0, DQC = split ? DK / 2 : DK;
    L.push(`    ${mbArrive(empty('st'))}`);
    L.push(`    asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); asm volatile("bar.sync 1, ${NWG * 128};" ::: "memory");`);
    if (!split) L.push('    if (wg == 0) {');
    L.push(`    float dq[${DQC / 8}][4];`);
    L.push(...pinAt('dq', DQC / 8, '    '), `    ${WG_FENCE}`);
    L.push(`    const u32 sSb = sS + (it & 1) * ${sB}u, sKq = sK + (u32)(((wg * ${DQC}) >> 6) * ${BK * 128} + ((wg * ${DQC}) & 63) * 2);`);
    L.push('    #pragma unroll', `    for (int kk = 0; kk < ${BK / 16}; kk++) {`);
    L.push(`      const unsigned long long da = ${descHi(16)} | (unsigned long long)((sSb + (kk >> 2) * ${BQ * 128} + (kk & 3) * 32) >> 4);`);
    L.push(`      const unsigned long long db = ${descHi(BK * 128)} | (unsigned long long)((sKq + kk * 2048) >> 4);`);
    L.push(`      ${wgmmaAsm(DQC, 'dq', { desc: 'da' }, 'db', 1, '(int)(kk > 0)')}`);
    L.push('    }');
    L.push(`    ${WG_COMMIT_WAIT}`, ...pinAt('dq', DQC / 8, '    '));
    L.push('    #pragma unroll', `    for (int n = 0; n < ${DQC / 8}; n++) {`);
    L.push('      float v_[4]; const int h = fa_quad(dq[n], v_);');
    L.push(`      const int s = s0 + warp * 16 + g + h * 8, d = wg * ${DQC} + n * 8 + 2 * (c4 & ~1);`);
    L.push(`      if (s < ${k.sq}${noReduce ? ' && v_[0] == 1234.5f' : ''}) fa_red4(&scr${-dqAcc}[(bt * ${k.sq} + s) * ${k.dk} + d], v_[0], v_[1], v_[2], v_[3]);`);
    L.push('    }');
    if (!split) L.push('    }');
  }
  if (!ws && dqAcc !== undefined) {
    L.push('    asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); __syncthreads();');
    // dQ in pieces of DQN columns (64 in the two-pass case, where dK and dV hold 128 registers).
    const DQN = NCH > 1 ? 64 : DKC;
    L.push('    #pragma unroll 1', `    for (int dn = 0; dn < ${DKC / DQN}; dn++) {`);
    L.push(`    float dq[${DQN / 8}][4];`);
    L.push(...pinAt('dq', DQN / 8, '    '), `    ${WG_FENCE}`);
    L.push('    #pragma unroll', `    for (int kk = 0; kk < ${BK / 16}; kk++) {`);
    L.push(`      const unsigned long long da = ${descHi(16)} | (unsigned long long)((sS + wg * 8192 + (kk >> 2) * ${BQ * 128} + (kk & 3) * 32) >> 4);`);
    L.push(`      const unsigned long long db = ${descHi(BK * 128)} | (unsigned long long)((sK + (ch * ${DKC / 64} + dn * ${DQN / 64}) * ${BK * 128} + kk * 2048) >> 4);`);
    L.push(`      ${wgmmaAsm(DQN, 'dq', { desc: 'da' }, 'db', 1, '(int)(kk > 0)')}`);
    L.push('    }');
    L.push(`    ${WG_COMMIT_WAIT}`, ...pinAt('dq', DQN / 8, '    '));
    // 16-byte reductions: 4 consecutive columns of one row per lane (fa_quad).
    L.push('    #pragma unroll', `    for (int n = 0; n < ${DQN / 8}; n++) {`);
    L.push('      float v_[4]; const int h = fa_quad(dq[n], v_);');
    L.push(`      const int s = s0 + wg * 64 + warp * 16 + g + h * 8, d = ch * ${DKC} + dn * ${DQN} + n * 8 + 2 * (c4 & ~1);`);
    L.push(`      if (s < ${k.sq}${noReduce ? ' && v_[0] == 1234.5f' : ''}) fa_red4(&scr${-dqAcc}[(bt * ${k.sq} + s) * ${k.dk} + d], v_[0], v_[1], v_[2], v_[3]);`);
    L.push('    }', '    }');
  }
  L.push('  }');
  L.push('  fa_wait_all();');
  const store = (acc: string, tgt: { buf: number; index: Expr } | undefined, col: 'd' | 'e', cols: number, sc: string) => {
    if (!tgt) return;
    L.push('  #pragma unroll', `  for (int n = 0; n < ${cols / 8}; n++) {`, '    #pragma unroll', '    for (int q = 0; q < 4; q++) {');
    L.push(`      const int t = ta + (q < 2 ? 0 : 8), ${col} = ch * ${cols} + n * 8 + 2 * c4 + (q & 1);`);
    L.push(`      if (t < ${k.sk}) buf${tgt.buf}[${ctx.expr(tgt.index)}] = ${ctx.storeValue(tgt.buf, `${acc}[n][q]${sc}`)};`);
    L.push('    }', '  }');
  };
  store('dk', k.dK, 'd', DKC, ` * ${scale}`);
  store('dv', k.dV, 'e', DVC, '');
  L.push('  }');
  if (ws) L.push('  }');
  L.push('}');
  out.push(...L);
  return { kind: 'kernel', fn, grid: [nK * prod(k.batch), 1, 1], block: [threads, 1, 1], params: prm, sharedBytes };
}

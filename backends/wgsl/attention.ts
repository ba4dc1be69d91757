/**
 * @file Tiled flash attention in WGSL (f32 math): the workgroup-memory version of codegen.ts's per-row
 * attention. Tiles come from attentionTiling.ts; every pass runs 16 × threadRows invocations as a grid
 * over a score tile (rows strided by threadRows over ty, columns strided by 16 over tx), its operand tiles
 * staged in workgroup memory and loaded cooperatively (coalesced along the head dim), products and
 * accumulators in registers (unrolled), no sq×sk matrix:
 *  - forward: a block of query rows walks the K/V tiles with an online softmax (row maximum, rescale of
 *    the running sum and of the output accumulators, one invocation per row for the statistics);
 *  - statistics (attention_grad's first pass): the same walk without V, storing logsumexp and
 *    D = Σ dO·O per query row in scratch;
 *  - dQ: a block of query rows walks the key tiles: P = exp(S − lse), dP = dO·Vᵀ, dS = P∘(dP − D)·scale,
 *    dQ += dS·K;
 *  - dK/dV: a block of key rows walks the query tiles (causal: from its first key on): dV += Pᵀ·dO,
 *    dK += dSᵀ·Q.
 * Tiles are arrays of vec4 (head dims are multiples of 4, else the per-row kernels run): the products
 * along the head dim read 128-bit words of both operands, the probability tile is read 4 columns at a
 * time, the accumulated outputs (O, dQ, dK, dV) are vec4 columns where their width is a multiple of 64
 * (one 128-bit read per 4 products; else scalar columns), and rows whose reads spread over tx are padded
 * by one vec4 against bank conflicts. Tiles may run on fewer than 16 invocation rows (threadRows 8:
 * 128 invocations, 4 score and accumulator rows each, every staged value read feeding twice the
 * products); the default stays 16 (attentionTiling.ts says why). The tiles a
 * pass walks are prefetched into registers (the next tile's global loads run during this tile's products).
 * Causal masks keep key t ≤ query s (as the interpreter). Out-of-range rows and columns are zero-filled
 * in the tiles and masked out of the softmax.
 * The module builds only bodies: the operand loaders and stores (WGSL functions over the kernel's own
 * index expressions) and the entry point come from codegen.ts through AttentionEmitter.
 */
import { chooseWorkgroupAttentionTile, tileThreadRows, type WorkgroupAttentionPass, type WorkgroupAttentionTile, workgroupAttentionBytes, workgroupAttentionTileError } from './attentionTiling.ts';
import { KilnError } from '../../ir/errors.ts';
import type { AttentionGradKernel, AttentionKernel } from '../../ir/kernel/types.ts';

export interface AttentionEmitter {
  /**
   * Loader and store declarations by name: ldq_(b…, s, d), ldk_(b…, t, d), ldv_(b…, t, e), ldo_, lddo_
   * (b…, s, e) return f32; sto_(b…, s, e, val), stq_(b…, s, d, val), stk_(b…, t, d, val), stv_(b…, t, e, val).
   */
  readonly fns: Readonly<Record<string, string>>;
  /** Entry lines for `count` workgroups of `size`×1 invocations (declares `wg`, the u32 linear workgroup id), and the dispatch size. */
  entry(count: number, size: number): { lines: string[]; workgroups: [number, number, number] };
  /** Lines declaring the batch index variables from the i32 expression `linear`. */
  batchVars(linear: string): string[];
  /** Call arguments: the batch variables then `rest`. */
  args(...rest: string[]): string;
  /** Load / store statistic 0 (logsumexp) or 1 (D) of linear query row `row` (an i32 expression). */
  statLoad(stat: 0 | 1, row: string): string;
  statStore(stat: 0 | 1, row: string, value: string): string;
  /** The softmax scale as a WGSL f32 literal. */
  readonly scale: string;
  /** Workgroup memory available (bytes). */
  readonly storageBytes: number;
  /** Tiles to use instead of the chosen ones (tests: small tiles compile fast on SwiftShader), where they fit. */
  readonly tiles?: Partial<Record<WorkgroupAttentionPass, WorkgroupAttentionTile>>;
  /**
   * 'native': subgroups of at least 16 invocations, numbered along the local invocation index (NVIDIA:
   * 32): the forward's online softmax runs in registers on every invocation, the row statistics combined
   * by subgroupShuffleXor over the 16 invocations of a score row. 'emulated': the same kernel with each
   * shuffle done through workgroup memory (two barriers each: slow, for testing that kernel on devices
   * with smaller subgroups, e.g. SwiftShader's 4). Absent: one invocation per row computes the statistics
   * in workgroup memory.
   */
  readonly subgroups?: 'native' | 'emulated';
}

type Body = { body: string[]; workgroups: [number, number, number] };

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const NEG_INF = 'kf(0xff800000u)';

/** The tiled dispatches of `k`, or undefined when a pass's tiles do not fit the workgroup memory. */
export function tiledAttention(k: AttentionKernel | AttentionGradKernel, em: AttentionEmitter): Body[] | undefined {
  const batch = k.batch.reduce((a, b) => a * b, 1);
  if (batch * k.sq === 0) return [];
  if (k.sk === 0 || k.dk % 4 !== 0 || k.dv % 4 !== 0) return undefined;
  const tile = (pass: WorkgroupAttentionPass) => {
    const t = em.tiles?.[pass];
    const bad = t && workgroupAttentionTileError(t);
    if (bad) throw new KilnError(`wgsl attention: ${pass} tile ${JSON.stringify(t)}: ${bad}`);
    return t && workgroupAttentionBytes(pass, t, k.dk, k.dv) <= em.storageBytes ? t : chooseWorkgroupAttentionTile(pass, k.dk, k.dv, em.storageBytes);
  };
  const fwd = tile('forward');
  if (!fwd) return undefined;
  if (k.kind === 'attention') return [forward(k, em, fwd, batch, 'out')];
  const dq = k.dQ ? tile('dq') : undefined;
  const dkv = k.dK || k.dV ? tile('dkv') : undefined;
  if ((k.dQ && !dq) || ((k.dK || k.dV) && !dkv)) return undefined;
  const out = [forward(k, em, fwd, batch, 'stats')];
  if (dq) out.push(gradQ(k as AttentionGradKernel, em, dq, batch));
  if (dkv) out.push(gradKV(k as AttentionGradKernel, em, dkv, batch));
  return out;
}

/** `name: array<vec4<f32>, rows·stride4>` in workgroup memory. */
const tileDecl = (name: string, rows: number, stride4: number) => `var<workgroup> ${name}: array<vec4<f32>, ${rows * stride4}>;`;

/** Element (row, col) of a vec4 tile with row stride `s4` (vec4 units). */
const el = (T: string, s4: number, row: string, col: string) => `${T}[(${row}) * ${s4}i + (${col}) / 4i][(${col}) % 4i]`;

/**
 * Cooperative load of `n` rows of `w` values (w a multiple of 4) from `load(row, col)`, 4 consecutive
 * values per invocation and step (rows past `extent` are zeros), into tile `T` of row stride `s4`.
 */
function tileLoad(T: string, n: number, w: number, s4: number, row0: string, extent: number, load: (row: string, col: string) => string, nt: number): string {
  const w4 = w / 4;
  const comps = [0, 1, 2, 3].map((q) => load('g_', `c_ + ${q}i`)).join(', ');
  return `  for (var i_: i32 = tid; i_ < ${n * w4}i; i_ += ${nt}i) { let r_ = i_ / ${w4}i; let c_ = (i_ % ${w4}i) * 4i; let g_ = ${row0} + r_; var v_ = vec4<f32>(0.0f); if (g_ < ${extent}i) { v_ = vec4<f32>(${comps}); } ${T}[r_ * ${s4}i + c_ / 4i] = v_; }`;
}

/**
 * The same load split in two for register prefetch: `tileFetch` reads the tile's values into registers
 * `reg`0.. (declared by `tileRegs`), `tileStore` writes them into the tile; the next tile's global loads
 * are then in flight during the current tile's products.
 */
function tileRegs(reg: string, n: number, w: number, nt: number): string[] {
  return range(Math.ceil((n * w) / 4 / nt)).map((q) => `  var ${reg}${q}: vec4<f32>;`);
}

function tileFetch(reg: string, n: number, w: number, row0: string, extent: number, load: (row: string, col: string) => string, nt: number): string[] {
  const w4 = w / 4;
  return range(Math.ceil((n * w4) / nt)).map((q) => {
    const comps = [0, 1, 2, 3].map((c) => load('g_', `c_ + ${c}i`)).join(', ');
    return `  { let i_ = tid + ${nt * q}i; ${reg}${q} = vec4<f32>(0.0f); let g_ = ${row0} + i_ / ${w4}i; let c_ = (i_ % ${w4}i) * 4i; if (i_ < ${n * w4}i && g_ < ${extent}i) { ${reg}${q} = vec4<f32>(${comps}); } }`;
  });
}

function tileStore(reg: string, T: string, n: number, w: number, s4: number, nt: number): string[] {
  const w4 = w / 4;
  return range(Math.ceil((n * w4) / nt)).map((q) => `  { let i_ = tid + ${nt * q}i; if (i_ < ${n * w4}i) { ${T}[(i_ / ${w4}i) * ${s4}i + i_ % ${w4}i] = ${reg}${q}; } }`);
}

/** Unrolled products `acc_i_j = Σ_x A[r_i, x] · B[c_j, x]` over x < len (r_i = ty+16i, c_j = tx+16j), 4 x per step. */
function tileDot(acc: string, tm: number, tn: number, A: string, sa: number, B: string, sb: number, len: number, gy: number): string[] {
  const out: string[] = [];
  for (const i of range(tm)) for (const j of range(tn)) out.push(`  var ${acc}${i}_${j}: f32 = 0.0f;`);
  out.push(`  for (var x_: i32 = 0i; x_ < ${len / 4}i; x_++) {`);
  for (const i of range(tm)) out.push(`    let a${i}_ = ${A}[(ty + ${gy * i}i) * ${sa}i + x_];`);
  for (const j of range(tn)) out.push(`    let b${j}_ = ${B}[(tx + ${16 * j}i) * ${sb}i + x_];`);
  for (const i of range(tm)) for (const j of range(tn)) out.push(`    ${acc}${i}_${j} = ${acc}${i}_${j} + dot(a${i}_, b${j}_);`);
  out.push('  }');
  return out;
}

/**
 * The output columns an invocation accumulates of a product of width w: where w is a multiple of 64,
 * `n` vec4 columns 4·tx + 64·j.. (one 128-bit read of the staged operand per 4 products, 4·n columns
 * each), else `n` scalar columns tx + 16·j (the last ones clamped in range and never stored).
 */
interface AccCols { readonly vec: boolean; readonly n: number }
const accCols = (w: number): AccCols => (w % 64 === 0 ? { vec: true, n: w / 64 } : { vec: false, n: Math.ceil(w / 16) });

function accDecl(acc: string, tm: number, a: AccCols): string[] {
  return range(tm).flatMap((i) => range(a.n).map((j) => `  var ${acc}${i}_${j}: ${a.vec ? 'vec4<f32> = vec4<f32>(0.0f)' : 'f32 = 0.0f'};`));
}

/**
 * Stores of accumulator `acc` (rows r0 + ty + gy·i < extent): `st(row, col, value)` per column below w,
 * the value `val(accumulator component, i)`.
 */
function accStores(acc: string, tm: number, a: AccCols, w: number, gy: number, extent: number, st: (r: string, c: string, v: string) => string, val: (x: string, i: number) => string = (x) => x): string[] {
  const out: string[] = [];
  for (const i of range(tm)) {
    const r = `r0 + ty + ${gy * i}i`;
    for (const j of range(a.n)) {
      if (a.vec) out.push(`  if (${r} < ${extent}i) { ${range(4).map((q) => `${st(r, `tx * 4i + ${64 * j + q}i`, val(`${acc}${i}_${j}[${q}]`, i))};`).join(' ')} }`);
      else out.push(`  if (${r} < ${extent}i && tx + ${16 * j}i < ${w}i) { ${st(r, `tx + ${16 * j}i`, val(`${acc}${i}_${j}`, i))}; }`);
    }
  }
  return out;
}

/** Unrolled accumulation `acc_i_j += Σ_c P[r_i, c] · X[c, cols_j]` over c < len (r_i = ty + gy·i, cols_j: accCols), P read 4 columns at a time. */
function tileAcc(acc: string, tm: number, a: AccCols, w: number, P: string, sp: number, X: string, sx: number, len: number, gy: number): string[] {
  const out = [`  for (var c_: i32 = 0i; c_ < ${len / 4}i; c_++) {`];
  for (const i of range(tm)) out.push(`    let p${i}_ = ${P}[(ty + ${gy * i}i) * ${sp}i + c_];`);
  for (const q of range(4))
    for (const j of range(a.n)) {
      if (a.vec) out.push(`    let x${q}_${j}_ = ${X}[(c_ * 4i + ${q}i) * ${sx}i + tx + ${16 * j}i];`);
      else {
        const e = 16 * j + 15 < w ? `tx + ${16 * j}i` : `min(tx + ${16 * j}i, ${w - 1}i)`;
        out.push(`    let x${q}_${j}_ = ${el(X, sx, `c_ * 4i + ${q}i`, e)};`);
      }
    }
  for (const q of range(4))
    for (const i of range(tm))
      for (const j of range(a.n)) out.push(`    ${acc}${i}_${j} = fma(${a.vec ? `vec4<f32>(p${i}_[${q}])` : `p${i}_[${q}]`}, x${q}_${j}_, ${acc}${i}_${j});`);
  out.push('  }');
  return out;
}

function head(em: AttentionEmitter, count: number, extent: number, tile: number, nt: number, decls: string[]): { out: string[]; workgroups: [number, number, number] } {
  const nb = Math.ceil(extent / tile);
  const e = em.entry(count * nb, nt);
  const out = ['//decls', ...decls, '//end', ...e.lines];
  out.push('  let tid = i32(lix); let tx = tid % 16i; let ty = tid / 16i;');
  out.push(`  let bh = i32(wg) / ${nb}i; let r0 = (i32(wg) % ${nb}i) * ${tile}i;`);
  out.push(...em.batchVars('bh'));
  return { out, workgroups: e.workgroups };
}

/** `body(i)` for every i < n, strided over the nt invocations (i_ is the loop variable). */
const strided = (n: number, nt: number, body: string) => `  for (var i_: i32 = tid; i_ < ${n}i; i_ += ${nt}i) { ${body} }`;

/** The row statistics (logsumexp, D) of query rows s0.. of the walked tile, into Lq / Dq (zeros past sq). */
function statTile(k: AttentionKernel | AttentionGradKernel, em: AttentionEmitter, n: number, nt: number, s0: string): string {
  return strided(n, nt, `var l_: f32 = 0.0f; var d_: f32 = 0.0f; if (${s0} + i_ < ${k.sq}i) { let row = bh * ${k.sq}i + ${s0} + i_; l_ = ${em.statLoad(0, 'row')}; d_ = ${em.statLoad(1, 'row')}; } Lq[i_] = l_; Dq[i_] = d_;`);
}

const shuffle = (em: AttentionEmitter) => (em.subgroups === 'emulated' ? 'subgroupShuffleXor_' : 'subgroupShuffleXor');

/**
 * The forward's walk with the online softmax in registers (em.subgroups): invocation (ty, tx) keeps the
 * running maximum m_i and its partial sum l_i (over its own columns) of rows ty+gy·i; a tile's row maximum
 * is its columns' maximum combined over the row's 16 invocations by subgroupShuffleXor (8, 4, 2, 1), the
 * partial sums are combined the same way once, after the last tile. No statistics in workgroup memory,
 * no single-invocation phase: 3 barriers per key tile ('stats': 2, no probability tile).
 */
function forwardSubgroupTile(k: AttentionKernel | AttentionGradKernel, em: AttentionEmitter, TM: number, TN: number, NE: number, P4: number, gy: number, mode: 'out' | 'stats'): string[] {
  const out: string[] = [];
  const xor = (v: string, op: (a: string, b: string) => string) => [8, 4, 2, 1].map((m) => `${v} = ${op(v, `${shuffle(em)}(${v}, ${m}u)`)};`).join(' ');
  for (const i of range(TM)) {
    const cols = range(TN).map((j) => {
      const mask = `t0 + tx + ${16 * j}i < ${k.sk}i${k.causal ? ` && t0 + tx + ${16 * j}i <= r0 + ty + ${gy * i}i` : ''}`;
      return `let c${j}_ = select(${NEG_INF}, s${i}_${j} * ${em.scale}, ${mask});`;
    });
    out.push(`  { ${cols.join(' ')}`);
    out.push(`    var mx = ${range(TN).reduce((a, j) => (a ? `k_max(${a}, c${j}_)` : `c${j}_`), '')}; ${xor('mx', (a, b) => `k_max(${a}, ${b})`)} mx = k_max(m${i}, mx);`);
    out.push(`    let ms = select(mx, 0.0f, mx == ${NEG_INF}); let corr = k_exp(m${i} - ms); m${i} = mx;`);
    out.push(`    ${range(TN).map((j) => `let p${j}_ = k_exp(c${j}_ - ms);`).join(' ')} l${i} = l${i} * corr + ${range(TN).map((j) => `p${j}_`).join(' + ')};`);
    if (mode === 'out') {
      out.push(`    ${range(NE).map((j) => `o${i}_${j} = o${i}_${j} * corr;`).join(' ')}`);
      out.push(`    ${range(TN).map((j) => `${el('Ps', P4, `ty + ${gy * i}i`, `tx + ${16 * j}i`)} = p${j}_;`).join(' ')}`);
    }
    out.push('  }');
  }
  return out;
}

/** Forward ('out': the attention output) or the backward's statistics pass ('stats': logsumexp and D per query row). */
function forward(k: AttentionKernel | AttentionGradKernel, em: AttentionEmitter, t: WorkgroupAttentionTile, batch: number, mode: 'out' | 'stats'): Body {
  const gy = tileThreadRows(t), nt = 16 * gy;
  const BQ = t.rows, BK = t.cols, TM = BQ / gy, TN = BK / 16, AV = accCols(k.dv), NE = AV.n;
  const DK = k.dk, DV = k.dv, Q4 = DK / 4, K4 = DK / 4 + 1, V4 = DV / 4, P4 = BK / 4 + 1;
  const f = em.fns;
  const decls = [f.ldq_!, f.ldk_!, ...(mode === 'out' ? [f.ldv_!, f.sto_!] : [f.ldo_!, f.lddo_!]),
    tileDecl('Qs', BQ, Q4), tileDecl('Ks', BK, K4), ...(mode === 'out' ? [tileDecl('Vs', BK, V4)] : [])];
  const sg = !!em.subgroups;
  if (em.subgroups === 'native') decls.unshift('enable subgroups;');
  if (em.subgroups === 'emulated')
    decls.push(`var<workgroup> Xs: array<f32, ${nt}>;`, 'var<private> lix_: i32;',
      'fn subgroupShuffleXor_(v: f32, m: u32) -> f32 { workgroupBarrier(); Xs[lix_] = v; workgroupBarrier(); return Xs[lix_ ^ i32(m)]; }');
  if (!sg || mode === 'out') decls.push(tileDecl('Ps', BQ, P4));
  if (!sg) decls.push(`var<workgroup> Ms: array<f32, ${BQ}>;`, `var<workgroup> Ls: array<f32, ${BQ}>;`, `var<workgroup> Cs: array<f32, ${BQ}>;`);
  const { out, workgroups } = head(em, batch, k.sq, BQ, nt, decls);
  out.push(tileLoad('Qs', BQ, DK, Q4, 'r0', k.sq, (r, c) => `ldq_(${em.args(r, c)})`, nt));
  if (em.subgroups === 'emulated') out.push('  lix_ = tid;');
  if (sg) for (const i of range(TM)) out.push(`  var m${i}: f32 = ${NEG_INF}; var l${i}: f32 = 0.0f;`);
  else out.push(strided(BQ, nt, `Ms[i_] = ${NEG_INF}; Ls[i_] = 0.0f;`));
  if (mode === 'out') out.push(...accDecl('o', TM, AV));
  out.push(`  let kend = ${k.causal ? `min(${k.sk}i, r0 + ${BQ}i)` : `${k.sk}i`};`);
  const ldk = (r: string, c: string) => `ldk_(${em.args(r, c)})`, ldv = (r: string, c: string) => `ldv_(${em.args(r, c)})`;
  const fetch = (row0: string) => [...tileFetch('kr', BK, DK, row0, k.sk, ldk, nt), ...(mode === 'out' ? tileFetch('vr', BK, DV, row0, k.sk, ldv, nt) : [])];
  out.push(...tileRegs('kr', BK, DK, nt), ...(mode === 'out' ? tileRegs('vr', BK, DV, nt) : []), ...fetch('0i'));
  out.push(`  for (var t0: i32 = 0i; t0 < kend; t0 += ${BK}i) {`);
  out.push('  workgroupBarrier();');
  out.push(...tileStore('kr', 'Ks', BK, DK, K4, nt), ...(mode === 'out' ? tileStore('vr', 'Vs', BK, DV, V4, nt) : []));
  out.push('  workgroupBarrier();');
  out.push(`  if (t0 + ${BK}i < kend) {`, ...fetch(`t0 + ${BK}i`), '  }');
  out.push('  {');
  out.push(...tileDot('s', TM, TN, 'Qs', Q4, 'Ks', K4, DK, gy));
  if (sg) out.push(...forwardSubgroupTile(k, em, TM, TN, NE, P4, gy, mode));
  else
    for (const i of range(TM))
      for (const j of range(TN)) {
        const mask = `t0 + tx + ${16 * j}i < ${k.sk}i${k.causal ? ` && t0 + tx + ${16 * j}i <= r0 + ty + ${gy * i}i` : ''}`;
        out.push(`  ${el('Ps', P4, `ty + ${gy * i}i`, `tx + ${16 * j}i`)} = select(${NEG_INF}, s${i}_${j} * ${em.scale}, ${mask});`);
      }
  out.push('  }');
  const dsum = [`    var ds_: f32 = 0.0f; for (var e_: i32 = 0i; e_ < ${DV}i; e_++) { ds_ = ds_ + lddo_(${em.args('s_', 'e_')}) * ldo_(${em.args('s_', 'e_')}); }`];
  if (sg) {
    if (mode === 'out') out.push('  workgroupBarrier();', ...tileAcc('o', TM, AV, DV, 'Ps', P4, 'Vs', V4, BK, gy));
    out.push('  }');
    // The partial sums of each row's 16 invocations.
    for (const i of range(TM)) out.push(`  ${[8, 4, 2, 1].map((m) => `l${i} = l${i} + ${shuffle(em)}(l${i}, ${m}u);`).join(' ')}`);
    if (mode === 'out') {
      out.push(...accStores('o', TM, AV, DV, gy, k.sq, (r, e, v) => `sto_(${em.args(r, e, v)})`, (x, i) => `${x} / l${i}`));
    } else {
      for (const i of range(TM)) out.push(`  if (tx == 0i && r0 + ty + ${gy * i}i < ${k.sq}i) { let row = bh * ${k.sq}i + r0 + ty + ${gy * i}i; ${em.statStore(0, 'row', `m${i} + k_log(l${i})`)} }`);
      out.push(`  for (var i_: i32 = tid; i_ < ${BQ}i; i_ += ${nt}i) {`, `    let s_ = r0 + i_; let row = bh * ${k.sq}i + s_;`, `    if (s_ < ${k.sq}i) {`);
      out.push(...dsum, `    ${em.statStore(1, 'row', 'ds_')}`, '  } }');
    }
    out.push('}');
    return { body: out, workgroups };
  }
  out.push('  workgroupBarrier();');
  // Online softmax statistics, one invocation per query row, 4 columns at a time.
  out.push(`  for (var i_: i32 = tid; i_ < ${BQ}i; i_ += ${nt}i) {`);
  out.push(`    let mo = Ms[i_]; var mx = mo; for (var c_: i32 = 0i; c_ < ${BK / 4}i; c_++) { let p4 = Ps[i_ * ${P4}i + c_]; mx = k_max(k_max(mx, k_max(p4.x, p4.y)), k_max(p4.z, p4.w)); }`);
  out.push(`    let ms = select(mx, 0.0f, mx == ${NEG_INF}); let corr = k_exp(mo - ms); var l = Ls[i_] * corr;`);
  out.push(`    for (var c_: i32 = 0i; c_ < ${BK / 4}i; c_++) { let p4 = Ps[i_ * ${P4}i + c_]; let e4 = vec4<f32>(k_exp(p4.x - ms), k_exp(p4.y - ms), k_exp(p4.z - ms), k_exp(p4.w - ms)); Ps[i_ * ${P4}i + c_] = e4; l = l + (e4.x + e4.y) + (e4.z + e4.w); }`);
  out.push('    Ms[i_] = mx; Ls[i_] = l; Cs[i_] = corr;');
  out.push('  }');
  out.push('  workgroupBarrier();');
  if (mode === 'out') {
    for (const i of range(TM)) {
      out.push(`  { let cr = Cs[ty + ${gy * i}i];`);
      for (const j of range(NE)) out.push(`    o${i}_${j} = o${i}_${j} * cr;`);
      out.push('  }');
    }
    out.push(...tileAcc('o', TM, AV, DV, 'Ps', P4, 'Vs', V4, BK, gy));
  }
  out.push('  }');
  if (mode === 'out') {
    out.push(...accStores('o', TM, AV, DV, gy, k.sq, (r, e, v) => `sto_(${em.args(r, e, v)})`, (x, i) => `${x} / Ls[ty + ${gy * i}i]`));
  } else {
    out.push(`  workgroupBarrier();`, `  for (var i_: i32 = tid; i_ < ${BQ}i; i_ += ${nt}i) {`, `    let s_ = r0 + i_; let row = bh * ${k.sq}i + s_;`, `    if (s_ < ${k.sq}i) {`);
    out.push(...dsum, `    ${em.statStore(0, 'row', 'Ms[i_] + k_log(Ls[i_])')}`, `    ${em.statStore(1, 'row', 'ds_')}`);
    out.push('  } }');
  }
  out.push('}');
  return { body: out, workgroups };
}

/** dQ: a block of query rows walks the key tiles. */
function gradQ(k: AttentionGradKernel, em: AttentionEmitter, t: WorkgroupAttentionTile, batch: number): Body {
  const gy = tileThreadRows(t), nt = 16 * gy;
  const BQ = t.rows, BK = t.cols, TM = BQ / gy, TN = BK / 16, AD = accCols(k.dk);
  const DK = k.dk, DV = k.dv, Q4 = DK / 4, O4 = DV / 4, K4 = DK / 4 + 1, V4 = DV / 4 + 1, P4 = BK / 4 + 1;
  const f = em.fns;
  const decls = [f.ldq_!, f.ldk_!, f.ldv_!, f.lddo_!, f.stq_!,
    tileDecl('Qs', BQ, Q4), tileDecl('Os', BQ, O4), tileDecl('Ks', BK, K4), tileDecl('Vs', BK, V4), tileDecl('Ps', BQ, P4),
    `var<workgroup> Lq: array<f32, ${BQ}>;`, `var<workgroup> Dq: array<f32, ${BQ}>;`];
  const { out, workgroups } = head(em, batch, k.sq, BQ, nt, decls);
  out.push(tileLoad('Qs', BQ, DK, Q4, 'r0', k.sq, (r, c) => `ldq_(${em.args(r, c)})`, nt));
  out.push(tileLoad('Os', BQ, DV, O4, 'r0', k.sq, (r, c) => `lddo_(${em.args(r, c)})`, nt));
  out.push(statTile(k, em, BQ, nt, 'r0'));
  out.push(...accDecl('g', TM, AD));
  out.push(`  let kend = ${k.causal ? `min(${k.sk}i, r0 + ${BQ}i)` : `${k.sk}i`};`);
  const ldk = (r: string, c: string) => `ldk_(${em.args(r, c)})`, ldv = (r: string, c: string) => `ldv_(${em.args(r, c)})`;
  const fetch = (row0: string) => [...tileFetch('kr', BK, DK, row0, k.sk, ldk, nt), ...tileFetch('vr', BK, DV, row0, k.sk, ldv, nt)];
  out.push(...tileRegs('kr', BK, DK, nt), ...tileRegs('vr', BK, DV, nt), ...fetch('0i'));
  out.push(`  for (var t0: i32 = 0i; t0 < kend; t0 += ${BK}i) {`);
  out.push('  workgroupBarrier();');
  out.push(...tileStore('kr', 'Ks', BK, DK, K4, nt), ...tileStore('vr', 'Vs', BK, DV, V4, nt));
  out.push('  workgroupBarrier();');
  out.push(`  if (t0 + ${BK}i < kend) {`, ...fetch(`t0 + ${BK}i`), '  }');
  out.push('  {');
  out.push(...tileDot('s', TM, TN, 'Qs', Q4, 'Ks', K4, DK, gy));
  out.push(...tileDot('dp', TM, TN, 'Os', O4, 'Vs', V4, DV, gy));
  for (const i of range(TM))
    for (const j of range(TN)) {
      const r = `ty + ${gy * i}i`, c = `tx + ${16 * j}i`;
      const mask = `t0 + ${c} < ${k.sk}i${k.causal ? ` && t0 + ${c} <= r0 + ${r}` : ''}`;
      out.push(`  { let p = select(0.0f, k_exp(s${i}_${j} * ${em.scale} - Lq[${r}]), ${mask}); ${el('Ps', P4, r, c)} = p * (dp${i}_${j} - Dq[${r}]) * ${em.scale}; }`);
    }
  out.push('  }');
  out.push('  workgroupBarrier();');
  out.push(...tileAcc('g', TM, AD, DK, 'Ps', P4, 'Ks', K4, BK, gy));
  out.push('  }');
  out.push(...accStores('g', TM, AD, DK, gy, k.sq, (r, d, v) => `stq_(${em.args(r, d, v)})`));
  out.push('}');
  return { body: out, workgroups };
}

/** dK and dV: a block of key rows walks the query tiles. */
function gradKV(k: AttentionGradKernel, em: AttentionEmitter, t: WorkgroupAttentionTile, batch: number): Body {
  const gy = tileThreadRows(t), nt = 16 * gy;
  const BR = t.rows, BC = t.cols, TM = BR / gy, TN = BC / 16, AD = accCols(k.dk), AV = accCols(k.dv);
  const DK = k.dk, DV = k.dv, K4 = DK / 4, V4 = DV / 4, Q4 = DK / 4 + 1, O4 = DV / 4 + 1, P4 = BC / 4 + 1;
  const f = em.fns;
  const decls = [f.ldq_!, f.ldk_!, f.ldv_!, f.lddo_!, ...(k.dK ? [f.stk_!] : []), ...(k.dV ? [f.stv_!] : []),
    tileDecl('Ks', BR, K4), tileDecl('Vs', BR, V4), tileDecl('Qs', BC, Q4), tileDecl('Os', BC, O4), tileDecl('Ps', BR, P4), tileDecl('Ss', BR, P4),
    `var<workgroup> Lq: array<f32, ${BC}>;`, `var<workgroup> Dq: array<f32, ${BC}>;`];
  const { out, workgroups } = head(em, batch, k.sk, BR, nt, decls);
  out.push(tileLoad('Ks', BR, DK, K4, 'r0', k.sk, (r, c) => `ldk_(${em.args(r, c)})`, nt));
  out.push(tileLoad('Vs', BR, DV, V4, 'r0', k.sk, (r, c) => `ldv_(${em.args(r, c)})`, nt));
  out.push(...accDecl('gk', TM, AD), ...accDecl('gv', TM, AV));
  // Causal: queries s ≥ the block's first key r0 (earlier query tiles are fully masked).
  const ldq = (r: string, c: string) => `ldq_(${em.args(r, c)})`, lddo = (r: string, c: string) => `lddo_(${em.args(r, c)})`;
  const fetch = (row0: string) => [...tileFetch('qr', BC, DK, row0, k.sq, ldq, nt), ...tileFetch('dor', BC, DV, row0, k.sq, lddo, nt)];
  out.push(...tileRegs('qr', BC, DK, nt), ...tileRegs('dor', BC, DV, nt), ...fetch(k.causal ? 'r0' : '0i'));
  out.push(`  for (var s0: i32 = ${k.causal ? 'r0' : '0i'}; s0 < ${k.sq}i; s0 += ${BC}i) {`);
  out.push('  workgroupBarrier();');
  out.push(...tileStore('qr', 'Qs', BC, DK, Q4, nt), ...tileStore('dor', 'Os', BC, DV, O4, nt));
  out.push(statTile(k, em, BC, nt, 's0'));
  out.push('  workgroupBarrier();');
  out.push(`  if (s0 + ${BC}i < ${k.sq}i) {`, ...fetch(`s0 + ${BC}i`), '  }');
  out.push('  {');
  out.push(...tileDot('s', TM, TN, 'Ks', K4, 'Qs', Q4, DK, gy));
  out.push(...tileDot('dp', TM, TN, 'Vs', V4, 'Os', O4, DV, gy));
  for (const i of range(TM))
    for (const j of range(TN)) {
      const r = `ty + ${gy * i}i`, c = `tx + ${16 * j}i`;
      const mask = `r0 + ${r} < ${k.sk}i && s0 + ${c} < ${k.sq}i${k.causal ? ` && r0 + ${r} <= s0 + ${c}` : ''}`;
      out.push(`  { let p = select(0.0f, k_exp(s${i}_${j} * ${em.scale} - Lq[${c}]), ${mask}); ${el('Ps', P4, r, c)} = p; ${el('Ss', P4, r, c)} = p * (dp${i}_${j} - Dq[${c}]) * ${em.scale}; }`);
    }
  out.push('  }');
  out.push('  workgroupBarrier();');
  out.push(...tileAcc('gv', TM, AV, DV, 'Ps', P4, 'Os', O4, BC, gy));
  out.push(...tileAcc('gk', TM, AD, DK, 'Ss', P4, 'Qs', Q4, BC, gy));
  out.push('  }');
  if (k.dK) out.push(...accStores('gk', TM, AD, DK, gy, k.sk, (r, d, v) => `stk_(${em.args(r, d, v)})`));
  if (k.dV) out.push(...accStores('gv', TM, AV, DV, gy, k.sk, (r, e, v) => `stv_(${em.args(r, e, v)})`));
  out.push('}');
  return { body: out, workgroups };
}

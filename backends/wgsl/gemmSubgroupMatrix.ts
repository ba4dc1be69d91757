/**
 * @file The f16 GEMM on subgroup matrices (`chromium_experimental_subgroup_matrix`; on NVIDIA's Vulkan
 * driver these are cooperative matrices, f16×f16→f32 at 16×16×16): WGSL for one workgroup tile of
 * C = A·B with f32 accumulation.
 *
 * Structure (the schedule comes from the kernel IR's TileSchedule, or a SgmTile for the probe):
 * a workgroup of S subgroups (32 lanes each) owns a bm×bn output tile; subgroup s owns a wm×wn block of
 * it, (wm/16)×(wn/16) result matrices held in registers (register blocking). K advances bk at a time;
 * the A (bm×bk) and B (bk×bn) tiles are staged in workgroup memory as f16, double buffered (one barrier
 * per step), the next step's global values loaded into registers while this step multiplies. Staging:
 *  - 'scalar': 8 halves per invocation and chunk, read as one vec4<u32> (plain f16 operands) or through
 *    the operand's expression (casts, views: the compiler's lda_/ldb_), stored as f16 scalars;
 *  - 'matrix': each subgroup copies 16×16 blocks global → registers → workgroup with
 *    subgroupMatrixLoad/Store (the driver's vector loads; plain in-bounds f16 operands only);
 *  - 'direct': no workgroup memory, the multiplies load their fragments from global memory.
 * The result is stored with subgroupMatrixStore: straight into an f32 output (probe), or, one 16×16
 * matrix at a time, into a per-subgroup f32 scratch in workgroup memory from which each lane runs the
 * fused epilogue on 4 pairs of adjacent elements (WGSL has no subgroup-scope memory barrier: workgroup
 * barriers, reached uniformly by every subgroup): `epi2_` where codegen.ts could render it (each 16-bit
 * result word written whole, one plain store), else `epi_` per element.
 * Where m, n and k are multiples of the tile no fetch or store has a bounds guard; otherwise only the
 * edge tiles test m and n (a second, unguarded copy of the body serves the interior: sgmGuardSplit). The choices that are
 * not the kernel IR's tile (SgmVariant) were measured one by one against the probe at 8192³
 * (bench/wgslGemmF16.ts VARIANTS, bench/RESULTS.md).
 */
import type { GemmTarget } from '../../ir/kernel/types.ts';
import { KilnError } from '../../ir/errors.ts';
import { affine } from '../../ir/kernel/expr.ts';
import { SUBGROUP_MATRIX_FAMILY } from '../../ir/kernel/tile.ts';
import type { MatmulKernel, OperandPlan, TileSchedule } from '../../ir/kernel/types.ts';

/** One subgroup-matrix GEMM tile (multiples of 16; see the file comment). */
export interface SgmTile {
  readonly bm: number;
  readonly bn: number;
  readonly bk: number;
  /** Rows and columns of C per subgroup. */
  readonly wm: number;
  readonly wn: number;
  readonly staging: 'scalar' | 'matrix' | 'direct';
  /**
   * Layout of the staged tiles: 'k' (default): k-contiguous for both operands (A row-major, B
   * column-major: the layouts subgroup-matrix fragment loads take fastest on NVIDIA, measured: 177 vs
   * 52 TFLOP/s at 4096³ for the same tile, bench/RESULTS.md), an operand contiguous along m|n in memory
   * transposed on its way in (k fastest across invocations: conflict-free 16-bit stores); 'native':
   * the operand's own contiguous dimension.
   */
  readonly smem?: 'k' | 'native';
  /** Tile order: groups of this many tile rows walked column by column (L2 reuse of both operands); 1: row by row. */
  readonly group?: number;
  /**
   * Workgroup tiles: 2 (default): double buffered, one barrier per K step; 1: one buffer, a second
   * barrier after the multiplies (half the memory: a deeper bk fits).
   */
  readonly stages?: 1 | 2;
  /** K steps loaded ahead into registers: 1 (default), or 2 (two register sets, the K loop unrolled by two; two stages only). */
  readonly prefetch?: 1 | 2;
  /**
   * The multiplies in one switch case per subgroup and buffer, so that every fragment load's offset is a
   * constant (Tint's robustness wraps each subgroupMatrixLoad in a bounds test, which folds then); one K step ahead only.
   */
  readonly constOffsets?: boolean;
}

/** The group of tile rows the compiled kernels walk together (see SgmTile.group). */
export const SGM_GROUP = 8;

/**
 * How the compiler's subgroup-matrix kernels are rendered, beyond the kernel IR's tile (each field's
 * default is the measured faster choice; the other value is kept for bench/wgslGemmF16Variants.ts, which
 * measures every difference on and off at 8192³):
 */
export interface SgmVariant {
  /** An m|n-contiguous operand staged in its own layout ('native') or transposed to k-contiguous on its way in ('k'). */
  readonly mnStaging?: 'native' | 'k';
  /**
   * Bounds guards on operand fetches and result stores: 'edge': only where a tile can cross the matrix
   * edge (none where m, n and k are multiples of the tile; otherwise the tiles inside along m and n run
   * an unguarded copy of the body, testing k only where k is not a multiple of bk: sgmGuardSplit); 'always'.
   */
  readonly guards?: 'edge' | 'always';
  /**
   * A 16-bit result: 'pairs': one invocation computes two adjacent outputs and writes each 16-bit store's
   * 32-bit word with one plain store (where the epilogue's stores allow it: codegen.ts pairEpilogue);
   * 'scalar': the epilogue per element (each 16-bit store an atomic and/or pair).
   */
  readonly store?: 'pairs' | 'scalar';
  /**
   * With 'pairs': the 16-bit outputs bound as plain u32 ('plain', default: each word one plain store) or,
   * as before 2026-12-02 (s5-sgm), as atomic<u32> (each word one atomicStore).
   */
  readonly pairBinding?: 'plain' | 'atomic';
  /** Tile order (SgmTile.group); SGM_GROUP by default. */
  readonly group?: number;
  /** K steps loaded ahead into registers (SgmTile.prefetch); 1 by default. */
  readonly prefetch?: 1 | 2;
  /** SgmTile.constOffsets; off by default. */
  readonly constOffsets?: boolean;
}

/**
 * `let i0, j0` (u32) of tile `tl` (a u32 expression < gx·gy) of a gy × gx grid of bm × bn tiles,
 * visited in groups of `group` tile rows, column by column inside a group.
 */
export function sgmTileOrigin(tl: string, gx: number, gy: number, bm: number, bn: number, group: number): string[] {
  const G = Math.max(1, Math.min(group, gy));
  if (G === 1) return [`  let i0 = (${tl} / ${gx}u) * ${bm}u; let j0 = (${tl} % ${gx}u) * ${bn}u;`];
  return [
    `  let gq = ${tl} / ${G * gx}u; let gr = ${tl} % ${G * gx}u; let grows = min(${gy}u - gq * ${G}u, ${G}u);`,
    `  let i0 = (gq * ${G}u + gr % grows) * ${bm}u; let j0 = (gr / grows) * ${bn}u;`,
  ];
}

export const SGM_FRAG = 16;
export const SGM_LANES = 32;
/** Halves of padding per staged row (keeps rows 16-byte aligned and spreads banks). */
export const SGM_PAD = 8;

export const sgmSubgroups = (t: SgmTile) => (t.bm / t.wm) * (t.bn / t.wn);
export const sgmThreads = (t: SgmTile) => SGM_LANES * sgmSubgroups(t);

/** Workgroup memory bytes of a tile: both staged operands double buffered (+ the epilogue scratch). */
export function sgmWorkgroupBytes(t: SgmTile, epilogueScratch: boolean, aMajor: 'k' | 'mn' = 'k', bMajor: 'k' | 'mn' = 'mn'): number {
  const tile = (st: Staged) => st.rows * st.stride;
  if ((t.smem ?? 'k') === 'k' && t.staging === 'scalar') aMajor = bMajor = 'k';
  const stage = t.staging === 'direct' ? 0 : (t.stages ?? 2) * 2 * (tile(staged(aMajor, t.bm, t.bk, 'a')) + tile(staged(bMajor, t.bn, t.bk, 'b')));
  return stage + (epilogueScratch ? sgmSubgroups(t) * SGM_FRAG * SGM_FRAG * 4 : 0);
}

/** Why `t` is not a valid tile ('' when it is). */
export function sgmTileError(t: SgmTile): string {
  const f = SGM_FRAG;
  if ([t.bm, t.bn, t.bk, t.wm, t.wn].some((v) => !Number.isInteger(v) || v <= 0 || v % f)) return 'bm, bn, bk, wm, wn must be positive multiples of 16';
  if (t.bm % t.wm || t.bn % t.wn) return 'the subgroup block wm×wn must divide the workgroup tile bm×bn';
  const T = sgmThreads(t);
  if (T > 1024) return `${T} invocations per workgroup (at most 1024)`;
  if (t.staging === 'scalar' && (((t.bm * t.bk) / 8) % T || ((t.bk * t.bn) / 8) % T)) return `the tiles' 8-half chunks (${(t.bm * t.bk) / 8}, ${(t.bk * t.bn) / 8}) must be a multiple of the ${T} invocations`;
  const S = sgmSubgroups(t);
  if (t.staging === 'matrix' && ((((t.bm / f) * t.bk) / f) % S || (((t.bk / f) * t.bn) / f) % S)) return `the tiles' 16×16 blocks must be a multiple of the ${S} subgroups`;
  return '';
}

export const SGM_ENABLES = [
  'enable f16;', 'enable subgroups;', 'enable chromium_experimental_subgroup_matrix;', 'diagnostic(off, chromium.subgroup_matrix_uniformity);',
];

const L = `subgroup_matrix_left<f16, ${SGM_FRAG}, ${SGM_FRAG}>`;
const R = `subgroup_matrix_right<f16, ${SGM_FRAG}, ${SGM_FRAG}>`;
const ACC = `subgroup_matrix_result<f32, ${SGM_FRAG}, ${SGM_FRAG}>`;

/**
 * Where a GEMM's operands come from and where its result goes, as WGSL snippets (indices u32 unless
 * said). i0, j0 (the tile origin, u32), `tid` and the caller's own lets (batch indices) are in scope.
 */
export interface SgmIo {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /**
   * Which operand dimension is contiguous in memory ('k': a[i, p..p+7] / b[p..p+7, j]; 'mn':
   * a[i..i+7, p] / b[p, j..j+7]): the staged tile keeps that layout (row-major or column-major
   * subgroup-matrix loads), so each chunk of 8 halves lands contiguous in workgroup memory.
   */
  readonly aMajor: 'k' | 'mn';
  readonly bMajor: 'k' | 'mn';
  /**
   * 'scalar' staging: statements setting vec4<u32> `dst` to the 8 halves of the operand starting at
   * (i, p) for a ((p, j) for b) along its contiguous dimension, zero outside the matrix.
   */
  readonly fetchA8?: (dst: string, i: string, p: string) => string;
  readonly fetchB8?: (dst: string, p: string, j: string) => string;
  /** 'matrix' / 'direct' staging: an array<f16> binding holding A row-major with row stride k (B with n), and the element offset of [0, 0]. */
  readonly plainA?: { name: string; base: string };
  readonly plainB?: { name: string; base: string };
  /**
   * The result: an array<f32> binding with row stride n (the probe), or an epilogue statement over i32
   * coordinates and the f32 value; `pair` (optional): the statement of the two outputs (i, j), (i, j + 1)
   * for an even j, valid only where n is even (codegen.ts pairEpilogue checks it).
   */
  readonly out: { kind: 'store'; name: string; base: string } | { kind: 'epilogue'; call: (i: string, j: string, acc: string) => string; pair?: (i: string, j: string, acc0: string, acc1: string) => string };
  /** Every tile lies inside the matrices (m, n, k multiples of the tile): the result stores need no bounds checks. */
  readonly inside?: boolean;
}

/** One staged operand tile: `rows` × `cols` halves, cols contiguous (stride cols + pad), chunks of 8 along cols. */
interface Staged {
  readonly rows: number;
  readonly cols: number;
  readonly stride: number;
  readonly layout: 'row_major' | 'col_major';
}

function staged(major: 'k' | 'mn', mn: number, bk: number, which: 'a' | 'b'): Staged {
  // a row-major (m × k) when k is contiguous; b row-major (k × n) when n is contiguous.
  const contiguousK = major === 'k';
  const rows = contiguousK ? mn : bk, cols = contiguousK ? bk : mn;
  const layout = (which === 'a') === contiguousK ? 'row_major' : 'col_major';
  return { rows, cols, stride: cols + SGM_PAD, layout };
}

/**
 * The body of the GEMM for the tile of origin (i0, j0): declarations (workgroup memory) and the
 * statements of `main` after i0, j0 (u32) and `tid` (local_invocation_index) are defined.
 */
export function sgmGemm(t: SgmTile, io: SgmIo): { decls: string[]; body: string[] } {
  const err = sgmTileError(t);
  if (err) throw new KilnError(`wgsl: subgroup-matrix tile ${JSON.stringify(t)}: ${err}`);
  const f = SGM_FRAG, T = sgmThreads(t), S = sgmSubgroups(t);
  const FM = t.wm / f, FN = t.wn / f, KS = t.bk / f;
  const KT = Math.ceil(io.k / t.bk);
  const decls: string[] = [];
  const body: string[] = [];
  const sgCols = t.bn / t.wn;
  body.push(`  let sg = tid / ${SGM_LANES}u; let wr = sg / ${sgCols}u; let wc = sg % ${sgCols}u;`);
  for (let a = 0; a < FM; a++) for (let b = 0; b < FN; b++) body.push(`  var acc${a}_${b} = ${ACC}();`);
  const mma = (lA: (a: number, kk: number) => string, lB: (b: number, kk: number) => string, ind: string) => {
    const o: string[] = [];
    for (let kk = 0; kk < KS; kk++) {
      o.push(`${ind}{`);
      for (let a = 0; a < FM; a++) o.push(`${ind}  let l${a} = ${lA(a, kk)};`);
      for (let b = 0; b < FN; b++) o.push(`${ind}  let r${b} = ${lB(b, kk)};`);
      for (let a = 0; a < FM; a++) for (let b = 0; b < FN; b++) o.push(`${ind}  acc${a}_${b} = subgroupMatrixMultiplyAccumulate(l${a}, r${b}, acc${a}_${b});`);
      o.push(`${ind}}`);
    }
    return o;
  };
  if (t.staging === 'direct') {
    const A = need(io.plainA, 'direct'), B = need(io.plainB, 'direct');
    if (io.k % t.bk || io.aMajor !== 'k' || io.bMajor !== 'mn') throw new KilnError(`wgsl: subgroup-matrix 'direct' staging needs k (${io.k}) a multiple of bk (${t.bk}), row-major operands`);
    body.push(`  for (var k0 = 0u; k0 < ${io.k}u; k0 += ${t.bk}u) {`);
    body.push(...mma(
      (a, kk) => `subgroupMatrixLoad<${L}, row_major>(&${A.name}, ${A.base} + (i0 + wr * ${t.wm}u + ${a * f}u) * ${io.k}u + k0 + ${kk * f}u, ${io.k}u)`,
      (b, kk) => `subgroupMatrixLoad<${R}, row_major>(&${B.name}, ${B.base} + (k0 + ${kk * f}u) * ${io.n}u + j0 + wc * ${t.wn}u + ${b * f}u, ${io.n}u)`,
      '    '));
    body.push('  }');
  } else {
    const kSmem = (t.smem ?? 'k') === 'k' && t.staging === 'scalar';
    const sa = staged(kSmem ? 'k' : io.aMajor, t.bm, t.bk, 'a'), sb = staged(kSmem ? 'k' : io.bMajor, t.bn, t.bk, 'b');
    const ABUF = sa.rows * sa.stride, BBUF = sb.rows * sb.stride, ST = t.stages ?? 2;
    decls.push(`var<workgroup> As: array<f16, ${ST * ABUF}>;`, `var<workgroup> Bs: array<f16, ${ST * BBUF}>;`);
    const fetch: string[] = [], store: string[] = [], regs: string[] = [];
    if (t.staging === 'scalar') {
      const fa = need(io.fetchA8, 'scalar'), fb = need(io.fetchB8, 'scalar');
      const plan = (st: Staged, which: 'a' | 'b', major: 'k' | 'mn') => {
        const chunks = (st.rows * st.cols) / 8 / T, per = st.cols / 8;
        const o0 = which === 'a' ? 'i0' : 'j0', buf = which === 'a' ? 'abuf' : 'bbuf', arr = which === 'a' ? 'As' : 'Bs';
        for (let q = 0; q < chunks; q++) {
          const r = `r${which}${q}`, e = `(tid + ${q * T}u)`;
          regs.push(`  var ${r}: vec4<u32>;`);
          if (kSmem && major === 'mn') {
            // 8 halves along m|n at one k, stored down a k-contiguous tile: chunk e at k = e % bk, m|n = 8·(e / bk).
            const kk = `${e} % ${t.bk}u`, mn8 = `(${e} / ${t.bk}u) * 8u`;
            fetch.push(`    ${which === 'a' ? fa(r, `${o0} + ${mn8}`, `k0 + ${kk}`) : fb(r, `k0 + ${kk}`, `${o0} + ${mn8}`)}`);
            store.push(`    { let o = ${buf} + (${mn8}) * ${st.stride}u + ${kk};${unpack8(arr, 'o', r, st.stride)} }`);
            continue;
          }
          const row = `${e} / ${per}u`, col = `(${e} % ${per}u) * 8u`;
          // (mn, p) of the chunk's first element.
          const [mn, p] = major === 'k' ? [`${o0} + ${row}`, `k0 + ${col}`] : [`${o0} + ${col}`, `k0 + ${row}`];
          fetch.push(`    ${which === 'a' ? fa(r, mn, p) : fb(r, p, mn)}`);
          store.push(`    { let o = ${buf} + (${row}) * ${st.stride}u + ${col};${unpack8(arr, 'o', r)} }`);
        }
      };
      plan(sa, 'a', io.aMajor);
      plan(sb, 'b', io.bMajor);
    } else {
      const A = need(io.plainA, 'matrix'), B = need(io.plainB, 'matrix');
      if (io.m % t.bm || io.n % t.bn || io.k % t.bk || io.aMajor !== 'k' || io.bMajor !== 'mn') throw new KilnError(`wgsl: subgroup-matrix 'matrix' staging needs m, n, k multiples of the tile and row-major operands`);
      const ablocks = (t.bm / f) * KS, bblocks = KS * (t.bn / f);
      for (let q = 0; q < ablocks / S; q++) {
        regs.push(`  var ma${q}: ${L};`);
        const e = `(sg + ${q * S}u)`; // block (e / KS, e % KS) of the A tile
        fetch.push(`    ma${q} = subgroupMatrixLoad<${L}, row_major>(&${A.name}, ${A.base} + (i0 + (${e} / ${KS}u) * ${f}u) * ${io.k}u + k0 + (${e} % ${KS}u) * ${f}u, ${io.k}u);`);
        store.push(`    subgroupMatrixStore<row_major>(&As, abuf + (${e} / ${KS}u) * ${f * sa.stride}u + (${e} % ${KS}u) * ${f}u, ma${q}, ${sa.stride}u);`);
      }
      for (let q = 0; q < bblocks / S; q++) {
        regs.push(`  var mb${q}: ${R};`);
        const e = `(sg + ${q * S}u)`, nbk = t.bn / f; // block (e / nbk, e % nbk) of the B tile
        fetch.push(`    mb${q} = subgroupMatrixLoad<${R}, row_major>(&${B.name}, ${B.base} + (k0 + (${e} / ${nbk}u) * ${f}u) * ${io.n}u + j0 + (${e} % ${nbk}u) * ${f}u, ${io.n}u);`);
        store.push(`    subgroupMatrixStore<row_major>(&Bs, bbuf + (${e} / ${nbk}u) * ${f * sb.stride}u + (${e} % ${nbk}u) * ${f}u, mb${q}, ${sb.stride}u);`);
      }
    }
    // Element (r, c) of a staged tile: row_major at r * stride + c, col_major at c * stride + r.
    const at = (st: Staged, r: string, c: string) => (st.layout === 'row_major' ? `(${r}) * ${st.stride}u + ${c}` : `(${c}) * ${st.stride}u + ${r}`);
    const multiplyAt = (wr: string, wc: string, abuf: string, bbuf: string, ind: string) => mma(
      (a, kk) => `subgroupMatrixLoad<${L}, ${sa.layout}>(&As, ${abuf} + ${at(sa, `${wr} * ${t.wm}u + ${a * f}u`, `${kk * f}u`)}, ${sa.stride}u)`,
      (b, kk) => `subgroupMatrixLoad<${R}, ${sb.layout}>(&Bs, ${bbuf} + ${at(sb, `${kk * f}u`, `${wc} * ${t.wn}u + ${b * f}u`)}, ${sb.stride}u)`,
      ind);
    let multiply = multiplyAt('wr', 'wc', 'abuf', 'bbuf', '    ');
    if (t.constOffsets && (t.prefetch ?? 1) === 1) {
      // One case per subgroup (and buffer): every fragment offset a constant expression.
      const o = [`    switch (sg${ST === 2 ? ` + ${S}u * (kt & 1u)` : ''}) {`];
      for (let c = 0; c < S * ST; c++) {
        const sgc = c % S, buf = Math.floor(c / S);
        o.push(`      case ${c}u: {`, ...multiplyAt(`${Math.floor(sgc / sgCols)}u`, `${sgc % sgCols}u`, `${buf * ABUF}u`, `${buf * BBUF}u`, '        '), '      }');
      }
      o.push('      default: {}', '    }');
      multiply = o;
    }
    if ((t.prefetch ?? 1) === 2 && ST === 2) {
      // Two register sets, the loop unrolled by two: set s holds step kt + s, refilled with step kt + s + 2.
      const set1 = (l: string) => l.replace(/\b([rm][ab]\d+)\b/g, '$1_1');
      const half = (sIdx: 0 | 1, ind: string) => {
        const re = sIdx ? set1 : (l: string) => l;
        return [
          `${ind}let abuf = ${sIdx * ABUF}u; let bbuf = ${sIdx * BBUF}u;`, ...store.map((l) => ind.slice(4) + re(l)), `${ind}workgroupBarrier();`,
          `${ind}if (kt + ${2 + sIdx}u < ${KT}u) {`, `${ind}  let k0 = (kt + ${2 + sIdx}u) * ${t.bk}u;`, ...fetch.map((l) => `${ind.slice(2)}${re(l)}`), `${ind}}`,
          ...multiply.map((l) => ind.slice(4) + l),
        ];
      };
      body.push(...regs, ...regs.map(set1));
      body.push('  {', '    let k0 = 0u;', ...fetch, '  }');
      if (KT > 1) body.push('  {', `    let k0 = ${t.bk}u;`, ...fetch.map(set1), '  }');
      body.push(`  for (var kt = 0u; kt < ${KT}u; kt += 2u) {`, '    {', ...half(0, '      '), '    }');
      body.push(...(KT % 2 ? ['    if (kt + 1u < ' + KT + 'u) {'] : ['    {']), ...half(1, '      '), '    }', '  }');
    } else {
      body.push(...regs);
      body.push('  {', '    let k0 = 0u;', ...fetch, '  }');
      body.push(`  for (var kt = 0u; kt < ${KT}u; kt++) {`);
      body.push(ST === 2 ? `    let abuf = (kt & 1u) * ${ABUF}u; let bbuf = (kt & 1u) * ${BBUF}u;` : '    let abuf = 0u; let bbuf = 0u;');
      body.push(...store, '    workgroupBarrier();');
      body.push(`    if (kt + 1u < ${KT}u) {`, `      let k0 = (kt + 1u) * ${t.bk}u;`, ...fetch.map((l) => `  ${l}`), '    }');
      body.push(...multiply);
      if (ST === 1) body.push('    workgroupBarrier();');
      body.push('  }');
    }
  }
  // The result.
  if (io.out.kind === 'store') {
    const C = io.out;
    for (let a = 0; a < FM; a++)
      for (let b = 0; b < FN; b++)
        body.push(`  subgroupMatrixStore<row_major>(&${C.name}, ${C.base} + (i0 + wr * ${t.wm}u + ${a * f}u) * ${io.n}u + j0 + wc * ${t.wn}u + ${b * f}u, acc${a}_${b}, ${io.n}u);`);
  } else {
    const call = io.out.call, pair = io.out.pair;
    decls.push(`var<workgroup> Cs: array<f32, ${S * f * f}>;`);
    body.push(`  let lane = tid % ${SGM_LANES}u; let cbase = sg * ${f * f}u;`);
    for (let a = 0; a < FM; a++)
      for (let b = 0; b < FN; b++) {
        body.push(`  subgroupMatrixStore<row_major>(&Cs, cbase, acc${a}_${b}, ${f}u);`, '  workgroupBarrier();');
        // Lane l takes the column pairs 2l, 2l + 64, ... of the 16×16 matrix (rows (2l)/16 + 4q): 16-bit outputs
        // are stored two per 32-bit word, so one lane writes both halves of a word (no contended CAS).
        body.push(`  for (var q = 0u; q < ${(f * f) / SGM_LANES / 2}u; q++) {`,
          `    let e = 2u * (lane + q * ${SGM_LANES}u); let ii = i32(i0 + wr * ${t.wm}u + ${a * f}u + e / ${f}u); let jj = i32(j0 + wc * ${t.wn}u + ${b * f}u + e % ${f}u);`,
          ...(pair && io.inside
            ? [`    ${pair('ii', 'jj', 'Cs[cbase + e]', 'Cs[cbase + e + 1u]')}`]
            : pair
              ? [`    if (ii < ${io.m}i && jj < ${io.n}i) { ${pair('ii', 'jj', 'Cs[cbase + e]', 'Cs[cbase + e + 1u]')} }`]
              : io.inside
                ? [`    ${call('ii', 'jj', 'Cs[cbase + e]')}`, `    ${call('ii', 'jj + 1i', 'Cs[cbase + e + 1u]')}`]
                : [`    if (ii < ${io.m}i) {`,
                  `      if (jj < ${io.n}i) { ${call('ii', 'jj', `Cs[cbase + e]`)} }`,
                  `      if (jj + 1i < ${io.n}i) { ${call('ii', 'jj + 1i', `Cs[cbase + e + 1u]`)} }`,
                  '    }']),
          '  }', '  workgroupBarrier();');
      }
  }
  return { decls, body };
}

function need<T>(v: T | undefined, staging: string): T {
  if (v === undefined) throw new KilnError(`wgsl: subgroup-matrix '${staging}' staging: operand access missing`);
  return v;
}

/** Store the 8 halves of vec4<u32> `v` at arr[o + q·step], q = 0..7. */
function unpack8(arr: string, o: string, v: string, step = 1): string {
  let s = '';
  for (let w = 0; w < 4; w++) s += ` let h${w} = bitcast<vec2<f16>>(${v}[${w}]); ${arr}[${o} + ${2 * w * step}u] = h${w}.x; ${arr}[${o} + ${(2 * w + 1) * step}u] = h${w}.y;`;
  return s;
}

/**
 * A standalone module (the probe's hand-checked kernel): C[M,N] (f32) = A[M,K]·B[K,N], A and B
 * row-major f16 (B given as Bᵀ [N,K] when bTransposed: 'scalar' staging only), M, N, K multiples of the tile (K and N of 8). Bindings: 0 A, 1 B, 2 C; the grid is
 * (N/bn, M/bm).
 */
export function sgmPlainModule(t: SgmTile, M: number, N: number, K: number, bTransposed = false): { code: string; workgroups: [number, number, number] } {
  if (M % t.bm || N % t.bn || K % t.bk) throw new KilnError(`sgmPlainModule: ${M}x${N}x${K} is not a multiple of the tile ${t.bm}x${t.bn}x${t.bk}`);
  const vec = t.staging === 'scalar';
  const io: SgmIo = {
    m: M, n: N, k: K, aMajor: 'k', bMajor: bTransposed ? 'k' : 'mn',
    ...(vec
      ? {
        fetchA8: (d, i, p) => `${d} = A[(${i}) * ${K / 8}u + (${p}) / 8u];`,
        fetchB8: (d, p, j) => (bTransposed ? `${d} = B[(${j}) * ${K / 8}u + (${p}) / 8u];` : `${d} = B[(${p}) * ${N / 8}u + (${j}) / 8u];`),
      }
      : { plainA: { name: 'A', base: '0u' }, plainB: { name: 'B', base: '0u' } }),
    out: { kind: 'store', name: 'C', base: '0u' },
  };
  const { decls, body } = sgmGemm(t, io);
  const el = vec ? 'vec4<u32>' : 'f16';
  const code = [
    ...SGM_ENABLES,
    `@group(0) @binding(0) var<storage, read> A: array<${el}>;`,
    `@group(0) @binding(1) var<storage, read> B: array<${el}>;`,
    '@group(0) @binding(2) var<storage, read_write> C: array<f32>;',
    ...decls,
    `@compute @workgroup_size(${sgmThreads(t)}, 1, 1)`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {',
    `  let tl = wid.x + wid.y * ${N / t.bn}u;`,
    ...sgmTileOrigin('tl', N / t.bn, M / t.bm, t.bm, t.bn, t.group ?? 1),
    ...body,
    '}',
  ].join('\n');
  return { code, workgroups: [N / t.bn, M / t.bm, 1] };
}

/**
 * The GemmTarget the compiler tiles for on a device with f16 subgroup matrices (the tile rule is
 * compiler/schedule/subgroupMatrixTiling.ts): f16×f16→f32 16×16×16 on 32-lane subgroups, the device's
 * workgroup memory, and a wave of 132 workgroups (WebGPU does not tell the multiprocessor count; 132 is
 * the H200's, where this was measured).
 */
export function sgmGemmTarget(workgroupBytes: number): GemmTarget {
  return {
    name: 'wgsl-subgroup-matrix', processors: 132, sharedBytes: workgroupBytes, warpSize: SGM_LANES,
    mma: [{ family: SUBGROUP_MATRIX_FAMILY, m: SGM_FRAG, n: SGM_FRAG, k: SGM_FRAG, ab: 'f16', acc: 'f32', threads: SGM_LANES }],
  };
}

/** A matmul kernel the compiler gave a subgroup-matrix schedule, with f16 operands and f32 accumulation. */
export function isSubgroupMatrixKernel(k: MatmulKernel): boolean {
  return k.tile?.mma?.family === SUBGROUP_MATRIX_FAMILY && k.tile.provider === 'tensor-core' && k.accDType === 'f32' && k.a.dtype === 'f16' && k.b.dtype === 'f16';
}

/** The bounds an operand fetch tests: none, k only, or m|n and k. */
export type FetchGuard = 'none' | 'k' | 'all';

/**
 * How a GEMM of m×n×k on tile `t` is guarded: `edge`, the fetch guard of every tile when `interior` is
 * undefined (one body: 'none' where the tile divides m, n and k, 'all' otherwise), else of the edge
 * tiles only, `interior` that of the tiles inside the matrices along m and n (two bodies: 'none' where
 * the tile divides k, else 'k'). SgmVariant.guards 'always': one body, every guard.
 */
export function sgmGuardSplit(m: number, n: number, k: number, t: Pick<SgmTile, 'bm' | 'bn' | 'bk'>, guards: 'edge' | 'always'): { edge: FetchGuard; interior?: FetchGuard } {
  if (guards === 'always') return { edge: 'all' };
  if (m % t.bm === 0 && n % t.bn === 0) return { edge: k % t.bk === 0 ? 'none' : 'k' };
  // No tile lies inside along m or n: one guarded body.
  if (m < t.bm || n < t.bn) return { edge: 'all' };
  return { edge: 'all', interior: k % t.bk === 0 ? 'none' : 'k' };
}

/** The SgmTile a kernel-IR schedule describes ('scalar' staging: it takes every operand expression and shape). */
export function sgmTileOf(s: TileSchedule, v: SgmVariant = {}): SgmTile {
  return { bm: s.block.m, bn: s.block.n, bk: s.block.k, wm: s.block.m / s.warps.m, wn: s.block.n / s.warps.n, staging: 'scalar', smem: v.mnStaging ?? 'native', group: v.group ?? SGM_GROUP, stages: s.stages === 1 ? 1 : 2, prefetch: v.prefetch ?? 1, constOffsets: v.constOffsets ?? false };
}

/** What codegen.ts gives the renderer: its declarations (lda_, ldb_, epi_ are declared), batch variables, the vec4 view binder. */
export interface SgmRenderContext {
  readonly decls: string[];
  /** The WGSL names of the batch indices (x_b0, ...) and their IR names (b0, ...). */
  readonly bargs: readonly string[];
  readonly bv: readonly string[];
  /** A second binding of an IR buffer as array<vec4<f32>> (codegen.ts's vec4 views), or undefined where it cannot be. */
  readonly vec4View?: (buf: number) => { name: string; base: string } | undefined;
  /** Declares the batch indices from the u32 `bt` (the batch element of this workgroup). */
  readonly batchLets: (out: string[]) => void;
  /** The dispatch grid for `total` workgroups (folded into two dimensions past the limit). */
  readonly grid: (total: number) => [number, number, number];
  /** `epi2_`'s name where codegen.ts could render the pair epilogue (see SgmIo.out.pair). */
  readonly pair?: string;
  readonly variant?: SgmVariant;
}

/**
 * The WGSL of a matmul kernel with a subgroup-matrix schedule (codegen.ts calls this after declaring
 * the operand functions lda_/ldb_ and the epilogue epi_): one workgroup per output tile and batch
 * element; operands read as vec4 views where the tiling stage planned them 'async' (plain f16 loads,
 * 8-aligned) and the view can be bound, else 8 values through lda_/ldb_ packed to f16 (they are f16
 * values already: the conversion is exact); the epilogue per element.
 */
export function renderSubgroupMatrixMatmul(k: MatmulKernel, c: SgmRenderContext): Array<{ body: string[]; workgroups: [number, number, number] }> {
  const s = k.tile!;
  const v = c.variant ?? {};
  const t = sgmTileOf(s, v);
  const batch = k.batch.reduce((a, b) => a * b, 1);
  const gx = Math.ceil(k.n / t.bn), gy = Math.ceil(k.m / t.bm);
  const total = gx * gy * batch;
  const w = c.grid(total);
  const pairName = (v.store ?? 'pairs') === 'pairs' ? c.pair : undefined;
  // guard: which bounds the operand fetches test ('none': m, n and k; 'k': only k, the tile being inside
  // along m and n; 'all'); `inside`: the result stores need no test.
  const ioWith = (guard: FetchGuard, inside: boolean): SgmIo => {
    const fetch = (which: 'a' | 'b') => operandFetch(k, which, s.a, s.b, c, guard);
    return {
      m: k.m, n: k.n, k: k.k, aMajor: s.a.major, bMajor: s.b.major, inside,
      fetchA8: fetch('a'), fetchB8: ((f) => (d: string, p: string, j: string) => f(d, j, p))(fetch('b')),
      out: {
        kind: 'epilogue', call: (i, j, acc) => `epi_(${[...c.bargs, i, j, acc].join(', ')});`,
        ...(pairName ? { pair: (i: string, j: string, a0: string, a1: string) => `${pairName}(${[...c.bargs, i, j, a0, a1].join(', ')});` } : {}),
      },
    };
  };
  const split = sgmGuardSplit(k.m, k.n, k.k, t, v.guards ?? 'edge');
  let decls: string[], body: string[];
  if (split.interior === undefined) ({ decls, body } = sgmGemm(t, ioWith(split.edge, split.edge !== 'all')));
  else {
    // Interior tiles (inside the matrices along m and n) without the m/n tests, edge tiles with all of
    // them: the branch is uniform (the tile origin comes from workgroup_id), so its barriers are too.
    const fast = sgmGemm(t, ioWith(split.interior, true)), edge = sgmGemm(t, ioWith('all', false));
    decls = fast.decls;
    body = [`  if (i0 + ${t.bm}u <= ${k.m}u && j0 + ${t.bn}u <= ${k.n}u) {`, ...fast.body.map((l) => `  ${l}`), '  } else {', ...edge.body.map((l) => `  ${l}`), '  }'];
  }
  c.decls.push(...SGM_ENABLES, ...decls);
  const out = [
    `@compute @workgroup_size(${sgmThreads(t)}, 1, 1)`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {',
    `  let wg = wid.x + wid.y * ${w[0]}u;`,
    `  if (wg >= ${total}u) { return; }`,
    `  let bt = wg / ${gx * gy}u; let tl = wg % ${gx * gy}u;`,
    ...sgmTileOrigin('tl', gx, gy, t.bm, t.bn, t.group ?? SGM_GROUP),
  ];
  c.batchLets(out);
  out.push(...body, '}');
  return [{ body: out, workgroups: w }];
}

/**
 * Statements loading 8 halves of operand `which` into vec4<u32> `dst`, from (mn, p) along its
 * contiguous dimension (mn = i for a, j for b; u32 expressions), zero outside the matrix.
 */
function operandFetch(k: MatmulKernel, which: 'a' | 'b', pa: OperandPlan, pb: OperandPlan, c: SgmRenderContext, guard: FetchGuard): (dst: string, mn: string, p: string) => string {
  const plan = which === 'a' ? pa : pb;
  const e = which === 'a' ? k.a : k.b;
  const ext = which === 'a' ? k.m : k.n;
  const mnVar = which === 'a' ? 'i' : 'j';
  const always = guard === 'none';
  const inside = (mn: string, p: string) => (guard === 'k' ? `${p} < ${k.k}u` : `${mn} < ${ext}u && ${p} < ${k.k}u`);
  const aff = e.k === 'load' ? affine(e.index) : undefined;
  const view = plan.staging === 'async' && e.k === 'load' && aff ? c.vec4View?.(e.buf) : undefined;
  if (view && aff) {
    // Element index c + Σ coef·var (in halves; 8-aligned where read, as planOperand checked), in vec4<u32>s.
    return (dst, mn, p) => {
      const terms = [`${aff.c}i`, ...[...aff.coef].map(([n, v]) => `${v}i * ${n === 'p' ? `i32(${p})` : n === mnVar ? `i32(${mn})` : c.bargs[c.bv.indexOf(n)]!}`)];
      // The index is ≥ 0 where it is read (inside the matrix): a shift, not a signed division.
      const load = `${dst} = bitcast<vec4<u32>>(${view.name}[u32(${view.base}) + (u32(${terms.join(' + ')}) >> 3u)]);`;
      return always ? load : `if (${inside(mn, p)}) { ${load} } else { ${dst} = vec4<u32>(0u); }`;
    };
  }
  const fn = which === 'a' ? 'lda_' : 'ldb_';
  return (dst, mn, p) => {
    const o: string[] = ['{'];
    for (let q = 0; q < 8; q++) {
      const [m2, p2] = plan.major === 'k' ? [mn, `${p} + ${q}u`] : [`${mn} + ${q}u`, p];
      const args = which === 'a' ? [...c.bargs, `i32(${m2})`, `i32(${p2})`] : [...c.bargs, `i32(${p2})`, `i32(${m2})`];
      o.push(always ? `let e${q} = ${fn}(${args.join(', ')});` : `var e${q} = 0.0f; if (${inside(m2, p2)}) { e${q} = ${fn}(${args.join(', ')}); }`);
    }
    o.push(`${dst} = vec4<u32>(pack2x16float(vec2<f32>(e0, e1)), pack2x16float(vec2<f32>(e2, e3)), pack2x16float(vec2<f32>(e4, e5)), pack2x16float(vec2<f32>(e6, e7))); }`);
    return o.join(' ');
  };
}

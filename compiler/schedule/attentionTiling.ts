/**
 * @file The tensor-core tiling of attention kernels (FlashAttention-2 on mma.sync m16n8k16 bf16), as
 * data in the kernel IR: `chooseAttentionTile` is a pure function of the kernel's sizes, and
 * `withAttentionTile` attaches its choice to the attention / attention_grad kernels whose operands are
 * bf16. f32 (and f16) attention keeps no tile: the backends run their exact f32 path.
 *
 * Warps own 16-row m16 tiles: forward `bq / (16·warps)` query row tiles each (1 or 2: with 2, every
 * K/V fragment read from shared memory feeds twice the tensor-core products), backward `bk / (16·warps)`
 * key tiles each (1 or 2, likewise for the Q/dO fragments). The backward's dQ is either reduced from the
 * key blocks into an f32 buffer (8-byte reductions) or, with `dq`, computed by a pass of its own over
 * query blocks (forward-like, dQ in registers).
 * Head dims are zero-padded in shared memory to multiples of 16 (forward, and backward up to 80) or 32
 * (backward above 80).
 * Register budget per thread (the limit is 255): forward (O accumulators dvPad/2 + scores bk/2 + Q
 * fragments dkPad/4 when they fit) per row tile; backward (dK+dV accumulators (dkPad+dvPad)/(2·chunks) +
 * S and dP tiles bq/2 each) per key tile. ptxas reports no spills beyond a word for every choice below
 * (test/backends/cudaCodegen.test.ts); the choices were measured against the alternatives on an H200.
 * On Hopper the `wgmma` field picks the warpgroup-MMA kernels (flashAttentionWgmma.ts) and, with
 * `producerWarps` / `stages` / `pingpong`, their warp-specialized form (FlashAttention-3's structure:
 * a producer warpgroup filling mbarrier-guarded rings, 2 consumer warpgroups).
 */
import type { AttentionGradKernel, AttentionKernel, AttentionTile, Kernel } from '../../ir/kernel/types.ts';

export interface AttentionShape {
  readonly kind: 'attention' | 'attention_grad';
  readonly dk: number;
  readonly dv: number;
  readonly sq: number;
  readonly sk: number;
  readonly causal: boolean;
}

const pad16 = (n: number) => Math.ceil(n / 16) * 16;

/** The tiling for bf16 operands, or undefined when the shape is outside the tensor-core kernels (head dim > 256). */
export function chooseAttentionTile(s: AttentionShape): AttentionTile | undefined {
  const dkPad = pad16(s.dk), dvPad = pad16(s.dv);
  const wide = Math.max(dkPad, dvPad);
  if (wide > 256 || s.dk < 1 || s.dv < 1) return undefined;
  if (s.kind === 'attention') {
    const t = forwardMmaSyncTile(s, dkPad, dvPad, wide);
    // Hopper warpgroup MMA where the head dims are whole 128-byte swizzle rows (multiples of 64); backends
    // without wgmma render `t`'s other fields. Measured on an H200 (bench/RESULTS.md, 2026-12-02 fourth
    // session, window 1, same call), forward ms:
    // - head dim 64 (64×16×1024): 2 warpgroups × 64-key tiles at 2 blocks per SM (≤ 128 registers) 0.919;
    //   1 warpgroup × 128 keys at 3 blocks 0.996, × 64 at 4 blocks 1.007, 2 blocks with the overlap 0.997;
    //   the mma.sync forward 1.136;
    // - head dim 128 (causal 64×16×1024): 1 warpgroup × 64 keys at 2 blocks per SM with the overlap
    //   1.238; without it 1.309; 2 warpgroups × 128 keys (1 block) 1.366; the mma.sync forward 1.289;
    // - head dim 256 (32×16×256): 2 warpgroups × 64 keys 0.230-0.238; the mma.sync forward 0.260.
    if (s.dk % 64 === 0 && s.dv % 64 === 0) {
      const wgs = s.sq <= 64 ? 1 : 2;
      if (wide === 64) return { ...t, wgmma: { warpgroups: wgs, bk: 64, minBlocks: 2 } };
      if (wide === 128) return { ...t, wgmma: { warpgroups: 1, bk: 64, minBlocks: 2, overlap: true } };
      return { ...t, wgmma: { warpgroups: wgs, bk: 64 } };
    }
    return t;
  }
  const b = backwardTile(s, dkPad, dvPad, wide);
  // Backward on wgmma (`warpgroups` × 64 keys per block, query tiles of as many rows), with P computed
  // while dP runs and dS while dV runs (overlap). Measured (same window), backward ms: head dim 64
  // (64×16×1024) 2 warpgroups 3.275, 1 warpgroup 3.42, the mma.sync backward 3.41-3.43; head dim 128
  // (causal 64×16×1024) 1 warpgroup 4.13, mma.sync 4.93; head dim 256 (32×16×256) 1 warpgroup with the
  // overlap 0.958, mma.sync 0.995 (2026-12-02 fourth session, window 2, same call). At 256 the kernel
  // needs head dims that are multiples of 128 (two column passes of 64-column blocks: wgmmaBackwardApplies).
  const wgBwd = s.dk % 64 === 0 && s.dv % 64 === 0 && (wide <= 128 || (s.dk % 128 === 0 && s.dv % 128 === 0));
  if (!wgBwd) return b;
  return { ...b, wgmma: wide === 64 && s.sk > 64 ? { warpgroups: 2, bk: 128, overlap: true } : { warpgroups: 1, bk: 64, overlap: true } };
}

/** The mma.sync forward tile (FlashAttention-2). */
function forwardMmaSyncTile(s: AttentionShape, dkPad: number, dvPad: number, wide: number): AttentionTile {
    // 16 query rows per m16 row tile; two row tiles per warp (each K/V fragment feeds twice as many
    // tensor-core products per shared-memory read) where the registers allow it (head dim ≤ 128).
    // Up to 64 query rows (and up to 128 at head dims above 80, where a 128-row block would be mostly
    // padding and its two row tiles per warp spill at short causal lengths): one block of 64 rows.
    if (s.sq <= 64 || (wide > 80 && s.sq <= 128)) return { bq: 64, bk: wide <= 128 ? 64 : 32, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
    if (wide <= 80) return { bq: 128, bk: 64, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
    // Head dim 128: FA2's 128×64 tile (1.25 vs 1.42 ms for bk 32 at causal 64×16×1024, H200 2026-12-02)
    // where ptxas fits it in the registers: causal with key lengths that are multiples of 64 (checked at
    // sm_90a: 0 bytes spilled at 256 and 1024; 124 at 1000 with a ragged last tile, 80 at 1024 not causal).
    if (wide <= 128) return { bq: 128, bk: s.causal && s.sk % 64 === 0 ? 64 : 32, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
    // Head dims > 128: one row tile per warp (the O accumulators alone are dvPad/2 registers), 8 warps ×
    // 16 rows, 64-key tiles (measured 0.268 vs 0.293 ms for bq64/bk32/4 warps at 32×16×256).
    return { bq: 128, bk: 64, warps: 8, stages: 2, dkPad, dvPad, dkvChunks: 1 };
}

/** The backward tile (mma.sync). */
function backwardTile(s: AttentionShape, dkPad: number, dvPad: number, wide: number): AttentionTile {
  // Backward: 16 key rows per m16 key tile, 4 warps; narrower query steps and column passes as the head
  // grows. With 32-row query steps the dQ product splits the head dim over 2 column groups, and with 2
  // passes dK/dV do too: head dims > 80 are padded to multiples of 32 so that each half is a multiple of
  // 16. Measured on an H200 (bench/RESULTS.md, 2026-12-02), for sequences longer than one tile:
  // head dim 64, two key tiles per warp (128-key blocks) beat one (3.68 vs 4.22 ms at 64×16×1024);
  // head dim 72 (pad 80), dQ in a pass of its own beat the reductions (1.81 vs 1.94 ms at 256×16×256).
  const long = s.sq > 64 && s.sk > 64;
  if (wide <= 64 && dkPad % 32 === 0 && long) return { bq: 32, bk: 128, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
  if (wide <= 80) return { bq: 64, bk: 64, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1, ...(long ? { dq: { bq: 128, bk: 32, warps: 4 } } : {}) };
  const pad32 = (n: number) => Math.ceil(n / 32) * 32;
  // Head dim 128: 32-query steps. (64 measured 4.67 vs 4.94 ms at causal 64×16×1024, H200 2026-12-02, but
  // it sits at the register limit: ptxas spills 4-28 bytes depending on the lengths.)
  if (wide <= 128) return { bq: 32, bk: 64, warps: 4, stages: 2, dkPad: pad32(s.dk), dvPad: pad32(s.dv), dkvChunks: 1 };
  // Head dims > 128: 8 warps × 16 keys (128-key blocks) for sequences longer than one such block
  // (0.975 vs 1.135 ms for 4 warps × 16 keys at 32×16×256), two dK/dV column passes.
  // (Where the dQ product's 4 column groups split the padded head dim into multiples of 16.)
  const w8: AttentionTile = { bq: 32, bk: 128, warps: 8, stages: 2, dkPad: pad32(s.dk), dvPad: pad32(s.dv), dkvChunks: 2 };
  if (s.sk > 128 && tileIsValid(w8, 'attention_grad')) return w8;
  return { bq: 32, bk: 64, warps: 4, stages: 2, dkPad: pad32(s.dk), dvPad: pad32(s.dv), dkvChunks: 2 };
}

/** The layout constraints the CUDA kernels rely on (also asserted by the tests for every choice). */
export function tileIsValid(t: AttentionTile, kind: 'attention' | 'attention_grad'): boolean {
  const m16 = (n: number) => n > 0 && n % 16 === 0;
  if (!m16(t.bq) || !m16(t.bk) || !m16(t.dkPad) || !m16(t.dvPad) || t.stages < 1) return false;
  // Forward: 1 or 2 row tiles of 16 per warp; wgmma: 1 or 2 warpgroups, key tiles of 64 or 128.
  if (t.wgmma && (![1, 2].includes(t.wgmma.warpgroups) || ![64, 128].includes(t.wgmma.bk))) return false;
  if (t.wgmma && kind === 'attention_grad' && t.wgmma.bk !== 64 * t.wgmma.warpgroups) return false;
  // Warp specialization: one producer warpgroup and 2 consumer warpgroups (384 threads: the setmaxnreg
  // budgets of flashAttentionWgmma.ts assume them), rings of 2-4 stages.
  if (t.wgmma?.pingpong && !(kind === 'attention' && t.wgmma.producerWarps && t.wgmma.overlap)) return false;
  if (t.wgmma?.producerWarps) {
    const st = t.wgmma.stages ?? 2;
    if (t.wgmma.producerWarps !== 4 || t.wgmma.warpgroups !== 2 || ![2, 3, 4].includes(st)) return false;
    // In the 227 KiB of shared memory of a Hopper block: forward Q (128 rows) and the K/V rings; backward
    // K, V (128 rows), the Q/dO rings (64 rows) and two dS tiles.
    const bytes = kind === 'attention' ? (128 * t.dkPad + st * t.wgmma.bk * (t.dkPad + t.dvPad)) * 2 : (128 * (t.dkPad + t.dvPad) + st * 64 * (t.dkPad + t.dvPad) + 2 * 64 * 128) * 2;
    if (bytes + 1024 + 1024 > 227 * 1024) return false;
  }
  if (kind === 'attention') return t.bq === t.warps * 16 || t.bq === t.warps * 32;
  // Backward: 1 or 2 key tiles of 16 per warp.
  if (t.bk !== t.warps * 16 && t.bk !== t.warps * 32) return false;
  if (!m16(t.dkPad / t.dkvChunks) || !m16(t.dvPad / t.dkvChunks)) return false;
  // dQ in a pass of its own: 1 or 2 row tiles of 16 per warp (as the forward).
  if (t.dq) return m16(t.dq.bk) && (t.dq.bq === t.dq.warps * 16 || t.dq.bq === t.dq.warps * 32);
  // dQ in the main kernel: the product splits the query rows, then the head dim, over the warps.
  const rowGroups = t.bq / 16;
  if (t.warps % rowGroups !== 0) return false;
  return m16(t.dkPad / (t.warps / rowGroups));
}

/** Attach the tensor-core tiling to bf16 attention kernels; every other kernel is returned as is. */
export function withAttentionTile<K extends Kernel>(k: K): K {
  if (k.kind !== 'attention' && k.kind !== 'attention_grad') return k;
  const a = k as AttentionKernel | AttentionGradKernel;
  const bf16 = a.q.dtype === 'bf16' && a.key.dtype === 'bf16' && a.v.dtype === 'bf16' &&
    (a.kind === 'attention' || (a.o.dtype === 'bf16' && a.dout.dtype === 'bf16'));
  if (!bf16) return k;
  const tile = chooseAttentionTile(a);
  return tile ? { ...k, tile } : k;
}

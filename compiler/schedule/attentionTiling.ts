/**
 * @file The tensor-core tiling of attention kernels (FlashAttention-2 on mma.sync m16n8k16 bf16), as
 * data in the kernel IR: `chooseAttentionTile` is a pure function of the kernel's sizes, and
 * `withAttentionTile` attaches its choice to the attention / attention_grad kernels whose operands are
 * bf16. f32 (and f16) attention keeps no tile: the backends run their exact f32 path.
 *
 * Head dims are zero-padded in shared memory to multiples of 16 (forward, and backward up to 80) or 32
 * (backward above 80).
 * Register budget per thread (the limit is 255): forward O accumulators dvPad/2 + scores bk/2 (+ Q
 * fragments dkPad/4 when dkPad ≤ 128); backward dK+dV accumulators (dkPad+dvPad)/(2·chunks) + S and dP
 * tiles bq/2 each. The choices below keep both under ~200 for every head dim ≤ 256.
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
    // 16 query rows per m16 row tile; two row tiles per warp (each K/V fragment feeds twice as many
    // tensor-core products per shared-memory read) where the registers allow it (head dim ≤ 128).
    if (s.sq <= 64) return { bq: 64, bk: wide <= 128 ? 64 : 32, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
    if (wide <= 80) return { bq: 128, bk: 64, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
    if (wide <= 128) return { bq: 128, bk: 32, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
    return { bq: 64, bk: 32, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
  }
  // Backward: 4 warps × 16 key rows; narrower query steps and column passes as the head grows. With
  // 32-row query steps the dQ product splits the head dim over 2 column groups, and with 2 passes dK/dV
  // do too: head dims > 80 are padded to multiples of 32 so that each half is a multiple of 16.
  if (wide <= 80) return { bq: 64, bk: 64, warps: 4, stages: 2, dkPad, dvPad, dkvChunks: 1 };
  const pad32 = (n: number) => Math.ceil(n / 32) * 32;
  return { bq: 32, bk: 64, warps: 4, stages: 2, dkPad: pad32(s.dk), dvPad: pad32(s.dv), dkvChunks: wide <= 128 ? 1 : 2 };
}

/** The layout constraints the CUDA kernels rely on (also asserted by the tests for every choice). */
export function tileIsValid(t: AttentionTile, kind: 'attention' | 'attention_grad'): boolean {
  const m16 = (n: number) => n > 0 && n % 16 === 0;
  if (!m16(t.bq) || !m16(t.bk) || !m16(t.dkPad) || !m16(t.dvPad) || t.stages < 1) return false;
  // Forward: 1 or 2 row tiles of 16 per warp.
  if (kind === 'attention') return t.bq === t.warps * 16 || t.bq === t.warps * 32;
  const rowGroups = t.bq / 16;
  // Backward: 1 or 2 key tiles of 16 per warp; the dQ product splits the query rows over the warps.
  if ((t.bk !== t.warps * 16 && t.bk !== t.warps * 32) || t.warps % rowGroups !== 0) return false;
  const colGroups = t.warps / rowGroups;
  if (t.dq && (!m16(t.dq.bk) || (t.dq.bq !== t.dq.warps * 16 && t.dq.bq !== t.dq.warps * 32))) return false;
  return m16(t.dkPad / colGroups) && m16(t.dkPad / t.dkvChunks) && m16(t.dvPad / t.dkvChunks);
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

/**
 * The tensor-core attention tiling (compiler/schedule/attentionTiling.ts): every choice satisfies the
 * layout constraints the CUDA kernels rely on, head dims are padded to multiples of 16 (72 → 80), and
 * the tile is attached to bf16 attention kernels only (f32 programs keep the exact f32 path); the kernel
 * printer shows it.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/compile.ts';
import { chooseAttentionTile, tileIsValid } from '../../compiler/schedule/attentionTiling.ts';
import { printProgram } from '../../ir/kernel/print.ts';
import { attentionGraph } from '../support/attentionGraphs.ts';

describe('attention tiling', () => {
  it('every head dim up to 256, forward and backward: a valid tile; beyond 256 none', () => {
    for (const kind of ['attention', 'attention_grad'] as const)
      for (let d = 1; d <= 256; d++)
        for (const sq of [1, 17, 64, 65, 1000]) {
          const t = chooseAttentionTile({ kind, dk: d, dv: d, sq, sk: sq, causal: false });
          expect(t, `${kind} d=${d} sq=${sq}`).toBeDefined();
          expect(tileIsValid(t!, kind), `${kind} d=${d} sq=${sq}: ${JSON.stringify(t)}`).toBe(true);
          expect(t!.dkPad).toBe(Math.ceil(d / (kind === 'attention_grad' && d > 80 ? 32 : 16)) * (kind === 'attention_grad' && d > 80 ? 32 : 16));
        }
    expect(chooseAttentionTile({ kind: 'attention', dk: 272, dv: 272, sq: 8, sk: 8, causal: false })).toBeUndefined();
  });

  it('the shapes of the issue', () => {
    expect(chooseAttentionTile({ kind: 'attention', dk: 72, dv: 72, sq: 256, sk: 256, causal: false }))
      .toEqual({ bq: 128, bk: 64, warps: 4, stages: 2, dkPad: 80, dvPad: 80, dkvChunks: 1 });
    expect(chooseAttentionTile({ kind: 'attention', dk: 256, dv: 256, sq: 256, sk: 256, causal: false }))
      .toEqual({ bq: 128, bk: 64, warps: 8, stages: 2, dkPad: 256, dvPad: 256, dkvChunks: 1, wgmma: { warpgroups: 2, bk: 64 } });
    expect(chooseAttentionTile({ kind: 'attention', dk: 64, dv: 64, sq: 1024, sk: 1024, causal: false })?.wgmma).toEqual({ warpgroups: 2, bk: 64, minBlocks: 2 });
    expect(chooseAttentionTile({ kind: 'attention', dk: 64, dv: 64, sq: 17, sk: 17, causal: false })?.wgmma).toEqual({ warpgroups: 1, bk: 64, minBlocks: 2 });
    expect(chooseAttentionTile({ kind: 'attention', dk: 128, dv: 128, sq: 1024, sk: 1024, causal: true })?.wgmma).toEqual({ warpgroups: 1, bk: 64, minBlocks: 2, overlap: true });
    expect(chooseAttentionTile({ kind: 'attention', dk: 72, dv: 72, sq: 1024, sk: 1024, causal: true })?.wgmma).toBeUndefined();
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 128, dv: 128, sq: 1000, sk: 1000, causal: false })?.wgmma).toEqual({ warpgroups: 1, bk: 64, overlap: true });
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 64, dv: 64, sq: 1000, sk: 1000, causal: false })?.wgmma).toEqual({ warpgroups: 2, bk: 128, overlap: true });
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 64, dv: 64, sq: 64, sk: 64, causal: false })?.wgmma).toEqual({ warpgroups: 1, bk: 64, overlap: true });
    // Head dim 192 (not a multiple of 128): the mma.sync backward; 256: wgmma (two column passes).
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 192, dv: 192, sq: 1000, sk: 1000, causal: false })?.wgmma).toBeUndefined();
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 256, dv: 256, sq: 1000, sk: 1000, causal: true })?.wgmma).toEqual({ warpgroups: 1, bk: 64, overlap: true });
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 72, dv: 72, sq: 1000, sk: 1000, causal: false })?.wgmma).toBeUndefined();
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 128, dv: 128, sq: 1024, sk: 1024, causal: true }))
      .toEqual({ bq: 32, bk: 64, warps: 4, stages: 2, dkPad: 128, dvPad: 128, dkvChunks: 1, wgmma: { warpgroups: 1, bk: 64, overlap: true } });
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 256, dv: 256, sq: 256, sk: 256, causal: false }))
      .toEqual({ bq: 32, bk: 128, warps: 8, stages: 2, dkPad: 256, dvPad: 256, dkvChunks: 2, wgmma: { warpgroups: 1, bk: 64, overlap: true } });
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 64, dv: 64, sq: 1024, sk: 1024, causal: false }))
      .toEqual({ bq: 32, bk: 128, warps: 4, stages: 2, dkPad: 64, dvPad: 64, dkvChunks: 1, wgmma: { warpgroups: 2, bk: 128, overlap: true } });
    expect(chooseAttentionTile({ kind: 'attention_grad', dk: 72, dv: 72, sq: 256, sk: 256, causal: false }))
      .toEqual({ bq: 64, bk: 64, warps: 4, stages: 2, dkPad: 80, dvPad: 80, dkvChunks: 1, dq: { bq: 128, bk: 32, warps: 4 } });
  });

  it('invalid tiles are recognized', () => {
    const ok = { bq: 64, bk: 64, warps: 4, stages: 2, dkPad: 80, dvPad: 80, dkvChunks: 1 };
    expect(tileIsValid(ok, 'attention_grad')).toBe(true);
    expect(tileIsValid({ ...ok, bq: 32 }, 'attention_grad')).toBe(false); // dQ column groups of 40
    expect(tileIsValid({ ...ok, dkPad: 72 }, 'attention_grad')).toBe(false);
    expect(tileIsValid({ ...ok, warps: 8 }, 'attention')).toBe(false);
    // The warp-specialized forward: 2 consumer warpgroups, one producer warpgroup, 2-4 stages that fit in
    // shared memory; forward only; ping-pong only with it and the overlap.
    const f = { bq: 128, bk: 64, warps: 4, stages: 2, dkPad: 128, dvPad: 128, dkvChunks: 1 };
    const ws = { warpgroups: 2, bk: 128, overlap: true, producerWarps: 4, stages: 2 };
    expect(tileIsValid({ ...f, wgmma: ws }, 'attention')).toBe(true);
    expect(tileIsValid({ ...f, wgmma: { ...ws, pingpong: true } }, 'attention')).toBe(true);
    expect(tileIsValid({ ...f, wgmma: { ...ws, overlap: false, pingpong: true } }, 'attention')).toBe(false);
    expect(tileIsValid({ ...f, wgmma: { ...ws, warpgroups: 1 } }, 'attention')).toBe(false);
    expect(tileIsValid({ ...f, wgmma: { ...ws, producerWarps: 1 } }, 'attention')).toBe(false);
    expect(tileIsValid({ ...f, wgmma: { ...ws, stages: 5 } }, 'attention')).toBe(false);
    expect(tileIsValid({ ...f, wgmma: { ...ws, stages: 3 } }, 'attention')).toBe(true);
    expect(tileIsValid({ ...f, dkPad: 256, dvPad: 256, wgmma: ws }, 'attention')).toBe(false); // 320 KiB
    // Backward: 2 consumer warpgroups × 64 keys (bk 128).
    const b = { bq: 32, bk: 64, warps: 4, stages: 2, dkPad: 128, dvPad: 128, dkvChunks: 1 };
    expect(tileIsValid({ ...b, wgmma: { warpgroups: 2, bk: 128, overlap: true, producerWarps: 4, stages: 3 } }, 'attention_grad')).toBe(true);
    expect(tileIsValid({ ...b, wgmma: { warpgroups: 1, bk: 64, overlap: true, producerWarps: 4 } }, 'attention_grad')).toBe(false);
  });

  it('compile() attaches tiles to bf16 attention kernels only, and the printer shows them', () => {
    const bf = compile(attentionGraph({ batch: 2, heads: 3, seq: 17, dim: 72, causal: true, grads: true })).program;
    const attn = bf.kernels.filter((k) => k.kind === 'attention' || k.kind === 'attention_grad');
    expect(attn.map((k) => k.kind)).toEqual(['attention', 'attention_grad']);
    expect(attn.every((k) => 'tile' in k && k.tile)).toBe(true);
    expect(printProgram(bf)).toContain('attention batch=[2,3] sq=17 sk=17 dk=72 dv=72 causal=true scale=0.11785113019775793 tile=bq64,bk64,w4,s2,pad80x80 {');
    const f32 = compile(attentionGraph({ batch: 2, heads: 3, seq: 17, dim: 72, causal: true, layout: 'bshd', grads: true, f32: true })).program;
    expect(f32.kernels.filter((k) => (k.kind === 'attention' || k.kind === 'attention_grad') && k.tile)).toEqual([]);
  });
});

/**
 * @file Which attention kernels the CUDA backend renders with wgmma (backends/cuda/flashAttentionWgmma.ts),
 * and the constant part of its shared-memory descriptors. The kernels' numbers are checked on the GPU
 * (test/gpu/attention.test.ts); ptxas assembles them for sm_90a in test/backends/cudaCodegen.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { descHi } from '../../backends/cuda/flashAttentionWgmma.ts';
import { compile } from '../../compiler/compile.ts';
import { type AttentionCase, attentionGraph } from '../support/attentionGraphs.ts';

const source = (c: AttentionCase, flashWgmma = true) => generateCuda(compile(attentionGraph({ ...c, grads: true })).program, { flashWgmma }).source;
/** The `wgmma.mma_async` shapes in the generated kernels (m64nNk16), sorted, deduplicated. */
const shapes = (src: string) => [...new Set([...src.matchAll(/wgmma\.mma_async\.sync\.aligned\.(m64n\d+k16)/g)].map((m) => m[1]!))].sort();

describe('wgmma flash attention', () => {
  it('head dims 64, 128 and 256 get the wgmma forward and backward; 72 neither', () => {
    // Forward S: n = key tile (64), O: n = head dim; backward Sᵀ, dPᵀ: n = query tile (64), dV, dK, dQ: n = head dim.
    expect(shapes(source({ batch: 1, heads: 2, seq: 300, dim: 128, causal: false }))).toEqual(['m64n128k16', 'm64n64k16']);
    // Head dim 256: forward key tiles of 64, O n = 256; the wgmma backward (s5-attn, the default since the fifth session) adds n = 128.
    expect(shapes(source({ batch: 1, heads: 2, seq: 300, dim: 256, causal: true, layout: 'bshd' }))).toEqual(['m64n128k16', 'm64n256k16', 'm64n64k16']);
    // Head dim 64: forward S and O n = 64; backward (2 warpgroups) Sᵀ, dPᵀ n = 128 queries, dV, dK, dQ n = 64.
    expect(shapes(source({ batch: 1, heads: 2, seq: 300, dim: 64, causal: false }))).toEqual(['m64n128k16', 'm64n64k16']);
    expect(shapes(source({ batch: 1, heads: 2, seq: 300, dim: 72, causal: false }))).toEqual([]);
  });

  it('a device without wgmma gets the mma.sync kernels', () => {
    const src = source({ batch: 1, heads: 2, seq: 300, dim: 128, causal: false }, false);
    expect(shapes(src)).toEqual([]);
    expect(src).toContain('mma.sync.aligned.m16n8k16');
  });

  it('descriptors: LBO in bits 16-29, SBO = 1024 bytes in bits 32-45, 128-byte swizzle (mode 1) in bits 62-63', () => {
    const v = BigInt(descHi(128 * 128).replace('ull', ''));
    expect(Number((v >> 16n) & 0x3fffn)).toBe(128 * 128 / 16);
    expect(Number((v >> 32n) & 0x3fffn)).toBe(1024 / 16);
    expect(Number(v >> 62n)).toBe(1);
    expect(Number(v & 0x3fffn)).toBe(0);
  });
});

/**
 * The WGSL attention tiling (backends/wgsl/attentionTiling.ts): the tiles chosen at the NVIDIA adapter's
 * 48 KiB and SwiftShader's 32 KiB of workgroup memory (the largest that fit), and the errors for
 * invalid tile overrides.
 */
import { describe, expect, it } from 'vitest';
import { chooseWorkgroupAttentionTile, workgroupAttentionBytes, workgroupAttentionTileError } from '../../backends/wgsl/attentionTiling.ts';

describe('WGSL attention tiling', () => {
  it('chooses the largest tiles that fit', () => {
    const pick = (pass: 'forward' | 'dq' | 'dkv', d: number, bytes: number) => chooseWorkgroupAttentionTile(pass, d, d, bytes);
    expect(pick('forward', 72, 49152)).toEqual({ rows: 64, cols: 32 });
    expect(pick('dq', 72, 49152)).toEqual({ rows: 32, cols: 32 });
    expect(pick('dkv', 72, 49152)).toEqual({ rows: 32, cols: 32 });
    expect(pick('dq', 64, 49152)).toEqual({ rows: 32, cols: 32 });
    expect(pick('dkv', 128, 49152)).toEqual({ rows: 16, cols: 16 });
    expect(pick('dq', 72, 32768)).toEqual({ rows: 32, cols: 16 });
    expect(pick('dkv', 72, 32768)).toEqual({ rows: 16, cols: 16 });
    expect(pick('dq', 256, 32768)).toBeUndefined();
    for (const pass of ['forward', 'dq', 'dkv'] as const)
      for (const d of [4, 32, 64, 72, 128])
        for (const bytes of [16384, 32768, 49152]) {
          const t = pick(pass, d, bytes);
          if (!t) continue;
          expect(workgroupAttentionBytes(pass, t, d, d)).toBeLessThanOrEqual(bytes);
          expect(workgroupAttentionTileError(t)).toBeUndefined();
        }
  });

  it('names what is wrong with an invalid tile', () => {
    expect(workgroupAttentionTileError({ rows: 32, cols: 32, threadRows: 3 })).toMatch(/rows 32 is not a positive multiple of threadRows 3/);
    expect(workgroupAttentionTileError({ rows: 32, cols: 24 })).toMatch(/cols 24 is not a positive multiple of 16/);
    expect(workgroupAttentionTileError({ rows: 32, cols: 32, threadRows: 32 })).toMatch(/threadRows 32 is not an integer in 1\.\.16/);
    expect(workgroupAttentionTileError({ rows: 64, cols: 32, threadRows: 8 })).toBeUndefined();
  });
});

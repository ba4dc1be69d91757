/**
 * The WGSL backend's tiled flash attention (backends/wgsl/attention.ts: forward, and the backward's
 * statistics, dQ and dK/dV passes with their tiles in workgroup memory) against the f64 evaluation of
 * test/support/attentionReference.ts, which is itself checked against the cpu backend on the short cases
 * (sequence length ≤ 17) of the same run. f32 operands; y and dQ, dK, dV of loss = Σ y·cot.
 * Tolerance 1e-4 normwise (max|wgsl − ref| / max(max|ref|, 1), wgslAttentionCheck.ts says why the floor): f32 (u = 6e-8) sums of ≤ 256 products
 * accumulate errors of order √N·u·(cancellation factor ~3–5) ≈ 1e-5 at most, the GPU's exp/log are within
 * a few ulp; a wrong mask, statistic or tile edge gives errors of order 1 (measured errors are printed).
 * On a GPU every head dim (64, 72, 128), causal and not, sequence lengths 1, 17, 255, 256, with the tiles
 * the adapter's workgroup memory allows (and its subgroup softmax where it has 16-lane subgroups). On
 * SwiftShader (CI) every shader with workgroup barriers takes seconds to compile, and the cost is per
 * shader, not per sequence length, so five cases, each chosen for what it covers: 16×16 tiles (one score
 * per invocation) at lengths that end in a partial tile (40 = 16+16+8; 33 = 2·16+1: the one-row, one-key
 * tile of length 1), causal and not, both layouts, head dim 72 (output columns past the head dim) and
 * 128 (its backward does not fit 32 KiB there and runs the per-row kernels: checked too, with the cpu
 * backend against the reference at length 17); the tiles SwiftShader's 32 KiB gives (2×2 and 2×1 scores
 * per invocation: the unrolled register blocks) at length 70;
 * and the forward's register softmax (attention.ts's subgroup path, its shuffles emulated in workgroup
 * memory: SwiftShader's subgroups have 4 lanes) with 2×2 score blocks, head dim 64 (vec4 accumulator
 * columns) with dQ on 8 and dK/dV on 4 invocation rows (4 and 8 rows each). Each case asserts which passes took the tiled path (a tiled pass
 * declares `Ks`) and which ran the register softmax.
 */
import { describe, expect, it } from 'vitest';
import { chooseWorkgroupAttentionTile, workgroupAttentionBytes } from '../../backends/wgsl/attentionTiling.ts';
import { wgslBackend, wgslBackendWith } from '../../backends/wgsl/executable.ts';
import { type AttentionCase, caseName } from '../support/attentionGraphs.ts';
import { checkAttention } from '../support/wgslAttentionCheck.ts';

const TOL = 1e-4;
const SMALL = { forward: { rows: 16, cols: 16 }, dq: { rows: 16, cols: 16 }, dkv: { rows: 16, cols: 16 } };

type Tile = { rows: number; cols: number; threadRows?: number };
type Tiles = { forward: Tile; dq: Tile; dkv: Tile };
const tileName = (t: Tile) => `${t.rows}×${t.cols}${t.threadRows ? `/${t.threadRows}` : ''}`;
type Spec = { dim: number; seq: number; causal: boolean; tiles?: Tiles; emulated?: boolean };

const dev = await wgslBackend.device();
const gpu = !/swiftshader/i.test(dev.adapterInfo);
const storage = dev.limits.maxComputeWorkgroupStorageSize;
const all: Spec[] = [64, 72, 128].flatMap((dim) => [false, true].flatMap((causal) => [1, 17, 255, 256].map((seq) => ({ dim, seq, causal }))));
const swiftshader: Spec[] = [
  { dim: 72, seq: 40, causal: true, tiles: SMALL },
  { dim: 64, seq: 33, causal: false, tiles: SMALL },
  { dim: 128, seq: 17, causal: false, tiles: SMALL },
  { dim: 72, seq: 70, causal: true },
  { dim: 64, seq: 40, causal: true, tiles: { forward: { rows: 32, cols: 32 }, dq: { rows: 32, cols: 16, threadRows: 8 }, dkv: { rows: 32, cols: 16, threadRows: 4 } }, emulated: true },
];
const subgroupSoftmax = gpu && (dev.subgroupMinSize ?? 0) >= 16;

describe('WGSL tiled flash attention vs the f64 reference (f32)', () => {
  const specs = gpu ? all : swiftshader;
  for (const s of specs)
    it(`head dim ${s.dim}, sequence ${s.seq}${s.causal ? ', causal' : ''}${s.tiles ? `, tiles ${tileName(s.tiles.forward)}, ${tileName(s.tiles.dq)}, ${tileName(s.tiles.dkv)}` : ''}${s.emulated ? ', register softmax (emulated shuffles)' : ''}`, async () => {
      const sources: string[] = [];
      const be = wgslBackendWith({ attention: 'tiled', ...(s.tiles ? { attentionTiles: s.tiles } : {}), ...(s.emulated ? { attentionSubgroups: 'emulated' as const } : {}), onSource: (_, src) => sources.push(src) });
      const c: AttentionCase = s.seq > 17 ? { batch: 1, heads: 2, seq: s.seq, dim: s.dim, causal: s.causal, layout: s.seq % 2 ? 'bshd' : 'bhsd' } : { batch: 2, heads: 3, seq: s.seq, dim: s.dim, causal: s.causal, layout: s.seq % 2 ? 'bshd' : 'bhsd' };
      const { err, refVsCpu } = await checkAttention(be, c, 1000 * s.dim + s.seq + (s.causal ? 7 : 0), s.seq <= 17);
      console.log(`${caseName(c)}${s.tiles ? ` ${tileName(s.tiles.forward)} ${tileName(s.tiles.dq)} ${tileName(s.tiles.dkv)}` : ''}${s.emulated ? ' emulated' : ''}: ${Object.entries(err).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}${refVsCpu !== undefined ? `; reference vs cpu ${refVsCpu.toExponential(2)}` : ''}`);
      if (refVsCpu !== undefined) expect(refVsCpu).toBeLessThan(TOL);
      for (const [k, v] of Object.entries(err)) expect(v, `${caseName(c)} ${k}`).toBeLessThan(TOL);
      // Tiled passes: forward, statistics, dQ, dK/dV where their tiles fit the workgroup memory.
      const fits = (p: 'forward' | 'dq' | 'dkv') => (s.tiles ? workgroupAttentionBytes(p, s.tiles[p], s.dim, s.dim) <= storage : !!chooseWorkgroupAttentionTile(p, s.dim, s.dim, storage));
      const backward = fits('dq') && fits('dkv');
      const expected = fits('forward') ? 1 + (backward ? 3 : 0) : 0;
      expect(sources.filter((x) => x.includes('var<workgroup> Ks')).length, 'tiled attention passes').toBe(expected);
      // The register softmax: the forward and the statistics pass.
      const shuffled = sources.filter((x) => x.includes(s.emulated ? 'subgroupShuffleXor_(' : 'subgroupShuffleXor(')).length;
      expect(shuffled, 'passes with the register softmax').toBe(s.emulated || subgroupSoftmax ? (fits('forward') ? (backward ? 2 : 1) : 0) : 0);
    }, 600_000);
});

/**
 * @file Fixed sin-cos position embeddings (MAE / DiT `get_2d_sincos_pos_embed`), computed on the
 * host in f64 as the reference does (numpy float64), then used as f32.
 *
 * Reference: facebookresearch/DiT models.py (from facebookresearch/mae util/pos_embed.py):
 * - 1D: omega_i = 1 / 10000^(i / (D/2)), i < D/2; emb(pos) = [sin(pos·omega), cos(pos·omega)]
 *   (all sines first, then all cosines).
 * - 2D: `grid = meshgrid(grid_w, grid_h)` puts the w (column) coordinate first, so for token
 *   n = row·W + col the FIRST half of the channels is the 1D embedding of the COLUMN and the second
 *   half that of the row (despite the reference's variable names emb_h/emb_w).
 * The reference only builds square grids; Kiln also takes [H, W] with the same rule.
 * DiT stores the result as a frozen parameter `pos_embed` [1, N, D]: feed `sincos2dHostTensor(...)`
 * for that, or use `sincos2dConstant(...)` inside a trace.
 */
import { type HostTensor, hostTensor } from '../../../ir/tensor.ts';
import { constant } from '../functional.ts';
import type { Tensor } from '../tensor.ts';

/** [M, D] row-major: the 1D sin-cos embedding of each position (get_1d_sincos_pos_embed_from_grid). */
export function sincos1d(embedDim: number, pos: ArrayLike<number>): Float64Array {
  if (embedDim % 2 !== 0) throw new Error(`sincos1d: embed dim ${embedDim} must be even`);
  const half = embedDim / 2;
  const out = new Float64Array(pos.length * embedDim);
  for (let m = 0; m < pos.length; m++)
    for (let i = 0; i < half; i++) {
      const a = pos[m]! * (1 / 10000 ** (i / half));
      out[m * embedDim + i] = Math.sin(a);
      out[m * embedDim + half + i] = Math.cos(a);
    }
  return out;
}

/** [H·W, D] row-major over the grid: columns in the first D/2 channels, rows in the last D/2. */
export function sincos2d(embedDim: number, grid: number | readonly [number, number]): Float64Array {
  if (embedDim % 4 !== 0) throw new Error(`sincos2d: embed dim ${embedDim} must be a multiple of 4`);
  const [gh, gw] = typeof grid === 'number' ? [grid, grid] : grid;
  const half = embedDim / 2;
  const cols = sincos1d(half, Array.from({ length: gw }, (_, i) => i));
  const rows = sincos1d(half, Array.from({ length: gh }, (_, i) => i));
  const out = new Float64Array(gh * gw * embedDim);
  for (let r = 0; r < gh; r++)
    for (let c = 0; c < gw; c++) {
      const o = (r * gw + c) * embedDim;
      out.set(cols.subarray(c * half, (c + 1) * half), o);
      out.set(rows.subarray(r * half, (r + 1) * half), o + half);
    }
  return out;
}

/** The 2D table as an f32 host tensor, [N, D] or [1, N, D] (DiT's `pos_embed` parameter) with `batchAxis`. */
export function sincos2dHostTensor(embedDim: number, grid: number | readonly [number, number], batchAxis = false): HostTensor {
  const v = sincos2d(embedDim, grid);
  const n = v.length / embedDim;
  return hostTensor('f32', batchAxis ? [1, n, embedDim] : [n, embedDim], v);
}

/** The 2D table as an f32 constant [N, D] in the active trace. */
export function sincos2dConstant(embedDim: number, grid: number | readonly [number, number]): Tensor {
  const v = sincos2d(embedDim, grid);
  return constant(Array.from(v, Math.fround), [v.length / embedDim, embedDim]);
}

/** The 1D table as an f32 constant [M, D] in the active trace. */
export function sincos1dConstant(embedDim: number, pos: ArrayLike<number>): Tensor {
  return constant(Array.from(sincos1d(embedDim, pos), Math.fround), [pos.length, embedDim]);
}

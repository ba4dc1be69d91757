/**
 * @file DiT's `unpatchify`: tokens [B, N, p·p·C] → image [B, C, h·p, w·p].
 *
 * Reference: facebookresearch/DiT models.py `DiT.unpatchify`:
 * `x.reshape(B, h, w, p, p, c)`, `einsum('nhwpqc->nchpwq')`, `reshape(B, c, h·p, h·p)`, with
 * h = w = √N. Kiln also accepts a rectangular grid [h, w] (same index mapping).
 */
import { type Tensor, dslError } from '../tensor.ts';

export function unpatchify(x: Tensor, patchSize: number, channels: number, grid?: readonly [number, number]): Tensor {
  const p = patchSize;
  if (x.rank !== 3 || x.size(2) !== p * p * channels)
    throw dslError('unpatchify', [x], `expects x [B, N, ${p}·${p}·${channels}]`);
  const [b, n] = x.shape as [number, number, number];
  const side = Math.round(Math.sqrt(n));
  const [h, w] = grid ?? [side, side];
  if (h * w !== n) throw dslError('unpatchify', [x], grid ? `grid ${h}x${w} does not hold ${n} tokens` : `${n} tokens are not a square grid`);
  // 'nhwpqc -> nchpwq'
  return x.reshape(b, h, w, p, p, channels).permute(0, 5, 1, 3, 2, 4).reshape(b, channels, h * p, w * p);
}

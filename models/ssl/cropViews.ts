/**
 * @file Multi-crop views cut inside the program (on the device), from the images of a batch and the
 * per-view random choices the host drew (runtime/data/multiCrop.ts `cropParams`: crop box, flip,
 * contrast, offset). The host then feeds only the images and 7 numbers per view, and no pixel work
 * blocks the JS thread between steps.
 *
 * A bilinear resized crop is separable: view = Ry · image · Rxᵀ, where Ry [out, H] and Rx [out, W]
 * are interpolation matrices. Row y of Ry holds the tent weights max(0, 1 − |sy − s|) over the source
 * rows s, sy = clamp(top + (y + 0.5)·h/out − 0.5, 0, H − 1) (pixel centers, align_corners=False, the
 * coordinate clamped as in `resizedCrop`), which are exactly the two bilinear weights (1 − f, f) of
 * floor(sy) and floor(sy) + 1. A horizontal flip reads output column x from source column out − 1 − x.
 * The intensity jitter is x·c + b. So the views equal `resizedCrop`'s up to float rounding (the
 * tests compare them); under bf16 autocast the two matmuls round their operands to bf16 like any other.
 */
import { type Tensor, iota } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';

/** Tent (bilinear) weights [n, out, src] of `out` samples of a `src`-long axis at coordinates `pos` [n, out, 1]. */
function tentRows(pos: Tensor, src: number): Tensor {
  const s = iota([1, 1, src], 2, 'f32');
  return pos.clamp(0, src - 1).sub(s).abs().rsub(1).relu();
}

/**
 * `copies` views per image of `images` [B, C, H, W] at side `out`, view-major ([copies·B, C, out, out]:
 * row k·B + i is view k of image i), from `params` [copies·B, 7] (top, left, h, w, flip, c, b).
 */
export function cropViews(images: Tensor, params: Tensor, copies: number, out: number): Tensor {
  const [B, C, H, W] = images.shape as [number, number, number, number];
  const n = copies * B;
  if (images.rank !== 4 || params.rank !== 2 || params.size(0) !== n || params.size(1) !== 7)
    throw dslError('cropViews', [images, params], `expects images [B, C, H, W] and crop parameters [${copies}·B, 7]`);
  const col = (k: number) => params.narrow(1, k, 1).reshape(n, 1, 1);
  const [top, left, h, w, flip, c, b] = [0, 1, 2, 3, 4, 5, 6].map(col) as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
  const y = iota([1, out, 1], 1, 'f32');
  const ry = tentRows(top.add(y.add(0.5).mul(h).div(out)).sub(0.5), H); // [n, out, H]
  const xs = y.add(flip.mul(y.mul(-2).add(out - 1))); // flipped: column out − 1 − x
  const rx = tentRows(left.add(xs.add(0.5).mul(w).div(out)).sub(0.5), W); // [n, out, W]
  const img = images.unsqueeze(0).expand(copies, B, C, H, W).reshape(n, C, H, W);
  const ryC = ry.unsqueeze(1).expand(n, C, out, H), rxT = rx.unsqueeze(1).expand(n, C, out, W).transpose(2, 3);
  const views = ryC.matmul(img).matmul(rxT); // [n, C, out, out]
  return views.mul(c.unsqueeze(1)).add(b.unsqueeze(1));
}

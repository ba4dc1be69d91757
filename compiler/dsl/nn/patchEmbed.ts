/**
 * @file Patch embedding: timm's `PatchEmbed` (flatten=True, no norm), i.e. `proj` =
 * Conv2d(in, dim, kernel = stride = p, bias) followed by `flatten(2).transpose(1, 2)`.
 *
 * The convolution keeps PyTorch's layout (`proj.weight` [dim, in, p, p], `proj.bias` [dim]) but runs
 * as patchify + matmul: x [B, C, H, W] → [B, h, w, C·p·p] (h = H/p, w = W/p; features ordered
 * (c, ki, kj) like the flattened kernel) → · weightᵀ + bias. Tokens are row-major over the patch
 * grid (n = row·w + col), as timm's flatten gives. H and W must be multiples of p (timm asserts the
 * configured img_size; Kiln takes the size from the input and does not pad).
 *
 * Init defaults to Conv2d's (U(±1/√(C·p·p)) for weight and bias). DiT re-initializes the weight as
 * xavier_uniform of its [dim, C·p·p] view: pass `weightInit: ditPatchEmbedInit(...)` for that.
 */
import type { DType } from '../../../ir/dtype.ts';
import type { Init } from '../init.ts';
import { Module, Parameter } from '../module.ts';
import { type Tensor, dslError } from '../tensor.ts';

export interface PatchEmbedOptions {
  bias?: boolean;
  weightInit?: Init;
  biasInit?: Init;
  dtype?: DType;
}

/** DiT's patch-embed init: xavier_uniform on weight.view(dim, C·p·p), i.e. U(±√(6 / (C·p·p + dim))). */
export function ditPatchEmbedInit(inChannels: number, dim: number, patchSize: number): Init {
  const bound = Math.sqrt(6 / (inChannels * patchSize * patchSize + dim));
  return { kind: 'uniform', low: -bound, high: bound };
}

/** Conv2d with kernel = stride = patchSize and no padding (PyTorch parameter layout). */
export class PatchConv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | undefined;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly patchSize: number,
    opts: PatchEmbedOptions = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inChannels * patchSize * patchSize);
    const u: Init = { kind: 'uniform', low: -bound, high: bound };
    this.weight = new Parameter([outChannels, inChannels, patchSize, patchSize], opts.weightInit ?? u, opts.dtype);
    this.bias = opts.bias === false ? undefined : new Parameter([outChannels], opts.biasInit ?? u, opts.dtype);
  }

  /** x [B, C, H, W] → tokens [B, (H/p)·(W/p), out], row-major over the patch grid. */
  tokens(x: Tensor): Tensor {
    const p = this.patchSize;
    if (x.rank !== 4 || x.size(1) !== this.inChannels)
      throw dslError('PatchConv2d', [x], `expects x [B, ${this.inChannels}, H, W]`);
    const [b, c, hh, ww] = x.shape as [number, number, number, number];
    if (hh % p !== 0 || ww % p !== 0) throw dslError('PatchConv2d', [x], `H and W must be multiples of the patch size ${p}`);
    const [h, w] = [hh / p, ww / p];
    const patches = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p);
    const y = patches.matmul(this.weight.reshape(this.outChannels, c * p * p).mT);
    return this.bias ? y.add(this.bias) : y;
  }

  /** PyTorch's Conv2d output: x [B, C, H, W] → [B, out, H/p, W/p]. */
  forward(x: Tensor): Tensor {
    const [b, , hh, ww] = x.shape as [number, number, number, number];
    const p = this.patchSize;
    return this.tokens(x).transpose(1, 2).reshape(b, this.outChannels, hh / p, ww / p);
  }
}

export class PatchEmbed extends Module {
  readonly proj: PatchConv2d;
  constructor(
    readonly inChannels: number,
    readonly dim: number,
    readonly patchSize: number,
    opts: PatchEmbedOptions = {},
  ) {
    super();
    this.proj = new PatchConv2d(inChannels, dim, patchSize, opts);
  }
  /** x [B, C, H, W] → [B, N, dim], N = (H/p)·(W/p). */
  forward(x: Tensor): Tensor {
    return this.proj.tokens(x);
  }
  /** Number of patches for an H×W input. */
  numPatches(height: number, width = height): number {
    return (height / this.patchSize) * (width / this.patchSize);
  }
}

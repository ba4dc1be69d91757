/**
 * @file Inception-v3's building blocks with torchvision's module names (torchvision/models/inception.py:
 * BasicConv2d, InceptionA..E), so parameter names are torchvision's state_dict keys, e.g.
 * `Mixed_5b.branch5x5_2.conv.weight`, `Mixed_5b.branch5x5_2.bn.running_var`.
 *
 * Channel counts are torchvision's divided by `width` (1 = the real network; the reduced-width
 * variant exists for small golden tests: every count must divide). The branch pools follow `PoolKind`:
 * torchvision pools with count_include_pad=True; pytorch-fid's FIDInceptionA/C/E_1 exclude the padding
 * (TensorFlow's behaviour) and FIDInceptionE_2 (Mixed_7c) max-pools instead.
 */
import { Module, type Tensor, concat, nn } from '../../compiler/dsl/index.ts';
import { KilnError } from '../../ir/errors.ts';

/** The pool of an A, C or E block's `branch_pool`: 3×3, stride 1, padding 1. */
export type PoolKind = 'avg' | 'avg_exclude_pad' | 'max';

export function scaled(channels: number, width: number): number {
  const c = channels / width;
  if (!Number.isInteger(c) || c < 1) throw new KilnError(`Inception-v3: width divisor ${width} does not divide ${channels} channels`);
  return c;
}

function branchPool(x: Tensor, kind: PoolKind): Tensor {
  if (kind === 'max') return nn.maxPool2d(x, 3, 1, 1);
  return nn.avgPool2d(x, 3, 1, 1, { countIncludePad: kind === 'avg' });
}

/** Conv2d (no bias) → BatchNorm2d (eps 0.001, eval) → ReLU. */
export class BasicConv2d extends Module {
  readonly conv: nn.Conv2d;
  readonly bn: nn.BatchNorm2d;
  constructor(inCh: number, outCh: number, kernel: nn.Pair, opts: { stride?: nn.Pair; padding?: nn.Pair } = {}) {
    super();
    this.conv = new nn.Conv2d(inCh, outCh, kernel, { ...opts, bias: false });
    this.bn = new nn.BatchNorm2d(outCh, 0.001);
  }
  forward(x: Tensor): Tensor {
    return this.bn.forward(this.conv.forward(x)).relu();
  }
}

/** `x` through one branch's conv-BN-ReLU layers, in order. */
function branch(x: Tensor, ...layers: BasicConv2d[]): Tensor {
  return layers.reduce((h, m) => m.forward(h), x);
}

/** Mixed_5b/5c/5d: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | pool→1×1; out 64+64+96+pool_features (÷ width). */
export class InceptionA extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch5x5_1: BasicConv2d;
  readonly branch5x5_2: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  readonly outChannels: number;
  constructor(inCh: number, poolFeatures: number, readonly pool: PoolKind, w: number) {
    super();
    const c = (n: number) => scaled(n, w);
    this.branch1x1 = new BasicConv2d(inCh, c(64), 1);
    this.branch5x5_1 = new BasicConv2d(inCh, c(48), 1);
    this.branch5x5_2 = new BasicConv2d(c(48), c(64), 5, { padding: 2 });
    this.branch3x3dbl_1 = new BasicConv2d(inCh, c(64), 1);
    this.branch3x3dbl_2 = new BasicConv2d(c(64), c(96), 3, { padding: 1 });
    this.branch3x3dbl_3 = new BasicConv2d(c(96), c(96), 3, { padding: 1 });
    this.branch_pool = new BasicConv2d(inCh, c(poolFeatures), 1);
    this.outChannels = c(64) + c(64) + c(96) + c(poolFeatures);
  }
  forward(x: Tensor): Tensor {
    return concat([
      this.branch1x1.forward(x),
      branch(x, this.branch5x5_1, this.branch5x5_2),
      branch(x, this.branch3x3dbl_1, this.branch3x3dbl_2, this.branch3x3dbl_3),
      this.branch_pool.forward(branchPool(x, this.pool)),
    ], 1);
  }
}

/** Mixed_6a (grid 35 → 17): 3×3/2 | 1×1→3×3→3×3/2 | max pool 3×3/2; out 384+96+in. */
export class InceptionB extends Module {
  readonly branch3x3: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  readonly outChannels: number;
  constructor(inCh: number, w: number) {
    super();
    const c = (n: number) => scaled(n, w);
    this.branch3x3 = new BasicConv2d(inCh, c(384), 3, { stride: 2 });
    this.branch3x3dbl_1 = new BasicConv2d(inCh, c(64), 1);
    this.branch3x3dbl_2 = new BasicConv2d(c(64), c(96), 3, { padding: 1 });
    this.branch3x3dbl_3 = new BasicConv2d(c(96), c(96), 3, { stride: 2 });
    this.outChannels = c(384) + c(96) + inCh;
  }
  forward(x: Tensor): Tensor {
    return concat([
      this.branch3x3.forward(x),
      branch(x, this.branch3x3dbl_1, this.branch3x3dbl_2, this.branch3x3dbl_3),
      nn.maxPool2d(x, 3, 2),
    ], 1);
  }
}

/** Mixed_6b..6e: 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | pool→1×1; out 4·192 (÷ width). */
export class InceptionC extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch7x7_1: BasicConv2d;
  readonly branch7x7_2: BasicConv2d;
  readonly branch7x7_3: BasicConv2d;
  readonly branch7x7dbl_1: BasicConv2d;
  readonly branch7x7dbl_2: BasicConv2d;
  readonly branch7x7dbl_3: BasicConv2d;
  readonly branch7x7dbl_4: BasicConv2d;
  readonly branch7x7dbl_5: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  readonly outChannels: number;
  constructor(inCh: number, channels7x7: number, readonly pool: PoolKind, w: number) {
    super();
    const c = (n: number) => scaled(n, w);
    const c7 = c(channels7x7);
    const row = { padding: [0, 3] as const }, col = { padding: [3, 0] as const };
    this.branch1x1 = new BasicConv2d(inCh, c(192), 1);
    this.branch7x7_1 = new BasicConv2d(inCh, c7, 1);
    this.branch7x7_2 = new BasicConv2d(c7, c7, [1, 7], row);
    this.branch7x7_3 = new BasicConv2d(c7, c(192), [7, 1], col);
    this.branch7x7dbl_1 = new BasicConv2d(inCh, c7, 1);
    this.branch7x7dbl_2 = new BasicConv2d(c7, c7, [7, 1], col);
    this.branch7x7dbl_3 = new BasicConv2d(c7, c7, [1, 7], row);
    this.branch7x7dbl_4 = new BasicConv2d(c7, c7, [7, 1], col);
    this.branch7x7dbl_5 = new BasicConv2d(c7, c(192), [1, 7], row);
    this.branch_pool = new BasicConv2d(inCh, c(192), 1);
    this.outChannels = 4 * c(192);
  }
  forward(x: Tensor): Tensor {
    return concat([
      this.branch1x1.forward(x),
      branch(x, this.branch7x7_1, this.branch7x7_2, this.branch7x7_3),
      branch(x, this.branch7x7dbl_1, this.branch7x7dbl_2, this.branch7x7dbl_3, this.branch7x7dbl_4, this.branch7x7dbl_5),
      this.branch_pool.forward(branchPool(x, this.pool)),
    ], 1);
  }
}

/** Mixed_7a (grid 17 → 8): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max pool 3×3/2; out 320+192+in. */
export class InceptionD extends Module {
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2: BasicConv2d;
  readonly branch7x7x3_1: BasicConv2d;
  readonly branch7x7x3_2: BasicConv2d;
  readonly branch7x7x3_3: BasicConv2d;
  readonly branch7x7x3_4: BasicConv2d;
  readonly outChannels: number;
  constructor(inCh: number, w: number) {
    super();
    const c = (n: number) => scaled(n, w);
    this.branch3x3_1 = new BasicConv2d(inCh, c(192), 1);
    this.branch3x3_2 = new BasicConv2d(c(192), c(320), 3, { stride: 2 });
    this.branch7x7x3_1 = new BasicConv2d(inCh, c(192), 1);
    this.branch7x7x3_2 = new BasicConv2d(c(192), c(192), [1, 7], { padding: [0, 3] });
    this.branch7x7x3_3 = new BasicConv2d(c(192), c(192), [7, 1], { padding: [3, 0] });
    this.branch7x7x3_4 = new BasicConv2d(c(192), c(192), 3, { stride: 2 });
    this.outChannels = c(320) + c(192) + inCh;
  }
  forward(x: Tensor): Tensor {
    return concat([
      branch(x, this.branch3x3_1, this.branch3x3_2),
      branch(x, this.branch7x7x3_1, this.branch7x7x3_2, this.branch7x7x3_3, this.branch7x7x3_4),
      nn.maxPool2d(x, 3, 2),
    ], 1);
  }
}

/** Mixed_7b/7c: 1×1 | 1×1→(1×3, 3×1) | 1×1→3×3→(1×3, 3×1) | pool→1×1; out 320+768+768+192 (÷ width). */
export class InceptionE extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2a: BasicConv2d;
  readonly branch3x3_2b: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3a: BasicConv2d;
  readonly branch3x3dbl_3b: BasicConv2d;
  readonly branch_pool: BasicConv2d;
  readonly outChannels: number;
  constructor(inCh: number, readonly pool: PoolKind, w: number) {
    super();
    const c = (n: number) => scaled(n, w);
    const row = { padding: [0, 1] as const }, col = { padding: [1, 0] as const };
    this.branch1x1 = new BasicConv2d(inCh, c(320), 1);
    this.branch3x3_1 = new BasicConv2d(inCh, c(384), 1);
    this.branch3x3_2a = new BasicConv2d(c(384), c(384), [1, 3], row);
    this.branch3x3_2b = new BasicConv2d(c(384), c(384), [3, 1], col);
    this.branch3x3dbl_1 = new BasicConv2d(inCh, c(448), 1);
    this.branch3x3dbl_2 = new BasicConv2d(c(448), c(384), 3, { padding: 1 });
    this.branch3x3dbl_3a = new BasicConv2d(c(384), c(384), [1, 3], row);
    this.branch3x3dbl_3b = new BasicConv2d(c(384), c(384), [3, 1], col);
    this.branch_pool = new BasicConv2d(inCh, c(192), 1);
    this.outChannels = c(320) + 4 * c(384) + c(192);
  }
  forward(x: Tensor): Tensor {
    const b3 = this.branch3x3_1.forward(x);
    const d = branch(x, this.branch3x3dbl_1, this.branch3x3dbl_2);
    return concat([
      this.branch1x1.forward(x),
      this.branch3x3_2a.forward(b3), this.branch3x3_2b.forward(b3),
      this.branch3x3dbl_3a.forward(d), this.branch3x3dbl_3b.forward(d),
      this.branch_pool.forward(branchPool(x, this.pool)),
    ], 1);
  }
}

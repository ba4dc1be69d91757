/**
 * @file TarFlow's transformer layers with the reference's parameter names (apple/ml-tarflow
 * transformer_flow.py; STARFlow's are the same with norm_type='layer_norm', use_bias=True):
 *
 *   Attention: `norm` (LayerNorm, pre-norm inside the module) → `qkv` (Linear C→3C, bias) → reshape
 *     (B, T, 3H, hd) → q, k, v = the three H-head groups → SDPA (scale hd^−1/2, causal) → `proj`.
 *   MLP: `norm` → `main.0` (Linear C→eC) → exact GELU → `main.2` (Linear eC→C).
 *   AttentionBlock: x + attention(x), then + mlp(x).
 *
 * `step` runs one token against a fixed-size KV cache (static shapes): the new key/value are written
 * at position `pos` (a select against a one-hot of pos, no scatter) and attention is masked to
 * positions ≤ pos, so the cache tensors have the same shape on every step.
 */
import { Module, type Tensor, attention, iota, nn, where } from '../../compiler/dsl/index.ts';

/** Key and value caches of one attention layer: [B, H, T, hd] each. */
export interface KV {
  k: Tensor;
  v: Tensor;
}

export class Attention extends Module {
  readonly norm: nn.LayerNorm;
  readonly qkv: nn.Linear;
  readonly proj: nn.Linear;
  readonly numHeads: number;
  constructor(readonly channels: number, readonly headDim: number, eps = 1e-5) {
    super();
    this.norm = new nn.LayerNorm(channels, { eps });
    this.qkv = new nn.Linear(channels, 3 * channels);
    this.proj = new nn.Linear(channels, channels);
    this.numHeads = channels / headDim;
  }

  /** q, k, v [B, H, T, hd] of x [B, T, C]. */
  private heads(x: Tensor): [Tensor, Tensor, Tensor] {
    const [b, t] = x.shape as [number, number, number];
    const qkv = this.qkv.forward(this.norm.forward(x)).reshape(b, t, 3 * this.numHeads, this.headDim).transpose(1, 2);
    return qkv.chunk(3, 1) as [Tensor, Tensor, Tensor];
  }

  private merge(o: Tensor): Tensor {
    const [b, , t] = o.shape as [number, number, number, number];
    return this.proj.forward(o.transpose(1, 2).reshape(b, t, this.channels));
  }

  /** Causal self-attention over the whole sequence x [B, T, C]. */
  forward(x: Tensor): Tensor {
    const [q, k, v] = this.heads(x);
    return this.merge(attention(q, k, v, { causal: true, scale: this.headDim ** -0.5 }));
  }

  /** One token x [B, 1, C] at position `pos` (i32 []): returns its output and the updated cache. */
  step(x: Tensor, cache: KV, pos: Tensor): { out: Tensor; cache: KV } {
    const [q, k1, v1] = this.heads(x);
    const n = cache.k.size(2);
    const here = iota([n, 1]).eq(pos); // [T, 1]: the row written this step
    const k = where(here, k1, cache.k);
    const v = where(here, v1, cache.v);
    const visible = iota([n]).le(pos); // keys at positions <= pos
    const s = q.matmul(k.mT).mul(this.headDim ** -0.5); // [B, H, 1, T]
    const p = where(visible, s, -Infinity).softmax(-1);
    return { out: this.merge(p.matmul(v)), cache: { k, v } };
  }
}

/** nn.GELU() (exact erf form) as a parameterless module, so `main` keeps PyTorch's Sequential indices. */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return x.gelu();
  }
}

export class MLP extends Module {
  readonly norm: nn.LayerNorm;
  readonly main: [nn.Linear, GELU, nn.Linear];
  constructor(readonly channels: number, expansion: number, eps = 1e-5) {
    super();
    this.norm = new nn.LayerNorm(channels, { eps });
    this.main = [new nn.Linear(channels, channels * expansion), new GELU(), new nn.Linear(channels * expansion, channels)];
  }
  forward(x: Tensor): Tensor {
    const [fc1, act, fc2] = this.main;
    return fc2.forward(act.forward(fc1.forward(this.norm.forward(x))));
  }
}

export class AttentionBlock extends Module {
  readonly attention: Attention;
  readonly mlp: MLP;
  constructor(channels: number, headDim: number, expansion: number, eps = 1e-5) {
    super();
    this.attention = new Attention(channels, headDim, eps);
    this.mlp = new MLP(channels, expansion, eps);
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.attention.forward(x));
    return h.add(this.mlp.forward(h));
  }
  step(x: Tensor, cache: KV, pos: Tensor): { out: Tensor; cache: KV } {
    const a = this.attention.step(x, cache, pos);
    const h = x.add(a.out);
    return { out: h.add(this.mlp.forward(h)), cache: a.cache };
  }
}

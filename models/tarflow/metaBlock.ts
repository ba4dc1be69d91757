/**
 * @file One TarFlow flow block (the reference's `MetaBlock`): an autoregressive affine transform of
 * the token sequence, in a fixed token order (identity or flipped).
 *
 * Forward (data → noise), in the block's token order, for tokens x [B, T, C']:
 *   input   h_in = x                        (TarFlow)   |  [sos, x_0 .. x_{T−2}]   (STARFlow use_sos)
 *   trunk   h = proj_in(h_in) + pos_embed (+ class_embed[y]) → causal AttentionBlocks
 *   head    o = proj_out(h)  (→ c·tanh(o / c) with soft clip)
 *           TarFlow: o shifted right one token (o_0 = 0), so token t's (α, μ) depend on x_{<t} only;
 *           with SOS there is no shift (the SOS input already did it).
 *   split   α, μ = o[..., :C'], o[..., C':]  (nvp=false: α = 0, μ = o)
 *   exp       z = (x − μ)·exp(−α),              logdet = −mean_{t,c} α
 *   softplus  σ = softplus(α + 0.5413), z = (x − μ)/σ,   logdet = −mean_{t,c} log σ
 * The log-determinant is normalized per dimension, as the reference's loss expects.
 * Sampling inverts token by token: x_t = z_t·σ_t + μ_t, with (α_t, μ_t) from tokens before t.
 *
 * Class embedding: `class_embed` [classes, 1, C]; label −1 means "no class" and uses the mean of the
 * class embeddings (the reference's dropped-label and unconditional embedding).
 */
import { Module, Parameter, type Tensor, concat, constant, nn, where, zeros } from '../../compiler/dsl/index.ts';
import { INV_SOFTPLUS_1, type ResolvedTarFlowConfig } from './config.ts';
import { AttentionBlock, type KV } from './layers.ts';

export class MetaBlock extends Module {
  // Field order = PyTorch state_dict order: a module's own parameters come before its sub-modules.
  readonly pos_embed: Parameter;
  readonly class_embed: Parameter | undefined;
  readonly sos_embed: Parameter | undefined;
  readonly proj_in: nn.Linear;
  readonly attn_blocks: AttentionBlock[];
  readonly proj_out: nn.Linear;

  constructor(readonly cfg: ResolvedTarFlowConfig, numLayers: number, readonly flip: boolean) {
    super();
    const { channels: ch, tokenChannels: cin, tokens } = cfg;
    this.pos_embed = new Parameter([tokens, ch], { kind: 'normal', std: 1e-2 });
    this.class_embed = cfg.numClasses > 0 ? new Parameter([cfg.numClasses, 1, ch], { kind: 'normal', std: 1e-2 }) : undefined;
    this.sos_embed = cfg.sos ? new Parameter([1, 1, cin], { kind: 'normal', std: 1 }) : undefined;
    this.proj_in = new nn.Linear(cin, ch);
    this.attn_blocks = Array.from({ length: numLayers }, () => new AttentionBlock(ch, cfg.headDim, cfg.expansion, cfg.lnEps));
    this.proj_out = new nn.Linear(ch, cfg.nvp ? 2 * cin : cin, { weightInit: { kind: 'zeros' } });
  }

  /** The block's token permutation (its own inverse) along `axis`. */
  permute(x: Tensor, axis = 1): Tensor {
    if (!this.flip) return x;
    const n = x.size(axis);
    return x.take(constant(Array.from({ length: n }, (_, i) => n - 1 - i), [n], 'i32'), axis);
  }

  /** Class embedding for labels y (i32 [B], −1 = none) → [B, 1, C]; no labels → the "none" embedding [1, C]. */
  classEmbedding(y: Tensor | undefined): Tensor | undefined {
    if (!this.class_embed) return undefined;
    const none = this.class_embed.mean(0); // [1, C]
    if (!y) return none;
    const picked = this.class_embed.take(y.maximum(0), 0); // [B, 1, C]
    return where(y.lt(0).reshape(-1, 1, 1), none, picked);
  }

  /** proj_out (+ soft clip): the raw head output. */
  private head(h: Tensor): Tensor {
    const o = this.proj_out.forward(h);
    const c = this.cfg.softClip;
    return c > 0 ? o.div(c).tanh().mul(c) : o;
  }

  private split(o: Tensor): [Tensor, Tensor] {
    const cin = this.cfg.tokenChannels;
    if (!this.cfg.nvp) return [zeros(o.shape, o.dtype), o];
    return [o.narrow(-1, 0, cin), o.narrow(-1, cin, cin)];
  }

  /** σ from the raw α output. */
  scaleOf(a: Tensor): Tensor {
    return this.cfg.scale === 'softplus' ? a.add(INV_SOFTPLUS_1).softplus() : a.exp();
  }

  /**
   * Raw (α, μ) for every token of a sequence already in this block's order (x [B, T, C']): α[t], μ[t]
   * parametrize x[t] given x[<t]. The non-cached sampler's full causal pass.
   */
  params(xp: Tensor, y?: Tensor): [Tensor, Tensor] {
    const [b, t, cin] = xp.shape as [number, number, number];
    let hin = xp;
    if (this.sos_embed) hin = concat([this.sos_embed.expand(b, 1, cin), xp.narrow(1, 0, t - 1)], 1);
    let h = this.proj_in.forward(hin).add(this.permute(this.pos_embed, 0));
    const ce = this.classEmbedding(y);
    if (ce) h = h.add(ce);
    for (const blk of this.attn_blocks) h = blk.forward(h);
    let o = this.head(h);
    if (!this.sos_embed) o = concat([zeros([b, 1, o.size(2)], o.dtype), o.narrow(1, 0, t - 1)], 1);
    return this.split(o);
  }

  /** Forward transform of tokens x [B, T, C'] (natural order): z (natural order) and logdet [B]. */
  forward(x: Tensor, y?: Tensor): { z: Tensor; logdet: Tensor } {
    const xp = this.permute(x);
    const [a, mu] = this.params(xp, y);
    if (this.cfg.scale === 'softplus') {
      const s = this.scaleOf(a);
      return { z: this.permute(xp.sub(mu).div(s)), logdet: s.log().mean([1, 2]).neg() };
    }
    return { z: this.permute(xp.sub(mu).mul(a.neg().exp())), logdet: a.mean([1, 2]).neg() };
  }

  /**
   * One KV-cached sampling step at input position `pos` (i32 []): `token` [B, 1, C'] is the input at
   * that position (x[pos] for TarFlow; x[pos − 1] with SOS, where position 0 takes sos_embed and
   * `token` is ignored). Returns raw (α, μ) [B, 1, C'] of the token it produces (x[pos + 1] for TarFlow,
   * x[pos] with SOS) and the updated caches, one per attention layer.
   */
  step(token: Tensor, pos: Tensor, caches: readonly KV[], y?: Tensor): { a: Tensor; mu: Tensor; caches: KV[] } {
    let hin = token;
    if (this.sos_embed) hin = where(pos.eq(0), this.sos_embed, token);
    let h = this.proj_in.forward(hin).add(this.permute(this.pos_embed, 0).take(pos.reshape(1), 0));
    const ce = this.classEmbedding(y);
    if (ce) h = h.add(ce);
    const next: KV[] = [];
    this.attn_blocks.forEach((blk, j) => {
      const r = blk.step(h, caches[j]!, pos);
      h = r.out;
      next.push(r.cache);
    });
    const [a, mu] = this.split(this.head(h));
    return { a, mu, caches: next };
  }
}

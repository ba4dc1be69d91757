/**
 * @file LightningDiT, the latent diffusion transformer of FAE, with plain DiT / SiT available by flags.
 *
 * Reference: hustvl/LightningDiT @ 2725fed models/lightningdit.py (built on facebookresearch/DiT
 * models.py and willisma/SiT models.py, which are this model with every flag off). Forward:
 *
 *   h = x_embedder(x) + pos_embed                       PatchEmbed (conv k = s = p) + frozen 2D sin-cos
 *   c = t_embedder(t) + y_embedder(y, train)            [cos, sin] frequencies → MLP; label table + null row
 *   h = block(h, c, rope) for each block                adaLN-Zero:
 *       shift/scale/gate ×2 = adaLN_modulation(c)       (4 chunks without shift: wo_shift)
 *       h += gate_msa · attn(modulate(norm1(h), shift_msa, scale_msa), rope)
 *       h += gate_mlp · mlp(modulate(norm2(h), shift_mlp, scale_mlp))
 *   out = final_layer(h, c) → unpatchify                 modulate(norm_final(h)) → linear
 *   learn_sigma: out has 2·C channels; forward() returns the first C (SiT, LightningDiT), forwardRaw()
 *   all of them (DiT's forward).
 *
 * Flags (reference names): use_rmsnorm (RMSNorm eps 1e-6 with weight, else LayerNorm without affine,
 * eps 1e-6; also picks the qk-norm kind), use_swiglu (SwiGLUFFN hidden int(2/3·int(4D)), else timm Mlp
 * with tanh GELU), use_rope (2D RoPE, EVA style, on q and k after the qk-norm), use_qknorm, wo_shift.
 * The LightningDiT release config (configs/lightningdit_xl_vavae_f16d32.yaml) uses swiglu + rope +
 * rmsnorm, no qk-norm, with shift, learn_sigma false, 32 latent channels.
 *
 * Parameter names and state_dict order are the reference's: `pos_embed` first (a parameter of the
 * top module; frozen, requires_grad=False, but in the state dict), then x_embedder, t_embedder,
 * y_embedder, blocks.<i>.{norm1, norm2, attn.{qkv, q_norm, k_norm, proj}, mlp.{w12, w3 | fc1, fc2},
 * adaLN_modulation.1}, final_layer.{norm_final, linear, adaLN_modulation.1}. The reference's only
 * non-parameter state_dict entries are the RoPE tables `feat_rope.freqs_cos` / `feat_rope.freqs_sin`
 * (persistent buffers, present when use_rope): Kiln recomputes them and the loader ignores them after
 * checking them against its own tables.
 *
 * Initialization (initialize_weights): xavier_uniform on every Linear weight, zero biases; the patch
 * embedding xavier_uniform on its [D, C·p·p] view; label table and timestep-MLP weights N(0, 0.02);
 * adaLN modulations and the final linear zero (adaLN-Zero); norms weight 1; pos_embed the sin-cos table.
 * Random draws use Kiln's Philox (so values differ from torch's, distributions do not).
 */
import { Module, Parameter, type Tensor, init, nn } from '../compiler/dsl/index.ts';
import { dslError } from '../compiler/dsl/tensor.ts';
import { KilnError } from '../ir/errors.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { hostTensor } from '../ir/tensor.ts';
import { SafetensorsError, expectTensor, loadSafetensors } from '../runtime/safetensors.ts';

export interface LightningDiTConfig {
  /** Latent side (the reference's input_size). Default 16. */
  inputSize: number;
  patchSize: number;
  /** Latent channels. Default 32. */
  inChannels: number;
  hiddenSize: number;
  depth: number;
  numHeads: number;
  /** Default 4. */
  mlpRatio: number;
  /** Label dropout for CFG; > 0 adds the null-class row. Default 0.1. */
  classDropoutProb: number;
  /** Default 1000. */
  numClasses: number;
  /** Output 2·C channels (DiT/SiT default true, LightningDiT false). */
  learnSigma: boolean;
  useQknorm: boolean;
  useSwiglu: boolean;
  useRope: boolean;
  useRmsnorm: boolean;
  woShift: boolean;
}

/** Model sizes of the references: depth, hidden size, heads. */
export const DIT_SIZES = {
  S: { depth: 12, hiddenSize: 384, numHeads: 6 },
  B: { depth: 12, hiddenSize: 768, numHeads: 12 },
  L: { depth: 24, hiddenSize: 1024, numHeads: 16 },
  XL: { depth: 28, hiddenSize: 1152, numHeads: 16 },
  '1p0B': { depth: 24, hiddenSize: 1536, numHeads: 24 },
  '1p6B': { depth: 28, hiddenSize: 1792, numHeads: 28 },
} as const;
export type DiTSize = keyof typeof DIT_SIZES;
/** A size and patch size, as the references name models: 'XL/1', 'B/2', ... */
export type DiTName = `${DiTSize}/${number}`;

function sizeOf(name: DiTName): Pick<LightningDiTConfig, 'depth' | 'hiddenSize' | 'numHeads' | 'patchSize'> {
  const m = /^(S|B|L|XL|1p0B|1p6B)\/(\d+)$/.exec(name);
  if (!m) throw new KilnError(`unknown DiT model name '${name}' (expected <S|B|L|XL|1p0B|1p6B>/<patch>, e.g. 'XL/1')`);
  return { ...DIT_SIZES[m[1] as DiTSize], patchSize: Number(m[2]) };
}

const COMMON = { inputSize: 16, inChannels: 32, mlpRatio: 4, classDropoutProb: 0.1, numClasses: 1000 } as const;

/**
 * LightningDiT as released (swiglu, rope, rmsnorm; no qk-norm; shift; no learn_sigma) on 16x16x32
 * latents. FAE uses 'XL/1'.
 */
export function lightningDiTConfig(name: DiTName, overrides: Partial<LightningDiTConfig> = {}): LightningDiTConfig {
  return {
    ...COMMON, ...sizeOf(name),
    learnSigma: false, useQknorm: false, useSwiglu: true, useRope: true, useRmsnorm: true, woShift: false,
    ...overrides,
  };
}

/** Plain DiT / SiT: LayerNorm, GELU(tanh) Mlp, no RoPE, no qk-norm, learn_sigma (their default). */
export function ditConfig(name: DiTName, overrides: Partial<LightningDiTConfig> = {}): LightningDiTConfig {
  return {
    ...COMMON, ...sizeOf(name),
    learnSigma: true, useQknorm: false, useSwiglu: false, useRope: false, useRmsnorm: false, woShift: false,
    ...overrides,
  };
}

const XAVIER: init.Init = { kind: 'xavier_uniform' };
const LINEAR_INIT = { weightInit: XAVIER, biasInit: init.zeros } as const;

function makeNorm(dim: number, rms: boolean): nn.RMSNorm | nn.LayerNorm {
  return rms ? new nn.RMSNorm(dim, { eps: 1e-6 }) : new nn.LayerNorm(dim, { eps: 1e-6, affine: false });
}

export class LightningDiTBlock extends Module {
  // Declaration order = the reference's registration order (norm1, norm2, attn, mlp, adaLN_modulation).
  readonly norm1: nn.RMSNorm | nn.LayerNorm;
  readonly norm2: nn.RMSNorm | nn.LayerNorm;
  readonly attn: nn.Attention;
  readonly mlp: nn.SwiGLUFFN | nn.Mlp;
  readonly adaLN_modulation: nn.AdaLNModulation;
  readonly woShift: boolean;

  constructor(c: LightningDiTConfig) {
    super();
    const d = c.hiddenSize;
    this.norm1 = makeNorm(d, c.useRmsnorm);
    this.norm2 = makeNorm(d, c.useRmsnorm);
    this.attn = new nn.Attention(d, {
      numHeads: c.numHeads, qkvBias: true, qkNorm: c.useQknorm ? (c.useRmsnorm ? 'rmsnorm' : 'layernorm') : 'none', linear: LINEAR_INIT,
    });
    const hidden = Math.trunc(d * c.mlpRatio);
    this.mlp = c.useSwiglu
      ? new nn.SwiGLUFFN(d, Math.trunc((2 / 3) * hidden), { linear: LINEAR_INIT })
      : new nn.Mlp(d, { hidden, act: 'gelu_tanh', linear: LINEAR_INIT });
    this.woShift = c.woShift;
    this.adaLN_modulation = new nn.AdaLNModulation(d, d, c.woShift ? 4 : 6);
  }

  /** x [B, N, D], c [B, D] → [B, N, D]. */
  forward(x: Tensor, c: Tensor, rope?: nn.VisionRotaryEmbeddingFast): Tensor {
    const m = this.adaLN_modulation.forward(c);
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = this.woShift
      ? [undefined, m[0]!, m[1]!, undefined, m[2]!, m[3]!]
      : (m as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]);
    const a = this.attn.forward(nn.modulate(this.norm1.forward(x), shiftMsa, scaleMsa), rope);
    const h = x.add(gateMsa.unsqueeze(1).mul(a));
    const f = this.mlp.forward(nn.modulate(this.norm2.forward(h), shiftMlp, scaleMlp));
    return h.add(gateMlp.unsqueeze(1).mul(f));
  }
}

export class FinalLayer extends Module {
  readonly norm_final: nn.RMSNorm | nn.LayerNorm;
  readonly linear: nn.Linear;
  readonly adaLN_modulation: nn.AdaLNModulation;
  constructor(hidden: number, patchSize: number, outChannels: number, rms: boolean) {
    super();
    this.norm_final = makeNorm(hidden, rms);
    this.linear = new nn.Linear(hidden, patchSize * patchSize * outChannels, { weightInit: init.zeros, biasInit: init.zeros });
    this.adaLN_modulation = new nn.AdaLNModulation(hidden, hidden, 2);
  }
  /** x [B, N, D], c [B, D] → [B, N, p·p·out]. */
  forward(x: Tensor, c: Tensor): Tensor {
    const [shift, scale] = this.adaLN_modulation.forward(c) as [Tensor, Tensor];
    return this.linear.forward(nn.modulate(this.norm_final.forward(x), shift, scale));
  }
}

export interface DiTForwardOptions {
  /** Training mode: labels are dropped (→ null class) with probability classDropoutProb. */
  train?: boolean;
  /** Drop exactly these labels (i32 [B], dropped where 1; or bool [B]). */
  forceDrop?: Tensor;
}

export class LightningDiT extends Module {
  // Declaration order = state_dict order: the top module's own parameter first, then its children.
  readonly pos_embed: Parameter;
  readonly x_embedder: nn.PatchEmbed;
  readonly t_embedder: nn.TimestepEmbedder;
  readonly y_embedder: nn.LabelEmbedder;
  readonly blocks: LightningDiTBlock[];
  readonly final_layer: FinalLayer;
  /** The reference's `feat_rope` (tables only: not a parameter). */
  readonly featRope: nn.VisionRotaryEmbeddingFast | undefined;
  readonly config: Readonly<LightningDiTConfig>;
  readonly outChannels: number;
  /** Patch-grid side (inputSize / patchSize); the model has grid² tokens. */
  readonly gridSize: number;

  constructor(config: LightningDiTConfig) {
    super();
    const c = config;
    if (c.inputSize % c.patchSize !== 0) throw new KilnError(`LightningDiT: input size ${c.inputSize} is not a multiple of the patch size ${c.patchSize}`);
    if (c.hiddenSize % c.numHeads !== 0) throw new KilnError(`LightningDiT: hidden size ${c.hiddenSize} is not divisible by ${c.numHeads} heads`);
    if (c.hiddenSize % 4 !== 0) throw new KilnError(`LightningDiT: hidden size ${c.hiddenSize} must be a multiple of 4 (2D sin-cos embedding)`);
    const grid = c.inputSize / c.patchSize;
    const d = c.hiddenSize;
    this.pos_embed = new Parameter([1, grid * grid, d], init.zeros, 'f32', false);
    this.x_embedder = new nn.PatchEmbed(c.inChannels, d, c.patchSize, {
      weightInit: nn.ditPatchEmbedInit(c.inChannels, d, c.patchSize), biasInit: init.zeros,
    });
    this.t_embedder = new nn.TimestepEmbedder(d);
    this.y_embedder = new nn.LabelEmbedder(c.numClasses, d, c.classDropoutProb);
    this.blocks = Array.from({ length: c.depth }, () => new LightningDiTBlock(c));
    this.outChannels = c.learnSigma ? 2 * c.inChannels : c.inChannels;
    this.final_layer = new FinalLayer(d, c.patchSize, this.outChannels, c.useRmsnorm);
    // half_head_dim = hidden // heads // 2, pt_seq_len = the token grid side.
    this.featRope = c.useRope ? nn.VisionRotaryEmbeddingFast.forHeadDim(d / c.numHeads, grid) : undefined;
    this.config = { ...c };
    this.gridSize = grid;
  }

  /** The null (unconditional) class id used for CFG. */
  get nullClass(): number {
    return this.config.numClasses;
  }

  /** Parameters that train: all but the frozen `pos_embed`. */
  trainableParameterNames(): string[] {
    return this.namedParameters().filter(([, p]) => p.trainable).map(([n]) => n);
  }

  /** Initial values as the reference's initialize_weights (pos_embed = the sin-cos table). */
  override initState(seed = 0): Map<string, HostTensor> {
    const m = super.initState(seed);
    m.set('pos_embed', nn.sincos2dHostTensor(this.config.hiddenSize, this.gridSize, true));
    return m;
  }

  /** x [B, C, H, W], t [B] (or a scalar, broadcast), y i32 [B] → all output channels [B, outChannels, H, W]. */
  forwardRaw(x: Tensor, t: Tensor, y: Tensor, opts: DiTForwardOptions = {}): Tensor {
    const c = this.config;
    if (x.rank !== 4 || x.size(1) !== c.inChannels || x.size(2) !== c.inputSize || x.size(3) !== c.inputSize)
      throw dslError('LightningDiT', [x], `expects x [B, ${c.inChannels}, ${c.inputSize}, ${c.inputSize}]`);
    const b = x.size(0);
    const tb = t.rank === 0 ? t.expand(b) : t;
    if (tb.rank !== 1 || tb.size(0) !== b) throw dslError('LightningDiT', [x, t], `expects t [${b}] or a scalar`);
    if (y.rank !== 1 || y.size(0) !== b || y.dtype !== 'i32') throw dslError('LightningDiT', [x, y], `expects i32 labels y [${b}]`);
    let h = this.x_embedder.forward(x).add(this.pos_embed);
    const cond = this.t_embedder.forward(tb).add(this.y_embedder.forward(y, { train: opts.train, forceDrop: opts.forceDrop }));
    for (const block of this.blocks) h = block.forward(h, cond, this.featRope);
    return nn.unpatchify(this.final_layer.forward(h, cond), c.patchSize, this.outChannels);
  }

  /** The prediction (velocity) [B, C, H, W]: forwardRaw, less the sigma channels when learnSigma. */
  forward(x: Tensor, t: Tensor, y: Tensor, opts: DiTForwardOptions = {}): Tensor {
    const out = this.forwardRaw(x, t, y, opts);
    return this.config.learnSigma ? out.slice(1, 0, this.config.inChannels) : out;
  }
}

/** state_dict keys of the reference that are buffers, not parameters (ignored by the loader). */
export const LIGHTNINGDIT_BUFFERS = ['feat_rope.freqs_cos', 'feat_rope.freqs_sin'] as const;

export interface LoadStateOptions {
  /** Reject keys that are neither parameters nor known buffers (PyTorch's strict=True). Default true. */
  strict?: boolean;
}

/**
 * Read a LightningDiT/DiT/SiT state dict saved as safetensors (reference key names) and check it
 * against `model`: every parameter present with the model's shape (float dtypes are converted to the
 * parameter's dtype), RoPE buffers, when present, equal to the model's own tables (to 1e-4; a
 * mismatch means a different grid or head dim), and no unknown keys when strict. Returns the values in
 * the model's parameter order. Errors are SafetensorsErrors naming the file and the key.
 */
export function loadLightningDiTState(path: string, model: LightningDiT, opts: LoadStateOptions = {}): Map<string, HostTensor> {
  const { tensors } = loadSafetensors(path);
  const out = new Map<string, HostTensor>();
  for (const [name, p] of model.namedParameters()) {
    const t = expectTensor(tensors, name, undefined, p.shape, path);
    if (t.dtype !== p.dtype) {
      const float = (d: string) => d === 'f32' || d === 'f16' || d === 'bf16';
      if (!float(t.dtype) || !float(p.dtype)) throw new SafetensorsError(path, `expected dtype ${p.dtype}, but the file holds ${t.dtype}`, name);
      out.set(name, hostTensor(p.dtype, t.shape, t.data));
    } else out.set(name, t);
  }
  const rope = model.featRope;
  for (const key of LIGHTNINGDIT_BUFFERS) {
    const t = tensors.get(key);
    if (!t) continue;
    if (!rope) throw new SafetensorsError(path, 'the file has RoPE tables (use_rope=True), but the model was built with useRope false', key);
    const want = key.endsWith('cos') ? rope.tables.cos : rope.tables.sin;
    const shape = [rope.seqLen, rope.rotDim];
    expectTensor(tensors, key, undefined, shape, path);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(t.data[i]! - want[i]!));
    if (err > 1e-4) throw new SafetensorsError(path, `RoPE table differs from the model's by ${err.toExponential(2)} (another grid size or head dim?)`, key);
  }
  if (opts.strict ?? true) {
    const known = new Set<string>([...out.keys(), ...LIGHTNINGDIT_BUFFERS]);
    const extra = [...tensors.keys()].filter((k) => !known.has(k)).sort();
    if (extra.length)
      throw new SafetensorsError(path, `${extra.length} unexpected key(s) for this model: ${extra.slice(0, 8).map((k) => `'${k}'`).join(', ')}${extra.length > 8 ? ', …' : ''} (check the config flags, or pass strict: false)`);
  }
  return out;
}

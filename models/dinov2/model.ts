/**
 * @file The DINOv2 ViT, as HF transformers 5.17 `Dinov2Model` and `Dinov2WithRegistersModel`
 * (models/dinov2/modeling_dinov2.py, models/dinov2_with_registers/modeling_dinov2_with_registers.py),
 * with the same module tree, so parameter names are the HF checkpoint keys, in state_dict order:
 *
 *   embeddings.cls_token [1,1,D]   embeddings.mask_token [1,D]   embeddings.register_tokens [1,R,D]
 *   embeddings.position_embeddings [1,1+G²,D]
 *   embeddings.patch_embeddings.projection.{weight [D,C,p,p], bias [D]}
 *   encoder.layer.N.norm1.{weight,bias}
 *   encoder.layer.N.attention.attention.{query,key,value}.{weight,bias}
 *   encoder.layer.N.attention.output.dense.{weight,bias}
 *   encoder.layer.N.layer_scale1.lambda1   encoder.layer.N.norm2.{weight,bias}
 *   encoder.layer.N.mlp.{fc1,fc2}.{weight,bias}   (SwiGLU: mlp.{weights_in,weights_out}.{weight,bias})
 *   encoder.layer.N.layer_scale2.lambda1   layernorm.{weight,bias}
 *
 * Forward (HF): conv patch embed (kernel = stride = p, bias; run as patchify + matmul; a border
 * narrower than a patch is dropped, as the strided conv does) → optional mask-token substitution →
 * prepend CLS → add position embeddings (bicubic-resampled from the trained G×G grid when the patch
 * grid differs: antialias=False for 'dinov2', True for 'dinov2_with_registers'; see interpolate.ts)
 * → registers inserted after CLS (no position embedding) → blocks
 * `x += ls1 · Attn(LN1 x); x += ls2 · MLP(LN2 x)` → final LayerNorm.
 * Outputs: last_hidden_state [B, 1+R+n, D], pooler_output (= CLS row) [B, D], patch tokens
 * `[:, 1+R:]` [B, n, D] (row-major over the patch grid) and register tokens [B, R, D].
 *
 * HF skips interpolation when `num_patches == num_positions and height == width`; Kiln skips it
 * whenever the patch grid equals the trained grid. The two differ only for equal grids from
 * non-square pixel sizes (e.g. 45×44 px), where HF resamples G×G → G×G, which is exactly the identity
 * for both kernels, so the results are the same.
 *
 * Init (only for `initState`; real weights come from `loadDinov2State`) follows HF `_init_weights`:
 * trunc_normal(0.02) for linear/conv weights, CLS and position embeddings; zero biases, mask and
 * register tokens; layer scales = layerscaleValue; LayerNorm ones/zeros. Parameters are frozen
 * (trainable = false) unless `config.trainable`.
 */
import { Module, Parameter, type Tensor, type TraceContext, attention, concat, constant, init, nn, trace, where } from '../../compiler/dsl/index.ts';
import { dslError } from '../../compiler/dsl/tensor.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { type Dinov2Config, dinov2FfnHidden, positionGrid, validateDinov2Config } from './config.ts';
import { bicubicResample } from './interpolate.ts';

const truncNormal: init.Init = { kind: 'trunc_normal', std: 0.02 };
const linearInit = { weightInit: truncNormal, biasInit: init.zeros };

/** ImageNet mean and std (RGB), the normalization DINOv2 was trained with. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** (x − mean) / std per channel, for images in [0, 1] laid out [..., 3, H, W] (torchvision Normalize). */
export function imagenetNormalize(x: Tensor): Tensor {
  if (x.rank < 3 || x.size(-3) !== 3) throw dslError('imagenetNormalize', [x], 'expects images [..., 3, H, W]');
  const mean = constant(IMAGENET_MEAN, [3, 1, 1], x.dtype);
  const std = constant(IMAGENET_STD, [3, 1, 1], x.dtype);
  return x.sub(mean).div(std);
}

/** HF Dinov2PatchEmbeddings: `projection` = Conv2d(C, D, kernel = stride = p) → tokens [B, n, D]. */
export class Dinov2PatchEmbeddings extends Module {
  readonly projection: nn.PatchConv2d;
  constructor(readonly config: Dinov2Config) {
    super();
    this.projection = new nn.PatchConv2d(config.numChannels, config.hiddenSize, config.patchSize, linearInit);
  }
  forward(pixelValues: Tensor): Tensor {
    const p = this.config.patchSize;
    if (pixelValues.rank !== 4 || pixelValues.size(1) !== this.config.numChannels)
      throw dslError('Dinov2PatchEmbeddings', [pixelValues], `expects pixel values [B, ${this.config.numChannels}, H, W]`);
    const [, , hh, ww] = pixelValues.shape as [number, number, number, number];
    if (hh < p || ww < p) throw dslError('Dinov2PatchEmbeddings', [pixelValues], `the image ${hh}x${ww} is smaller than one ${p}x${p} patch`);
    // A strided conv ignores the last H mod p rows and W mod p columns.
    const x = pixelValues.slice(2, 0, hh - (hh % p)).slice(3, 0, ww - (ww % p));
    return this.projection.tokens(x);
  }
}

/** HF Dinov2Embeddings / Dinov2WithRegistersEmbeddings (parameters declared in state_dict order). */
export class Dinov2Embeddings extends Module {
  readonly cls_token: Parameter;
  readonly mask_token: Parameter | undefined;
  readonly register_tokens: Parameter | undefined;
  readonly position_embeddings: Parameter;
  readonly patch_embeddings: Dinov2PatchEmbeddings;

  constructor(readonly config: Dinov2Config) {
    super();
    const d = config.hiddenSize;
    const [gh, gw] = positionGrid(config);
    this.cls_token = new Parameter([1, 1, d], truncNormal);
    this.mask_token = config.useMaskToken ? new Parameter([1, d], init.zeros) : undefined;
    this.register_tokens =
      config.variant === 'dinov2_with_registers' ? new Parameter([1, config.numRegisterTokens, d], init.zeros) : undefined;
    this.position_embeddings = new Parameter([1, 1 + gh * gw, d], truncNormal);
    this.patch_embeddings = new Dinov2PatchEmbeddings(config);
  }

  /** Whether the position embeddings are resampled for an H×W (pixel) input: the patch grid differs from the trained grid. */
  interpolates(height: number, width: number): boolean {
    const p = this.config.patchSize;
    const [gh, gw] = positionGrid(this.config);
    return Math.floor(height / p) !== gh || Math.floor(width / p) !== gw;
  }

  /** The position embeddings for an H×W (pixel) input: [1, 1 + (H/p)·(W/p), D]. */
  positionEmbeddings(height: number, width: number): Tensor {
    const c = this.config;
    const d = c.hiddenSize;
    const [gh, gw] = positionGrid(c);
    const [h, w] = [Math.floor(height / c.patchSize), Math.floor(width / c.patchSize)];
    const pe = this.position_embeddings;
    if (!this.interpolates(height, width)) return pe;
    const antialias = c.antialias ?? c.variant === 'dinov2_with_registers';
    const out = bicubicResample(pe.slice(1, 1).reshape(gh, gw, d), h, w, { antialias });
    return concat([pe.slice(1, 0, 1), out.reshape(1, h * w, d)], 1);
  }

  /**
   * pixel values [B, C, H, W] (already normalized) → embeddings [B, 1 + R + n, D].
   * `boolMaskedPos` [B, n] (bool) replaces masked patch embeddings by the mask token (HF's
   * bool_masked_pos; an error if the model has no mask token, where HF would silently ignore it).
   */
  forward(pixelValues: Tensor, boolMaskedPos?: Tensor): Tensor {
    const d = this.config.hiddenSize;
    const [b, , hh, ww] = pixelValues.shape as [number, number, number, number];
    let x = this.patch_embeddings.forward(pixelValues);
    if (boolMaskedPos) {
      if (!this.mask_token) throw dslError('Dinov2Embeddings', [boolMaskedPos], 'boolMaskedPos given, but the config has no mask token (useMaskToken false)');
      if (boolMaskedPos.rank !== 2 || boolMaskedPos.size(0) !== b || boolMaskedPos.size(1) !== x.size(1) || boolMaskedPos.dtype !== 'bool')
        throw dslError('Dinov2Embeddings', [boolMaskedPos], `boolMaskedPos must be bool[${b},${x.size(1)}] (batch, patches)`);
      x = where(boolMaskedPos.unsqueeze(-1), this.mask_token.unsqueeze(0), x);
    }
    x = concat([this.cls_token.expand(b, 1, d), x], 1);
    x = x.add(this.positionEmbeddings(hh, ww));
    const r = this.register_tokens;
    if (r && r.size(1) > 0) x = concat([x.slice(1, 0, 1), r.expand(b, r.size(1), d), x.slice(1, 1)], 1);
    return x;
  }
}

/** HF Dinov2SelfAttention: separate `query`, `key`, `value` linears, SDPA with scale 1/√head_dim. */
export class Dinov2SelfAttention extends Module {
  readonly query: nn.Linear;
  readonly key: nn.Linear;
  readonly value: nn.Linear;
  readonly numHeads: number;
  readonly headDim: number;
  constructor(config: Dinov2Config) {
    super();
    const d = config.hiddenSize;
    this.numHeads = config.numHeads;
    this.headDim = d / config.numHeads;
    const o = { ...linearInit, bias: config.qkvBias };
    this.query = new nn.Linear(d, d, o);
    this.key = new nn.Linear(d, d, o);
    this.value = new nn.Linear(d, d, o);
  }
  forward(x: Tensor): Tensor {
    const [b, n, d] = x.shape as [number, number, number];
    const heads = (t: Tensor) => t.reshape(b, n, this.numHeads, this.headDim).transpose(1, 2);
    const q = heads(this.query.forward(x));
    const k = heads(this.key.forward(x));
    const v = heads(this.value.forward(x));
    const o = attention(q, k, v, { scale: 1 / Math.sqrt(this.headDim) });
    return o.transpose(1, 2).reshape(b, n, d);
  }
}

/** HF Dinov2SelfOutput: the output projection `dense`. */
export class Dinov2SelfOutput extends Module {
  readonly dense: nn.Linear;
  constructor(config: Dinov2Config) {
    super();
    this.dense = new nn.Linear(config.hiddenSize, config.hiddenSize, linearInit);
  }
  forward(x: Tensor): Tensor {
    return this.dense.forward(x);
  }
}

/** HF Dinov2Attention: `attention` (self-attention) then `output` (projection). */
export class Dinov2Attention extends Module {
  readonly attention: Dinov2SelfAttention;
  readonly output: Dinov2SelfOutput;
  constructor(config: Dinov2Config) {
    super();
    this.attention = new Dinov2SelfAttention(config);
    this.output = new Dinov2SelfOutput(config);
  }
  forward(x: Tensor): Tensor {
    return this.output.forward(this.attention.forward(x));
  }
}

/** HF Dinov2LayerScale: x · lambda1. */
export class Dinov2LayerScale extends Module {
  readonly lambda1: Parameter;
  constructor(config: Dinov2Config) {
    super();
    this.lambda1 = new Parameter([config.hiddenSize], { kind: 'constant', value: config.layerscaleValue });
  }
  forward(x: Tensor): Tensor {
    return x.mul(this.lambda1);
  }
}

/** HF Dinov2Layer (the original Block): pre-norm attention and MLP, each with layer scale and a residual. */
export class Dinov2Layer extends Module {
  readonly norm1: nn.LayerNorm;
  readonly attention: Dinov2Attention;
  readonly layer_scale1: Dinov2LayerScale;
  readonly norm2: nn.LayerNorm;
  readonly mlp: nn.Mlp | nn.SwiGLUFFN;
  readonly layer_scale2: Dinov2LayerScale;
  constructor(config: Dinov2Config) {
    super();
    const d = config.hiddenSize;
    const hidden = dinov2FfnHidden(config);
    this.norm1 = new nn.LayerNorm(d, { eps: config.layerNormEps });
    this.attention = new Dinov2Attention(config);
    this.layer_scale1 = new Dinov2LayerScale(config);
    this.norm2 = new nn.LayerNorm(d, { eps: config.layerNormEps });
    this.mlp = config.useSwiglu
      ? new nn.SwiGLUFFN(d, hidden, { names: ['weights_in', 'weights_out'], bias: true, linear: linearInit })
      : new nn.Mlp(d, { hidden, act: 'gelu', bias: true, linear: linearInit });
    this.layer_scale2 = new Dinov2LayerScale(config);
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.layer_scale1.forward(this.attention.forward(this.norm1.forward(x))));
    return h.add(this.layer_scale2.forward(this.mlp.forward(this.norm2.forward(h))));
  }
}

/** HF Dinov2Encoder: `layer.0` … `layer.{L−1}`. */
export class Dinov2Encoder extends Module {
  readonly layer: Dinov2Layer[];
  constructor(config: Dinov2Config) {
    super();
    this.layer = Array.from({ length: config.numLayers }, () => new Dinov2Layer(config));
  }
  forward(x: Tensor): Tensor {
    return this.layer.reduce((h, l) => l.forward(h), x);
  }
}

export interface Dinov2Output {
  /** Final-LayerNorm output [B, 1 + R + n, D] (CLS, registers, patches). */
  lastHiddenState: Tensor;
  /** The CLS row of lastHiddenState [B, D] (HF pooler_output). */
  poolerOutput: Tensor;
  /** lastHiddenState[:, 1 + R:] [B, n, D], row-major over the (H/p)×(W/p) patch grid. */
  patchTokens: Tensor;
  /** lastHiddenState[:, 1 : 1 + R] [B, R, D]; undefined when R = 0. */
  registerTokens: Tensor | undefined;
}

/** HF Dinov2Model / Dinov2WithRegistersModel (per config.variant). */
export class Dinov2Model extends Module {
  readonly embeddings: Dinov2Embeddings;
  readonly encoder: Dinov2Encoder;
  readonly layernorm: nn.LayerNorm;

  constructor(readonly config: Dinov2Config) {
    super();
    validateDinov2Config(config);
    this.embeddings = new Dinov2Embeddings(config);
    this.encoder = new Dinov2Encoder(config);
    this.layernorm = new nn.LayerNorm(config.hiddenSize, { eps: config.layerNormEps });
    this.requiresGrad(config.trainable ?? false);
  }

  /** Number of register tokens R. */
  get numRegisters(): number {
    return this.embeddings.register_tokens?.size(1) ?? 0;
  }

  /** Patch grid (rows, cols) for an H×W pixel input. */
  patchGrid(height: number, width: number): [number, number] {
    return [Math.floor(height / this.config.patchSize), Math.floor(width / this.config.patchSize)];
  }

  /** pixel values [B, C, H, W] (ImageNet-normalized; see imagenetNormalize) → outputs. */
  forward(pixelValues: Tensor, opts: { boolMaskedPos?: Tensor } = {}): Dinov2Output {
    const x = this.encoder.forward(this.embeddings.forward(pixelValues, opts.boolMaskedPos));
    const last = this.layernorm.forward(x);
    const r = this.numRegisters;
    return {
      lastHiddenState: last,
      poolerOutput: last.select(1, 0),
      patchTokens: last.slice(1, 1 + r),
      registerTokens: r > 0 ? last.slice(1, 1, 1 + r) : undefined,
    };
  }
}

export interface TraceDinov2Options {
  batch: number;
  height: number;
  width: number;
  /**
   * 'pixel_values': the input `pixel_values` is already normalized (as HF takes it);
   * 'images': the input `images` holds [0, 1] RGB and is ImageNet-normalized in the graph.
   * Default 'pixel_values'.
   */
  input?: 'pixel_values' | 'images';
  /** Add a `bool_masked_pos` bool[B, n] input. Default false. */
  masked?: boolean;
  /** Which outputs to emit (default: last_hidden_state, pooler_output, patch_tokens, and register_tokens when R > 0). */
  outputs?: ReadonlyArray<'last_hidden_state' | 'pooler_output' | 'patch_tokens' | 'register_tokens'>;
  name?: string;
}

/** Trace a forward graph of `model` for one static input shape. */
export function traceDinov2(model: Dinov2Model, opts: TraceDinov2Options): Graph {
  const { batch, height, width } = opts;
  const c = model.config;
  return trace(
    opts.name ?? 'dinov2',
    (t: TraceContext) => {
      const inputName = opts.input === 'images' ? 'images' : 'pixel_values';
      let x = t.input(inputName, [batch, c.numChannels, height, width]);
      if (opts.input === 'images') x = imagenetNormalize(x);
      const [gh, gw] = model.patchGrid(height, width);
      const mask = opts.masked ? t.input('bool_masked_pos', [batch, gh * gw], 'bool') : undefined;
      const o = model.forward(x, { boolMaskedPos: mask });
      const all: Record<string, Tensor> = {
        last_hidden_state: o.lastHiddenState,
        pooler_output: o.poolerOutput,
        patch_tokens: o.patchTokens,
      };
      if (o.registerTokens) all.register_tokens = o.registerTokens;
      if (!opts.outputs) return all;
      const out: Record<string, Tensor> = {};
      for (const k of opts.outputs) {
        const v = all[k];
        if (!v) throw new KilnError(`traceDinov2: output '${k}' does not exist (the model has no register tokens)`);
        out[k] = v;
      }
      return out;
    },
    { params: model },
  );
}

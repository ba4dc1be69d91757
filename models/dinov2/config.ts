/**
 * @file DINOv2 configurations: the published sizes (S/B/L/g, with or without registers), tiny test
 * configs, and `dinov2ConfigFromHf`, which reads an HF `config.json` object (`model_type` "dinov2"
 * or "dinov2_with_registers") into a Kiln config.
 *
 * Field ↔ HF config key: hiddenSize hidden_size, numLayers num_hidden_layers, numHeads
 * num_attention_heads, mlpRatio mlp_ratio, layerNormEps layer_norm_eps, useSwiglu use_swiglu_ffn,
 * numRegisterTokens num_register_tokens, imageSize image_size, patchSize patch_size,
 * layerscaleValue layerscale_value, numChannels num_channels, qkvBias qkv_bias, useMaskToken
 * use_mask_token (Dinov2Model only; the registers model always has a mask token).
 */
import { KilnError } from '../../ir/errors.ts';

export type Dinov2Variant = 'dinov2' | 'dinov2_with_registers';

export interface Dinov2Config {
  /** 'dinov2' = HF Dinov2Model; 'dinov2_with_registers' = HF Dinov2WithRegistersModel. */
  variant: Dinov2Variant;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** MLP hidden = int(hiddenSize · mlpRatio); SwiGLU hidden = (int(that · 2/3) + 7) // 8 · 8. */
  mlpRatio: number;
  layerNormEps: number;
  /** SwiGLU FFN (`mlp.weights_in` / `mlp.weights_out`, ViT-g) instead of GELU MLP (`mlp.fc1` / `mlp.fc2`). */
  useSwiglu: boolean;
  /** Register tokens after CLS (0 for 'dinov2'). */
  numRegisterTokens: number;
  /**
   * The training image size [height, width] in pixels: the position table has
   * (imageSize/patchSize)² + 1 rows. Must give a square patch grid (HF reshapes it to √N × √N).
   */
  imageSize: readonly [number, number];
  patchSize: number;
  /** Initial value of the layer-scale vectors (only matters for initState). */
  layerscaleValue: number;
  numChannels: number;
  qkvBias: boolean;
  /** Whether `embeddings.mask_token` exists (HF use_mask_token; always true for the registers model). */
  useMaskToken: boolean;
  /** Parameters trainable? Default false: FAE freezes the encoder. */
  trainable?: boolean;
  /**
   * Overrides the position-embedding interpolation's antialias flag (default: false for 'dinov2',
   * true for 'dinov2_with_registers', as HF does).
   */
  antialias?: boolean;
}

export type Dinov2Size = 's' | 'b' | 'l' | 'g';

const SIZES: Record<Dinov2Size, { hiddenSize: number; numLayers: number; numHeads: number; useSwiglu: boolean }> = {
  s: { hiddenSize: 384, numLayers: 12, numHeads: 6, useSwiglu: false },
  b: { hiddenSize: 768, numLayers: 12, numHeads: 12, useSwiglu: false },
  l: { hiddenSize: 1024, numLayers: 24, numHeads: 16, useSwiglu: false },
  g: { hiddenSize: 1536, numLayers: 40, numHeads: 24, useSwiglu: true },
};

/**
 * A published DINOv2 config (facebook/dinov2-{small,base,large,giant} and
 * facebook/dinov2-with-registers-*): patch 14, trained at 518 px (37×37 position grid), MLP ratio 4,
 * LayerNorm eps 1e-6, layer scale, qkv bias; ViT-g uses SwiGLU (hidden 4096); registers: 4.
 */
export function dinov2Config(size: Dinov2Size, opts: { registers?: boolean } & Partial<Dinov2Config> = {}): Dinov2Config {
  const { registers, ...rest } = opts;
  const reg = registers ?? rest.variant === 'dinov2_with_registers';
  return {
    variant: reg ? 'dinov2_with_registers' : 'dinov2',
    ...SIZES[size],
    mlpRatio: 4,
    layerNormEps: 1e-6,
    numRegisterTokens: reg ? 4 : 0,
    imageSize: [518, 518],
    patchSize: 14,
    layerscaleValue: 1.0,
    numChannels: 3,
    qkvBias: true,
    useMaskToken: true,
    ...rest,
  };
}

/** A tiny config for tests (hidden 32, 2 layers, 2 heads, patch 14, trained grid 3×3 at 42 px). */
export function tinyDinov2Config(opts: Partial<Dinov2Config> = {}): Dinov2Config {
  const variant = opts.variant ?? 'dinov2';
  return {
    variant,
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 2,
    mlpRatio: 4,
    layerNormEps: 1e-6,
    useSwiglu: false,
    numRegisterTokens: variant === 'dinov2_with_registers' ? 4 : 0,
    imageSize: [42, 42],
    patchSize: 14,
    layerscaleValue: 1.0,
    numChannels: 3,
    qkvBias: true,
    useMaskToken: true,
    ...opts,
  };
}

/** The trained position grid (rows, cols) of a config. */
export function positionGrid(c: Dinov2Config): [number, number] {
  return [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)];
}

/** MLP hidden width (GELU MLP) or SwiGLU hidden width, as HF computes them. */
export function dinov2FfnHidden(c: Dinov2Config): number {
  const h = Math.trunc(c.hiddenSize * c.mlpRatio);
  return c.useSwiglu ? Math.floor((Math.trunc((h * 2) / 3) + 7) / 8) * 8 : h;
}

/** Check a config's internal consistency; throws a KilnError naming the field. */
export function validateDinov2Config(c: Dinov2Config): void {
  const fail = (field: string, why: string): never => {
    throw new KilnError(`DINOv2 config: ${field} ${why}`);
  };
  const posInt = (field: string, v: number, min = 1) => {
    if (!Number.isInteger(v) || v < min) fail(field, `must be an integer >= ${min}, got ${v}`);
  };
  if (c.variant !== 'dinov2' && c.variant !== 'dinov2_with_registers') fail('variant', `must be 'dinov2' or 'dinov2_with_registers', got ${String(c.variant)}`);
  posInt('hiddenSize', c.hiddenSize);
  posInt('numLayers', c.numLayers);
  posInt('numHeads', c.numHeads);
  posInt('patchSize', c.patchSize);
  posInt('numChannels', c.numChannels);
  posInt('numRegisterTokens', c.numRegisterTokens, 0);
  if (c.hiddenSize % c.numHeads !== 0) fail('hiddenSize', `${c.hiddenSize} is not a multiple of numHeads ${c.numHeads}`);
  if (!(c.mlpRatio > 0) || Math.trunc(c.hiddenSize * c.mlpRatio) < 1) fail('mlpRatio', `must give an MLP width >= 1, got ${c.mlpRatio}`);
  if (!(c.layerNormEps > 0)) fail('layerNormEps', `must be positive, got ${c.layerNormEps}`);
  if (c.variant === 'dinov2' && c.numRegisterTokens !== 0)
    fail('numRegisterTokens', `must be 0 for variant 'dinov2' (HF Dinov2Model has no registers); use 'dinov2_with_registers'`);
  if (c.variant === 'dinov2_with_registers' && !c.useMaskToken)
    fail('useMaskToken', `must be true for 'dinov2_with_registers' (the HF model always has embeddings.mask_token)`);
  const [gh, gw] = positionGrid(c);
  if (gh < 1 || gw < 1) fail('imageSize', `[${c.imageSize.join(', ')}] is smaller than one patch of ${c.patchSize}`);
  if (gh !== gw)
    fail('imageSize', `[${c.imageSize.join(', ')}] gives a ${gh}x${gw} position grid; HF's interpolation needs a square grid`);
}

// ───────────────────────────── HF config.json ─────────────────────────────

/** Fields that must be present in an HF config.json (HF writes them all); the rest have HF defaults. */
const REQUIRED = [
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'mlp_ratio',
  'layer_norm_eps',
  'use_swiglu_ffn',
  'image_size',
  'patch_size',
] as const;

/**
 * Build a config from an HF `config.json` object (`Dinov2Config` / `Dinov2WithRegistersConfig`).
 *
 * Required (an error names every missing one): model_type ("dinov2" or "dinov2_with_registers"),
 * hidden_size, num_hidden_layers, num_attention_heads, mlp_ratio, layer_norm_eps, use_swiglu_ffn,
 * image_size, patch_size, and num_register_tokens for the registers model. These define the network
 * and every config.json HF writes carries them; silently defaulting them would build a different model.
 * Optional, with HF's defaults: layerscale_value (1.0; an init value only), num_channels (3),
 * qkv_bias (true), hidden_act ("gelu"; the only supported value: exact erf GELU), use_mask_token
 * (true; Dinov2Model only). Training-only fields (dropouts, drop_path_rate, initializer_range) and
 * backbone fields (out_features, ...) are ignored. image_size / patch_size may be an int or a
 * [h, w] pair; the patch must be square.
 */
export function dinov2ConfigFromHf(configJson: unknown, source = 'config.json'): Dinov2Config {
  const fail = (why: string): never => {
    throw new KilnError(`${source}: ${why}`);
  };
  if (typeof configJson !== 'object' || configJson === null || Array.isArray(configJson))
    fail(`expected a JSON object, got ${configJson === null ? 'null' : Array.isArray(configJson) ? 'an array' : typeof configJson}`);
  const j = configJson as Record<string, unknown>;
  const modelType = j.model_type;
  if (modelType === undefined) fail(`missing field 'model_type' (expected "dinov2" or "dinov2_with_registers")`);
  if (modelType !== 'dinov2' && modelType !== 'dinov2_with_registers')
    fail(`field 'model_type' is ${JSON.stringify(modelType)}, expected "dinov2" or "dinov2_with_registers"`);
  const variant = modelType as Dinov2Variant;
  const required: string[] = [...REQUIRED, ...(variant === 'dinov2_with_registers' ? ['num_register_tokens'] : [])];
  const missing = required.filter((k) => j[k] === undefined);
  if (missing.length) fail(`missing field${missing.length > 1 ? 's' : ''} ${missing.map((k) => `'${k}'`).join(', ')} (model_type ${variant})`);

  const int = (k: string, min = 1): number => {
    const v = j[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`field '${k}' must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const num = (k: string, dflt?: number): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`field '${k}' must be a number, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const bool = (k: string, dflt?: boolean): boolean => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'boolean') fail(`field '${k}' must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };
  const pair = (k: string): [number, number] => {
    const v = j[k];
    const ok = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 1;
    if (ok(v)) return [v as number, v as number];
    if (Array.isArray(v) && v.length === 2 && v.every(ok)) return [v[0] as number, v[1] as number];
    return fail(`field '${k}' must be a positive integer or a [height, width] pair, got ${JSON.stringify(v)}`);
  };
  const act = j.hidden_act ?? 'gelu';
  if (act !== 'gelu') fail(`field 'hidden_act' is ${JSON.stringify(act)}; only "gelu" (exact erf GELU, HF's default) is supported`);
  const [ph, pw] = pair('patch_size');
  if (ph !== pw) fail(`field 'patch_size' [${ph}, ${pw}] is not square; Kiln's DINOv2 supports square patches only`);
  const config: Dinov2Config = {
    variant,
    hiddenSize: int('hidden_size'),
    numLayers: int('num_hidden_layers'),
    numHeads: int('num_attention_heads'),
    mlpRatio: num('mlp_ratio'),
    layerNormEps: num('layer_norm_eps'),
    useSwiglu: bool('use_swiglu_ffn'),
    numRegisterTokens: variant === 'dinov2_with_registers' ? int('num_register_tokens', 0) : 0,
    imageSize: pair('image_size'),
    patchSize: ph,
    layerscaleValue: num('layerscale_value', 1.0),
    numChannels: j.num_channels === undefined ? 3 : int('num_channels'),
    qkvBias: bool('qkv_bias', true),
    useMaskToken: variant === 'dinov2_with_registers' ? true : bool('use_mask_token', true),
  };
  try {
    validateDinov2Config(config);
  } catch (e) {
    if (e instanceof KilnError) fail(e.message);
    throw e;
  }
  return config;
}

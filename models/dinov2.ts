/**
 * @file DINOv2 (HF transformers `Dinov2Model` / `Dinov2WithRegistersModel`), FAE's frozen encoder:
 * configs, the model, position-embedding interpolation and the HF checkpoint loader.
 * See models/dinov2/model.ts for the architecture and parameter names.
 */
export {
  type Dinov2Config,
  type Dinov2Size,
  type Dinov2Variant,
  dinov2Config,
  dinov2ConfigFromHf,
  dinov2FfnHidden,
  positionGrid,
  tinyDinov2Config,
  validateDinov2Config,
} from './dinov2/config.ts';
export { type Bicubic2dOptions, type BicubicOptions, bicubicMatrix1d, bicubicMatrix2d, bicubicResample, isIdentity } from './dinov2/interpolate.ts';
export {
  Dinov2Attention,
  Dinov2Embeddings,
  Dinov2Encoder,
  Dinov2Layer,
  Dinov2LayerScale,
  Dinov2Model,
  type Dinov2Output,
  Dinov2PatchEmbeddings,
  Dinov2SelfAttention,
  Dinov2SelfOutput,
  IMAGENET_MEAN,
  IMAGENET_STD,
  type TraceDinov2Options,
  imagenetNormalize,
  traceDinov2,
} from './dinov2/model.ts';
export { DINOV2_IGNORED_KEYS, dinov2ParameterShapes, loadDinov2Config, loadDinov2State } from './dinov2/checkpoint.ts';

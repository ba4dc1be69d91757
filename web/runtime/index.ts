/**
 * @file The browser runtime of Kiln's web bundles (built into the bundle as runtime/kiln-web.js): open a
 * bundle, sample, turn images into RGBA; and the plan executable for running any exported program.
 */
export { BUNDLE_FORMAT, type BundleManifest, type KernelVariant, type ProgramRef } from './bundle.ts';
export { KilnWebSampler, type OpenOptions, type SampleRequest, type SampleResult, firstChannels, imageRgba, variantFor } from './sampler.ts';
export { parseSafetensors } from './safetensors.ts';
export { WgslPlanExecutable } from '../../backends/wgsl/planExecutable.ts';
export type { WgslPlan, WgslPlanTensor } from '../../backends/wgsl/plan.ts';

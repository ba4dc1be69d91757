/**
 * @file Sample grids during training: the generator jobs' `intervals.sample` hook (runtime/train/trainer.ts).
 * Every interval (and at the last step) the running model's EMA weights (the model's own where the step keeps
 * no EMA) draw one sample per class, cycled to 16, with `kiln sample`'s defaults (LightningDiT: Euler, 50 grid
 * points, shift 0.4, no guidance; TarFlow: reverse sampling without guidance), seeded by the job's seed so
 * that grids of one run differ only by training; latents are decoded through the job's FAE decoders when it
 * has a trained pixel decoder. The grid goes to samples/step-NNNNNNNN.png in the run directory.
 */
import { join } from 'node:path';
import type { Backend } from '../../backends/backend.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { generateFlow, generateTarFlow } from '../../models/sampling/generate.ts';
import type { LightningDiT } from '../../models/lightningdit.ts';
import type { TarFlow } from '../../models/tarflow.ts';
import type { StepSession } from '../../runtime/session.ts';
import { firstChannels, writeImageGrid } from '../../runtime/train/imageGrid.ts';

/** Samples in a preview grid. */
export const PREVIEW_SAMPLES = 16;

export type PreviewModel = { kind: 'lightningdit'; model: LightningDiT } | { kind: 'tarflow'; model: TarFlow };

export interface PreviewOptions {
  backend: Backend;
  classes: readonly string[];
  seed: number;
  log: (s: string) => void;
  /** Model samples → images in the grid's range [−1, 1] (default: the samples, or their first channels). */
  toImages?: (samples: HostTensor) => Promise<HostTensor>;
}

/** The file a preview of `step` is written to. */
export function previewFile(dir: string, step: number): string {
  return join(dir, `step-${String(step).padStart(8, '0')}.png`);
}

/** The sample hook of a generator task. */
export function previewHook(g: PreviewModel, o: PreviewOptions): (session: StepSession, step: number, dir: string) => Promise<void> {
  const K = o.classes.length;
  const labels = Array.from({ length: PREVIEW_SAMPLES }, (_, i) => (K > 0 ? i % K : -1));
  const y = hostTensor('i32', [PREVIEW_SAMPLES], labels);
  return async (session, step, dir) => {
    const t0 = performance.now();
    const state = await session.read();
    // Frozen parameters (e.g. a fixed sin-cos pos_embed) are not resident in the step: they come from the model.
    const params = g.model.initState(0);
    for (const k of params.keys()) {
      const v = state.get(`ema.${k}`) ?? state.get(k);
      if (v) params.set(k, v);
    }
    const samples = g.kind === 'lightningdit'
      ? await generateFlow(o.backend, g.model, params, y, { method: 'euler', numSteps: 50, shift: 0.4, guidance: { kind: 'none' }, seed: o.seed })
      : await generateTarFlow(o.backend, g.model, params, y, { guidance: 0, seed: o.seed, denoiseSigma: 0 });
    const images = o.toImages ? await o.toImages(samples) : firstChannels(samples);
    const file = previewFile(dir, step);
    await writeImageGrid(file, images, { labels: labels.map((l) => (l < 0 ? '' : o.classes[l]!)), scale: 2 });
    o.log(`samples at step ${step}: ${file} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  };
}

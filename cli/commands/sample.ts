/**
 * @file `kiln sample <checkpoint>`: draw class-conditional samples from a trained generator (LightningDiT:
 * Euler / Heun ODE or Euler–Maruyama SDE with timestep shift and CFG constant / by interval / piecewise;
 * TarFlow/STARFlow: reverse sampling with guidance and the denoising step), decode FAE latents through
 * the feature and pixel decoders when an FAE checkpoint is given, and write a PNG grid with class labels
 * (and optionally the raw samples as safetensors). Same seed, same backend → the same images.
 */
import { type Command, Option } from 'commander';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { LatentDecoder, denormalizeLatents } from '../../models/sampling/faeDecoders.ts';
import { generateFlow, generateTarFlow } from '../../models/sampling/generate.ts';
import { describeGuidance, guidanceFromOptions } from '../../models/sampling/guidance.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { saveSafetensors } from '../../runtime/safetensors.ts';
import { firstChannels, writeImageGrid } from '../../runtime/train/imageGrid.ts';
import { faeWeightsFrom, latentStatsFor } from '../faeInputs.ts';
import { buildGenerator, checkWeights, generatorSpec, loadGeneratorWeights } from '../generators.ts';
import { backendOption, int, num, positiveInt } from '../options.ts';

interface SampleCliOptions {
  model?: string;
  weights: 'ema' | 'model';
  backend: string;
  method: 'euler' | 'heun' | 'sde';
  steps: number;
  shift: number;
  lastStepSize: number;
  cfg?: number;
  cfgInterval?: string;
  cfgPiecewise?: string;
  denoise: number;
  num: number;
  classes?: number[];
  seed: number;
  fae?: string;
  latentStats?: string;
  out: string;
  saveSamples?: string;
  columns?: number;
  scale: number;
  range: string;
}

function classList(v: string): number[] {
  return v.split(',').map((s) => int(s.trim()));
}

export function register(program: Command): void {
  program.command('sample')
    .description('sample a trained generator (LightningDiT, TarFlow/STARFlow) into a PNG grid with class labels')
    .argument('<checkpoint>', 'a run directory (its newest valid checkpoint), a checkpoint directory, or a model .safetensors file')
    .option('--model <json|file>', "the model, e.g. '{\"kind\":\"lightningdit\",\"size\":\"S/1\",\"config\":{...},\"fae\":{\"preset\":\"fashionMnist\",\"checkpoint\":\"runs/fae\"}}' (default: from the checkpoint's job config)")
    .addOption(new Option('--weights <which>', 'the EMA weights or the raw model weights (EMA falls back to model when the checkpoint has none)').choices(['ema', 'model']).default('ema'))
    .addOption(backendOption('auto'))
    .addOption(new Option('--method <m>', 'LightningDiT sampler: euler / heun ODE, sde (Euler–Maruyama, last step drift only)').choices(['euler', 'heun', 'sde']).default('euler'))
    .option('--steps <n>', 'time grid points N: N − 1 ODE steps (Heun: 2 evaluations each), or N SDE evaluations', positiveInt, 50)
    .option('--shift <s>', 'timestep shift t\' = s·t/(1 + (s − 1)·t) of the ODE grid (FAE 0.4, LightningDiT 0.3; 0 = none)', num, 0.4)
    .option('--last-step-size <h>', 'SDE: the drift-only last step (the grid ends at 1 − h)', num, 0.04)
    .option('--cfg <w>', 'classifier-free guidance scale (LightningDiT: v_u + w·(v_c − v_u); TarFlow: guidance weight) (default: none)', num)
    .option('--cfg-interval <lo,hi>', 'LightningDiT: guide only for t in [lo, hi] (t = 0 noise, 1 data), conditional elsewhere (default: all t)')
    .option('--cfg-piecewise <spec>', "LightningDiT: a scale per time range, e.g. FAE's 0:0.3=0.9,0.3:1=2.5; conditional outside (default: none)")
    .option('--denoise <sigma>', 'TarFlow: one score step x + σ²·∇log p(x|y) after sampling (0 = off)', num, 0)
    .option('--num <n>', 'number of samples', positiveInt, 16)
    .option('--classes <list>', 'class labels, e.g. 0,3,7 (cycled to --num) (default: 0, 1, 2, ... cycled)', classList)
    .option('--seed <n>', 'seed of the initial noise (and the SDE noise)', int, 0)
    .option('--fae <checkpoint>', "FAE checkpoint(s) whose feature + pixel decoders decode the latents; a comma list merges them, later ones win, e.g. runs/fae-stage-ia,runs/fae-pixel-finetune (default: the model spec's fae.checkpoint; none: the latents' first channels are shown)")
    .option('--latent-stats <file>', 'JSON {"mean": [...], "std": [...]} per latent channel, undone before decoding (default: the checkpoint metadata\'s latent_stats, else none)')
    .option('--out <file>', 'PNG grid to write', 'samples.png')
    .option('--save-samples <file>', 'also write the samples (latents and decoded images) as safetensors (default: not written)')
    .option('--columns <n>', 'grid columns (default: ceil(sqrt(num)))', positiveInt)
    .option('--scale <n>', 'pixel scale of the grid (nearest neighbour)', positiveInt, 2)
    .option('--range <lo,hi>', 'image value range mapped to black..white', '-1,1')
    .action(async (path: string, o: SampleCliOptions) => {
      const warn = (s: string) => console.error(`warning: ${s}`);
      const guidance = guidanceFromOptions(o);
      const range = o.range.split(',').map(Number);
      if (range.length !== 2 || range.some((v) => !Number.isFinite(v)) || range[0]! >= range[1]!) throw new KilnError(`--range: '${o.range}' is not lo,hi with lo < hi`);
      const w = loadGeneratorWeights(path, warn);
      const gen = buildGenerator(generatorSpec(o.model, w.meta, w.from));
      const useEma = o.weights === 'ema' && w.ema.size > 0;
      if (o.weights === 'ema' && !useEma && !w.from.endsWith('.safetensors')) warn(`${w.from} has no EMA weights; using the model weights`);
      // The EMA covers the trained parameters only: frozen ones (e.g. a fixed sin-cos pos_embed) come from the model.
      const weights = useEma ? new Map([...w.model, ...w.ema]) : w.model;
      checkWeights(gen.model.namedParameters(), weights, w.from);
      const params = gen.model.initState(0);
      for (const [k, v] of weights) if (params.has(k)) params.set(k, v);
      const { backend, reason } = await chooseBackend(o.backend);
      console.log(`backend: ${backend.name} (${reason})`);

      const K = gen.classNames.length;
      const classes: number[] = o.classes ?? Array.from({ length: Math.max(K, 1) }, (_, i) => i);
      for (const c of classes) if (K > 0 && c >= K) throw new KilnError(`--classes: class ${c} is out of range (the model has ${K} classes)`);
      const labels = Array.from({ length: o.num }, (_, i) => (K > 0 ? classes[i % classes.length]! : -1));
      const y = hostTensor('i32', [o.num], labels);
      const t0 = performance.now();
      let samples: HostTensor;
      if (gen.kind === 'lightningdit') {
        if (o.denoise !== 0) throw new KilnError('--denoise is a TarFlow option');
        samples = await generateFlow(backend, gen.model, params, y, { method: o.method, numSteps: o.steps, shift: o.method === 'sde' ? 0 : o.shift, guidance, seed: o.seed, lastStepSize: o.lastStepSize });
        console.log(`LightningDiT: ${o.method}, ${o.steps} grid points, shift ${o.method === 'sde' ? 0 : o.shift}, ${describeGuidance(guidance)}`);
      } else {
        if (guidance.kind === 'interval' || guidance.kind === 'piecewise') throw new KilnError('TarFlow guidance is one weight: use --cfg <w> without --cfg-interval / --cfg-piecewise');
        const gw = guidance.kind === 'constant' ? guidance.scale : 0;
        samples = await generateTarFlow(backend, gen.model, params, y, { guidance: gw, seed: o.seed, denoiseSigma: o.denoise });
        console.log(`TarFlow: reverse sampling, guidance ${gw}, denoise σ ${o.denoise}`);
      }
      let images = samples;
      const faePath = o.fae ?? gen.fae?.checkpoint ?? undefined;
      if (faePath) {
        if (!gen.fae && !o.model) throw new KilnError('--fae needs the FAE preset: give it in the model spec ("fae": {"preset": ...})');
        const cfg = gen.fae?.config;
        if (!cfg) throw new KilnError('--fae: the model spec has no "fae": {"preset": ...}');
        const stats = latentStatsFor(o.latentStats, w.meta, w.from, console.log, warn);
        const faeWeights = faeWeightsFrom(faePath, warn);
        const dec = await LatentDecoder.open(backend, cfg, faeWeights, o.num);
        try {
          images = await dec.decode(stats ? denormalizeLatents(samples, stats) : samples);
        } finally {
          dec.dispose();
        }
        console.log(`decoded through the FAE decoders of ${faePath}: images [${images.shape.join(', ')}]`);
      } else if (images.shape[1] !== 1 && images.shape[1] !== 3) {
        images = firstChannels(images);
        console.log(`no FAE decoder (--fae): showing the first ${images.shape[1]} of ${samples.shape[1]} latent channels`);
      }
      await writeImageGrid(o.out, images, { columns: o.columns, labels: labels.map((l) => (l < 0 ? '' : gen.classNames[l]!)), scale: o.scale, range: [range[0]!, range[1]!] });
      if (o.saveSamples) saveSafetensors(o.saveSamples, { samples, images, labels: y }, { seed: String(o.seed), checkpoint: w.from });
      console.log(`wrote ${o.num} samples to ${o.out}${o.saveSamples ? ` and ${o.saveSamples}` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    });
}

/**
 * @file `kiln export <checkpoint> --target web --out DIR`: a self-contained web bundle of a LightningDiT or
 * TarFlow generator (with the FAE decoders when the run has an FAE, as `kiln sample --fae` finds them): the page,
 * the browser runtime, the compiled programs as WGSL plans, their weights and a typed API (cli/web/exportBundle.ts).
 */
import { type Command, Option } from 'commander';
import { KilnError } from '../../ir/errors.ts';
import { int, num, positiveInt } from '../options.ts';
import { exportWebBundle } from '../web/exportBundle.ts';

interface ExportCliOptions {
  target: 'web';
  out: string;
  model?: string;
  weights: 'ema' | 'model';
  fae?: string;
  latentStats?: string;
  batch: number;
  steps: number;
  shift: number;
  cfg?: number;
  seed: number;
  range: string;
}

export function register(program: Command): void {
  program.command('export')
    .description('export a trained generator for another runtime: --target web writes a folder with a sampling page on WebGPU (serve it with kiln serve)')
    .argument('<checkpoint>', 'a run directory (its newest valid checkpoint), a checkpoint directory, or a model .safetensors file')
    .addOption(new Option('--target <t>', 'what to export for').choices(['web']).makeOptionMandatory())
    .requiredOption('--out <dir>', 'the bundle folder to write: new, empty, or a previous bundle, which is replaced (required)')
    .option('--model <json|file>', 'the model spec, as for kiln sample (default: from the checkpoint\'s job config)')
    .addOption(new Option('--weights <which>', 'the EMA weights or the raw model weights (EMA falls back to model when the checkpoint has none)').choices(['ema', 'model']).default('ema'))
    .option('--fae <checkpoint>', 'FAE checkpoint(s) whose feature + pixel decoders decode the latents, as for kiln sample (default: the model spec\'s fae.checkpoint; none: the page shows latent channels)')
    .option('--latent-stats <file>', 'JSON {"mean": [...], "std": [...]} per latent channel, undone before decoding (default: the checkpoint metadata\'s latent_stats, else none)')
    .option('--batch <n>', 'samples per run in the page (the programs are compiled for this batch)', positiveInt, 4)
    .option('--steps <n>', 'the page\'s default number of ODE grid points (N − 1 Euler steps; the page can change it)', positiveInt, 50)
    .option('--shift <s>', 'timestep shift of the ODE grid, fixed in the bundle (0 = none)', num, 0.4)
    .option('--cfg <w>', 'the page\'s default guidance: LightningDiT CFG scale, TarFlow guidance weight (default: 1 for LightningDiT, conditional only; 0 for TarFlow)', num)
    .option('--seed <n>', 'the page\'s default seed', int, 0)
    .option('--range <lo,hi>', 'image value range mapped to black..white', '-1,1')
    .action(async (path: string, o: ExportCliOptions) => {
      const range = o.range.split(',').map(Number);
      if (range.length !== 2 || range.some((v) => !Number.isFinite(v)) || range[0]! >= range[1]!) throw new KilnError(`--range: '${o.range}' is not lo,hi with lo < hi`);
      await exportWebBundle({ ...o, checkpoint: path, range: [range[0]!, range[1]!] });
      console.log(`serve it with: npx kiln serve ${o.out}`);
    });
}

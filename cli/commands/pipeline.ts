/**
 * @file `kiln pipeline fae-small|fae-tiny|fae-full`: the whole Fashion-MNIST FAE pipeline in one command,
 * each stage a `kiln` subcommand run as its own process (so every stage is exactly what a user would
 * type): DINO SSL encoder (+ linear probe / kNN) → FAE stage Ia (adapter + feature decoder) → stage Ib
 * (pixel decoder on noisy features; no GAN term) → fine-tuning of the pixel decoder on the feature
 * decoder's reconstructions → class-conditional LightningDiT (and TarFlow) on the normalized latents →
 * the in-project classifier (fashion-classifier) → samples (LightningDiT with and without interval CFG,
 * TarFlow guided) → metrics: the encoder's linear probe next to the raw-pixel probe, reconstruction
 * PSNR/SSIM, probe of reconstructed vs raw features, Fréchet distance in the SSL encoder's space with the
 * real-vs-real floor, classifier accuracy on real test images and on the class-conditional samples.
 * Writes `<out>/samples.png` (LightningDiT, guided), `samples-nocfg.png`, `samples-tarflow.png` (sizes with
 * TarFlow), `reconstructions.png`, `<out>/metrics.md` (the table) and `<out>/metrics.json`.
 *
 * Sizes: `fae-small` is the README's command, about 400 CPU seconds (6.5 minutes on a 2-core CPU without a GPU):
 * a 16-wide encoder, the fashionTiny FAE, a depth-1 width-32 LightningDiT, 100-700 steps each with warmups scaled to
 * the run (the jobs' warmups of 100-500 steps, clamped to a shorter run, would keep it ramping to the end), and no
 * TarFlow (its budget goes to the LightningDiT); `fae-tiny` is the test's (a few steps of every stage, TarFlow
 * included); `fae-full` is the GPU run of the shipped jobs (jobs/*.json) at their full length. Each stage's wall and CPU seconds (user + system of its
 * process) go into metrics.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { KilnError } from '../../ir/errors.ts';
import { backendOption } from '../options.ts';

export interface Size {
  /** `kiln train ssl-encoder` arguments (model size, steps, schedule, the probe at the end). */
  ssl: string[];
  /** Arguments of every FAE stage (the preset and the encoder's shape). */
  fae: string[];
  /** Per FAE stage: steps, batch, data limit, schedule. */
  ia: string[];
  ib: string[];
  ft: string[];
  /** `kiln train lightningdit-fae` arguments (model size, steps, schedule). */
  dit: string[];
  /** `kiln train tarflow-fae` arguments (model size, steps, schedule); null: no TarFlow at this size. */
  flow: string[] | null;
  /** `kiln train fashion-classifier` arguments. */
  classifier: string[];
  /** `kiln eval probe --pixels` arguments: the raw-pixel linear probe, the floor the SSL probe must beat (same limits and epochs). */
  pixelProbe: string[];
  /** Sampling weights: short runs sample the raw weights (their EMA, decay 0.9999, is still ~ the zero-init model). */
  sample: { num: number; steps: number; weights: 'ema' | 'model' };
  fdCount: number;
  evalFae: string[];
}

const tinySsl = ['--set', 'model.dim=16', '--set', 'model.depth=1', '--set', 'model.heads=2', '--set', 'model.prototypes=64', '--set', 'model.localViews=1', '--set', 'precision=null'];
const tinyFae = ['--set', 'model.preset=fashionTiny', '--set', 'model.encoder.depth=1', '--set', 'model.encoder.heads=2'];
const tinyLatents = ['--set', 'model.latents.preset=fashionTiny', '--set', 'model.latents.encoder.depth=1', '--set', 'model.latents.encoder.heads=2'];
const tinyDit = [...tinyLatents, '--set', 'model.config={"depth":1,"hiddenSize":32,"numHeads":2,"classDropoutProb":0.1}'];
const tinyFlow = [...tinyLatents, '--set', 'model.config={"channels":16,"headDim":8,"layersPerBlock":[1,1]}'];
/**
 * A short run's schedule: steps, batch, peak rate, warmup. The jobs' warmups (100–500 steps) are clamped to a shorter run,
 * which then ramps for its whole length and never trains at its peak rate.
 */
const short = (steps: number, batch: number, lr: number, warmup: number) => ['--steps', String(steps), '--batch', String(batch), '--lr', String(lr), '--set', `schedule.warmup=${warmup}`];

export const PIPELINE_SIZES: Record<string, Size> = {
  'fae-tiny': {
    ssl: [...tinySsl, '--steps', '2', '--batch', '8', '--limit', '64', '--set', 'model.probe={"epochs":2,"knn":true,"trainLimit":64,"testLimit":32}'],
    fae: tinyFae, ia: ['--steps', '2', '--batch', '8', '--limit', '64'], ib: ['--steps', '2', '--batch', '8', '--limit', '64', '--set', 'model.gan=false'], ft: ['--steps', '2', '--batch', '8', '--limit', '64'],
    dit: [...tinyDit, '--steps', '8', '--batch', '8', '--limit', '64', '--lr', '2e-3'], flow: [...tinyFlow, '--steps', '8', '--batch', '8', '--limit', '64', '--lr', '2e-3'],
    classifier: ['--set', 'model.hidden=[16]', '--steps', '4', '--batch', '8', '--limit', '64'], pixelProbe: ['--train-limit', '64', '--test-limit', '32', '--epochs', '2'],
    sample: { num: 8, steps: 5, weights: 'model' }, fdCount: 8, evalFae: ['--count', '16', '--train-limit', '64', '--epochs', '2', '--batch', '16'],
  },
  'fae-small': {
    ssl: [...tinySsl, ...short(40, 32, 2e-3, 10), '--limit', '4096', '--set', 'model.probe={"epochs":10,"knn":true,"trainLimit":1000,"testLimit":500,"features":["tokens"]}'],
    fae: tinyFae, ia: [...short(100, 32, 2e-3, 10), '--limit', '4096'], ib: [...short(150, 32, 3e-3, 10), '--limit', '4096', '--set', 'model.gan=false'], ft: [...short(100, 32, 1e-3, 0), '--limit', '4096'],
    // constant rate (the job's schedule): at 400 steps a cosine decay gave less class-specific samples than 500 at a constant rate
    dit: [...tinyDit, ...short(700, 32, 3e-3, 0), '--limit', '4096'], flow: null,
    classifier: ['--set', 'model.hidden=[64]', ...short(300, 64, 1e-3, 30)], pixelProbe: ['--train-limit', '1000', '--test-limit', '500', '--epochs', '10'],
    sample: { num: 100, steps: 10, weights: 'model' }, fdCount: 100, evalFae: ['--count', '100', '--train-limit', '500', '--epochs', '10', '--batch', '100'],
  },
  'fae-full': {
    ssl: [], fae: [], ia: [], ib: [], ft: [], dit: [], flow: [], classifier: [], pixelProbe: [],
    sample: { num: 1000, steps: 50, weights: 'ema' }, fdCount: 1000, evalFae: [],
  },
};

/** A training stage of the pipeline: its name (run directory, log), the shipped job it trains, the size's arguments. */
export interface TrainingStage {
  name: string;
  job: string;
  args: string[];
}

/** The training stages of a size in order, with the size's `kiln train` arguments (the runs' paths are added by the pipeline). */
export function trainingStages(size: Size): TrainingStage[] {
  return [
    { name: 'ssl-encoder', job: 'ssl-encoder', args: size.ssl },
    { name: 'fae-stage-ia', job: 'fae-stage-ia', args: [...size.fae, ...size.ia] },
    { name: 'fae-stage-ib', job: 'fae-stage-ib', args: [...size.fae, ...size.ib] },
    { name: 'fae-pixel-finetune', job: 'fae-pixel-finetune', args: [...size.fae, ...size.ft] },
    { name: 'lightningdit-fae', job: 'lightningdit-fae', args: size.dit },
    ...(size.flow ? [{ name: 'tarflow-fae', job: 'tarflow-fae', args: size.flow }] : []),
    { name: 'fashion-classifier', job: 'fashion-classifier', args: size.classifier },
  ];
}

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin.mjs');

interface StepResult {
  name: string;
  seconds: number;
  /** CPU seconds (user + system) the step's process used; undefined where the OS does not say. */
  cpu: number | undefined;
  stdout: string;
}

/**
 * User + system CPU seconds of this process's waited-for children so far (Linux: /proc/self/stat
 * cutime + cstime, in clock ticks of 1/100 s), or undefined elsewhere.
 */
function childCpuSeconds(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
    const cutime = Number(f[13]), cstime = Number(f[14]);
    return Number.isFinite(cutime) && Number.isFinite(cstime) ? (cutime + cstime) / 100 : undefined;
  } catch {
    return undefined;
  }
}

function run(name: string, args: string[], log: string): StepResult {
  const t0 = performance.now(), c0 = childCpuSeconds();
  console.log(`── ${name}: kiln ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, env: process.env });
  const seconds = (performance.now() - t0) / 1000, c1 = childCpuSeconds();
  const cpu = c0 === undefined || c1 === undefined ? undefined : c1 - c0;
  writeFileSync(join(log, `${name}.log`), `$ kiln ${args.join(' ')}\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  if (r.status !== 0) {
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-6).join('\n');
    throw new KilnError(`pipeline step ${name} failed (exit ${r.status}; log ${join(log, `${name}.log`)}):\n${tail}`);
  }
  console.log(`   done in ${seconds.toFixed(1)} s${cpu === undefined ? '' : ` (${cpu.toFixed(1)} CPU s)`}`);
  return { name, seconds, cpu, stdout: r.stdout };
}

function lastLoss(runDir: string): number {
  const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  return (JSON.parse(lines.at(-1)!) as { loss: number }).loss;
}

function json(stdout: string): Record<string, number> {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) throw new KilnError(`no JSON result in: ${stdout.slice(-200)}`);
  return JSON.parse(line) as Record<string, number>;
}

const pct = (v: number | undefined | null) => (v === undefined || v === null ? 'n/a' : `${(100 * v).toFixed(2)}%`);
const time = (s: { seconds: number; cpu: number | undefined }) => `${s.seconds.toFixed(1)} s${s.cpu === undefined ? '' : ` (${s.cpu.toFixed(1)} CPU s)`}`;

export function register(program: Command): void {
  program.command('pipeline')
    .description('run the whole Fashion-MNIST FAE pipeline: SSL encoder, FAE stages (Ia, Ib, pixel-decoder fine-tuning), LightningDiT and TarFlow, classifier, samples, metrics')
    .addOption(new Option('--size <name>', 'fae-small: about 400 CPU s, 6.5 minutes on a 2-core CPU (LightningDiT only); fae-tiny: under a minute (the test); fae-full: the shipped jobs at full length (GPU)').choices(Object.keys(PIPELINE_SIZES)).default('fae-small'))
    .option('--out <dir>', 'output directory (runs, logs, samples.png, metrics.md)', 'runs/pipeline')
    .addOption(backendOption('auto'))
    .action(async (o: { size: string; out: string; backend: string }) => {
      const size = PIPELINE_SIZES[o.size]!;
      const out = o.out, logs = join(out, 'logs');
      mkdirSync(logs, { recursive: true });
      const t0 = performance.now(), c0 = childCpuSeconds();
      const b = ['--backend', o.backend];
      const dir = (n: string) => join(out, n);
      const steps: StepResult[] = [];
      const step = (name: string, args: string[]) => {
        const r = run(name, args, logs);
        steps.push(r);
        return r;
      };
      // each stage's runs: the SSL encoder for the FAE stages, the earlier FAE runs as their init, stage Ia's run for the latents
      const enc = ['--set', `model.encoder.checkpoint=${dir('ssl-encoder')}`];
      const latents = ['--set', `model.latents.encoder.checkpoint=${dir('ssl-encoder')}`, '--set', `model.latents.checkpoint=${dir('fae-stage-ia')}`];
      const inputs: Record<string, string[]> = {
        'fae-stage-ia': enc, 'fae-stage-ib': [...enc, '--set', `model.init=${dir('fae-stage-ia')}`],
        'fae-pixel-finetune': [...enc, '--set', `model.init=${dir('fae-stage-ia')},${dir('fae-stage-ib')}`], 'lightningdit-fae': latents, 'tarflow-fae': latents,
      };
      const ran = new Map<string, StepResult>();
      for (const s of trainingStages(size)) {
        ran.set(s.name, step(s.name, ['train', s.job, ...b, ...s.args, ...(inputs[s.name] ?? []), '--out', dir(s.name)]));
        // the raw-pixel probe (the floor the SSL probe must beat) right after the encoder's own
        if (s.name === 'ssl-encoder') ran.set('pixel-probe', step('pixel-probe', ['eval', 'probe', '--pixels', ...b, ...size.pixelProbe, '--json']));
      }
      const ssl = ran.get('ssl-encoder')!, classifier = ran.get('fashion-classifier')!, pixels = json(ran.get('pixel-probe')!.stdout);
      // the first probed readout is the job's linear_probe / knn (the small sizes probe the token map, the raw-pixel probe's counterpart)
      const sslEval = /^eval at step \d+: (.*)$/m.exec(ssl.stdout)?.[1];
      const sslMetric = (k: string) => {
        const m = new RegExp(`\\b${k} ([\\d.]+)`).exec(sslEval ?? '');
        return m ? Number(m[1]) : null;
      };
      const probeFeatures = /SSL encoder evaluation \(\w+, (\d+-d [\w -]+?) features/.exec(ssl.stdout)?.[1] ?? 'features';
      const clfAcc = /test_accuracy ([\d.]+)/.exec(classifier.stdout);
      // the fine-tuned pixel decoder (its checkpoint holds every FAE tensor; stage Ia's come first, the later run wins)
      const decoders = `${dir('fae-stage-ia')},${dir('fae-pixel-finetune')}`;
      const { num, steps: sSteps, weights } = size.sample;
      const sampleArgs = (generator: string, file: string, extra: string[]) => ['sample', dir(generator), ...b, '--weights', weights, '--fae', decoders, '--num', String(num), '--steps', String(sSteps), '--out', join(out, `${file}.png`), '--save-samples', join(out, `${file}.safetensors`), '--columns', String(Math.min(num, 10)), ...extra];
      const files = ['samples', 'samples-nocfg', ...(size.flow ? ['samples-tarflow'] : [])];
      step('sample-cfg', sampleArgs('lightningdit-fae', 'samples', ['--cfg', '2.5', '--cfg-interval', '0.3,1']));
      step('sample-nocfg', sampleArgs('lightningdit-fae', 'samples-nocfg', []));
      if (size.flow) step('sample-tarflow', sampleArgs('tarflow-fae', 'samples-tarflow', ['--cfg', '1']));
      const fd = files.map((f) => json(step(`fd-${f}`, ['eval', 'fd', ...b, '--real', 'fashion-mnist:test', '--fake', join(out, `${f}.safetensors`), '--ssl-encoder', dir('ssl-encoder'), '--count', String(size.fdCount), '--json']).stdout));
      const acc = files.map((f) => json(step(`accuracy-${f}`, ['eval', 'accuracy', ...b, '--classifier', dir('fashion-classifier'), '--samples', join(out, `${f}.safetensors`), '--json']).stdout));
      const fae = json(step('eval-fae', ['eval', 'fae', ...b, '--encoder', dir('ssl-encoder'), '--fae', decoders, ...(size.fae.length ? ['--preset', 'fashionTiny'] : []), ...size.evalFae, '--grid', join(out, 'reconstructions.png'), '--json']).stdout);
      const total = (performance.now() - t0) / 1000, c1 = childCpuSeconds();
      const totalCpu = c0 === undefined || c1 === undefined ? undefined : c1 - c0;
      const [fdCfg, fdNo, fdFlow] = fd as [Record<string, number>, Record<string, number>, Record<string, number> | undefined];
      const [accCfg, accNo, accFlow] = acc as [Record<string, number>, Record<string, number>, Record<string, number> | undefined];
      const gens = ['LightningDiT CFG', 'no guidance', ...(size.flow ? ['TarFlow'] : [])].join(' / ');
      const rows: Array<[string, string]> = [
        [`SSL encoder linear probe (test, ${probeFeatures})`, pct(sslMetric('linear_probe'))],
        ['SSL encoder kNN (test)', pct(sslMetric('knn'))],
        ['raw-pixel linear probe (test; the floor)', pct(pixels.linear_probe)],
        ['FAE reconstruction PSNR / SSIM', `${fae.psnr!.toFixed(2)} dB / ${fae.ssim!.toFixed(4)}`],
        ['linear probe: raw / reconstructed features', `${pct(fae.probe_raw)} / ${pct(fae.probe_reconstructed)}`],
        [`FD (SSL space, N = ${fdCfg.count}), LightningDiT, CFG 2.5 on t in [0.3, 1]`, fdCfg.fd!.toFixed(3)],
        [`FD (SSL space, N = ${fdNo.count}), LightningDiT, no guidance`, fdNo.fd!.toFixed(3)],
        ...(fdFlow ? [[`FD (SSL space, N = ${fdFlow.count}), TarFlow, guidance 1`, fdFlow.fd!.toFixed(3)] as [string, string]] : []),
        ['FD real-vs-real floor', fdCfg.floor === null || fdCfg.floor === undefined ? 'n/a' : fdCfg.floor.toFixed(3)],
        ['classifier accuracy, real test images', clfAcc ? pct(Number(clfAcc[1])) : 'n/a'],
        [`classifier accuracy on samples: ${gens}`, acc.map((a) => pct(a!.accuracy)).join(' / ')],
        ...(['ssl-encoder', 'fae-stage-ia', 'fae-stage-ib', 'fae-pixel-finetune', 'lightningdit-fae', 'tarflow-fae', 'fashion-classifier'] as const).filter((n) => existsSync(join(dir(n), 'metrics.jsonl'))).map((n) => [`final loss ${n}`, lastLoss(dir(n)).toFixed(4)] as [string, string]),
        ...steps.map((s) => [`time ${s.name}`, time(s)] as [string, string]),
        ['time total', time({ seconds: total, cpu: totalCpu })],
      ];
      const sampleNote = `samples.png (LightningDiT, guided), samples-nocfg.png${size.flow ? ', samples-tarflow.png' : ''}`;
      const md = `# FAE pipeline (${o.size}), ${new Date().toISOString()}\n\n| metric | value |\n| --- | --- |\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n\nSamples: ${sampleNote}; reconstructions.png (test images above their reconstructions). Times: wall (CPU seconds of the step's process, user + system).\n`;
      writeFileSync(join(out, 'metrics.md'), md);
      writeFileSync(join(out, 'metrics.json'), `${JSON.stringify({
        size: o.size, probe: sslMetric('linear_probe'), knn: sslMetric('knn'), pixel_probe: pixels.linear_probe, fae, fd: { cfg: fdCfg, none: fdNo, tarflow: fdFlow ?? null }, classifier: clfAcc ? Number(clfAcc[1]) : null,
        accuracy: { cfg: accCfg.accuracy, none: accNo.accuracy, tarflow: accFlow?.accuracy ?? null }, seconds: total, cpu_seconds: totalCpu ?? null,
        steps: Object.fromEntries(steps.map((s) => [s.name, { seconds: s.seconds, cpu_seconds: s.cpu ?? null }])),
      }, null, 2)}\n`);
      console.log(`\n${md}`);
      console.log(`wrote ${join(out, 'samples.png')}, ${join(out, 'metrics.md')} in ${total.toFixed(1)} s`);
    });
}

/**
 * @file `kiln pipeline fae-small|fae-tiny|fae-full`: the whole Fashion-MNIST FAE pipeline in one command,
 * each stage a `kiln` subcommand run as its own process (so every stage is exactly what a user would
 * type): DINO SSL encoder (+ linear probe / kNN) → FAE stage Ia (adapter + feature decoder) → stage Ib
 * (pixel decoder on noisy features; no GAN term) → fine-tuning of the pixel decoder on the feature
 * decoder's reconstructions → class-conditional LightningDiT and TarFlow on the normalized latents →
 * the in-project classifier (fashion-classifier) → samples (LightningDiT with and without interval CFG,
 * TarFlow guided) → metrics: reconstruction PSNR/SSIM, probe of reconstructed vs raw features, Fréchet
 * distance in the SSL encoder's space with the real-vs-real floor, classifier accuracy on real test images
 * and on the class-conditional samples. Writes `<out>/samples.png` (LightningDiT, guided),
 * `samples-nocfg.png`, `samples-tarflow.png`, `reconstructions.png`, `<out>/metrics.md` (the table) and
 * `<out>/metrics.json`.
 *
 * Sizes: `fae-small` fits 10 minutes on a 2-core CPU (small models, a few dozen steps: a smoke run of
 * the real thing, not a trained model); `fae-tiny` is the test's; `fae-full` is the GPU run of the
 * shipped jobs (jobs/*.json) at their full length.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { KilnError } from '../../ir/errors.ts';
import { backendOption } from '../options.ts';

interface Size {
  /** Extra `kiln train` arguments per job. */
  ssl: string[];
  fae: string[];
  dit: string[];
  /** Extra `kiln train tarflow-fae` arguments (model size; the latents are the DiT's). */
  flow: string[];
  /** Extra `kiln train fashion-classifier` arguments. */
  classifier: string[];
  stageSteps: string[];
  ditSteps: string[];
  /** Sampling weights: short runs sample the raw weights (their EMA, decay 0.9999, is still ~ the zero-init model). */
  sample: { num: number; steps: number; weights: 'ema' | 'model' };
  fdCount: number;
  evalFae: string[];
}

const tinySsl = ['--set', 'model.dim=16', '--set', 'model.depth=1', '--set', 'model.heads=2', '--set', 'model.prototypes=64', '--set', 'model.localViews=1', '--set', 'precision=null'];
const tinyFae = ['--set', 'model.preset=fashionTiny', '--set', 'model.encoder.depth=1', '--set', 'model.encoder.heads=2'];
const tinyLatents = ['--set', 'model.latents.preset=fashionTiny', '--set', 'model.latents.encoder.depth=1', '--set', 'model.latents.encoder.heads=2',
  '--set', 'model.config={"depth":1,"hiddenSize":32,"numHeads":2,"classDropoutProb":0.1}'];
const tinyFlowLatents = [...tinyLatents.slice(0, -2), '--set', 'model.config={"channels":16,"headDim":8,"layersPerBlock":[1,1]}'];

const SIZES: Record<string, Size> = {
  'fae-tiny': {
    ssl: [...tinySsl, '--steps', '2', '--batch', '8', '--limit', '64', '--set', 'model.probe={"epochs":2,"knn":true,"trainLimit":64,"testLimit":32}'],
    fae: tinyFae, dit: tinyLatents, flow: tinyFlowLatents, classifier: ['--set', 'model.hidden=[16]', '--steps', '4', '--batch', '8', '--limit', '64'],
    stageSteps: ['--steps', '2', '--batch', '8', '--limit', '64'], ditSteps: ['--steps', '8', '--batch', '8', '--limit', '64', '--lr', '2e-3'],
    sample: { num: 8, steps: 5, weights: 'model' }, fdCount: 8, evalFae: ['--count', '16', '--train-limit', '64', '--epochs', '2', '--batch', '16'],
  },
  'fae-small': {
    ssl: [...tinySsl, '--steps', '40', '--batch', '32', '--limit', '4096', '--set', 'model.probe={"epochs":10,"knn":true,"trainLimit":1000,"testLimit":500}'],
    fae: tinyFae, dit: tinyLatents, flow: tinyFlowLatents, classifier: ['--set', 'model.hidden=[64]', '--steps', '300', '--batch', '64'],
    stageSteps: ['--steps', '30', '--batch', '32', '--limit', '4096'], ditSteps: ['--steps', '60', '--batch', '32', '--limit', '4096'],
    sample: { num: 40, steps: 10, weights: 'model' }, fdCount: 40, evalFae: ['--count', '100', '--train-limit', '500', '--epochs', '10', '--batch', '100'],
  },
  'fae-full': {
    ssl: [], fae: [], dit: [], flow: [], classifier: [], stageSteps: [], ditSteps: [],
    sample: { num: 1000, steps: 50, weights: 'ema' }, fdCount: 1000, evalFae: [],
  },
};

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin.mjs');

interface StepResult {
  name: string;
  seconds: number;
  stdout: string;
}

function run(name: string, args: string[], log: string): StepResult {
  const t0 = performance.now();
  console.log(`── ${name}: kiln ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, env: process.env });
  const seconds = (performance.now() - t0) / 1000;
  writeFileSync(join(log, `${name}.log`), `$ kiln ${args.join(' ')}\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  if (r.status !== 0) {
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-6).join('\n');
    throw new KilnError(`pipeline step ${name} failed (exit ${r.status}; log ${join(log, `${name}.log`)}):\n${tail}`);
  }
  console.log(`   done in ${seconds.toFixed(1)} s`);
  return { name, seconds, stdout: r.stdout };
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

export function register(program: Command): void {
  program.command('pipeline')
    .description('run the whole Fashion-MNIST FAE pipeline: SSL encoder, FAE stages (Ia, Ib, pixel-decoder fine-tuning), LightningDiT and TarFlow, classifier, samples, metrics')
    .addOption(new Option('--size <name>', 'fae-small: 10 minutes on a 2-core CPU; fae-tiny: seconds (the test); fae-full: the shipped jobs at full length (GPU)').choices(Object.keys(SIZES)).default('fae-small'))
    .option('--out <dir>', 'output directory (runs, logs, samples.png, metrics.md)', 'runs/pipeline')
    .addOption(backendOption('auto'))
    .action(async (o: { size: string; out: string; backend: string }) => {
      const size = SIZES[o.size]!;
      const out = o.out, logs = join(out, 'logs');
      mkdirSync(logs, { recursive: true });
      const t0 = performance.now();
      const b = ['--backend', o.backend];
      const dir = (n: string) => join(out, n);
      const steps: StepResult[] = [];
      const ssl = run('ssl-encoder', ['train', 'ssl-encoder', ...b, ...size.ssl, '--out', dir('ssl-encoder')], logs);
      steps.push(ssl);
      const probe = /linear probe ([\d.]+)% test .*?(?:kNN ([\d.]+)%)?$/m.exec(ssl.stdout);
      const enc = ['--set', `model.encoder.checkpoint=${dir('ssl-encoder')}`];
      steps.push(run('fae-stage-ia', ['train', 'fae-stage-ia', ...b, ...size.fae, ...size.stageSteps, ...enc, '--out', dir('fae-stage-ia')], logs));
      steps.push(run('fae-stage-ib', ['train', 'fae-stage-ib', ...b, ...size.fae, ...size.stageSteps, ...enc, '--set', `model.init=${dir('fae-stage-ia')}`, '--out', dir('fae-stage-ib')], logs));
      steps.push(run('fae-pixel-finetune', ['train', 'fae-pixel-finetune', ...b, ...size.fae, ...size.stageSteps, ...enc, '--set', `model.init=${dir('fae-stage-ia')},${dir('fae-stage-ib')}`, '--out', dir('fae-pixel-finetune')], logs));
      const latents = ['--set', `model.latents.encoder.checkpoint=${dir('ssl-encoder')}`, '--set', `model.latents.checkpoint=${dir('fae-stage-ia')}`];
      steps.push(run('lightningdit-fae', ['train', 'lightningdit-fae', ...b, ...size.dit, ...size.ditSteps, ...latents, '--out', dir('lightningdit-fae')], logs));
      steps.push(run('tarflow-fae', ['train', 'tarflow-fae', ...b, ...size.flow, ...size.ditSteps, ...latents, '--out', dir('tarflow-fae')], logs));
      const classifier = run('fashion-classifier', ['train', 'fashion-classifier', ...b, ...size.classifier, '--out', dir('fashion-classifier')], logs);
      steps.push(classifier);
      const clfAcc = /test_accuracy ([\d.]+)/.exec(classifier.stdout);
      // the fine-tuned pixel decoder (its checkpoint holds every FAE tensor; stage Ia's come first, the later run wins)
      const decoders = `${dir('fae-stage-ia')},${dir('fae-pixel-finetune')}`;
      const { num, steps: sSteps, weights } = size.sample;
      const sampleArgs = (generator: string, file: string, extra: string[]) => ['sample', dir(generator), ...b, '--weights', weights, '--fae', decoders, '--num', String(num), '--steps', String(sSteps), '--out', join(out, `${file}.png`), '--save-samples', join(out, `${file}.safetensors`), '--columns', String(Math.min(num, 10)), ...extra];
      steps.push(run('sample-cfg', sampleArgs('lightningdit-fae', 'samples', ['--cfg', '2.5', '--cfg-interval', '0.3,1']), logs));
      steps.push(run('sample-nocfg', sampleArgs('lightningdit-fae', 'samples-nocfg', []), logs));
      steps.push(run('sample-tarflow', sampleArgs('tarflow-fae', 'samples-tarflow', ['--cfg', '1']), logs));
      const measured = (r: StepResult) => {
        steps.push(r);
        return json(r.stdout);
      };
      const fd = (file: string) => measured(run(`fd-${file}`, ['eval', 'fd', ...b, '--real', 'fashion-mnist:test', '--fake', join(out, `${file}.safetensors`), '--ssl-encoder', dir('ssl-encoder'), '--count', String(size.fdCount), '--json'], logs));
      const accuracy = (file: string) => measured(run(`accuracy-${file}`, ['eval', 'accuracy', ...b, '--classifier', dir('fashion-classifier'), '--samples', join(out, `${file}.safetensors`), '--json'], logs));
      const fdCfg = fd('samples'), fdNo = fd('samples-nocfg'), fdFlow = fd('samples-tarflow');
      const accCfg = accuracy('samples'), accNo = accuracy('samples-nocfg'), accFlow = accuracy('samples-tarflow');
      const fae = measured(run('eval-fae', ['eval', 'fae', ...b, '--encoder', dir('ssl-encoder'), '--fae', decoders, ...(size.fae.length ? ['--preset', 'fashionTiny'] : []), ...size.evalFae, '--grid', join(out, 'reconstructions.png'), '--json'], logs));
      const total = (performance.now() - t0) / 1000;
      const rows: Array<[string, string]> = [
        ['SSL encoder linear probe (test)', probe ? `${probe[1]}%` : 'n/a'],
        ['SSL encoder kNN (test)', probe?.[2] ? `${probe[2]}%` : 'n/a'],
        ['FAE reconstruction PSNR / SSIM', `${fae.psnr!.toFixed(2)} dB / ${fae.ssim!.toFixed(4)}`],
        ['linear probe: raw / reconstructed features', `${(100 * fae.probe_raw!).toFixed(2)}% / ${(100 * fae.probe_reconstructed!).toFixed(2)}%`],
        [`FD (SSL space, N = ${fdCfg.count}), LightningDiT, CFG 2.5 on t in [0.3, 1]`, fdCfg.fd!.toFixed(3)],
        [`FD (SSL space, N = ${fdNo.count}), LightningDiT, no guidance`, fdNo.fd!.toFixed(3)],
        [`FD (SSL space, N = ${fdFlow.count}), TarFlow, guidance 1`, fdFlow.fd!.toFixed(3)],
        ['FD real-vs-real floor', fdCfg.floor === null || fdCfg.floor === undefined ? 'n/a' : fdCfg.floor.toFixed(3)],
        ['classifier accuracy, real test images', clfAcc ? `${(100 * Number(clfAcc[1])).toFixed(2)}%` : 'n/a'],
        ['classifier accuracy on samples: LightningDiT CFG / no guidance / TarFlow', [accCfg, accNo, accFlow].map((a) => `${(100 * a.accuracy!).toFixed(2)}%`).join(' / ')],
        ...(['ssl-encoder', 'fae-stage-ia', 'fae-stage-ib', 'fae-pixel-finetune', 'lightningdit-fae', 'tarflow-fae', 'fashion-classifier'] as const).filter((n) => existsSync(join(dir(n), 'metrics.jsonl'))).map((n) => [`final loss ${n}`, lastLoss(dir(n)).toFixed(4)] as [string, string]),
        ...steps.map((s) => [`time ${s.name}`, `${s.seconds.toFixed(1)} s`] as [string, string]),
        ['time total', `${total.toFixed(1)} s`],
      ];
      const md = `# FAE pipeline (${o.size}), ${new Date().toISOString()}\n\n| metric | value |\n| --- | --- |\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n\nSamples: samples.png (LightningDiT, guided), samples-nocfg.png, samples-tarflow.png; reconstructions.png (test images above their reconstructions).\n`;
      writeFileSync(join(out, 'metrics.md'), md);
      writeFileSync(join(out, 'metrics.json'), `${JSON.stringify({ size: o.size, probe: probe ? Number(probe[1]) / 100 : null, knn: probe?.[2] ? Number(probe[2]) / 100 : null, fae, fd: { cfg: fdCfg, none: fdNo, tarflow: fdFlow }, classifier: clfAcc ? Number(clfAcc[1]) : null, accuracy: { cfg: accCfg.accuracy, none: accNo.accuracy, tarflow: accFlow.accuracy }, seconds: total }, null, 2)}\n`);
      console.log(`\n${md}`);
      console.log(`wrote ${join(out, 'samples.png')}, ${join(out, 'metrics.md')} in ${total.toFixed(1)} s`);
    });
}

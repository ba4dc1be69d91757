/**
 * @file `kiln eval probe`: linear-probe and kNN accuracy on Fashion-MNIST of a frozen SSL encoder
 * (a `kiln train ssl-encoder` run or one of its checkpoints; `--teacher` reads the EMA teacher), or,
 * with `--pixels`, the linear probe on raw pixels (the floor an encoder must beat). The probe is a
 * logistic regression trained by Kiln on standardized train features, scored on the test split
 * (models/ssl/probe.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { KilnError } from '../../ir/errors.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { DinoNetwork } from '../../models/ssl/dino.ts';
import { PROBE_FEATURES, type ProbeFeatures, evaluateEncoder, pixelProbe } from '../../models/ssl/evaluate.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { loadCheckpoint } from '../../runtime/checkpoint.ts';
import { loadLatestCheckpoint } from '../../runtime/checkpoints.ts';
import { loadFashionMnist } from '../../runtime/data/fashionMnist.ts';
import { parseJob } from '../jobs/schema.ts';
import { sslDinoConfig } from '../jobs/tasks.ts';
import { backendOption, num, positiveInt } from '../options.ts';

const warn = (s: string) => console.error(`warning: ${s}`);

function positiveNum(v: string): number {
  const n = num(v);
  if (n <= 0) throw new InvalidArgumentError(`'${v}' is not a positive number.`);
  return n;
}

/** `--weight-decay 1e-4,0.1,1`: non-negative numbers. */
function weightDecayList(v: string): number[] {
  return v.split(',').map((x) => {
    const n = num(x);
    if (n < 0) throw new InvalidArgumentError(`'${x}' is not a non-negative weight decay.`);
    return n;
  });
}

/** ` (weight decay W, chosen on held-out train rows: w1 a%, w2 b%)` when several were given. */
function wdNote(r: { weight_decay: number; validation: { weightDecay: number; accuracy: number }[] }): string {
  return r.validation.length === 0 ? '' : ` [weight decay ${r.weight_decay} chosen on held-out train rows: ${r.validation.map((c) => `${c.weightDecay} ${(100 * c.accuracy).toFixed(2)}%`).join(', ')}]`;
}

/** The SSL run's network (from its config.json) and its student or teacher weights. */
export function loadSslEncoder(path: string, teacher: boolean): { net: DinoNetwork; state: Map<string, HostTensor>; from: string } {
  let ck: ReturnType<typeof loadCheckpoint>, ckDir: string, runDir: string;
  if (existsSync(join(path, 'model.safetensors'))) [ck, ckDir, runDir] = [loadCheckpoint(path), path, dirname(dirname(path))];
  else {
    const found = loadLatestCheckpoint(join(path, 'checkpoints'), warn);
    if (!found) throw new KilnError(`${path}: neither an SSL checkpoint (no model.safetensors) nor a run directory with a valid checkpoint`);
    [ck, ckDir, runDir] = [found.checkpoint, found.dir, path];
  }
  const cfgFile = join(runDir, 'config.json');
  if (!existsSync(cfgFile)) throw new KilnError(`${path}: no ${cfgFile} (the run's resolved job) to read the encoder's config from`);
  const job = parseJob(JSON.parse(readFileSync(cfgFile, 'utf8')), cfgFile);
  if (job.model.kind !== 'ssl_encoder') throw new KilnError(`${cfgFile}: model.kind is '${job.model.kind}', not an ssl_encoder run`);
  const net = new DinoNetwork(sslDinoConfig(job.model, [1, 28, 28]));
  const weights = teacher ? ck.ema : ck.model;
  if (teacher && weights.size === 0) throw new KilnError(`${ckDir}: no EMA teacher weights (ema.safetensors is empty)`);
  return { net, state: new Map(weights), from: `${ckDir} (${teacher ? 'teacher' : 'student'})` };
}

export function registerProbe(ev: Command): void {
  ev.command('probe')
    .description('linear-probe and kNN accuracy of a frozen SSL encoder on Fashion-MNIST (or the raw-pixel probe)')
    .option('--encoder <dir>', 'an ssl-encoder run directory or checkpoint directory (default: none; give it or --pixels)')
    .option('--teacher', "use the run's EMA teacher instead of the student", false)
    .option('--pixels', 'the linear probe on raw pixels instead (the floor)', false)
    .option('--epochs <n>', 'probe training epochs', positiveInt, 30)
    .option('--lr <x>', "the probe's peak learning rate (AdamW, cosine)", positiveNum, 1e-2)
    .option('--weight-decay <list>', "the probe's weight decay; a comma list: chosen on the last 1/6 of the train split", weightDecayList, [1e-4])
    .option('--k <n>', 'neighbours of the kNN classifier', positiveInt, 20)
    .option('--no-knn', 'skip the kNN accuracy (default: kNN is computed)')
    .addOption(new Option('--features <f>', "mean: the mean-pooled final tokens; last4: DINO's linear-eval readout (last 4 blocks, normed, mean-pooled, concatenated); tokens: the whole token map flattened (N·D values, what FAE's adapter reads)").choices([...PROBE_FEATURES]).default('mean'))
    .option('--train-limit <n>', 'use the first N train images (default: all 60000)', positiveInt)
    .option('--test-limit <n>', 'use the first N test images (default: all 10000)', positiveInt)
    .addOption(backendOption('auto'))
    .option('--json', 'print one JSON line', false)
    .action(async (o: { encoder?: string; teacher: boolean; pixels: boolean; features: ProbeFeatures; epochs: number; k: number; knn: boolean; trainLimit?: number; testLimit?: number; backend: string; json: boolean; lr: number; weightDecay: number[] }) => {
      if (!o.encoder && !o.pixels) throw new KilnError('give --encoder <run dir> or --pixels');
      const { backend, reason } = await chooseBackend(o.backend);
      console.error(`backend: ${backend.name} (${reason})`);
      const train = loadFashionMnist('train'), test = loadFashionMnist('test');
      const lim = { trainLimit: o.trainLimit, testLimit: o.testLimit, probe: { epochs: o.epochs, lr: o.lr, weightDecays: o.weightDecay } };
      const t0 = performance.now();
      if (o.pixels) {
        const r = await pixelProbe(backend, train, test, lim);
        const s = (performance.now() - t0) / 1000;
        console.log(o.json ? JSON.stringify({ space: 'pixels', ...r, seconds: s }) : `raw pixels (784-d): linear probe ${(100 * r.linear_probe).toFixed(2)}% test (${(100 * r.linear_probe_train).toFixed(2)}% train)${wdNote(r)}, ${s.toFixed(1)} s`);
        return;
      }
      const { net, state, from } = loadSslEncoder(o.encoder!, o.teacher);
      const r = await evaluateEncoder(backend, net, state, train, test, { ...lim, k: o.k, noKnn: !o.knn, features: o.features });
      const s = (performance.now() - t0) / 1000;
      console.log(o.json ? JSON.stringify({ space: from, ...r, seconds: s })
        : `${from}, ${r.features}-d ${o.features === 'tokens' ? 'token-map' : o.features === 'last4' ? 'last-4-blocks mean-pooled' : 'mean-pooled'} features: linear probe ${(100 * r.linear_probe).toFixed(2)}% test (${(100 * r.linear_probe_train).toFixed(2)}% train)${r.knn === undefined ? '' : `, kNN (k=${o.k}) ${(100 * r.knn).toFixed(2)}%`}${wdNote(r)}, ${s.toFixed(1)} s`);
    });
}

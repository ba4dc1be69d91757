/**
 * @file `kiln train <job.json | job name | ./model.ts>`: resolve and validate the job (flags override
 * its fields), print the resolved config, pick the backend, build the model's training task and run
 * the trainer (runtime/train/trainer.ts) into the run directory.
 */
import { join } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { defaultPrecision } from '../../runtime/compile.ts';
import { makeSchedule } from '../../runtime/schedule.ts';
import { train } from '../../runtime/train/trainer.ts';
import { buildTask } from '../jobs/tasks.ts';
import { makeSource, resolveJob, shippedJobs } from '../jobs/load.ts';
import type { RematMode } from '../../compiler/transforms/remat.ts';
import { backendOption, int, intList, num, positiveInt, precisionOption, rematOption } from '../options.ts';

interface TrainCliOptions {
  job?: string;
  backend?: string;
  precision?: string;
  remat: RematMode | 'auto';
  steps?: number;
  maxSteps?: number;
  epochs?: number;
  batch?: number;
  lr?: number;
  weightDecay?: number;
  seed?: number;
  hidden?: number[];
  data?: string;
  limit?: number;
  out?: string;
  checkpoint?: string;
  checkpointEvery?: number;
  logEvery?: number;
  resume: boolean;
  stopAfter?: number;
  timeLimit?: number;
  set: Array<[string, unknown]>;
}

function setting(v: string, prev: Array<[string, unknown]>): Array<[string, unknown]> {
  const eq = v.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError(`'${v}' is not FIELD=VALUE (e.g. model.encoder.checkpoint=null).`);
  const text = v.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = text; // a bare string
  }
  return [...prev, [v.slice(0, eq), value]];
}

export function register(program: Command): void {
  program.command('train')
    .description('train a model from a job file, a shipped job, or your own model file')
    .argument('<job>', `a job file (jobs/*.json), a shipped job name (${shippedJobs().join(', ')}), or a model file ./my-model.ts`)
    .option('--job <file>', 'with a model file: the job file to train it with (default: its `job` export over Fashion-MNIST defaults)')
    .addOption(backendOption())
    .addOption(precisionOption())
    .addOption(rematOption())
    .option('--steps <n>', "train this many steps (default: the job's steps or epochs)", positiveInt)
    .option('--max-steps <n>', 'same as --steps (default: the job\'s)', positiveInt)
    .option('--epochs <n>', "train this many epochs (default: the job's steps or epochs)", num)
    .option('--batch <n>', "batch size (default: the job's batchSize)", positiveInt)
    .option('--lr <x>', "peak learning rate (default: the job's schedule.lr)", num)
    .option('--weight-decay <x>', "optimizer weight decay (default: the job's)", num)
    .option('--seed <n>', "seed of initialization, shuffling and random ops (default: the job's, 0)", int)
    .option('--hidden <list>', 'mlp: hidden layer widths, e.g. 256,128 (default: the job\'s)', intList)
    .option('--data <dir>', 'Fashion-MNIST folder (data.dir) or image-folder root (data.root) (default: the job\'s)')
    .option('--limit <n>', 'Fashion-MNIST: use only the first N training images (default: all)', positiveInt)
    .option('--out <dir>', 'run directory (default: the job\'s outputDir, else runs/<name>)')
    .option('--checkpoint <dir>', 'same as --out (older spelling) (default: none)')
    .option('--checkpoint-every <n>', "steps between checkpoints (default: the job's intervals.checkpoint, 500)", positiveInt)
    .option('--log-every <n>', "steps between progress lines when not on a terminal (default: the job's intervals.log, 50)", positiveInt)
    .option('--resume', 'continue from the newest valid checkpoint in the run directory', false)
    .option('--set <field=value>', 'set any job field (dot path; the value is JSON, else a string); repeatable, e.g. --set model.encoder.checkpoint=null (default: none)', setting, [])
    .option('--stop-after <n>', 'stop after this step, leaving the run resumable (default: run to the end)', positiveInt)
    .option('--time-limit <s>', 'stop after the step that ends past this many seconds since the start (compiles included; checkpoint saved, resumable; the final evaluation runs too) (default: none)', num)
    .action(async (arg: string, o: TrainCliOptions) => {
      const steps = o.steps ?? o.maxSteps;
      const overrides: Array<[string, unknown]> = [
        ['backend', o.backend], ['precision', o.precision], ['batchSize', o.batch], ['schedule.lr', o.lr], ['optimizer.weightDecay', o.weightDecay],
        ['seed', o.seed], ['model.hidden', o.hidden], ['outputDir', o.out ?? o.checkpoint], ['intervals.checkpoint', o.checkpointEvery],
        ['intervals.log', o.logEvery], ['data.limit', o.limit],
      ];
      overrides.push(...o.set);
      if (steps !== undefined) overrides.push(['steps', steps], ['epochs', null]);
      else if (o.epochs !== undefined) overrides.push(['epochs', o.epochs], ['steps', null]);
      const peek = await resolveJob(arg, { jobFile: o.job, overrides });
      if (o.data) overrides.push([peek.job.data.kind === 'fashion_mnist' ? 'data.dir' : 'data.root', o.data]);
      const { job, file, userModel } = o.data ? await resolveJob(arg, { jobFile: o.job, overrides }) : peek;
      const runDir = job.outputDir ?? join('runs', job.name);
      console.log(`job ${job.name} (${file}), resolved config:\n${JSON.stringify(job, null, 2)}`);
      const { backend, reason } = await chooseBackend(job.backend);
      console.log(`backend: ${backend.name} (${reason}); precision ${job.precision ?? `${defaultPrecision(backend)} (the backend's default)`}`);
      const warn = (s: string) => console.error(`warning: ${s}`);
      const source = makeSource(job, warn);
      const precision = job.precision ?? undefined;
      const { task, summary } = await buildTask({ job, backend, precision, source, log: (s) => console.log(s), warn, userModel });
      const totalSteps = job.steps ?? Math.ceil(job.epochs! * source.batchesPerEpoch);
      const s = job.schedule;
      const schedule = makeSchedule(s.kind === 'constant' ? { kind: 'constant', lr: s.lr } : { kind: s.kind, lr: s.lr, warmup: Math.min(s.warmup, totalSteps), total: totalSteps, minLr: s.minLr });
      console.log(`model: ${summary}; ${task.graph.nodes.length} ops per step; ${totalSteps} steps of ${job.batchSize} (${source.batchesPerEpoch} per epoch); run directory ${runDir}`);
      const r = await train(task, {
        backend, precision, remat: o.remat, totalSteps, schedule, seed: job.seed, runDir, config: job,
        intervals: { log: job.intervals.log, checkpoint: job.intervals.checkpoint, plot: job.intervals.plot, eval: job.intervals.eval ?? undefined, sample: job.intervals.sample ?? undefined },
        keepCheckpoints: job.keepCheckpoints, resume: o.resume, stopAt: o.stopAfter, timeLimitS: o.timeLimit, tty: Boolean(process.stderr.isTTY),
        log: (l) => console.log(l), warn,
      });
      console.log(`done: ${r.steps} steps (${r.steps - r.startStep} in this run), loss ${r.firstLoss.toFixed(4)} → ${r.lastLoss.toFixed(4)}, ${r.seconds.toFixed(1)} s` +
        `${Object.keys(r.evals).length ? `; ${Object.entries(r.evals).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}` : ''}; outputs in ${runDir}`);
    });
}

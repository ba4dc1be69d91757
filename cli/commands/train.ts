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
import { CudaDriver } from '../../backends/cuda/driver.ts';
import { parallelEnv, pinLocalGpu } from '../../runtime/parallel/env.ts';
import { launchRanks } from '../../runtime/parallel/launch.ts';
import { ncclCandidates } from '../../runtime/parallel/ncclLibrary.ts';
import { perRankBatch, shardSource } from '../../runtime/parallel/shard.ts';
import { ParallelError, TcpGroup } from '../../runtime/parallel/tcpGroup.ts';
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
  gpus?: number;
  set: Array<[string, unknown]>;
}

export function setting(v: string, prev: Array<[string, unknown]>): Array<[string, unknown]> {
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
    .option('--gpus <n>', 'data parallel: start N processes, one GPU each (NCCL on cuda; on cpu/kernel-cpu N processes over TCP); the batch is the global one, each rank gets batch/N; see docs/data-parallel.md for the environment form of external launchers and several hosts (default: 1, no data parallelism)', positiveInt)
    .option('--time-limit <s>', 'stop after the step that ends past this many seconds since the start (compiles included; checkpoint saved, resumable; the final evaluation runs too) (default: none)', num)
    .action(async (arg: string, o: TrainCliOptions) => {
      const dp = parallelEnv();
      if (dp && o.gpus !== undefined && o.gpus !== dp.worldSize) throw new ParallelError(`world size mismatch: --gpus ${o.gpus} but KILN_WORLD_SIZE=${dp.worldSize} (give one or the other)`);
      if (!dp && o.gpus !== undefined && o.gpus > 1) {
        const visible = CudaDriver.deviceCount();
        if (visible > 0 && visible < o.gpus && o.backend !== 'cpu' && o.backend !== 'kernel-cpu' && o.backend !== 'wgsl')
          throw new ParallelError(`--gpus ${o.gpus}: this machine has ${visible} CUDA GPU${visible > 1 ? 's' : ''} (use --gpus ${visible} or fewer, or --backend cpu for N CPU processes)`);
        process.exitCode = await launchRanks(o.gpus);
        return;
      }
      if (dp) pinLocalGpu(dp);
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
      const lead = !dp || dp.rank === 0;
      if (lead) console.log(`job ${job.name} (${file}), resolved config:\n${JSON.stringify(job, null, 2)}`);
      const { backend, reason } = await chooseBackend(job.backend);
      const say = lead ? (s: string) => console.log(s) : () => {};
      say(`backend: ${backend.name} (${reason}); precision ${job.precision ?? `${defaultPrecision(backend)} (the backend's default)`}`);
      const warn = (s: string) => console.error(`warning: ${s}`);
      // Data parallel: the job's batch is the global one; this rank builds its program for batch/N and reads its shard.
      const rankJob = dp ? { ...job, batchSize: perRankBatch(job.batchSize, dp.worldSize) } : job;
      const source = dp ? shardSource(makeSource(rankJob, warn), dp.rank, dp.worldSize) : makeSource(job, warn);
      const precision = job.precision ?? undefined;
      const group = dp ? await TcpGroup.open({ rank: dp.rank, worldSize: dp.worldSize, address: dp.rendezvous, timeoutMs: dp.timeoutMs }) : undefined;
      // A failed group ends this rank even where it is not waiting on the group (e.g. inside a device collective).
      group?.onFailure((e) => setTimeout(() => {
        console.error(`error: ${e.message}`);
        process.exit(1);
      }, 2000).unref());
      const { task, summary } = await buildTask({ job: rankJob, backend, precision, source, log: say, warn, userModel });
      const totalSteps = job.steps ?? Math.ceil(job.epochs! * source.batchesPerEpoch);
      const s = job.schedule;
      const schedule = makeSchedule(s.kind === 'constant' ? { kind: 'constant', lr: s.lr } : { kind: s.kind, lr: s.lr, warmup: Math.min(s.warmup, totalSteps), total: totalSteps, minLr: s.minLr });
      say(`model: ${summary}; ${task.graph.nodes.length} ops per step; ${totalSteps} steps of ${job.batchSize}${dp ? ` (${rankJob.batchSize} on each of ${dp.worldSize} ranks)` : ''} (${source.batchesPerEpoch} per epoch); run directory ${runDir}`);
      const parallel = group && dp ? { group, checkEvery: dp.checkEvery, gradDtype: dp.gradDtype, ncclCandidates: backend.name === 'cuda' ? ncclCandidates() : undefined } : undefined;
      const r = await train(task, {
        parallel,
        backend, precision, remat: o.remat, totalSteps, schedule, seed: job.seed, runDir, config: job,
        intervals: { log: job.intervals.log, checkpoint: job.intervals.checkpoint, plot: job.intervals.plot, eval: job.intervals.eval ?? undefined, sample: job.intervals.sample ?? undefined },
        keepCheckpoints: job.keepCheckpoints, resume: o.resume, stopAt: o.stopAfter, timeLimitS: o.timeLimit, tty: Boolean(process.stderr.isTTY),
        log: (l) => console.log(l), warn,
      }).finally(() => group?.close());
      if (!lead) return;
      console.log(`done: ${r.steps} steps (${r.steps - r.startStep} in this run), loss ${r.firstLoss.toFixed(4)} → ${r.lastLoss.toFixed(4)}, ${r.seconds.toFixed(1)} s` +
        `${Object.keys(r.evals).length ? `; ${Object.entries(r.evals).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}` : ''}; outputs in ${runDir}`);
    });
}

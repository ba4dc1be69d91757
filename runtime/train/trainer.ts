/**
 * @file The training loop shared by every job: a compiled training step in a Session, batches from a
 * prefetching loader, the learning-rate schedule, run checkpoints, progress, metrics.jsonl, the loss
 * plot, and hooks for samples and evaluation at the job's intervals.
 *
 * Determinism: everything a step consumes is a function of the step number — the batch (epoch and
 * index from the step, the epoch's order from the seed), the learning rate, and the graph's random
 * seed input `rng_seed` = [seed, step]. So a run resumed from a checkpoint (exact parameters,
 * optimizer moments, EMA, step) computes the same losses, bit for bit, as an uninterrupted one on
 * the same backend. On resume, metrics.jsonl is cut back to the checkpoint's step.
 *
 * Run directory: config.json (the resolved job), metrics.jsonl (one JSON object per step),
 * loss.png, checkpoints/step-N/, samples/ (from the sample hook).
 *
 * Alternating updates (a GAN): a task may carry an `adversary`, a second training program with its own
 * parameters and optimizer state in its own Session (the stage-Ib discriminator). Each step runs the
 * main step, then one adversary step on the same batch, fed from the main step's outputs (e.g. the
 * reconstructions, which reach it as data: detached), then copies the adversary's new parameters into
 * the main session (the main program reads them: D(x̂) in the generator loss), so the main step of
 * step s+1 sees the adversary updated at step s, as with taming-transformers' alternating optimizers. Both
 * steps of step s see the same (G_s, D_s); taming's Lightning loop recomputes x̂ with G_{s+1} for the
 * discriminator step; Kiln reuses the generator step's x̂ (no second generator forward pass).
 * Checkpoints hold both: the adversary's parameters in model.safetensors under their own keys (they
 * must not collide with the main model's), its optimizer state in train_state.safetensors under
 * `adversary.` (e.g. `adversary.optim.step`), so a resumed run continues both bit for bit.
 *
 * Data parallelism (`parallel`, runtime/parallel/): this process is one rank of several; its source
 * gives its shard of each global batch (runtime/parallel/shard.ts) and the step is a ParallelSession
 * (gradients averaged over the ranks, the same update everywhere). Rank 0 alone writes the run
 * directory (config, metrics, plots, checkpoints), logs, and runs the sample and eval hooks; on resume
 * it reads the checkpoint and its step and state reach every rank (so a run resumes on any number of
 * ranks with the same global batch). Programs that draw random numbers get `rng_seed` = [seed + rank ·
 * 0x9e3779b9, step] (rank 0's is the single-process stream): each rank draws its own noise, as with
 * PyTorch DDP. A time limit is decided collectively (every rank stops after the same step).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../../backends/backend.ts';
import { KilnError } from '../../ir/errors.ts';
import type { Graph } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { joinResident, splitResident } from '../checkpoint.ts';
import { type RunState, loadLatestCheckpoint, saveRunCheckpoint } from '../checkpoints.ts';
import type { RematSummary } from '../../compiler/compile.ts';
import type { RematMode } from '../../compiler/transforms/remat.ts';
import type { Precision } from '../compile.ts';
import { Prefetcher } from '../data/prefetch.ts';
import type { BatchSource, SourceBatch } from '../data/source.ts';
import type { Schedule } from '../schedule.ts';
import { Session, type StepSession } from '../session.ts';
import { type ParallelContext, ParallelSession } from '../parallel/session.ts';
import { writeLossPlot } from './lossPlot.ts';
import { Progress } from './progress.ts';

export interface TrainTask {
  /** The training step (an `lr` data input; `rng_seed` when it draws random numbers). */
  graph: Graph;
  /** Initial values of resident inputs (parameters; optimizer state defaults to zero, EMA to the parameters). */
  initial: ReadonlyMap<string, HostTensor>;
  /** Names of the model's parameters (checkpoint model.safetensors keys). */
  paramNames: readonly string[];
  source: BatchSource;
  /** The step's data feeds from a batch (lr and rng_seed are added by the trainer). */
  feeds(batch: SourceBatch, step: number): Promise<Record<string, HostTensor>> | Record<string, HostTensor>;
  /** Outputs fetched each step, the loss first. */
  outputs: readonly string[];
  /** Called every `intervals.sample` steps with the session (write PNGs under dir). */
  sample?(session: StepSession, step: number, dir: string): Promise<void>;
  /** Called every `intervals.eval` steps and at the end; returns named metrics. */
  evaluate?(session: StepSession, step: number): Promise<Record<string, number>>;
  /** String metadata written into every checkpoint (e.g. `latent_stats`, which `kiln sample` reads). */
  meta?: Readonly<Record<string, string>>;
  /** A program trained in alternation with this one (a GAN's discriminator). */
  adversary?: AdversaryTask;
}

/** A second program trained in alternation with the task's (see the file comment). */
export interface AdversaryTask {
  /** Its training step (an `lr` input, fed from the same schedule; `rng_seed` when it draws random numbers). */
  graph: Graph;
  /** Initial values of its resident inputs (its parameters). */
  initial: ReadonlyMap<string, HostTensor>;
  /** Its parameters: saved in model.safetensors, copied into the main session after each of its steps. */
  paramNames: readonly string[];
  /** Main-step outputs its feeds read (fetched from every main step). */
  fromMain: readonly string[];
  /** Its data feeds from the batch and the main step's outputs (lr and rng_seed are added by the trainer). */
  feeds(batch: SourceBatch, step: number, main: Readonly<Record<string, HostTensor>>): Record<string, HostTensor>;
  /** Scalar outputs fetched each step, its loss first; logged as metrics under `metricPrefix`. */
  outputs: readonly string[];
  metricPrefix: string;
}

/** The train-state prefix of the adversary's optimizer state in a checkpoint. */
export const ADVERSARY_STATE_PREFIX = 'adversary.';

export interface TrainOptions {
  backend: Backend;
  precision?: Precision;
  /** Rematerialization of the step (compileOn's `remat`; default the compiler's). */
  remat?: RematMode | 'auto';
  totalSteps: number;
  schedule: Schedule;
  seed: number;
  runDir: string;
  /** The resolved job (written to config.json and into every checkpoint). */
  config: unknown;
  intervals: { log: number; checkpoint: number; sample?: number; eval?: number; plot?: number };
  keepCheckpoints: number;
  resume?: boolean;
  /** Stop after this step (a partial run; the run stays resumable). */
  stopAt?: number;
  /** Stop after the step that ends past this many seconds of training (a partial run, like stopAt). */
  timeLimitS?: number;
  prefetch?: number;
  tty?: boolean;
  log?: (line: string) => void;
  warn?: (line: string) => void;
  /** Train as one rank of a data-parallel job (see the file comment). */
  parallel?: ParallelContext;
}

export interface TrainResult {
  steps: number;
  startStep: number;
  losses: number[];
  firstLoss: number;
  lastLoss: number;
  dataMs: number;
  stepMs: number;
  evals: Record<string, number>;
  seconds: number;
}

interface MetricLine {
  step: number;
  loss: number;
  [k: string]: number;
}

export async function train(task: TrainTask, o: TrainOptions): Promise<TrainResult> {
  const par = o.parallel;
  const rank = par?.group.rank ?? 0;
  const lead = rank === 0;
  const quiet = () => {};
  const log = lead ? (o.log ?? ((s: string) => console.log(s))) : quiet;
  const warn = o.warn ?? ((s: string) => console.error(`warning: ${par ? `[rank ${rank}] ` : ''}${s}`));
  const started = performance.now();
  if (par && task.adversary) throw Object.assign(new KilnError('data-parallel training of a job with an adversary (the stage-Ib discriminator) is not implemented yet: train it on one GPU'), { name: 'NotImplementedError' });
  if (lead) {
    mkdirSync(o.runDir, { recursive: true });
    writeFileSync(join(o.runDir, 'config.json'), `${JSON.stringify(o.config, null, 2)}\n`);
  }
  const ckRoot = join(o.runDir, 'checkpoints');
  const metricsPath = join(o.runDir, 'metrics.jsonl');
  const perEpoch = task.source.batchesPerEpoch;

  const adv = task.adversary;
  const advParams = new Set(adv?.paramNames ?? []);
  for (const n of task.paramNames) if (advParams.has(n)) throw new KilnError(`train: parameter '${n}' belongs to both the model and its adversary`);
  let initial = task.initial;
  let advInitial = adv?.initial;
  let step = 0;
  if (o.resume && lead) {
    const found = loadLatestCheckpoint(ckRoot, warn);
    if (found) {
      const all = joinResident(found.checkpoint);
      initial = new Map([...all].filter(([k]) => !k.startsWith(ADVERSARY_STATE_PREFIX)));
      if (adv) {
        const missing = adv.paramNames.filter((n) => !all.has(n));
        if (missing.length) throw new KilnError(`${found.dir}: the checkpoint has no adversary parameters (${missing.slice(0, 3).join(', ')}...): it was not written by this job`);
        advInitial = new Map([
          ...adv.paramNames.map((n) => [n, all.get(n)!] as const),
          ...[...all].filter(([k]) => k.startsWith(ADVERSARY_STATE_PREFIX)).map(([k, v]) => [k.slice(ADVERSARY_STATE_PREFIX.length), v] as const),
        ]);
      }
      step = found.state.step;
      log(`resuming from ${found.dir} at step ${step} (epoch ${found.state.epoch}, batch ${found.state.batchInEpoch})`);
    } else log(`no checkpoint under ${ckRoot}: starting from step 0`);
  }
  if (par && par.group.worldSize > 1) {
    // rank 0's step (from its checkpoint) on every rank; its parameters and state follow when the session opens
    const s = new Float32Array([step]);
    await par.group.broadcast(s, 0);
    step = s[0]!;
  }
  // metrics.jsonl holds exactly the steps before `step` (a killed run may have logged steps past its last checkpoint).
  const history: MetricLine[] = [];
  if (lead && existsSync(metricsPath) && step > 0)
    for (const line of readFileSync(metricsPath, 'utf8').split('\n'))
      if (line.trim()) {
        try {
          const m = JSON.parse(line) as MetricLine;
          if (m.step <= step) history.push(m);
        } catch { /* a line cut by a crash */ }
      }
  if (lead) writeFileSync(metricsPath, history.map((m) => `${JSON.stringify(m)}\n`).join(''));

  const onRemat = (r: RematSummary) => {
    if (r.recomputedNodes || r.reason) log(`remat: ${r.mode}${r.reason ? ` (${r.reason})` : ''}: ${r.recomputedNodes} nodes recomputed, extra ${(r.extraFlops / 1e9).toFixed(2)} GFLOP per step`);
  };
  // The loader starts before the step compiles: image folders decode in worker processes meanwhile
  // (one turn of the event loop posts the first loads before a synchronous compile can block it).
  const loader = new Prefetcher(task.source, { epoch: Math.floor(step / perEpoch), batch: step % perEpoch }, o.prefetch);
  await new Promise<void>((r) => setImmediate(r));
  let session: StepSession;
  try {
    const copts = { precision: o.precision, remat: o.remat, onRemat };
    if (par) {
      const ps = await ParallelSession.open(o.backend, task.graph, initial, copts, par);
      log(`data parallel: rank ${rank} of ${par.group.worldSize}, ${ps.describe}`);
      session = ps;
    } else session = await Session.open(o.backend, task.graph, initial, copts);
  } catch (e) {
    await loader.close();
    throw e;
  }
  const advSession = adv ? await Session.open(o.backend, adv.graph, advInitial!, { precision: o.precision, remat: o.remat, onRemat }) : undefined;
  // The adversary parameters the main program reads (copied into it after every adversary step).
  const synced = adv ? adv.paramNames.filter((n) => task.graph.inputByName(n)) : [];
  const hasRng = Boolean(task.graph.inputByName('rng_seed'));
  const advRng = Boolean(adv?.graph.inputByName('rng_seed'));
  const runState = (s: number): RunState => ({ step: s, epoch: Math.floor(s / perEpoch), batchInEpoch: s % perEpoch, rng: { seed: o.seed, counter: s } });
  const save = async () => {
    const main = await session.read();
    for (const n of advParams) main.delete(n);
    const c = { ...splitResident(main, task.paramNames), meta: { ...task.meta } };
    if (advSession)
      for (const [k, v] of await advSession.read()) {
        if (advParams.has(k)) c.model.set(k, v);
        else c.trainState.set(ADVERSARY_STATE_PREFIX + k, v);
      }
    saveRunCheckpoint(ckRoot, c, runState(step), o.config, o.keepCheckpoints);
  };
  const plot = async () => {
    const names = [...task.outputs, ...(adv ? adv.outputs.map((n) => adv.metricPrefix + n) : [])];
    await writeLossPlot(join(o.runDir, 'loss.png'), names.map((n) => ({ name: n, points: history.filter((m) => n in m).map((m) => [m.step, m[n]!] as const) })), { title: 'training' });
  };

  const end = Math.min(o.totalSteps, o.stopAt ?? Infinity);
  const progress = new Progress(step, { tty: o.tty ?? false, every: o.intervals.log, write: (s) => process.stderr.write(s), log });
  const losses: number[] = [];
  const evals: Record<string, number> = {};
  // The steps each hook last ran at: the final call after the loop does not repeat the last step's.
  let sampledAt = -1, evaluatedAt = -1;
  const runHooks = async (s: number, final: boolean) => {
    if (task.sample && o.intervals.sample && sampledAt !== s && (s % o.intervals.sample === 0 || final)) {
      sampledAt = s;
      mkdirSync(join(o.runDir, 'samples'), { recursive: true });
      await task.sample(session, s, join(o.runDir, 'samples'));
    }
    if (task.evaluate && evaluatedAt !== s && ((o.intervals.eval && s % o.intervals.eval === 0) || final)) {
      evaluatedAt = s;
      Object.assign(evals, await task.evaluate(session, s));
      progress.log(`eval at step ${s}: ${Object.entries(evals).map(([k, v]) => `${k} ${v.toPrecision(5)}`).join('  ')}`);
    }
  };
  let timedOut = false;
  try {
    while (step < end) {
      const { batch, waitMs } = await loader.next();
      const t0 = performance.now();
      const feeds: Record<string, HostTensor> = { ...(await task.feeds(batch, step)), lr: hostTensor('f32', [], [o.schedule(step)]) };
      if (hasRng) feeds.rng_seed = hostTensor('u32', [2], [(o.seed + rank * 0x9e3779b9) >>> 0, step >>> 0]);
      const out = await session.run(feeds, adv ? [...new Set([...task.outputs, ...adv.fromMain])] : task.outputs);
      let advOut: Record<string, HostTensor> | undefined;
      if (adv && advSession) {
        const af: Record<string, HostTensor> = { ...adv.feeds(batch, step, out), lr: feeds.lr! };
        if (advRng) af.rng_seed = hostTensor('u32', [2], [o.seed >>> 0, step >>> 0]);
        advOut = await advSession.run(af, adv.outputs);
        const dLoss = advOut[adv.outputs[0]!]!.data[0]!;
        if (!Number.isFinite(dLoss)) throw new KilnError(`training diverged at step ${step}: adversary ${adv.outputs[0]} = ${dLoss}`);
        const weights = new Map<string, HostTensor>();
        for (const n of synced) weights.set(n, await advSession.exe.read(n));
        if (weights.size) await session.load(weights);
      }
      const stepMs = performance.now() - t0;
      const loss = out[task.outputs[0]!]!.data[0]!;
      if (!Number.isFinite(loss)) throw new KilnError(`training diverged at step ${step}: ${task.outputs[0]} = ${loss}`);
      step++;
      const line: MetricLine = { step, loss, lr: o.schedule(step - 1), data_ms: +waitMs.toFixed(3), step_ms: +stepMs.toFixed(3) };
      for (const n of task.outputs.slice(1)) if (out[n]!.data.length === 1) line[n] = Number(out[n]!.data[0]);
      if (adv && advOut) for (const n of adv.outputs) if (advOut[n]!.data.length === 1) line[adv.metricPrefix + n] = Number(advOut[n]!.data[0]);
      history.push(line);
      losses.push(loss);
      if (lead) {
        appendFileSync(metricsPath, `${JSON.stringify(line)}\n`);
        progress.update({ step, total: o.totalSteps, loss, dataMs: waitMs, stepMs });
        if (step % o.intervals.checkpoint === 0) await save();
        if (o.intervals.plot && step % o.intervals.plot === 0) await plot();
        await runHooks(step, false);
      }
      let overTime = o.timeLimitS !== undefined && (performance.now() - started) / 1000 >= o.timeLimitS;
      if (par && o.timeLimitS !== undefined && par.group.worldSize > 1) {
        const f = new Float32Array([overTime ? 1 : 0]);
        await par.group.allReduce(f, 'sum');
        overTime = f[0]! > 0;
      }
      if (overTime) {
        timedOut = true;
        log(`time limit of ${o.timeLimitS} s reached after step ${step} of ${o.totalSteps}`);
        break;
      }
    }
    progress.finish();
    if (lead) {
      if (step % o.intervals.checkpoint !== 0) await save();
      await plot();
      if (step === o.totalSteps || timedOut) await runHooks(step, true);
    }
    const { dataMs, stepMs } = progress.means;
    log(`data ${dataMs.toFixed(2)} ms vs step ${stepMs.toFixed(2)} ms per step (mean over ${losses.length} steps): ${dataMs < 0.1 * stepMs ? 'the device did not wait for data' : 'data loading is a bottleneck'}`);
    return {
      steps: step, startStep: step - losses.length, losses, firstLoss: losses[0] ?? NaN, lastLoss: losses.at(-1) ?? NaN,
      dataMs, stepMs, evals, seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await loader.close();
    session.dispose();
    advSession?.dispose();
  }
}

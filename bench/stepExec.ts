/**
 * @file Benchmark of CUDA step execution (issue 11): for each PROGRAM:BATCH, the training step compiled
 * as a user gets it (runtime compileOn: bf16 autocast on cuda), then
 *  - captured: wall time per step of `run()` without fetches (one cuGraphLaunch each), N steps, then one sync;
 *  - uncaptured: the same steps with every kernel launched from the host (graphs: false executable
 *    path, timed the same way);
 *  - kernel sum: the sum over kernels of each kernel's device time alone (a CUDA graph of 10 launches of
 *    the kernel, timed with events: no host gaps; operands warm in L2), and the cold-L2 sum (each kernel
 *    once after a 512 MiB copy has evicted L2, mean of 3), and the host-launched step's GPU timeline
 *    (an event after every launch: each kernel's time inside the step, plus its gap);
 *  - launch overhead: (uncaptured − captured) per step, and per launch;
 *  - memory: the device plan's total (parameters, state, io, arena) and the measured cuMemGetInfo delta.
 * A spec is PROGRAM:BATCH or PROGRAM:BATCH:REMAT (REMAT off|fused|cheap|blocks|auto: compileOn's `remat`; else
 * KILN_REMAT, else compileOn's default; the JSON line's `remat` says what it did, when the compiler ran).
 * With kernel times, `largestGaps` / `gapByKindMs`: each kernel's time inside the step (timeline) minus its
 * time alone, the largest and per kind. `startedAt` / `endedAt` (epoch ms) place the run in an nvidia-smi log.
 * Prints one JSON line per program.
 *
 *   tsx bench/stepExec.ts lightningdit:1 lightningdit:128
 *   tsx bench/stepExec.ts --build-only lightningdit:128     (compile only: fills the program and CUBIN caches)
 *   tsx bench/stepExec.ts --steps=3 --no-kernel-times lightningdit:128   (fewer steps; no per-kernel times)
 *   tsx bench/stepExec.ts --quick --steps=1 lightningdit_xl:64   (memory, first run and the captured step only)
 *   tsx bench/stepExec.ts --quick --steps=3 lightningdit_xl:64:off lightningdit_xl:64:cheap   (remat off vs cheap)
 *   tsx bench/stepExec.ts tarflow_sample:64   (a TarFlow sampling step and a whole sample: benchTarflow)
 */
import { CudaDriver } from '../backends/cuda/driver.ts';
import { type CudaExecutable, createCudaBackend } from '../backends/cuda/executable.ts';
import { buildProgram } from '../cli/programs.ts';
import type { Kernel } from '../ir/kernel/types.ts';
import { hostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';
import { cudaOptionsFromEnv } from '../runtime/backends.ts';
import { compileOn } from '../runtime/compile.ts';
import { TarFlow, TarFlowSampler, blockStepGraph, tarflowConfigs } from '../models/tarflow.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { feedsFor } from './feeds.ts';

const SIZES: Record<string, string | undefined> = { block: '768x12x256', lightningdit: 'B/1', lightningdit_xl: 'XL/1', mlp: undefined };

type Remat = 'off' | 'fused' | 'cheap' | 'blocks' | 'auto';
/** compileOn's remat option: the spec's third field (`lightningdit_xl:64:off`), else KILN_REMAT, else compileOn's default. */
const rematOption = (fromSpec?: string) => {
  const m = fromSpec || process.env.KILN_REMAT;
  return m ? { remat: m as Remat } : {};
};
/** A progress line on stderr (a killed run still says how far it got). */
const progress = (spec: string, what: string) => process.stderr.write(`[stepExec ${new Date().toISOString().slice(11, 23)}] ${spec}: ${what}\n`);

const MiB = (n: number) => Math.round(n / 2 ** 20);

/** n values cos(k·0.11)·0.02 over a period of 4096 (filled by doubling copies: fast for 10^8 values). */
function pattern(n: number): Float32Array {
  const a = new Float32Array(n);
  const p = Math.min(n, 4096);
  for (let k = 0; k < p; k++) a[k] = Math.cos(k * 0.11) * 0.02;
  for (let len = p; len < n; len *= 2) a.copyWithin(len, 0, Math.min(len, n - len));
  return a;
}

/** A kernel in a few words: a matmul's shape and schedule, a loop kernel's grid. */
function describe(k: Kernel): string {
  if (k.kind === 'matmul') return `matmul m=${k.m} n=${k.n} k=${k.k} batch=${k.batch.join('x') || '-'} ${k.tile ? `${k.tile.provider} ${k.tile.block.m}x${k.tile.block.n}x${k.tile.block.k}` : 'simt'} epilogue ${k.epilogue.length}`;
  if (k.kind === 'loop') return `loop grid=${k.grid.join('x')}`;
  return `${k.kind} sq=${k.sq} sk=${k.sk}`;
}
const STEPS = ((a) => (a ? Number(a.slice('--steps='.length)) : undefined))(process.argv.find((a) => a.startsWith('--steps=')));
/** --quick: the first run, then the captured step only (with --steps=1: three steps in all), no kernel times. */
const QUICK = process.argv.includes('--quick');
const KERNEL_TIMES = !QUICK && !process.argv.includes('--no-kernel-times');

async function bench(spec: string): Promise<Record<string, unknown>> {
  const [name, b, rematSpec] = spec.split(':') as [string, string, string | undefined];
  const batch = Number(b);
  const startedAt = Date.now();
  progress(spec, 'trace');
  const program = name === 'lightningdit_xl' ? 'lightningdit' : name;
  const graph = buildProgram(program, { train: true, batch, size: SIZES[name] });
  const cuda = CudaDriver.get(cudaOptionsFromEnv().libDir);
  cuda.synchronize();
  const before = cuda.memInfo().free;
  const t0 = performance.now();
  let remat: Record<string, unknown> | undefined;
  progress(spec, 'compile');
  const exe = (await compileOn(createCudaBackend({ ...cudaOptionsFromEnv(), graphs: true }), graph, {
    ...rematOption(rematSpec),
    onRemat: (r) => { remat = { mode: r.mode, reason: r.reason, recomputedNodes: r.recomputedNodes, extraGFlops: Number((r.extraFlops / 1e9).toFixed(1)), keptMiB: MiB(r.keptBytesAfter) }; },
  })) as CudaExecutable;
  const buildMs = performance.now() - t0;
  const measured = before - cuda.memInfo().free;
  progress(spec, `built in ${Math.round(buildMs)} ms; writing resident inputs`);
  // Resident inputs one at a time (XL/1 holds 675M parameters and twice as much state): parameters and
  // their EMA a small repeating pattern, other state zeros (runtime/session.ts defaultResident's rule).
  // The values go to the device as they are (f32 typed arrays: no per-element copy; window 1 of 2026-12-02
  // spent 12.6 s writing XL/1's 10 GB with a copy per value).
  for (const i of graph.inputs) {
    if (i.kind === 'data') continue;
    const n = numel(i.type.shape);
    const isParam = i.kind !== 'state' || (i.name.startsWith('ema.') && graph.inputByName(i.name.slice(4)) !== undefined);
    const value = i.type.dtype === 'f32' ? { dtype: i.type.dtype, shape: i.type.shape, data: isParam ? pattern(n) : new Float32Array(n) } : hostTensor(i.type.dtype, i.type.shape, isParam ? pattern(n) : undefined);
    await exe.write(i.name, value);
  }
  const feeds = feedsFor(graph);
  const steps = STEPS ?? (batch >= 64 ? 10 : 50);
  const wall = async (fn: () => Promise<unknown> | void) => {
    for (let i = 0; i < Math.min(3, steps); i++) await fn();
    exe.sync();
    const t = performance.now();
    for (let i = 0; i < steps; i++) await fn();
    exe.sync();
    return (performance.now() - t) / steps;
  };
  const errors: string[] = [];
  const attempt = async <T>(what: string, fn: () => Promise<T> | T): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      errors.push(`${what}: ${(e as Error).message.split('\n')[0]}`);
      return undefined;
    }
  };
  progress(spec, 'steps');
  const loss0 = await attempt('first run', async () => (await exe.run(feeds, ['loss'])).loss!.data[0]); // host launches
  const uncapturedMs = QUICK ? undefined : await attempt('uncaptured', () => wall(() => exe.launchStep()));
  const uncapturedDeviceMs = QUICK ? undefined : await attempt('uncaptured device', () => exe.timeSteps(steps, true));
  const capturedMs = await attempt('captured', () => wall(() => exe.run(feeds, [])));
  const capturedDeviceMs = QUICK ? undefined : await attempt('captured device', () => exe.timeSteps(steps));
  const fetchMs = QUICK ? undefined : await attempt('fetch', () => wall(() => exe.run(feeds, ['loss'])));
  progress(spec, 'kernel times');
  const kt = KERNEL_TIMES ? await attempt('kernel times', () => exe.kernelTimes(10)) : undefined;
  const kernelSumMs = kt?.reduce((s, k) => s + k.ms, 0);
  const flushBytes = 512 * 2 ** 20;
  const cold = KERNEL_TIMES ? await attempt('cold kernel times', () => {
    const ptr = cuda.alloc(flushBytes); // the benchmark's own L2-eviction region, outside the executable's plan
    try {
      return exe.kernelTimes(3, { ptr, bytes: flushBytes });
    } finally {
      cuda.free(ptr);
    }
  }) : undefined;
  const kernelSumColdMs = cold?.reduce((s, k) => s + k.ms, 0);
  const tl = KERNEL_TIMES ? await attempt('timeline', () => (exe.timeline(), exe.timeline())) : undefined;
  const timelineMs = tl?.reduce((s, l) => s + l.ms, 0);
  // Where the step's time goes beyond the kernels alone: each kernel's time inside the (host-launched,
  // event-marked) step minus its L2-warm time alone; the largest gaps, and the gaps summed per kind.
  const inStep = tl ? tl.reduce((a, l) => ((a[l.kernel] += l.ms), a), exe.program.kernels.map(() => 0)) : undefined;
  const gaps = inStep && kt ? inStep.map((ms, i) => ({ i, ms, alone: kt[i]!.ms, cold: cold?.[i]?.ms, gap: ms - kt[i]!.ms })) : undefined;
  const m = exe.memory;
  const launches = exe.launchCount;
  const r3 = (x: number | undefined) => (x === undefined ? undefined : +x.toFixed(3));
  const out = {
    program: name, batch, rematAsked: rematOption(rematSpec).remat ?? 'default', remat, kernels: exe.program.kernels.length, launches, graphNodes: exe.captured?.nodes, buildMs: Math.round(buildMs),
    capturedMs: r3(capturedMs), capturedDeviceMs: r3(capturedDeviceMs), uncapturedMs: r3(uncapturedMs), uncapturedDeviceMs: r3(uncapturedDeviceMs),
    fetchLossMs: r3(fetchMs), kernelSumMs: r3(kernelSumMs), capturedOverKernelSum: capturedMs && kernelSumMs ? r3(capturedMs / kernelSumMs) : undefined,
    kernelSumColdMs: r3(kernelSumColdMs), capturedOverColdSum: capturedMs && kernelSumColdMs ? r3(capturedMs / kernelSumColdMs) : undefined,
    timelineMs: r3(timelineMs), capturedDeviceOverTimeline: capturedDeviceMs && timelineMs ? r3(capturedDeviceMs / timelineMs) : undefined,
    launchOverheadMs: capturedMs && uncapturedMs ? r3(uncapturedMs - capturedMs) : undefined,
    perLaunchUs: capturedMs && uncapturedMs ? +(((uncapturedMs - capturedMs) / launches) * 1000).toFixed(2) : undefined,
    planMiB: MiB(m.total), parametersMiB: MiB(m.parameters), stateMiB: MiB(m.state), ioMiB: MiB(m.io), arenaMiB: MiB(m.arena), extraMiB: MiB(m.extraBytes),
    measuredMiB: MiB(measured), updatesInPlace: m.updatesInPlace, updatesCopied: m.updatesCopied, loss0, device: cuda.name, errors, captureError: exe.captureError,
    slowest: kt ? kt.map((k, i) => ({ ...k, i })).sort((a, b) => b.ms - a.ms).slice(0, 6).map((k) => `${k.name} ${describe(exe.program.kernels[k.i]!)} ${k.ms.toFixed(3)}`) : undefined,
    byKindMs: kt ? Object.fromEntries(Object.entries(kt.reduce<Record<string, number>>((a, k) => ((a[k.kind] = (a[k.kind] ?? 0) + k.ms), a), {})).map(([k, v]) => [k, r3(v)])) : undefined,
    byKindColdMs: cold ? Object.fromEntries(Object.entries(cold.reduce<Record<string, number>>((a, k) => ((a[k.kind] = (a[k.kind] ?? 0) + k.ms), a), {})).map(([k, v]) => [k, r3(v)])) : undefined,
  };
  const withGaps = {
    ...out,
    largestGaps: gaps ? [...gaps].sort((a, b) => b.gap - a.gap).slice(0, 10).map((g) => `${exe.program.kernels[g.i]!.name} ${describe(exe.program.kernels[g.i]!)}: in step ${g.ms.toFixed(3)} alone ${g.alone.toFixed(3)} cold ${g.cold?.toFixed(3)}`) : undefined,
    gapByKindMs: gaps ? Object.fromEntries(Object.entries(gaps.reduce<Record<string, number>>((a, g) => ((a[exe.program.kernels[g.i]!.kind] = (a[exe.program.kernels[g.i]!.kind] ?? 0) + g.gap), a), {})).map(([k, v]) => [k, r3(v)])) : undefined,
    startedAt, endedAt: Date.now(),
  };
  exe.dispose();
  progress(spec, 'done');
  return withGaps;
}

/**
 * A TarFlow sampling step (`tarflow_sample:BATCH[:PRESET]`, default faeLatentP1; issue 11 item 7): the
 * KV-cached step program of the block that runs first (the last in forward order: STARFlow's deep
 * block), compiled cold (empty program and CUBIN caches) and warm (the same again); its plan and the
 * measured cuMemGetInfo delta; the step as the sampler runs it (feeds token, pos, labels; fetches scale
 * and shift), without fetches, and on the device (one JSON line); then a whole sample (every block, every
 * token) with the sampler through the warm caches (a second line).
 */
async function benchTarflow(spec: string): Promise<Record<string, unknown>> {
  const [, b, preset = 'faeLatentP1'] = spec.split(':') as [string, string, string | undefined];
  const batch = Number(b);
  const startedAt = Date.now();
  const cfg = tarflowConfigs[preset as keyof typeof tarflowConfigs];
  if (!cfg) throw new Error(`tarflow_sample: unknown preset '${preset}' (${Object.keys(tarflowConfigs).join(', ')})`);
  const flow = new TarFlow(cfg);
  const k = flow.blocks.length - 1;
  const graph = blockStepGraph(flow, k, { batch });
  const cuda = CudaDriver.get(cudaOptionsFromEnv().libDir);
  const dir = mkdtempSync(join(tmpdir(), 'kiln-tarflow-bench-'));
  const backend = createCudaBackend({ ...cudaOptionsFromEnv(), cacheDir: dir, graphs: true });
  const open = () => compileOn(backend, graph, { cacheDir: join(dir, 'programs') }) as Promise<CudaExecutable>;
  progress(spec, 'cold compile');
  let t = performance.now();
  (await open()).dispose();
  const coldMs = performance.now() - t;
  cuda.synchronize();
  const before = cuda.memInfo().free;
  t = performance.now();
  const exe = await open();
  const warmMs = performance.now() - t;
  const measured = before - cuda.memInfo().free;
  // Parameters: a small repeating pattern (initState takes ~47 s for faeLatentP1's 336M parameters on 2 cores).
  const params = new Map(flow.namedParameters().map(([n, p]) => [n, hostTensor(p.dtype, p.shape, pattern(numel(p.shape)))] as const));
  for (const i of graph.inputs) {
    if (i.kind === 'param') await exe.write(i.name, params.get(i.name)!);
    else if (i.kind === 'state') await exe.write(i.name, hostTensor(i.type.dtype, i.type.shape));
  }
  const { tokens, tokenChannels, numClasses } = flow.cfg;
  const feeds = (pos: number) => ({
    token: hostTensor('f32', [batch, 1, tokenChannels], pattern(batch * tokenChannels)),
    pos: hostTensor('i32', [], [pos]),
    ...(numClasses > 0 ? { y: hostTensor('i32', [batch], Array.from({ length: batch }, (_, j) => j % numClasses)) } : {}),
  });
  const steps = STEPS ?? 50;
  const per = async (fetch: string[]) => {
    for (let p = 0; p < 3; p++) await exe.run(feeds(p), fetch);
    exe.sync();
    const t0 = performance.now();
    for (let p = 0; p < steps; p++) await exe.run(feeds(p % tokens), fetch);
    exe.sync();
    return (performance.now() - t0) / steps;
  };
  progress(spec, 'steps');
  const stepFetchMs = await per(['scale', 'shift']);
  const stepMs = await per([]);
  const deviceMs = exe.timeSteps(steps);
  const m = exe.memory;
  const r3 = (x: number) => +x.toFixed(3);
  const out: Record<string, unknown> = {
    program: `tarflow_sample ${preset} block ${k} (${flow.blocks[k]!.attn_blocks.length} layers)`, batch, tokens, kernels: exe.program.kernels.length, launches: exe.launchCount,
    graphNodes: exe.captured?.nodes, coldCompileMs: Math.round(coldMs), warmCompileMs: Math.round(warmMs),
    stepFetchMs: r3(stepFetchMs), stepMs: r3(stepMs), stepDeviceMs: r3(deviceMs),
    planMiB: MiB(m.total), parametersMiB: MiB(m.parameters), stateMiB: MiB(m.state), ioMiB: MiB(m.io), arenaMiB: MiB(m.arena), measuredMiB: MiB(measured),
    updatesInPlace: m.updatesInPlace, updatesCopied: m.updatesCopied, device: cuda.name,
  };
  exe.dispose();
  // The step's line first: a whole sample (every block's program, every token) takes far longer (window 2 of
  // 2026-12-02 cut it at 25 s, after the step figures, which were then lost).
  console.log(JSON.stringify({ ...out, startedAt, endedAt: Date.now() }));
  progress(spec, 'whole sample');
  t = performance.now();
  const sampler = await TarFlowSampler.open(flow, (g) => compileOn(backend, g, { cacheDir: join(dir, 'programs') }), params, { batch });
  out.samplerOpenMs = Math.round(performance.now() - t);
  const noise = hostTensor('f32', [batch, tokens, tokenChannels], pattern(batch * tokens * tokenChannels));
  t = performance.now();
  await sampler.sampleTokens(noise);
  out.sampleMs = Math.round(performance.now() - t);
  out.sampleSteps = flow.blocks.length * (flow.cfg.sos ? tokens : tokens - 1);
  sampler.dispose();
  rmSync(dir, { recursive: true, force: true });
  progress(spec, 'done');
  return { program: out.program, batch, wholeSample: true, samplerOpenMs: out.samplerOpenMs, sampleMs: out.sampleMs, sampleSteps: out.sampleSteps, startedAt, endedAt: Date.now() };
}

/** --build-only: compile each program (fills the program and CUBIN caches) and exit, so timed runs start warm. */
const buildOnly = process.argv.includes('--build-only');
for (const spec of process.argv.slice(2).filter((a) => !a.startsWith('--'))) {
  if (buildOnly) {
    const [name, b, rematSpec] = spec.split(':') as [string, string, string | undefined];
    const t = performance.now();
    const graph = buildProgram(name === 'lightningdit_xl' ? 'lightningdit' : name, { train: true, batch: Number(b), size: SIZES[name] });
    (await compileOn(createCudaBackend({ ...cudaOptionsFromEnv(), graphs: true }), graph, rematOption(rematSpec))).dispose();
    console.log(JSON.stringify({ built: spec, ms: Math.round(performance.now() - t) }));
  } else console.log(JSON.stringify(spec.startsWith('tarflow_sample:') ? await benchTarflow(spec) : await bench(spec)));
}

/**
 * @file Benchmark of CUDA step execution (issue 11): for each PROGRAM:BATCH, the training step compiled
 * as a user gets it (runtime compileOn: bf16 autocast on cuda), then
 *  - captured: wall time per step of `run()` without fetches (one cuGraphLaunch each), N steps, then one sync;
 *  - uncaptured: the same steps with every kernel launched from the host (graphs: false executable
 *    path, timed the same way);
 *  - kernel sum: the sum over kernels of each kernel's device time alone (a CUDA graph of 10 launches of
 *    the kernel, timed with events: no host gaps);
 *  - launch overhead: (uncaptured − captured) per step, and per launch;
 *  - memory: the device plan's total (parameters, state, io, arena) and the measured cuMemGetInfo delta.
 * Prints one JSON line per program.
 *
 *   tsx bench/stepExec.ts lightningdit:1 lightningdit:128
 */
import { CudaDriver } from '../backends/cuda/driver.ts';
import { type CudaExecutable, createCudaBackend } from '../backends/cuda/executable.ts';
import { buildProgram } from '../cli/programs.ts';
import type { Graph } from '../ir/graph.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';
import { cudaOptionsFromEnv } from '../runtime/backends.ts';
import { compileOn } from '../runtime/compile.ts';
import { defaultResident } from '../runtime/session.ts';

const SIZES: Record<string, string | undefined> = { block: '768x12x256', lightningdit: 'B/1', lightningdit_xl: 'XL/1', mlp: undefined };

function feedsFor(g: Graph): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  let s = 1;
  for (const i of g.inputs) {
    if (i.kind !== 'data') continue;
    const n = numel(i.type.shape);
    if (i.name === 'lr') feeds[i.name] = hostTensor('f32', [], [1e-4]);
    else if (i.type.dtype === 'i32') feeds[i.name] = hostTensor('i32', i.type.shape, Array.from({ length: n }, (_, k) => k % 10));
    else if (i.type.dtype === 'u32') feeds[i.name] = hostTensor('u32', i.type.shape, Array.from({ length: n }, () => s++));
    else feeds[i.name] = hostTensor(i.type.dtype, i.type.shape, Array.from({ length: n }, (_, k) => Math.sin(k * 0.37) * 0.5));
  }
  return feeds;
}

const MiB = (n: number) => Math.round(n / 2 ** 20);

async function bench(spec: string): Promise<Record<string, unknown>> {
  const [name, b] = spec.split(':') as [string, string];
  const batch = Number(b);
  const program = name === 'lightningdit_xl' ? 'lightningdit' : name;
  const graph = buildProgram(program, { train: true, batch, size: SIZES[name] });
  const cuda = CudaDriver.get(cudaOptionsFromEnv().libDir);
  cuda.synchronize();
  const before = cuda.memInfo().free;
  const t0 = performance.now();
  const exe = (await compileOn(createCudaBackend({ ...cudaOptionsFromEnv(), graphs: true }), graph)) as CudaExecutable;
  const buildMs = performance.now() - t0;
  const measured = before - cuda.memInfo().free;
  const init = new Map<string, HostTensor>();
  for (const i of graph.inputs)
    if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
  for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
  const feeds = feedsFor(graph);
  const steps = batch >= 64 ? 10 : 50;
  const wall = async (fn: () => Promise<unknown> | void) => {
    for (let i = 0; i < 3; i++) await fn();
    exe.sync();
    const t = performance.now();
    for (let i = 0; i < steps; i++) await fn();
    exe.sync();
    return (performance.now() - t) / steps;
  };
  const loss0 = (await exe.run(feeds, ['loss'])).loss!.data[0]; // first run: host launches
  const capturedMs = await wall(() => exe.run(feeds, []));
  const capturedDeviceMs = exe.timeSteps(steps);
  const uncapturedMs = await wall(() => exe.launchStep());
  const uncapturedDeviceMs = exe.timeSteps(steps, true);
  const fetchMs = await wall(() => exe.run(feeds, ['loss']));
  const kt = exe.kernelTimes(10);
  const kernelSumMs = kt.reduce((s, k) => s + k.ms, 0);
  const m = exe.memory;
  const launches = exe.launchCount;
  const out = {
    program: name, batch, kernels: exe.program.kernels.length, launches, graphNodes: exe.captured?.nodes, buildMs: Math.round(buildMs),
    capturedMs: +capturedMs.toFixed(3), capturedDeviceMs: +capturedDeviceMs.toFixed(3), uncapturedMs: +uncapturedMs.toFixed(3), uncapturedDeviceMs: +uncapturedDeviceMs.toFixed(3),
    fetchLossMs: +fetchMs.toFixed(3), kernelSumMs: +kernelSumMs.toFixed(3), capturedOverKernelSum: +(capturedMs / kernelSumMs).toFixed(3),
    launchOverheadMs: +(uncapturedMs - capturedMs).toFixed(3), perLaunchUs: +(((uncapturedMs - capturedMs) / launches) * 1000).toFixed(2),
    planMiB: MiB(m.total), parametersMiB: MiB(m.parameters), stateMiB: MiB(m.state), ioMiB: MiB(m.io), arenaMiB: MiB(m.arena), extraMiB: MiB(m.extraBytes),
    measuredMiB: MiB(measured), updatesInPlace: m.updatesInPlace, updatesCopied: m.updatesCopied, loss0, device: cuda.name,
  };
  exe.dispose();
  return out;
}

for (const spec of process.argv.slice(2)) console.log(JSON.stringify(await bench(spec)));

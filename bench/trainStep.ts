/**
 * @file Benchmark: one training step (forward, backward, AdamW) of named programs on a Kiln backend,
 * timed on the device after warm-up. Prints one JSON line per program; bench/run.sh puts them side by
 * side with the PyTorch baseline measured in the same run on the same card (bench/torch_baseline.py).
 *
 *   KILN_BACKEND=cuda npx tsx bench/trainStep.ts mlp:128 block:8 lightningdit:16
 * KILN_PROFILE=1 also prints the time of each kind of kernel and the 12 slowest kernels.
 */
import { CudaDriver } from '../backends/cuda/driver.ts';
import { buildProgram } from '../cli/programs.ts';
import { compile } from '../compiler/compile.ts';
import type { Graph } from '../ir/graph.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';
import { backendByName, cudaOptionsFromEnv } from '../runtime/backends.ts';
import { defaultResident } from '../runtime/session.ts';
import type { CudaExecutable } from '../backends/cuda/executable.ts';

const SIZES: Record<string, string | undefined> = { block: '768x12x256', lightningdit: 'B/1', mlp: undefined };

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

async function bench(spec: string): Promise<Record<string, unknown>> {
  const [name, b] = spec.split(':') as [string, string];
  const batch = Number(b);
  const graph = buildProgram(name, { train: true, batch, size: SIZES[name] });
  const t0 = performance.now();
  const compiled = compile(graph);
  const compileMs = performance.now() - t0;
  const t1 = performance.now();
  const exe = (await backendByName('cuda').compile(graph, compiled.program)) as CudaExecutable;
  const nvrtcMs = performance.now() - t1;
  // Parameters: small deterministic values; state: zeros.
  const init = new Map<string, HostTensor>();
  for (const i of graph.inputs)
    if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
  for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
  const feeds = feedsFor(graph);
  await exe.run(feeds, ['loss']); // first run: uploads, module load
  const cuda = CudaDriver.get(cudaOptionsFromEnv().libDir);
  const steps = name === 'lightningdit' ? 5 : 20;
  for (let i = 0; i < 3; i++) exe.launchAll();
  cuda.synchronize();
  const t2 = performance.now();
  for (let i = 0; i < steps; i++) exe.launchAll();
  cuda.synchronize();
  const stepMs = (performance.now() - t2) / steps;
  if (process.env.KILN_PROFILE) {
    const prof = exe.profile();
    const byKind: Record<string, number> = {};
    for (const p of prof) byKind[p.kind] = (byKind[p.kind] ?? 0) + p.ms;
    console.error(`profile ${name}: ${Object.entries(byKind).map(([k, v]) => `${k} ${v.toFixed(2)} ms`).join(', ')}`);
    for (const p of [...prof].sort((a, b) => b.ms - a.ms).slice(0, 12)) {
      const k = compiled.program.kernels.find((x) => x.name === p.name)!;
      const shape = k.kind === 'matmul' ? `m=${k.m} n=${k.n} k=${k.k} batch=${k.batch.join('x')}` : k.kind === 'loop' ? `grid=${k.grid.join('x')}` : `sq=${k.sq} sk=${k.sk} d=${k.dk} batch=${k.batch.join('x')}`;
      console.error(`  ${p.ms.toFixed(3)} ms  ${p.name} ${p.kind} ${shape}`);
    }
  }
  exe.dispose();
  return { program: name, batch, kernels: compiled.program.kernels.length, compileMs: Math.round(compileMs), nvrtcMs: Math.round(nvrtcMs), stepMs: Number(stepMs.toFixed(3)), device: cuda.name };
}

for (const spec of process.argv.slice(2)) console.log(JSON.stringify(await bench(spec)));

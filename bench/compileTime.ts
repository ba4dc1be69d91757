/**
 * @file Benchmark: compile time of training steps. Per program: trace + trainStep + autocast, the
 * compiler (`compile()`, median of --reps runs, CPU milliseconds of this thread), and on a GPU machine
 * the CUDA build: code generation, NVRTC of the distinct units in worker threads with an empty CUBIN
 * cache (cold) and again from the cache (warm), module loading, and one step (its loss). One JSON line
 * per program.
 *
 *   npx tsx bench/compileTime.ts [--reps 3] [--no-gpu] lightningdit:16:B/1 lightningdit:64:XL/1
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildProgram } from '../cli/programs.ts';
import { compile } from '../compiler/compile.ts';
import { hostTensor, type HostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';
import { atPrecision } from '../runtime/compile.ts';
import { cudaOptionsFromEnv } from '../runtime/backends.ts';
import { defaultResident } from '../runtime/session.ts';

const args = process.argv.slice(2);
const flag = (n: string) => args.includes(n);
const opt = (n: string, d: string) => (args.includes(n) ? args[args.indexOf(n) + 1]! : d);
const reps = Number(opt('--reps', '3'));
const specs = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--reps')));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

for (const spec of specs) {
  const [name, b, size] = spec.split(':') as [string, string, string | undefined];
  const t0 = performance.now();
  const graph = atPrecision(buildProgram(name, { train: true, batch: Number(b), size }), 'bf16');
  const traceMs = performance.now() - t0;
  const wall: number[] = [], cpu: number[] = [];
  let compiled = compile(graph);
  for (let r = 0; r < reps; r++) {
    const w = performance.now(), c = cpuMs();
    compiled = compile(graph);
    wall.push(performance.now() - w);
    cpu.push(cpuMs() - c);
  }
  const row: Record<string, unknown> = {
    program: spec, nodes: graph.nodes.length, kernels: compiled.program.kernels.length, traceMs: Math.round(traceMs),
    compileMs: Math.round(median(wall)), compileCpuMs: Math.round(median(cpu)), compileRuns: wall.map(Math.round),
  };
  console.error(JSON.stringify(row));
  if (!flag('--no-gpu')) {
    const { buildCuda, CudaExecutable } = await import('../backends/cuda/executable.ts');
    const { CudaDriver } = await import('../backends/cuda/driver.ts');
    const options = { ...cudaOptionsFromEnv(), cacheDir: mkdtempSync(join(tmpdir(), 'kiln-bench-')) };
    const cuda = CudaDriver.get(options.libDir);
    let t = performance.now();
    const cold = await buildCuda(compiled.program, options);
    row.coldBuildMs = Math.round(performance.now() - t);
    row.units = cold.gen.units.length;
    console.error(JSON.stringify(row));
    t = performance.now();
    const warm = await buildCuda(compiled.program, options);
    row.warmBuildMs = Math.round(performance.now() - t);
    t = performance.now();
    const exe = new CudaExecutable(graph, compiled.program, options, warm);
    row.loadMs = Math.round(performance.now() - t);
    const init = new Map<string, HostTensor>();
    for (const i of graph.inputs)
      if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
    for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
    const feeds: Record<string, HostTensor> = {};
    let s = 1;
    for (const i of graph.inputs) {
      if (i.kind !== 'data') continue;
      const n = numel(i.type.shape);
      if (i.name === 'lr') feeds[i.name] = hostTensor('f32', [], [1e-4]);
      else if (i.type.dtype === 'i32') feeds[i.name] = hostTensor('i32', i.type.shape, Array.from({ length: n }, (_, k) => k % 10));
      else if (i.type.dtype === 'u32') feeds[i.name] = hostTensor('u32', i.type.shape, Array.from({ length: n }, () => s++));
      else feeds[i.name] = hostTensor(i.type.dtype, i.type.shape, Array.from({ length: n }, (_, k) => Math.sin(k * 0.37) * 0.5));
    }
    t = performance.now();
    const out = await exe.run(feeds, ['loss']);
    row.firstStepMs = Math.round(performance.now() - t);
    row.loss = out.loss!.data[0];
    row.device = cuda.name;
    exe.dispose();
    rmSync(options.cacheDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(row));
}

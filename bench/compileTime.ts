/**
 * @file Benchmark: compile time of training steps. Per program: trace + trainStep + autocast, the
 * compiler (`compile()`, median of --reps runs; wall and CPU milliseconds of this thread; each stage's
 * wall milliseconds in the last run), then end to
 * end through the caches: cold (empty cache folder: compiler, code generation, NVRTC of the distinct
 * units in worker threads, module loading) and warm (the same job again: program and CUDA build read
 * from the cache, modules loaded), and one step (its loss). One JSON line per program.
 *
 *   npx tsx bench/compileTime.ts [--reps 3] [--no-gpu] [--no-step] lightningdit:16:B/1 lightningdit:64:XL/1
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
import { cachedProgram } from '../runtime/programCache.ts';
import { defaultResident } from '../runtime/session.ts';
import { feedsFor } from './feeds.ts';

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
  // --reps compiles, timed; the last one is the cold end-to-end run's (through the empty program cache).
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-'));
  const wall: number[] = [], cpu: number[] = [];
  let stageMs: Record<string, number> = {};
  const timedCompile = () => {
    const w = performance.now(), c = cpuMs();
    const compiled = compile(graph);
    wall.push(performance.now() - w);
    cpu.push(cpuMs() - c);
    stageMs = Object.fromEntries(compiled.stages.map((s) => [s.name, Math.round(s.ms)]));
    return compiled.program;
  };
  for (let r = 0; r < reps - 1; r++) timedCompile();
  // End to end through the caches (runtime/programCache.ts, backends/cuda/build.ts): cold = empty
  // cache folder, warm = the same job again (the CUDA driver is already initialized in this process).
  let t = performance.now();
  const cold = cachedProgram(graph, timedCompile, { dir: join(dir, 'programs') });
  const row: Record<string, unknown> = {
    program: spec, nodes: graph.nodes.length, kernels: cold.program.kernels.length, traceMs: Math.round(traceMs),
    compileMs: Math.round(median(wall)), compileCpuMs: Math.round(median(cpu)), compileRuns: wall.map(Math.round), stageMs,
  };
  console.error(JSON.stringify(row));
  row.coldProgramMs = Math.round(performance.now() - t);
  t = performance.now();
  const warmProgram = cachedProgram(graph, () => compile(graph).program, { dir: join(dir, 'programs') });
  row.warmProgramMs = Math.round(performance.now() - t);
  row.warmProgramHit = warmProgram.hit;
  if (!flag('--no-gpu')) {
    const { CudaExecutable } = await import('../backends/cuda/executable.ts');
    const { buildCuda } = await import('../backends/cuda/build.ts');
    const { CudaDriver } = await import('../backends/cuda/driver.ts');
    const options = { ...cudaOptionsFromEnv(), cacheDir: dir };
    t = performance.now();
    const cuda = CudaDriver.get(options.libDir);
    row.driverInitMs = Math.round(performance.now() - t);
    t = performance.now();
    const coldBuild = await buildCuda(cuda, cold.program, options, cold.key);
    row.coldBuildMs = Math.round(performance.now() - t);
    row.units = coldBuild.gen.units.length;
    row.nvrtcCompiled = coldBuild.compiled;
    t = performance.now();
    const coldExe = new CudaExecutable(graph, cold.program, options, { built: coldBuild });
    row.coldLoadMs = Math.round(performance.now() - t);
    coldExe.dispose();
    row.coldTotalMs = (row.coldProgramMs as number) + (row.coldBuildMs as number) + (row.coldLoadMs as number);
    console.error(JSON.stringify(row));
    t = performance.now();
    const again = cachedProgram(graph, () => compile(graph).program, { dir: join(dir, 'programs') });
    const warm = await buildCuda(cuda, again.program, options, again.key);
    const exe = new CudaExecutable(graph, again.program, options, { built: warm });
    row.warmTotalMs = Math.round(performance.now() - t);
    row.warmFrom = warm.compiled;
    if (flag('--no-step')) {
      exe.dispose();
      rmSync(dir, { recursive: true, force: true });
      row.device = cuda.name;
      console.log(JSON.stringify(row));
      continue;
    }
    const init = new Map<string, HostTensor>();
    for (const i of graph.inputs)
      if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
    for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
    const feeds = feedsFor(graph);
    t = performance.now();
    const out = await exe.run(feeds, ['loss']);
    row.firstStepMs = Math.round(performance.now() - t);
    row.loss = out.loss!.data[0];
    row.device = cuda.name;
    exe.dispose();
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify(row));
}

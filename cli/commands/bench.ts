/**
 * @file `kiln bench [PROGRAM:BATCH ...]`: time one training step (forward, backward, AdamW) of named
 * programs on a backend after warm-up, with synthetic feeds. The side-by-side against PyTorch on the
 * GPU machine is bench/run.sh (it runs bench/trainStep.ts and bench/torch_baseline.py).
 */
import { type Command, Option } from 'commander';
import type { Graph } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { KilnError } from '../../ir/errors.ts';
import { chooseBackend } from '../../runtime/backendChoice.ts';
import { defaultPrecision } from '../../runtime/compile.ts';
import { Session } from '../../runtime/session.ts';
import { backendOption, positiveInt } from '../options.ts';
import { buildProgram } from '../programs.ts';

function syntheticFeeds(g: Graph): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const i of g.inputs) {
    if (i.kind !== 'data') continue;
    const n = numel(i.type.shape);
    if (i.name === 'lr') feeds[i.name] = hostTensor('f32', [], [1e-4]);
    else if (i.type.dtype === 'i32') feeds[i.name] = hostTensor('i32', i.type.shape, Array.from({ length: n }, (_, k) => k % 10));
    else if (i.type.dtype === 'u32') feeds[i.name] = hostTensor('u32', i.type.shape, Array.from({ length: n }, (_, k) => k + 1));
    else if (i.type.dtype === 'bool') feeds[i.name] = hostTensor('bool', i.type.shape, Array.from({ length: n }, () => 0));
    else feeds[i.name] = hostTensor(i.type.dtype, i.type.shape, Array.from({ length: n }, (_, k) => Math.sin(k * 0.37) * 0.5));
  }
  return feeds;
}

export function register(program: Command): void {
  program.command('bench')
    .description('time training steps of built-in programs on a backend (PyTorch side-by-side: bench/run.sh on the GPU machine)')
    .argument('[specs...]', 'PROGRAM:BATCH[:SIZE], e.g. mlp:128 block:8 lightningdit:16:B/1', ['mlp:128'])
    .addOption(backendOption())
    .addOption(new Option('--precision <p>', "compute precision (default: the backend's: bf16 on cuda, f32 elsewhere)").choices(['f32', 'bf16', 'f16']))
    .option('--warmup <n>', 'untimed steps first', positiveInt, 2)
    .option('--iters <n>', 'timed steps', positiveInt, 10)
    .action(async (specs: string[], o: { backend: string; precision?: 'f32' | 'bf16' | 'f16'; warmup: number; iters: number }) => {
      const { backend, reason } = await chooseBackend(o.backend);
      console.log(`backend: ${backend.name} (${reason})`);
      for (const spec of specs) {
        const [name, batchText, size] = spec.split(':');
        const batch = Number(batchText ?? 8);
        if (!name || !Number.isInteger(batch) || batch < 1) throw new KilnError(`bad spec '${spec}' (expected PROGRAM:BATCH[:SIZE])`);
        const t0 = performance.now();
        const graph = buildProgram(name, { train: name !== 'dinov2', batch, size });
        const initial = new Map<string, HostTensor>();
        for (const i of graph.inputs) if (i.kind === 'param' || i.kind === 'frozen') initial.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.sin(k) * 0.02)));
        const session = await Session.open(backend, graph, initial, { precision: o.precision });
        const compileMs = performance.now() - t0;
        const feeds = syntheticFeeds(graph);
        const fetch = graph.outputs.some((x) => x.name === 'loss') ? ['loss'] : [graph.outputs[0]!.name];
        for (let i = 0; i < o.warmup; i++) await session.run(feeds, fetch);
        const t1 = performance.now();
        for (let i = 0; i < o.iters; i++) await session.run(feeds, fetch);
        const stepMs = (performance.now() - t1) / o.iters;
        session.dispose();
        console.log(JSON.stringify({ program: name, batch, size: size ?? null, backend: backend.name, precision: o.precision ?? (await defaultPrecision(backend)), stepMs: +stepMs.toFixed(3), compileMs: +compileMs.toFixed(0) }));
      }
    });
}

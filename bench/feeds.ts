/**
 * @file Synthetic feeds for a graph's data inputs, shared by the benchmarks (bench/stepExec.ts,
 * bench/trainStep.ts, bench/compileTime.ts): `lr` 1e-4, i32 inputs (labels) k mod 10, u32 inputs
 * (seeds) 1, 2, 3… across all u32 inputs in graph order, float inputs sin(0.37·k)·0.5. Deterministic, so
 * that two benchmarks feeding the same graph feed the same values.
 */
import type { Graph } from '../ir/graph.ts';
import { numel } from '../ir/shape.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';

/** One host tensor per `data` input of `g`, by name. */
export function feedsFor(g: Graph): Record<string, HostTensor> {
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

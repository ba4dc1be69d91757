/**
 * Elementwise kernels at V points per thread with vector loads and stores (CudaOptions.elementwisePoints,
 * backends/cuda/codegen.ts genPoints) on a real GPU: the bf16 training step of the MLP at batch 16384
 * (its activations, GELUs, bias epilogues of the cuBLAS GEMMs and loss terms are above the size where
 * the V-points path applies) gives bit-identical losses and resident state (parameters, AdamW moments)
 * after 2 steps at V = 2, 4 and 8 as at V = 1. Exact equality is the right test: each point runs the
 * same f32 operations on the same values in the same order; only how many points a thread takes and
 * how their operands are loaded and stored differ (and the step is deterministic: no atomics, unlike
 * flash attention's backward, whose dQ is accumulated with atomicAdd, so a transformer step is not
 * bit-reproducible run to run). Each V is checked to have produced vector accesses at all (so the
 * comparison is not vacuous).
 */
import { describe, expect, it } from 'vitest';
import { generateCuda } from '../../backends/cuda/codegen.ts';
import { createCudaBackend } from '../../backends/cuda/executable.ts';
import { withLibraryDefaults } from '../../backends/cuda/gemmDefault.ts';
import { buildProgram } from '../../cli/programs.ts';
import { compile } from '../../compiler/compile.ts';
import type { Graph } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { cudaOptionsFromEnv } from '../../runtime/backends.ts';
import { atPrecision, compileOn } from '../../runtime/compile.ts';
import { defaultResident } from '../../runtime/session.ts';

function feeds(g: Graph, step: number): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  let s = 1 + step;
  for (const i of g.inputs) {
    if (i.kind !== 'data') continue;
    const n = numel(i.type.shape);
    if (i.name === 'lr') out[i.name] = hostTensor('f32', [], [1e-3]);
    else if (i.type.dtype === 'i32') out[i.name] = hostTensor('i32', i.type.shape, Array.from({ length: n }, (_, k) => (k + step) % 10));
    else if (i.type.dtype === 'u32') out[i.name] = hostTensor('u32', i.type.shape, Array.from({ length: n }, () => s++));
    else out[i.name] = hostTensor(i.type.dtype, i.type.shape, Array.from({ length: n }, (_, k) => Math.sin(k * 0.37 + step) * 0.5));
  }
  return out;
}

async function run(graph: Graph, points: number): Promise<{ losses: number[]; state: Map<string, Float32Array> }> {
  const exe = await compileOn(createCudaBackend({ ...cudaOptionsFromEnv(), elementwisePoints: points }), graph, { precision: 'f32' });
  try {
    const init = new Map<string, HostTensor>();
    for (const i of graph.inputs)
      if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Float32Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
    for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
    const losses: number[] = [];
    for (let step = 0; step < 2; step++) losses.push((await exe.run(feeds(graph, step), ['loss'])).loss!.data[0]!);
    const state = new Map<string, Float32Array>();
    for (const i of graph.inputs) if (i.kind !== 'data') state.set(i.name, Float32Array.from((await exe.read(i.name)).data as ArrayLike<number>));
    return { losses, state };
  } finally {
    exe.dispose();
  }
}

describe('CUDA elementwise kernels at V points per thread, vector loads and stores', () => {
  it('MLP training step (bf16, batch 16384): V = 2, 4, 8 equal V = 1 bit for bit after 2 steps', async () => {
    // The graph already at bf16 (compileOn at 'f32' then leaves it as it is).
    const graph = atPrecision(buildProgram('mlp', { train: true, batch: 16384 }), 'bf16');
    const base = await run(graph, 1);
    const program = withLibraryDefaults(compile(graph).program);
    for (const V of [2, 4, 8]) {
      const vectors = (generateCuda(program, { elementwisePoints: V }).source.match(/reinterpret_cast<const (float[24]|uint[24]|u32)\*>/g) ?? []).length;
      expect(vectors, `V=${V}: vector loads in the generated source`).toBeGreaterThan(0);
      const got = await run(graph, V);
      const bad: string[] = [];
      got.losses.forEach((l, k) => { if (!Object.is(l, base.losses[k])) bad.push(`loss ${k}: ${l} vs ${base.losses[k]}`); });
      for (const [n, v] of got.state) {
        const w = base.state.get(n)!;
        const i = v.findIndex((x, j) => !Object.is(x, w[j]));
        if (i >= 0) bad.push(`${n}[${i}]: ${v[i]} vs ${w[i]}`);
      }
      console.log(`V=${V}: ${vectors} vector loads in the source; losses ${got.losses.join(', ')}; ${bad.length} tensors differ ${bad.slice(0, 3).join('; ')}`);
      expect(bad).toEqual([]);
    }
    expect(base.losses[1]).not.toBe(base.losses[0]);
  }, 300_000);
});

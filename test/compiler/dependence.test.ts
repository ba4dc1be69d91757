/**
 * The kernel dependence analysis (compiler/schedule/dependence.ts) on hand-built kernel sequences:
 * each kind of conflict gives exactly its nearest edge, accumulating stores read and write, and the
 * operands and outputs of matmul and attention kernels count as their reads and writes.
 */
import { describe, expect, it } from 'vitest';
import { dependenceEdges, kernelPredecessors } from '../../compiler/schedule/dependence.ts';
import { I, load } from '../../ir/kernel/expr.ts';
import type { Kernel, Stmt } from '../../ir/kernel/types.ts';

const g0 = I.v('g0');
const ld = (buf: number) => load(buf, g0, 'f32');
/** An elementwise kernel over [4]: out[g0] = Σ reads[g0] (set), or += when `add`. */
function kernel(name: string, reads: number[], writes: number[], mode: 'set' | 'add' = 'set'): Kernel {
  const value = reads.length ? reads.map(ld).reduce((a, b) => ({ k: 'bin', op: 'add', a, b, dtype: 'f32' })) : { k: 'const', v: 1, dtype: 'f32' } as const;
  const body: Stmt[] = writes.map((buf) => ({ k: 'store', buf, index: g0, value, mode }));
  return { kind: 'loop', name, nodes: [], grid: [4], body };
}
const edges = (ks: Kernel[]) => dependenceEdges(ks).map((e) => `${e.kind} ${e.from}->${e.to} b${e.buf}`).sort();

describe('kernel dependences', () => {
  it('read after write: the reader depends on the writer', () => {
    expect(edges([kernel('a', [0], [1]), kernel('b', [1], [2])])).toEqual(['raw 0->1 b1']);
  });

  it('write after read: a later writer of a buffer depends on its earlier reader', () => {
    expect(edges([kernel('a', [0], [1]), kernel('b', [], [0])])).toEqual(['war 0->1 b0']);
  });

  it('write after write: the second writer depends on the first', () => {
    expect(edges([kernel('a', [0], [1]), kernel('b', [2], [1])])).toEqual(['waw 0->1 b1']);
  });

  it('kernels touching different buffers, or only reading the same one, are independent', () => {
    expect(edges([kernel('a', [0], [1]), kernel('b', [0], [2]), kernel('c', [3], [4])])).toEqual([]);
  });

  it('an accumulating store reads and writes; later readers depend on the last writer only', () => {
    // init (set b1), accumulate (b1 += b0), read b1: the reader's only edge is to the accumulate.
    const ks = [kernel('init', [], [1]), kernel('acc', [0], [1], 'add'), kernel('use', [1], [2])];
    expect(edges(ks)).toEqual(['raw 0->1 b1', 'raw 1->2 b1', 'waw 0->1 b1']);
    expect(kernelPredecessors(ks).map((s) => [...s])).toEqual([[], [0], [1]]);
  });

  it('a rewrite waits for every reader since the last write, and for that write', () => {
    const ks = [kernel('w', [0], [1]), kernel('r1', [1], [2]), kernel('r2', [1], [3]), kernel('w2', [0], [1]), kernel('r3', [1], [4])];
    expect(edges(ks)).toEqual(['raw 0->1 b1', 'raw 0->2 b1', 'raw 3->4 b1', 'war 1->3 b1', 'war 2->3 b1', 'waw 0->3 b1']);
  });

  it('a write ends the readers of the value before it: the next writer does not wait for them again', () => {
    const ks = [kernel('w', [0], [1]), kernel('r', [1], [2]), kernel('w2', [0], [1]), kernel('w3', [0], [1])];
    expect(edges(ks)).toEqual(['raw 0->1 b1', 'war 1->2 b1', 'waw 0->2 b1', 'waw 2->3 b1']);
  });

  it('matmul operands and epilogue, attention operands and outputs are reads and writes', () => {
    const mm: Kernel = {
      kind: 'matmul', name: 'mm', nodes: [], batch: [], m: 2, n: 2, k: 2, accDType: 'f32',
      a: load(0, I.v('p'), 'f32'), b: load(1, I.v('p'), 'f32'),
      epilogue: [{ k: 'store', buf: 2, index: I.v('i'), value: { k: 'ref', name: 'acc', dtype: 'f32' }, mode: 'set' }],
    };
    const att: Kernel = {
      kind: 'attention', name: 'att', nodes: [], batch: [], sq: 2, sk: 2, dk: 2, dv: 2, causal: false, scale: 1,
      q: load(2, I.v('d'), 'f32'), key: load(0, I.v('d'), 'f32'), v: load(0, I.v('e'), 'f32'),
      out: { buf: 1, index: I.v('e'), dtype: 'f32' },
    };
    // att reads mm's output (RAW on b2) and overwrites b1, which mm read (WAR).
    expect(edges([mm, att])).toEqual(['raw 0->1 b2', 'war 0->1 b1']);
  });
});

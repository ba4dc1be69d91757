/**
 * The fusion cost model (compiler/fuse/cost.ts): per-element FLOPs of each op, which ops are never
 * recomputed, the recompute-or-materialize rule at its exact thresholds, and whole-node FLOP counts
 * against hand-computed numbers. All numbers are exact (small integers and multiples of 1/20), and
 * the thresholds are placed where both sides of the comparison are exactly representable.
 *
 * The rule, in bytes of memory traffic per element (FLOPs converted at FLOPS_PER_BYTE = 20),
 * with each = loadBytes + flops/20, e = device bytes of the value, E evaluations, k kernels:
 *   recompute E·each   vs   materialize each + e + E·e   → materialize iff each·(E − 1) > e·(E + 1), k ≥ 2.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/compile.ts';
import { FLOPS_PER_BYTE, deviceBytes, elementFlops, isExpensive, nodeFlops, shouldMaterialize } from '../../compiler/fuse/cost.ts';
import type { DType } from '../../ir/dtype.ts';
import { type Graph, GraphBuilder } from '../../ir/graph.ts';
import { BINARY_OPS, COMPARE_OPS, UNARY_OPS } from '../../ir/ops.ts';

const TRANSCENDENTAL = ['exp', 'log', 'sin', 'cos', 'tanh', 'erf', 'sigmoid', 'pow'];
const DIVISION_LIKE = ['sqrt', 'rsqrt', 'recip', 'div', 'mod'];
const ARITHMETIC = ['add', 'sub', 'mul', 'max', 'min', 'neg', 'abs', 'sign', 'floor', 'ceil', 'not', 'where', 'cast', 'lt', 'eq', 'and'];
const VIEWS = ['reshape', 'permute', 'broadcast', 'slice'];

describe('elementFlops', () => {
  it('orders transcendental > division-like > plain arithmetic > views = 0', () => {
    const minT = Math.min(...TRANSCENDENTAL.map(elementFlops));
    const maxD = Math.max(...DIVISION_LIKE.map(elementFlops));
    const minD = Math.min(...DIVISION_LIKE.map(elementFlops));
    const maxA = Math.max(...ARITHMETIC.map(elementFlops));
    const minA = Math.min(...ARITHMETIC.map(elementFlops));
    expect(minT).toBeGreaterThan(maxD);
    expect(minD).toBeGreaterThan(maxA);
    expect(minA).toBeGreaterThan(0);
    for (const v of VIEWS) expect(elementFlops(v), v).toBe(0);
    expect(elementFlops('constant')).toBe(0);
    expect(elementFlops('iota')).toBe(0);
    // Philox (10 rounds) costs more than any single transcendental.
    expect(elementFlops('random_uniform')).toBeGreaterThan(Math.max(...TRANSCENDENTAL.map(elementFlops)));
    expect(elementFlops('random_normal')).toBeGreaterThanOrEqual(elementFlops('random_uniform'));
  });
  it('every unary, binary and compare op of the IR costs at least one FLOP', () => {
    for (const op of [...UNARY_OPS, ...BINARY_OPS, ...COMPARE_OPS]) expect(elementFlops(op), op).toBeGreaterThanOrEqual(1);
  });
  it('the current values', () => {
    expect(TRANSCENDENTAL.map(elementFlops)).toEqual([8, 8, 8, 8, 8, 8, 8, 8]);
    expect(DIVISION_LIKE.map(elementFlops)).toEqual([4, 4, 4, 4, 4]);
    expect(elementFlops('add')).toBe(1);
    expect(elementFlops('random_uniform')).toBe(60);
  });
});

describe('isExpensive', () => {
  it('matmul, attention (and its gradient), scatter_add and every reduction are never recomputed', () => {
    for (const op of ['matmul', 'attention', 'attention_grad', 'scatter_add', 'reduce_sum', 'reduce_max', 'reduce_min', 'reduce_mean', 'argmax'])
      expect(isExpensive(op), op).toBe(true);
  });
  it('elementwise ops, views, gathers and random draws are left to the cost rule', () => {
    for (const op of [...TRANSCENDENTAL, ...ARITHMETIC, ...VIEWS, 'gather', 'iota', 'constant', 'random_normal', 'pad', 'concat'])
      expect(isExpensive(op), op).toBe(false);
  });
});

describe('shouldMaterialize', () => {
  const f32 = (flops: number, loadBytes: number, evaluations: number, kernels = evaluations) =>
    shouldMaterialize({ flops, loadBytes }, 'f32', evaluations, kernels);

  it('a value one kernel uses is never materialized, however costly', () => {
    expect(f32(1e9, 1e6, 1, 1)).toBe(false);
    expect(f32(1e9, 1e6, 50, 1)).toBe(false); // evaluated many times, but all in one kernel
    expect(f32(1e9, 1e6, 0, 0)).toBe(false);
  });

  it('cheap shared values are recomputed: one load and an add, in 2 or 8 kernels', () => {
    expect(f32(1, 4, 2)).toBe(false);
    expect(f32(1, 4, 8)).toBe(false);
    // A value that only reloads an input (a view) is never worth a buffer.
    expect(f32(0, 4, 100)).toBe(false);
  });

  it('2 kernels, f32: materialize iff each > 12 bytes, i.e. flops > 160 with one f32 load', () => {
    // each·(2 − 1) > 4·(2 + 1)
    expect(f32(160, 4, 2)).toBe(false); // 2·12 = 24 = 12 + 4 + 2·4: a tie recomputes
    expect(f32(161, 4, 2)).toBe(true);
    expect(f32(240, 0, 2)).toBe(false);
    expect(f32(241, 0, 2)).toBe(true);
    expect(f32(0, 12, 2)).toBe(false);
    expect(f32(0, 13, 2)).toBe(true); // loads alone can make recomputing dearer
  });

  it('3 kernels, f32: materialize iff each > 8 bytes (flops > 80 with one f32 load)', () => {
    expect(f32(80, 4, 3)).toBe(false);
    expect(f32(81, 4, 3)).toBe(true);
  });

  it('an expensive subtree shared by many kernels is materialized', () => {
    // 10 exps (80 FLOPs) from one f32 load: each = 8 bytes; threshold 4·(k + 1)/(k − 1).
    expect(f32(80, 4, 3)).toBe(false); // 8 > 8 fails
    expect(f32(80, 4, 4)).toBe(true); // 8 > 6.67
    expect(f32(80, 4, 16)).toBe(true);
    // A Philox draw (60 FLOPs) read by 2 kernels: each = 3 < 12, recomputed; by 7: each·6 = 18 < 32, recomputed.
    expect(f32(60, 0, 7)).toBe(false);
  });

  it('evaluations count passes, not only kernels: a row kernel evaluating a value twice doubles its recompute cost', () => {
    // k = 2 kernels but E = 3 evaluations: threshold each > 8 instead of 12.
    expect(shouldMaterialize({ flops: 200, loadBytes: 0 }, 'f32', 2, 2)).toBe(false); // each = 10
    expect(shouldMaterialize({ flops: 200, loadBytes: 0 }, 'f32', 3, 2)).toBe(true);
  });

  it('the element size of the value enters the threshold: f16 halves it, bool is a 32-bit word', () => {
    expect(deviceBytes('f16')).toBe(2);
    expect(deviceBytes('bf16')).toBe(2);
    expect(deviceBytes('bool')).toBe(4);
    expect(deviceBytes('i32')).toBe(4);
    // 2 kernels: f16 threshold each > 6 (flops > 120 without loads), bool as f32 (> 240).
    expect(shouldMaterialize({ flops: 120, loadBytes: 0 }, 'f16', 2, 2)).toBe(false);
    expect(shouldMaterialize({ flops: 121, loadBytes: 0 }, 'f16', 2, 2)).toBe(true);
    expect(shouldMaterialize({ flops: 240, loadBytes: 0 }, 'bool', 2, 2)).toBe(false);
    expect(shouldMaterialize({ flops: 241, loadBytes: 0 }, 'bool', 2, 2)).toBe(true);
  });

  it('agrees with the byte-traffic formulas of both models on a grid of cases', () => {
    const bad: string[] = [];
    for (const dtype of ['f32', 'f16', 'bool', 'i32'] as DType[])
      for (const flops of [0, 1, 8, 20, 40, 60, 80, 81, 100, 160, 161, 200, 400, 1000])
        for (const loadBytes of [0, 2, 4, 8, 12, 16])
          for (const E of [1, 2, 3, 4, 5, 8, 16])
            for (const k of [1, 2, 3, 4]) {
              if (k > E) continue;
              const each = loadBytes + flops / FLOPS_PER_BYTE;
              const e = deviceBytes(dtype);
              const perEvaluation = k >= 2 && each + e + E * e < E * each;
              const perKernel = k >= 2 && each + e + k * e < k * loadBytes + (E * flops) / FLOPS_PER_BYTE;
              if (shouldMaterialize({ flops, loadBytes }, dtype, E, k, 'per-evaluation') !== perEvaluation) bad.push(`per-evaluation ${dtype} flops ${flops} loads ${loadBytes} E ${E} k ${k}`);
              if (shouldMaterialize({ flops, loadBytes }, dtype, E, k) !== perKernel) bad.push(`per-kernel ${dtype} flops ${flops} loads ${loadBytes} E ${E} k ${k}`);
              // One evaluation per kernel: the models agree.
              if (E === k && perKernel !== perEvaluation) bad.push(`E = k: ${dtype} flops ${flops} loads ${loadBytes} k ${k}`);
            }
    expect(bad).toEqual([]);
  });

  it('per-kernel (the default): a cheap value read at several neighbouring elements of one kernel is recomputed, not written', () => {
    // The rotary embedding's input, q/k = f32(bf16 acc) + bias: 6 bytes loaded and one add per element,
    // evaluated 6 times in 2 kernels (the GEMM epilogue once, the rotation at x, x-pair and x+pair per q and k).
    const qk = { flops: 1, loadBytes: 6 };
    expect(shouldMaterialize(qk, 'f32', 6, 2, 'per-evaluation')).toBe(true); // 36.3 > 34.05
    expect(shouldMaterialize(qk, 'f32', 6, 2)).toBe(false); // 12.3 < 18.05
    // FLOPs still count per evaluation: an expensive value evaluated in many passes is written.
    expect(shouldMaterialize({ flops: 400, loadBytes: 4 }, 'f32', 6, 2)).toBe(true);
  });

  it('FLOPS_PER_BYTE is 20 (H100: ~67 TFLOP/s f32 over ~3.35 TB/s)', () => expect(FLOPS_PER_BYTE).toBe(20));
});

describe('fusion follows the rule (compile(g).fused.reasons)', () => {
  /** x → `depth` exps → read by `k` output kernels (each multiplies by its own constant). */
  function chain(depth: number, k: number): { g: Graph; materialized: boolean; why?: string } {
    const b = new GraphBuilder('chain');
    let e = b.input('x', { dtype: 'f32', shape: [64] });
    for (let d = 0; d < depth; d++) e = b.op('exp', [e]);
    for (let o = 0; o < k; o++) b.output(`o${o}`, b.op('mul', [e, b.op('constant', [], { shape: [], dtype: 'f32', value: o + 2 })]));
    const g = b.build();
    const c = compile(g);
    const top = c.optimized.nodes.filter((n) => n.op === 'exp').at(-1)!;
    return { g, materialized: c.fused.reasons.has(top.id), why: c.fused.reasons.get(top.id) };
  }
  it('an exp chain read by k kernels: recomputed up to the threshold, written once beyond it', () => {
    // each = 4 (load x) + 8·depth/20
    expect(chain(20, 2).materialized).toBe(false); // each 12 = threshold for k = 2
    expect(chain(21, 2).materialized).toBe(true);
    expect(chain(10, 3).materialized).toBe(false); // each 8 = threshold for k = 3
    expect(chain(10, 4).materialized).toBe(true);
    expect(chain(1, 6).materialized).toBe(false);
    expect(chain(100, 1).materialized).toBe(false);
  });
  it('a reduction read by two kernels is materialized whatever it costs', () => {
    const b = new GraphBuilder('shared_sum');
    const x = b.input('x', { dtype: 'f32', shape: [4, 8] });
    const s = b.op('reduce_sum', [x], { axes: [1], keepdims: true });
    const y = b.input('y', { dtype: 'f32', shape: [4, 8] });
    // Both outputs are row kernels over [4,8] reducing axis 1, so each could inline the sum.
    b.output('a', b.op('mul', [y, s]));
    b.output('b', b.op('exp', [b.op('add', [y, s])]));
    const c = compile(b.build());
    const sum = c.optimized.nodes.find((n) => n.op === 'reduce_sum')!;
    expect(c.fused.reasons.get(sum.id)).toMatch(/never recomputed/);
  });
});

describe('nodeFlops', () => {
  const f32 = (...shape: number[]) => ({ dtype: 'f32' as const, shape });
  function node(build: (b: GraphBuilder) => number): { flops: number } {
    const b = new GraphBuilder('n');
    const id = build(b);
    const g = b.build();
    const n = g.node(id)!;
    return { flops: nodeFlops(n, n.inputs.map((i) => g.typeOf(i).shape)) };
  }
  it('matmul: 2·M·N·K per batch', () => {
    // [2,3,4] @ [4,5] → [2,3,5]: 2·(2·3·5)·4
    expect(node((b) => b.op('matmul', [b.input('a', f32(2, 3, 4)), b.input('w', f32(4, 5))])).flops).toBe(240);
    expect(node((b) => b.op('matmul', [b.input('a', f32(64, 128)), b.input('w', f32(128, 32))])).flops).toBe(2 * 64 * 32 * 128);
  });
  it('attention: rows·Sk·(2·dk + 2·dv + 5), its gradient rows·Sk·(4·dk + 2·dv + 5)', () => {
    const qkv = (b: GraphBuilder) => [b.input('q', f32(2, 4, 6, 8)), b.input('k', f32(2, 4, 10, 8)), b.input('v', f32(2, 4, 10, 16))];
    // rows = 2·4·6 = 48, Sk = 10: 480·(16 + 32 + 5)
    expect(node((b) => b.op('attention', qkv(b), { causal: false, scale: 0.125 })).flops).toBe(480 * 53);
    expect(node((b) => {
      const [q, k, v] = qkv(b) as [number, number, number];
      const o = b.op('attention', [q, k, v], { causal: true, scale: 0.125 });
      return b.op('attention_grad', [q, k, v, o, b.input('dout', f32(2, 4, 6, 16))], { causal: true, scale: 0.125, wrt: 0 });
    }).flops).toBe(480 * (32 + 32 + 5));
  });
  it('reductions count their input elements, scatter_add its updates, elementwise ops numel·elementFlops', () => {
    expect(node((b) => b.op('reduce_sum', [b.input('x', f32(3, 4, 5))], { axes: [1], keepdims: false })).flops).toBe(60);
    expect(node((b) => b.op('argmax', [b.input('x', f32(3, 4, 5))], { axis: 2, keepdims: false })).flops).toBe(60);
    expect(node((b) => b.op('exp', [b.input('x', f32(3, 4))])).flops).toBe(12 * 8);
    expect(node((b) => b.op('add', [b.input('x', f32(3, 4)), b.input('y', f32(4))])).flops).toBe(12);
    expect(node((b) => b.op('reshape', [b.input('x', f32(3, 4))], { shape: [12] })).flops).toBe(0);
    expect(node((b) => b.op('scatter_add', [b.input('x', f32(10, 4)), b.input('i', { dtype: 'i32', shape: [6] }), b.input('u', f32(6, 4))], { axis: 0 })).flops).toBe(24);
  });
});

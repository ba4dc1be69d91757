/**
 * @file GEMM test graphs for the tensor-core paths, in bf16 as autocast writes them: operands are
 * bf16 inputs, or f32 inputs cast to bf16 (master weights), optionally transposed (stored [.., k, m]
 * / [.., n, k] and permuted), with batch dims that broadcast, and one of the epilogue kinds the
 * fusion merges into a matmul (bias + GELU in bf16, a residual add, several stores, the AdamW update
 * of a weight gradient). Shared by the nvcc compile test (CI) and the GPU test (test/gpu/gemm.test.ts).
 */
import { type DType, roundBf16, roundF16 } from '../../ir/dtype.ts';
import { type Graph, GraphBuilder } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { mulberry32 } from '../../runtime/prng.ts';

export type Epilogue = 'store_f32' | 'store_bf16' | 'bias_gelu' | 'bias_f32' | 'bias_bf16' | 'residual' | 'two_stores' | 'store_and_bias' | 'adamw';

export interface GemmCase {
  readonly name: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** Batch dims of each operand (broadcast against each other). */
  readonly batchA?: readonly number[];
  readonly batchB?: readonly number[];
  /** Operand stored transposed ([.., k, m] for a, [.., n, k] for b) and permuted back. */
  readonly transA?: boolean;
  readonly transB?: boolean;
  /** 'bf16': a bf16 input; 'cast': an f32 input cast to bf16 (register-staged). */
  readonly srcA?: 'bf16' | 'cast';
  readonly srcB?: 'bf16' | 'cast';
  readonly epilogue?: Epilogue;
}

const swapLast = (rank: number) => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];

function operandOf(g: GraphBuilder, name: string, batch: readonly number[], rows: number, cols: number, trans: boolean, src: 'bf16' | 'cast', kind: 'data' | 'param', low: DType): number {
  const shape = trans ? [...batch, cols, rows] : [...batch, rows, cols];
  const dtype: DType = src === 'bf16' ? low : 'f32';
  let x = g.input(name, { shape, dtype }, kind);
  if (src === 'cast') x = g.op('cast', [x], { dtype: low });
  if (trans) x = g.op('permute', [x], { perm: swapLast(shape.length) });
  return x;
}

const scalar = (g: GraphBuilder, v: number, dtype: DType = 'f32') => g.op('constant', [], { shape: [], dtype, value: v });

/**
 * The graph of one case: inputs a, b (and bias, res, m, v as the epilogue needs), in bf16, or with
 * every bf16 replaced by `low` (f16: the WGSL backend's subgroup-matrix GEMM).
 */
/**
 * Seeded feeds for a gemmGraph: v (AdamW second moment) positive, the rest in [-1, 1) rounded to the
 * operands' low-precision dtype; with each input's largest magnitude (for the error bounds).
 */
export function gemmFeeds(g: Graph, seed: number, low: 'bf16' | 'f16' = 'bf16'): { feeds: Record<string, HostTensor>; maxAbs: Record<string, number> } {
  const rnd = mulberry32(seed);
  const round = low === 'f16' ? roundF16 : roundBf16;
  const feeds: Record<string, HostTensor> = {};
  const maxAbs: Record<string, number> = {};
  for (const i of g.inputs) {
    const vals = Array.from({ length: numel(i.type.shape) }, () => (i.name === 'v' ? 0.5 + rnd() : round(2 * rnd() - 1)));
    feeds[i.name] = hostTensor(i.type.dtype, i.type.shape, vals);
    maxAbs[i.name] = vals.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  }
  return { feeds, maxAbs };
}

export function gemmGraph(c: GemmCase, low: 'bf16' | 'f16' = 'bf16'): Graph {
  const g = new GraphBuilder(`gemm_${c.name.replace(/[^A-Za-z0-9_]/g, '_')}${low === 'bf16' ? '' : `_${low}`}`);
  const epi = c.epilogue ?? 'store_f32';
  const a = operandOf(g, 'a', c.batchA ?? [], c.m, c.k, c.transA ?? false, c.srcA ?? 'bf16', 'data', low);
  const b = operandOf(g, 'b', c.batchB ?? [], c.k, c.n, c.transB ?? false, c.srcB ?? 'bf16', epi === 'adamw' ? 'param' : 'data', low);
  const y = g.op('matmul', [a, b]);
  const outShape = g.typeOf(y).shape;
  switch (epi) {
    case 'store_bf16':
      g.output('y', y);
      break;
    case 'store_f32':
      g.output('y', g.op('cast', [y], { dtype: 'f32' }));
      break;
    case 'bias_gelu': {
      const bias = g.input('bias', { shape: [c.n], dtype: low });
      // GELU (erf form), in bf16 like the autocast graph: 0.5·x·(1 + erf(x/√2)).
      const x = g.op('add', [y, bias]);
      const e = g.op('erf', [g.op('mul', [x, scalar(g, Math.SQRT1_2, low)])]);
      g.output('y', g.op('mul', [g.op('mul', [x, scalar(g, 0.5, low)]), g.op('add', [e, scalar(g, 1, low)])]));
      break;
    }
    case 'bias_f32': {
      // A linear layer's output in f32 (LightningDiT's adaLN modulations): f32(y) + bias.
      const bias = g.input('bias', { shape: [c.n], dtype: 'f32' });
      g.output('y', g.op('add', [g.op('cast', [y], { dtype: 'f32' }), bias]));
      break;
    }
    case 'bias_bf16': {
      const bias = g.input('bias', { shape: [c.n], dtype: low });
      g.output('y', g.op('add', [y, bias]));
      break;
    }
    case 'residual': {
      const res = g.input('res', { shape: outShape, dtype: 'f32' });
      g.output('y', g.op('add', [res, g.op('cast', [y], { dtype: 'f32' })]));
      break;
    }
    case 'store_and_bias': {
      // The matmul kept as it is (for the backward) and the biased value: C goes into y (codegen.ts accIdentityStore).
      const bias = g.input('bias', { shape: [c.n], dtype: low });
      g.output('y', y);
      g.output('z', g.op('add', [y, bias]));
      break;
    }
    case 'two_stores': {
      const y32 = g.op('cast', [y], { dtype: 'f32' });
      g.output('y', y32);
      g.output('z', g.op('tanh', [y32]));
      break;
    }
    case 'adamw': {
      // y is the gradient of a weight w (shape = outShape, f32 master); one AdamW step on it.
      const grad = g.op('cast', [y], { dtype: 'f32' });
      const w = g.input('w', { shape: outShape, dtype: 'f32' }, 'param');
      const m = g.input('m', { shape: outShape, dtype: 'f32' }, 'state');
      const v = g.input('v', { shape: outShape, dtype: 'f32' }, 'state');
      const m2 = g.op('add', [g.op('mul', [m, scalar(g, 0.9)]), g.op('mul', [grad, scalar(g, 0.1)])]);
      const v2 = g.op('add', [g.op('mul', [v, scalar(g, 0.999)]), g.op('mul', [g.op('mul', [grad, grad]), scalar(g, 0.001)])]);
      const step = g.op('div', [m2, g.op('add', [g.op('sqrt', [v2]), scalar(g, 1e-8)])]);
      const w2 = g.op('sub', [g.op('mul', [w, scalar(g, 1 - 1e-4)]), g.op('mul', [step, scalar(g, 1e-3)])]);
      g.output('m_next', m2);
      g.output('v_next', v2);
      g.output('w_next', w2);
      break;
    }
  }
  return g.build();
}

/**
 * The cases: shapes that are multiples of no tile (and K = 1, M = 1, N = 1), every transposition
 * of each operand in each staging, batch broadcasting both ways, every epilogue kind.
 */
export const GEMM_CASES: readonly GemmCase[] = [
  { name: 'odd_shapes', m: 77, n: 131, k: 200 },
  { name: 'k1', m: 65, n: 40, k: 1 },
  { name: 'm1', m: 1, n: 72, k: 96 },
  { name: 'n1', m: 70, n: 1, k: 64 },
  { name: 'k_not_mult_8', m: 130, n: 96, k: 37 },
  { name: 'tA', m: 136, n: 264, k: 72, transA: true },
  { name: 'tB', m: 136, n: 264, k: 72, transB: true },
  { name: 'tAtB', m: 136, n: 264, k: 72, transA: true, transB: true },
  { name: 'castA_tA', m: 50, n: 70, k: 90, srcA: 'cast', transA: true },
  { name: 'castB_tB', m: 300, n: 200, k: 104, srcB: 'cast', transB: true },
  { name: 'cast_both', m: 129, n: 257, k: 63, srcA: 'cast', srcB: 'cast' },
  { name: 'batched', m: 40, n: 48, k: 56, batchA: [3], batchB: [3] },
  { name: 'broadcast_b', m: 33, n: 40, k: 64, batchA: [2, 3] },
  { name: 'broadcast_mixed', m: 24, n: 40, k: 24, batchA: [2, 1], batchB: [1, 3], transB: true },
  { name: 'bias_gelu', m: 200, n: 136, k: 64, epilogue: 'bias_gelu', transB: true },
  { name: 'bias_f32', m: 130, n: 72, k: 96, epilogue: 'bias_f32', srcB: 'cast', transB: true },
  { name: 'bias_bf16_batched', m: 40, n: 64, k: 48, batchA: [3], epilogue: 'bias_bf16', transB: true },
  { name: 'residual', m: 96, n: 100, k: 128, epilogue: 'residual' },
  { name: 'two_stores', m: 64, n: 72, k: 40, epilogue: 'two_stores', srcB: 'cast' },
  { name: 'store_and_bias', m: 96, n: 136, k: 72, epilogue: 'store_and_bias', transB: true },
  { name: 'store_bf16', m: 150, n: 88, k: 80, epilogue: 'store_bf16' },
  { name: 'adamw_weight_grad', m: 48, n: 80, k: 136, transA: true, epilogue: 'adamw' },
  { name: 'mid_tile', m: 520, n: 1030, k: 264, transB: true },
  { name: 'big_tile', m: 2000, n: 2048, k: 72 },
  { name: 'big_tile_tA', m: 2000, n: 2048, k: 72, transA: true },
  { name: 'huge_tile', m: 2056, n: 4096, k: 48, transB: true },
  { name: 'big_tile_cast', m: 2000, n: 2100, k: 40, srcB: 'cast', transB: true },
];

/**
 * Shapes that are multiples of every subgroup-matrix block tile (m of 256, n of 512, k of 32): the WGSL
 * renderer drops the bounds guards there, and f16 results take its pair epilogue (one store per 32-bit word).
 */
export const ALIGNED_GEMM_CASES: readonly GemmCase[] = [
  { name: 'aligned_f16', m: 256, n: 512, k: 96, epilogue: 'store_bf16' },
  { name: 'aligned_bias_gelu', m: 256, n: 512, k: 64, epilogue: 'bias_gelu' },
  { name: 'aligned_tAtB_f32', m: 256, n: 512, k: 64, transA: true, transB: true },
  { name: 'aligned_castB_tB', m: 256, n: 512, k: 32, srcB: 'cast', transB: true, epilogue: 'store_bf16' },
];

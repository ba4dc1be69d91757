/**
 * @file The GEMMs of the benchmarks (bench/gemm.ts, bench/gemmTune.ts): 4096³, 8192³ and the
 * LightningDiT-B/XL layer shapes, as bf16 graphs (bf16 in, f32 accumulate, bf16 out), and random inputs.
 */
import { type Graph, GraphBuilder } from '../ir/graph.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';

/** name → [M, N, K, layout]: nn = a[M,K]·b[K,N]; nt = a·b[N,K]ᵀ; tn = a[K,M]ᵀ·b[K,N]. */
export const GEMM_SHAPES: Record<string, [number, number, number, 'nn' | 'nt' | 'tn']> = {
  cube4096: [4096, 4096, 4096, 'nn'],
  cube8192: [8192, 8192, 8192, 'nn'],
  // LightningDiT-B/1, batch 128: 256 tokens × 128, hidden 768, MLP 3072.
  B_qkv_fwd: [32768, 2304, 768, 'nt'],
  B_fc1_fwd: [32768, 3072, 768, 'nt'],
  B_fc2_fwd: [32768, 768, 3072, 'nt'],
  B_fc1_dx: [32768, 768, 3072, 'nn'],
  B_fc1_dw: [3072, 768, 32768, 'tn'],
  // LightningDiT-XL/1, batch 64: 256 tokens × 64, hidden 1152, MLP 4608.
  XL_qkv_fwd: [16384, 3456, 1152, 'nt'],
  XL_fc1_fwd: [16384, 4608, 1152, 'nt'],
  XL_fc2_fwd: [16384, 1152, 4608, 'nt'],
  XL_fc1_dx: [16384, 1152, 4608, 'nn'],
  XL_fc1_dw: [4608, 1152, 16384, 'tn'],
};

export function gemmGraph(name: string, m: number, n: number, k: number, layout: 'nn' | 'nt' | 'tn'): Graph {
  const g = new GraphBuilder(`gemm_${name}`);
  const t = (x: number) => g.op('permute', [x], { perm: [1, 0] });
  const a = layout === 'tn' ? t(g.input('a', { shape: [k, m], dtype: 'bf16' })) : g.input('a', { shape: [m, k], dtype: 'bf16' });
  const b = layout === 'nt' ? t(g.input('b', { shape: [n, k], dtype: 'bf16' })) : g.input('b', { shape: [k, n], dtype: 'bf16' });
  g.output('y', g.op('matmul', [a, b]));
  return g.build();
}

function randomValues(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = (s / 4294967296 - 0.5) * 2;
  }
  return v;
}

/** Uniform [-1, 1) bf16 inputs for a GEMM graph. */
export function gemmFeeds(g: Graph): Record<string, HostTensor> {
  return Object.fromEntries(g.inputs.map((i, s) => [i.name, hostTensor('bf16', i.type.shape, randomValues(i.type.shape[0]! * i.type.shape[1]!, s + 1))]));
}

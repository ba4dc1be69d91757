/**
 * @file The cost model behind fusion decisions: FLOPs per element of each op, bytes moved, and the
 * rule for whether a value used by several kernels is recomputed in each or written once to memory.
 *
 * The machine is summarized by one number, the FLOPs a GPU does in the time it moves one byte of
 * memory (H100: ~67 TFLOP/s f32 over ~3.35 TB/s ≈ 20). Recomputing a value in k kernels costs
 * (k − 1)·flops per element; materializing it costs a write plus k reads of its bytes. Expensive
 * work (reductions, matmuls, attention, scatters) is never recomputed.
 */
import { byteSize, type DType } from '../../ir/dtype.ts';
import type { Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';

/** FLOPs one byte of memory traffic is worth. */
export const FLOPS_PER_BYTE = 20;

/** Device bytes per element (bool is stored as 32 bits on GPUs). */
export function deviceBytes(dtype: DType): number {
  return dtype === 'bool' ? 4 : byteSize(dtype);
}

/** Arithmetic cost of one output element of an elementwise op (transcendentals count more). */
export function elementFlops(op: string): number {
  switch (op) {
    case 'exp': case 'log': case 'sin': case 'cos': case 'tanh': case 'erf': case 'sigmoid': case 'pow':
      return 8;
    case 'sqrt': case 'rsqrt': case 'recip': case 'div': case 'mod':
      return 4;
    case 'random_uniform': case 'random_normal':
      return 60; // 10 Philox rounds (+ Box–Muller)
    case 'reshape': case 'permute': case 'broadcast': case 'slice': case 'constant': case 'iota':
      return 0;
    default:
      return 1;
  }
}

/** Ops whose results are always written to memory (never recomputed by consumers). */
export function isExpensive(op: string): boolean {
  return op === 'matmul' || op === 'attention' || op === 'attention_grad' || op === 'scatter_add' ||
    op === 'reduce_sum' || op === 'reduce_max' || op === 'reduce_min' || op === 'reduce_mean' || op === 'argmax';
}

/** What computing one element of a value inline costs: its subtree's FLOPs and the bytes it loads. */
export interface SubtreeCost {
  flops: number;
  loadBytes: number;
}

/**
 * How memory traffic is counted when a kernel evaluates a value more than once (a row kernel's
 * passes, a consumer reading it at several neighbouring elements: the rotary embedding's pair swap,
 * the two halves of a gated MLP):
 *  - 'per-kernel' (the default): each kernel moves a value's operand bytes (or the materialized
 *    value's bytes) from memory once; its further evaluations read the same or neighbouring elements
 *    from cache (a row of a few KiB per block, the same lines for neighbours) and cost only FLOPs;
 *  - 'per-evaluation': every evaluation moves its bytes from memory again (the model before
 *    2026-12-02, kept to measure against: bench/trainStep.ts KILN_FUSION_COST);
 *  - 'amortized': 'per-kernel', with an operand smaller than the value counted at its share of the
 *    value's elements (a broadcast table, each part of a concatenation: the q/k/v gradients stacked
 *    for the qkv projection's backward read one part per element), not at a whole element each
 *    (an experiment: KILN_FUSION_COST=amortized).
 */
export type FusionCostModel = 'per-kernel' | 'per-evaluation' | 'amortized';

/**
 * Should a value be written to memory once instead of recomputed where it is used? `evaluations` is
 * how often kernels compute it (a row kernel may evaluate it in several passes), `kernels` how many
 * different kernels do. In bytes of traffic (FLOPs converted at FLOPS_PER_BYTE), with the default
 * model ('per-kernel', FusionCostModel):
 *   recompute:   kernels · loadBytes + evaluations · flops/FPB
 *   materialize: (loadBytes + flops/FPB) + elementBytes (write) + kernels · elementBytes (reads)
 * and with 'per-evaluation' every `kernels` above is `evaluations` (the two agree when each kernel
 * evaluates the value once). A value used by one kernel only is never materialized (that would add a kernel).
 */
export function shouldMaterialize(cost: SubtreeCost, dtype: DType, evaluations: number, kernels: number, model: FusionCostModel = 'per-kernel'): boolean {
  if (kernels <= 1) return false;
  const reads = model === 'per-evaluation' ? evaluations : kernels;
  const flops = cost.flops / FLOPS_PER_BYTE;
  const eb = deviceBytes(dtype);
  return cost.loadBytes + flops + eb * (1 + reads) < reads * cost.loadBytes + evaluations * flops;
}

export interface KernelCost {
  flops: number;
  bytesRead: number;
  bytesWritten: number;
}

/** FLOPs of a graph node over all its elements (for reports). */
export function nodeFlops(n: Node, inputShapes: readonly (readonly number[])[]): number {
  const out = numel(n.type.shape);
  switch (n.op) {
    case 'matmul': {
      const a = inputShapes[0]!;
      return 2 * out * a[a.length - 1]!;
    }
    case 'attention': {
      const [q, , v] = inputShapes as [readonly number[], readonly number[], readonly number[]];
      const sk = inputShapes[1]![inputShapes[1]!.length - 2]!;
      const rows = numel(q.slice(0, -1));
      return rows * sk * (2 * q[q.length - 1]! + 2 * v[v.length - 1]! + 5);
    }
    case 'attention_grad': {
      const [q, k, v] = inputShapes as [readonly number[], readonly number[], readonly number[]];
      const rows = numel(q.slice(0, -1));
      const sk = k[k.length - 2]!;
      return rows * sk * (4 * q[q.length - 1]! + 2 * v[v.length - 1]! + 5);
    }
    case 'reduce_sum': case 'reduce_max': case 'reduce_min': case 'reduce_mean': case 'argmax':
      return numel(inputShapes[0]!);
    case 'scatter_add':
      return numel(inputShapes[2]!);
    default:
      return out * elementFlops(n.op);
  }
}

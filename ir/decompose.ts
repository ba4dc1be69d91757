/**
 * @file Decompositions of the composite ops (softmax, log_softmax, layer_norm, rms_norm, attention)
 * into primitive ops. The CPU backend runs composites through these, and they are the oracle for
 * the fused kernels that the GPU backends generate. Narrow-float (f16/bf16) operands are computed
 * in f32 and the result is cast back.
 */
import { type Graph, GraphBuilder } from './graph.ts';
import { type Attrs, COMPOSITE_OPS, type CompositeOp, type ValueType } from './ops.ts';
import { rewriteGraph } from './rewrite.ts';

function scalar(b: GraphBuilder, v: number, like: number): number {
  return b.op('constant', [], { shape: [], dtype: b.typeOf(like).dtype, value: v });
}

function widen(b: GraphBuilder, x: number): number {
  const d = b.typeOf(x).dtype;
  return d === 'f16' || d === 'bf16' ? b.op('cast', [x], { dtype: 'f32' }) : x;
}
function narrow(b: GraphBuilder, y: number, like: ValueType): number {
  return b.typeOf(y).dtype === like.dtype ? y : b.op('cast', [y], { dtype: like.dtype });
}

function softmaxParts(b: GraphBuilder, x: number, axis: number): { shifted: number; sum: number; exp: number } {
  const m = b.op('reduce_max', [x], { axes: [axis], keepdims: true });
  const shifted = b.op('sub', [x, m]);
  const exp = b.op('exp', [shifted]);
  const sum = b.op('reduce_sum', [exp], { axes: [axis], keepdims: true });
  return { shifted, sum, exp };
}

/** softmax(scale · q kᵀ) with the top-left causal mask when asked (q, k already f32). */
function emitAttentionProbs(b: GraphBuilder, q: number, k: number, attrs: Attrs): number {
  const rank = b.typeOf(q).shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  const kt = b.op('permute', [k], { perm });
  let s = b.op('mul', [b.op('matmul', [q, kt]), scalar(b, attrs.scale as number, q)]);
  if (attrs.causal) {
    const [sq, sk] = b.typeOf(s).shape.slice(-2) as [number, number];
    const row = b.op('iota', [], { shape: [sq, sk], axis: 0, dtype: 'i32' });
    const col = b.op('iota', [], { shape: [sq, sk], axis: 1, dtype: 'i32' });
    s = b.op('where', [b.op('le', [col, row]), s, scalar(b, -Infinity, s)]);
  }
  return emitDecomposition(b, 'softmax', [s], { axis: rank - 1 });
}

/** Emit the primitive ops computing composite `op` on `inputs` into `b`; returns the result id. */
export function emitDecomposition(b: GraphBuilder, op: CompositeOp, inputs: readonly number[], attrs: Attrs): number {
  const t0 = b.typeOf(inputs[0]!);
  const rank = t0.shape.length;
  switch (op) {
    case 'softmax': {
      const x = widen(b, inputs[0]!);
      const { exp, sum } = softmaxParts(b, x, attrs.axis as number);
      return narrow(b, b.op('div', [exp, sum]), t0);
    }
    case 'log_softmax': {
      const x = widen(b, inputs[0]!);
      const { shifted, sum } = softmaxParts(b, x, attrs.axis as number);
      return narrow(b, b.op('sub', [shifted, b.op('log', [sum])]), t0);
    }
    case 'layer_norm': {
      const x = widen(b, inputs[0]!);
      const ax = { axes: [rank - 1], keepdims: true };
      const mean = b.op('reduce_mean', [x], ax);
      const d = b.op('sub', [x, mean]);
      const v = b.op('reduce_mean', [b.op('mul', [d, d])], ax);
      const inv = b.op('rsqrt', [b.op('add', [v, scalar(b, attrs.eps as number, v)])]);
      return narrow(b, b.op('mul', [d, inv]), t0);
    }
    case 'rms_norm': {
      const x = widen(b, inputs[0]!);
      const ms = b.op('reduce_mean', [b.op('mul', [x, x])], { axes: [rank - 1], keepdims: true });
      const inv = b.op('rsqrt', [b.op('add', [ms, scalar(b, attrs.eps as number, ms)])]);
      return narrow(b, b.op('mul', [x, inv]), t0);
    }
    case 'attention': {
      const [q, k, v] = inputs.map((i) => widen(b, i)) as [number, number, number];
      const p = emitAttentionProbs(b, q, k, attrs);
      return narrow(b, b.op('matmul', [p, v]), t0);
    }
    case 'attention_grad': {
      // P = softmax(S), S = scale·q kᵀ (masked); dV = Pᵀ dO; dP = dO vᵀ; dS = P ∘ (dP − rowsum(dO ∘ O));
      // dQ = scale · dS k; dK = scale · dSᵀ q.
      const [q, k, v, o, g] = inputs.map((i) => widen(b, i)) as [number, number, number, number, number];
      const wrt = attrs.wrt as number;
      const swap = (x: number) => {
        const perm = [...Array(rank).keys()];
        [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
        return b.op('permute', [x], { perm });
      };
      const p = emitAttentionProbs(b, q, k, attrs);
      if (wrt === 2) return narrow(b, b.op('matmul', [swap(p), g]), b.typeOf(inputs[2]!));
      const dp = b.op('matmul', [g, swap(v)]);
      const rowsum = b.op('reduce_sum', [b.op('mul', [g, o])], { axes: [rank - 1], keepdims: true });
      const ds = b.op('mul', [b.op('mul', [p, b.op('sub', [dp, rowsum])]), scalar(b, attrs.scale as number, p)]);
      if (wrt === 0) return narrow(b, b.op('matmul', [ds, k]), b.typeOf(inputs[0]!));
      return narrow(b, b.op('matmul', [swap(ds), q]), b.typeOf(inputs[1]!));
    }
  }
}

/** A standalone graph computing composite `op` from inputs a0..an with primitives only. */
export function decompositionGraph(op: CompositeOp, inputTypes: readonly ValueType[], attrs: Attrs): Graph {
  const b = new GraphBuilder(`${op}_decomposed`);
  const ins = inputTypes.map((t, i) => b.input(`a${i}`, t));
  b.output('out', emitDecomposition(b, op, ins, attrs));
  return decomposeAllComposites(b.build());
}

/**
 * Replace every composite node of `g` with its decomposition, until only primitives are left (the
 * CPU oracle's view of a graph). The compiler keeps some composites whole: see decomposeForFusion
 * in compiler/passes/pipeline.ts.
 */
export function decomposeAllComposites(g: Graph): Graph {
  if (!g.nodes.some((n) => isComposite(n.op))) return g;
  return decomposeAllComposites(rewriteGraph(g, (n, ins, b) => (isComposite(n.op) ? emitDecomposition(b, n.op, ins, n.attrs) : undefined)));
}

export function isComposite(op: string): op is CompositeOp {
  return (COMPOSITE_OPS as readonly string[]).includes(op);
}


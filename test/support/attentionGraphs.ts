/**
 * @file Attention graphs for the flash-attention tests and benchmark: y = attention(q, k, v) in bf16
 * and, with `grads`, dQ/dK/dV of loss = Σ y·cot. Layouts: 'bhsd' feeds bf16 [B, H, S, D] operands
 * directly; 'bshd' feeds f32 [B, S, H, D] tensors that are cast to bf16 and head-split by a permute (as
 * the models do), so the attention operands are permuted views of cast buffers.
 */
import { attention } from '../../compiler/dsl/functional.ts';
import type { Tensor } from '../../compiler/dsl/tensor.ts';
import { trace } from '../../compiler/dsl/trace.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import type { Graph } from '../../ir/graph.ts';

export interface AttentionCase {
  readonly batch: number;
  readonly heads: number;
  readonly seq: number;
  readonly dim: number;
  readonly causal: boolean;
  readonly layout?: 'bhsd' | 'bshd';
  readonly grads?: boolean;
  /** With `grads`: the inputs differentiated (default q, k, v). */
  readonly wrt?: ReadonlyArray<'q' | 'k' | 'v'>;
  /** Keep the operands f32 (no bf16 casts): the exact f32 attention path. */
  readonly f32?: boolean;
}

export const caseName = (c: AttentionCase) =>
  `b${c.batch} h${c.heads} s${c.seq} d${c.dim}${c.causal ? ' causal' : ''}${c.layout === 'bshd' ? ' bshd' : ''}`;

export function attentionGraph(c: AttentionCase): Graph {
  const bshd = c.layout === 'bshd';
  const shape = bshd ? [c.batch, c.seq, c.heads, c.dim] : [c.batch, c.heads, c.seq, c.dim];
  const g = trace(`attn_${c.dim}_${c.seq}${c.causal ? '_causal' : ''}`, (t): Record<string, Tensor> => {
    const op = (name: string) => {
      const x = t.input(name, shape, bshd || c.f32 ? 'f32' : 'bf16');
      const y = c.f32 ? x : bshd ? x.cast('bf16') : x;
      return bshd ? y.permute(0, 2, 1, 3) : y;
    };
    const q = op('q'), k = op('k'), v = op('v');
    const y = attention(q, k, v, { causal: c.causal, scale: 1 / Math.sqrt(c.dim) });
    if (!c.grads) return { y };
    const cot = t.input('cot', [c.batch, c.heads, c.seq, c.dim], c.f32 ? 'f32' : 'bf16');
    return { y, loss: y.mul(cot).cast('f32').sum() };
  });
  return c.grads ? grad(g, { loss: 'loss', wrt: c.wrt ?? ['q', 'k', 'v'] }) : g;
}

/**
 * The attention backward alone (no forward in the program): dQ, dK, dV (those of `wrt`) from bf16 (f32
 * with `f32`) q, k, v, o, dout inputs [B, H, S, D], so the CUDA backend computes the softmax statistics
 * itself (a statistics-only forward pass) instead of reusing the forward's.
 */
export function attentionGradOnlyGraph(c: AttentionCase): Graph {
  return trace(`attn_grad_${c.dim}_${c.seq}${c.causal ? '_causal' : ''}`, (t): Record<string, Tensor> => {
    const shape = [c.batch, c.heads, c.seq, c.dim];
    const [q, k, v, o, dout] = ['q', 'k', 'v', 'o', 'dout'].map((n) => t.input(n, shape, c.f32 ? 'f32' : 'bf16')) as [Tensor, Tensor, Tensor, Tensor, Tensor];
    const attrs = { causal: c.causal, scale: 1 / Math.sqrt(c.dim) };
    const out: Record<string, Tensor> = {};
    for (const w of c.wrt ?? ['q', 'k', 'v']) out[`grad.${w}`] = t.op('attention_grad', [q, k, v, o, dout], { ...attrs, wrt: ['q', 'k', 'v'].indexOf(w) });
    return out;
  });
}

/**
 * Fusion pins: the number and kinds of kernels the compiler makes of known programs. A change in
 * fusion shows up here first; update a pin only after checking (KILN_DEBUG=kernels prints them)
 * that the new kernels are better, and say so in the commit.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../compiler/compile.ts';
import { Module, Parameter, type Tensor, crossEntropy, init, nn, trace } from '../../compiler/dsl/index.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import type { Graph } from '../../ir/graph.ts';

/** Kernel kinds of a program, without remat unless `o` asks (fusion alone; the default, fused remat, recomputes some values in the backward's kernels). */
const kinds = (g: Graph, o: Parameters<typeof compile>[1] = {}) => compile(g, { remat: 'off', ...o }).program.kernels.map((k) => k.kind);
const count = (ks: string[]) => ks.reduce<Record<string, number>>((m, k) => ((m[k] = (m[k] ?? 0) + 1), m), {});

/** A pre-LN transformer block (timm style): x + attn(LN(x)); x + mlp(LN(x)). */
class Block extends Module {
  norm1 = new nn.LayerNorm(64);
  attn = new nn.Attention(64, { numHeads: 4, qkvBias: true });
  norm2 = new nn.LayerNorm(64);
  mlp = new nn.Mlp(64, { hidden: 256, act: 'gelu_tanh' });
  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.norm1.forward(x)));
    return h.add(this.mlp.forward(this.norm2.forward(h)));
  }
}

describe('fusion pins', () => {
  it('softmax, layer_norm, rms_norm: one kernel each; cross-entropy: two (row, then batch mean)', () => {
    expect(kinds(trace('sm', (t) => ({ y: t.input('x', [8, 32]).softmax(-1) })))).toEqual(['loop']);
    expect(kinds(trace('ln', (t) => ({ y: t.input('x', [8, 32]).layerNorm() })))).toEqual(['loop']);
    expect(kinds(trace('rn', (t) => ({ y: t.input('x', [8, 32]).rmsNorm() })))).toEqual(['loop']);
    expect(kinds(trace('ce', (t) => ({ y: crossEntropy(t.input('x', [8, 10]), t.input('l', [8], 'i32')) })))).toEqual(['loop', 'loop']);
  });

  it('AdamW step of one parameter: gradient, both moments and the update in one kernel (+ step counter, + loss)', () => {
    class P extends Module {
      w = new Parameter([16, 8], init.zeros);
    }
    const p = new P();
    const fwd = trace('q', (t) => ({ loss: t.input('x', [16, 8]).mul(p.w).square().mean() }), { params: p });
    const c = compile(trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw' } }));
    expect(c.program.kernels.length).toBe(3);
    const update = c.program.kernels.find((k) => k.kind === 'loop' && k.grid.join() === '16,8')!;
    const outs = [...c.program.outputs].filter(([n]) => n.startsWith('next.') && n !== 'next.optim.step').map(([, b]) => b);
    const stores = update.kind === 'loop' ? update.body.filter((s) => s.k === 'store').map((s) => (s.k === 'store' ? s.buf : -1)) : [];
    expect(outs.length).toBe(3); // next.w, next.optim.exp_avg.w, next.optim.exp_avg_sq.w
    for (const o of outs) expect(stores).toContain(o);
  });

  it('transformer block forward: 7 kernels (LN, qkv+bias, attention, proj+bias+residual, LN, fc1+bias+GELU, fc2+bias+residual)', () => {
    const m = new Block();
    const g = trace('block', (t) => ({ y: m.forward(t.input('x', [2, 16, 64])) }), { params: m });
    expect(kinds(g)).toEqual(['loop', 'matmul', 'attention', 'matmul', 'loop', 'matmul', 'matmul']);
  });

  it('transformer block forward + backward (all parameter and input gradients): 29 kernels (33 without row loops), one fused attention backward', () => {
    const m = new Block();
    const g = trace('block_loss', (t) => ({ loss: m.forward(t.input('x', [2, 16, 64])).square().mean() }), { params: m });
    const gg = grad(g, { loss: 'loss', wrt: [...m.namedParameters().map(([n]) => n), 'x'] });
    // Row loops (compiler/fuse/merge.ts): 4 row-reduction kernels take in their elementwise consumers.
    // Sibling reductions: each LayerNorm's weight and bias gradients (sums over rows of dY·x̂ and of dY)
    // are one kernel (2 kernels fewer than with siblingReductions off).
    expect(count(kinds(gg, { rowLoops: false }))).toEqual({ loop: 19, matmul: 12, attention: 1, attention_grad: 1 });
    expect(count(kinds(gg, { siblingReductions: false }))).toEqual({ loop: 17, matmul: 12, attention: 1, attention_grad: 1 });
    const ks = kinds(gg);
    expect(ks.length).toBe(29);
    expect(count(ks)).toEqual({ loop: 15, matmul: 12, attention: 1, attention_grad: 1 });
    // The default (fused remat): the LayerNorms' normalized values are recomputed in the backward
    // instead of kept, 2 loop kernels more.
    expect(count(kinds(gg, { remat: 'fused' }))).toEqual({ loop: 17, matmul: 12, attention: 1, attention_grad: 1 });
  });
});

/**
 * Loss functions vs PyTorch (golden/losses_golden.py): values and input gradients, f32 on the CPU
 * backend, within 1e-5 normwise relative error; gradients of every loss also checked against finite
 * differences in f64 (1e-6).
 */
import { relErr } from '../support/compare.ts';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { type Tensor, cosineSimilarityLoss, crossEntropy, klDiagonalGaussian, l1Loss, mseLoss, trace } from '../../compiler/dsl/index.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { gradCheck } from '../support/gradcheck.ts';

const golden = loadSafetensors(new URL('../../golden/data/losses.safetensors', import.meta.url).pathname).tensors;


const cases: Record<string, { args: string[]; f: (x: Record<string, Tensor>) => Tensor }> = {
  mse: { args: ['a', 'b'], f: (x) => mseLoss(x.a!, x.b!) },
  l1: { args: ['a', 'b'], f: (x) => l1Loss(x.a!, x.b!) },
  ce: { args: ['logits', 'y'], f: (x) => crossEntropy(x.logits!, x.y!) },
  ce_smooth: { args: ['logits', 'y'], f: (x) => crossEntropy(x.logits!, x.y!, { labelSmoothing: 0.1 }) },
  ce_seq: { args: ['logits', 'y'], f: (x) => crossEntropy(x.logits!, x.y!) },
  kl: { args: ['mean', 'logvar'], f: (x) => klDiagonalGaussian(x.mean!, x.logvar!) },
  cos: { args: ['a', 'b'], f: (x) => cosineSimilarityLoss(x.a!, x.b!) },
};

describe('losses match PyTorch', () => {
  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      const feeds: Record<string, HostTensor> = {};
      for (const a of c.args) feeds[a] = golden.get(`${name}.in.${a}`)!;
      const g = trace(name, (t) => {
        const xs: Record<string, Tensor> = {};
        for (const a of c.args) xs[a] = t.input(a, feeds[a]!.shape, feeds[a]!.dtype);
        return { loss: c.f(xs) };
      });
      const floats = c.args.filter((a) => feeds[a]!.dtype === 'f32');
      const r = runGraph(grad(g, { loss: 'loss', wrt: floats }), feeds);
      expect(relErr(r.loss!.data, golden.get(`${name}.out`)!.data)).toBeLessThan(1e-5);
      for (const a of floats) expect(relErr(r[`grad.${a}`]!.data, golden.get(`${name}.grad.${a}`)!.data), `grad ${a}`).toBeLessThan(1e-5);
      const fd = gradCheck(g, feeds, 'loss', floats.filter((a) => name !== 'l1' || a === 'a'));
      expect(fd.relErr).toBeLessThan(1e-6);
    });
  }

  it('cross-entropy rejects labels of the wrong shape or dtype, naming this file', () => {
    expect(() => trace('bad', (t) => ({ l: crossEntropy(t.input('x', [4, 3]), t.input('y', [3], 'i32')) }))).toThrow(/cross_entropy.*losses\.test\.ts:\d+/);
    expect(() => trace('bad', (t) => ({ l: mseLoss(t.input('x', [4, 3]), t.input('y', [3, 4])) }))).toThrow(/mse_loss.*f32\[4,3\], f32\[3,4\]/);
  });
});

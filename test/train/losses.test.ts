/**
 * Loss functions vs PyTorch (golden/losses_golden.py): values and input gradients, f32 on the CPU
 * backend, within 1e-5 normwise relative error; gradients of every loss also checked against finite
 * differences in f64 (1e-6).
 */
import { relErr } from '../support/compare.ts';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { crossEntropy, mseLoss, trace } from '../../compiler/dsl/index.ts';
import { LOSS_CASES, lossProgram } from '../../golden/trainCases.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { gradCheck } from '../support/gradcheck.ts';

const golden = loadSafetensors(new URL('../../golden/data/losses.safetensors', import.meta.url).pathname).tensors;


describe('losses match PyTorch', () => {
  for (const name of Object.keys(LOSS_CASES)) {
    it(name, () => {
      const { forward: g, graph, feeds, floats } = lossProgram(name, golden);
      const r = runGraph(graph, feeds);
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

/**
 * @file The finite-difference check judges each input's gradient by its own size. Here the gradient
 * of `a` is ~1e4 and that of `b` ~1: a sin VJP wrong by a factor 1 + 1e-5 gives b a relative error of
 * 1e-5, which this check reports (1e-5 > 1e-6), while the old floor of 0.01 of the largest gradient of
 * all inputs (80 here) hid it (1e-5 / 80 ≈ 1.3e-7 < 1e-6). Verified by breaking vjp.ts's sin rule so.
 */
import { expect, it } from 'vitest';
import { trace } from '../../compiler/dsl/index.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { gradCheck } from '../support/gradcheck.ts';

it('a small gradient next to a large one is checked against its own size', () => {
  const g = trace('mixed_scales', (t) => {
    const a = t.input('a', [4]), c = t.input('c', [4]), b = t.input('b', [4]);
    return { loss: a.mul(c).mul(1e4).sum().add(b.sin().sum()) };
  });
  const feeds = {
    a: hostTensor('f32', [4], [0.1, 0.2, -0.3, 0.4]),
    c: hostTensor('f32', [4], [0.5, -0.6, 0.7, 0.8]),
    b: hostTensor('f32', [4], [0.3, 0.9, -1.1, 0.2]),
  };
  const r = gradCheck(g, feeds, 'loss', ['a', 'b']);
  expect(r.perInput.b).toBeLessThan(1e-6);
  expect(r.relErr).toBeLessThan(1e-6);
});

/**
 * Optimizer transforms vs torch.optim: a tiny MLP trained 10 steps with the same initial weights,
 * batches and learning rates as golden/optim_golden.py. Tolerance: every step's loss, the gradient
 * norm, the final parameters and their EMA within 1e-4 normwise relative error (max|a − b| / max|b|).
 */
import { relErr } from '../support/compare.ts';
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { crossEntropy, trace } from '../../compiler/dsl/index.ts';
import { OPTIMIZER_CASES } from '../../golden/trainCases.ts';
import { GRAD_NORM_OUTPUT, trainStep } from '../../compiler/transforms/trainStep.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { MlpClassifier } from '../../models/mlp.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { Session } from '../../runtime/session.ts';

const DIR = new URL('../../golden/data/optim/', import.meta.url).pathname;


describe('training step matches torch.optim for 10 steps (1e-4 relative)', () => {
  for (const c of OPTIMIZER_CASES) {
    it(c.file, async () => {
      const { tensors: t } = loadSafetensors(`${DIR}${c.file}.safetensors`);
      const [S, B, IN] = t.get('x')!.shape as number[];
      const model = new MlpClassifier({ inputs: IN!, hidden: [8], classes: 3 });
      const fwd = trace('mlp', (tc) => {
        const x = tc.input('x', [B!, IN!]);
        const y = tc.input('y', [B!], 'i32');
        return { loss: crossEntropy(model.forward(x), y) };
      }, { params: model });
      const step = trainStep(fwd, {
        loss: 'loss', optimizer: c.optimizer, clipGradNorm: c.clip, ema: c.ema === undefined ? undefined : { decay: c.ema },
      });
      const names = model.namedParameters().map(([n]) => n);
      const init = new Map(names.map((n) => [n, t.get(`param.${n}`)!] as [string, HostTensor]));
      const session = await Session.open(cpuBackend, step, init);
      const x = t.get('x')!.data, y = t.get('y')!.data, lr = t.get('lr')!.data;
      for (let s = 0; s < S!; s++) {
        const out = await session.run({
          x: hostTensor('f32', [B!, IN!], x.slice(s * B! * IN!, (s + 1) * B! * IN!)),
          y: hostTensor('i32', [B!], y.slice(s * B!, (s + 1) * B!)),
          lr: hostTensor('f32', [], [lr[s]!]),
        });
        expect(relErr(out.loss!.data, [t.get('loss')!.data[s]!]), `loss at step ${s}`).toBeLessThan(1e-4);
        if (c.clip !== undefined) expect(relErr(out[GRAD_NORM_OUTPUT]!.data, [t.get('grad_norm')!.data[s]!])).toBeLessThan(1e-4);
      }
      const state = await session.read();
      for (const n of names) {
        expect(relErr(state.get(n)!.data, t.get(`final.${n}`)!.data), `final ${n}`).toBeLessThan(1e-4);
        if (c.ema !== undefined) expect(relErr(state.get(`ema.${n}`)!.data, t.get(`ema.${n}`)!.data), `ema ${n}`).toBeLessThan(1e-4);
      }
      expect(state.get('optim.step')!.data[0]).toBe(S);
      // the parameters really moved (the comparison is not vacuous)
      expect(relErr(state.get(names[0]!)!.data, t.get(`param.${names[0]}`)!.data)).toBeGreaterThan(1e-2);
    });
  }
});

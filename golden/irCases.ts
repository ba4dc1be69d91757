/**
 * @file The programs of the golden IR tests (test/compiler/goldenIr.test.ts): each is traced here,
 * its Graph IR written to golden/ir/<name>.input.kiln, and the compiler's fused, scheduled and
 * memory-planned kernel program to golden/ir/<name>.expected.txt. Regenerate deliberately with
 * `npm run golden:ir` and review the diff.
 */
import { Module, Parameter, type Tensor, attention, concat, crossEntropy, init, nn, trace } from '../compiler/dsl/index.ts';
import { trainStep } from '../compiler/transforms/trainStep.ts';
import type { Graph } from '../ir/graph.ts';

class Mlp extends Module {
  fc1 = new nn.Linear(32, 64);
  fc2 = new nn.Linear(64, 10);
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(x).gelu());
  }
}

class Emb extends Module {
  table = new Parameter([10, 8], init.ones);
}

export const IR_CASES: Record<string, () => Graph> = {
  softmax: () => trace('softmax', (t) => ({ y: t.input('x', [4, 16]).softmax(-1) })),
  layer_norm_affine: () => {
    const ln = new nn.LayerNorm(16);
    return trace('layer_norm_affine', (t) => ({ y: ln.forward(t.input('x', [2, 3, 16])) }), { params: ln });
  },
  mlp_forward: () => {
    const m = new Mlp();
    return trace('mlp_forward', (t) => ({ logits: m.forward(t.input('x', [8, 32])) }), { params: m });
  },
  attention_heads: () =>
    trace('attention_heads', (t) => {
      const qkv = t.input('qkv', [2, 8, 3 * 32]).reshape(2, 8, 3, 4, 8).permute(2, 0, 3, 1, 4);
      const o = attention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2), { causal: true });
      return { y: o.transpose(1, 2).reshape(2, 8, 32) };
    }),
  views_pad_concat: () =>
    trace('views_pad_concat', (t) => {
      const x = t.input('x', [4, 6]);
      const y = concat([x.slice(1, 0, 6, 2).pad([1, 0], [0, 2], -1), x.mT.slice(0, 0, 3).pad([0, 0], [0, 1])], 0);
      return { y: y.exp() };
    }),
  embedding_grad: () => {
    const e = new Emb();
    const fwd = trace('embedding_grad', (t) => ({ loss: e.table.take(t.input('ids', [6], 'i32'), 0).square().sum() }), { params: e });
    return trainStep(fwd, { loss: 'loss', optimizer: { kind: 'sgd', momentum: 0.9 } });
  },
  mlp_train_adamw: () => {
    const m = new Mlp();
    const fwd = trace('mlp_train_adamw', (t) => ({ loss: crossEntropy(m.forward(t.input('x', [8, 32])), t.input('y', [8], 'i32')) }), { params: m });
    return trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw' }, clipGradNorm: 1 });
  },
};

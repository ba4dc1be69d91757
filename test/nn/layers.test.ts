/**
 * @file The nn layer library against tiny PyTorch goldens (golden/nn_layers.py →
 * golden/data/nn/*.safetensors), plus Kiln-side naming and shape behaviour.
 *
 * For every golden file: build the Kiln layer from the file's `config` metadata, check that its
 * parameter names are exactly the golden's `param.*` keys (and in the PyTorch state_dict order
 * recorded in `param_order`), trace it, feed `param.*` and `input.*`, run it on the CPU backend and
 * compare every `output.*`. The file's metadata entry `golden` holds {layer, config, param_order}.
 *
 * Tolerance (stated once): max |kiln − ref| ≤ TOL · (1 + max |ref|) per output, with TOL = 1e-5.
 * One exception: `timestep_dit` (256 frequencies, DiT's integer timesteps up to 999) uses TOL = 5e-5:
 * PyTorch's vectorized f32 exp is one ulp off the correctly rounded value on 3 of the 128
 * frequencies (indices 13, 44, 119), and one ulp of frequency 13 (≈ 0.39) times t = 999 moves the
 * cos/sin argument by 2.4e-5 (measured max error of `t_freq`: 2.39e-5; see nn/timestep.ts).
 * KILN_NN_ERR=1 prints every output's error and its margin.
 */
import { maxAbs, maxAbsDiff } from '../support/compare.ts';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { Module, trace } from '../../compiler/dsl/index.ts';
import {
  AdaLNModulation,
  Attention,
  LabelEmbedder,
  PatchEmbed,
  RMSNorm,
  SwiGLUFFN,
  TimestepEmbedder,
  VisionRotaryEmbeddingFast,
  dinov2SwiGLUHidden,
  lightningDiTSwiGLUHidden,
  modulate,
  rotateHalf,
  sincos1d,
  sincos2d,
  unpatchify,
} from '../../compiler/dsl/nn/index.ts';
import { ShapeError } from '../../ir/errors.ts';
import { fillUniform } from '../../ir/philox.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { Holder, builders, goldenFiles as files, loadGolden, traceGolden } from '../support/nnGoldens.ts';

const TOL = 1e-5;
const TOL_OVERRIDE: Record<string, number> = { timestep_dit: 5e-5 };


describe('nn layers vs PyTorch goldens', () => {
  it('finds the golden files, and every layer kind has a builder', () => {
    expect(files.length).toBeGreaterThanOrEqual(30);
    const layers = new Set(files.map((f) => loadGolden(f).layer));
    for (const l of layers) expect(Object.keys(builders)).toContain(l);
    for (const l of Object.keys(builders)) expect([...layers]).toContain(l);
  });

  for (const file of files) {
    it(file, () => {
      const g = loadGolden(file);
      const build = builders[g.layer]!(g.config);
      const params = g.byPrefix('param.');
      const inputs = g.byPrefix('input.');
      const want = g.byPrefix('output.');

      // Parameter names: exactly the golden's keys, in state_dict order, with the same shapes.
      const named = build.module?.namedParameters() ?? [];
      expect(named.map(([n]) => n)).toEqual(g.paramOrder);
      expect(new Set(named.map(([n]) => n))).toEqual(new Set(params.keys()));
      for (const [n, p] of named) expect(p.shape, n).toEqual(params.get(n)!.shape);

      // The golden carries what the autodiff tests need: a gradient for every parameter and float input.
      if (g.byPrefix('cotangent.').size > 0) {
        expect(new Set(g.byPrefix('grad.').keys())).toEqual(new Set(params.keys()));
        const floatIns = [...inputs].filter(([, v]) => v.dtype === 'f32').map(([k]) => k);
        expect(new Set(g.byPrefix('gradin.').keys())).toEqual(new Set(floatIns));
      }

      const { graph } = traceGolden(g);
      const feeds: Record<string, HostTensor> = {};
      for (const [k, v] of params) feeds[k] = v;
      for (const [k, v] of inputs) feeds[k] = v;
      const got = runGraph(graph, feeds);

      expect(new Set(Object.keys(got))).toEqual(new Set(want.keys()));
      const tol = TOL_OVERRIDE[g.name] ?? TOL;
      for (const [k, ref] of want) {
        const out = got[k]!;
        expect(out.shape, k).toEqual(ref.shape);
        const err = maxAbsDiff(out.data, ref.data);
        const bound = tol * (1 + maxAbs(ref.data));
        if (process.env.KILN_NN_ERR) console.log(`${g.name}.${k}: err ${err.toExponential(2)} max ${maxAbs(ref.data).toExponential(2)} ratio ${(err / bound * tol).toExponential(2)}`);
        expect(err, `${g.name} output '${k}': max abs err ${err.toExponential(2)} > ${bound.toExponential(2)}`).toBeLessThanOrEqual(bound);
      }
    });
  }
});

describe('nn layers: naming and shape behaviour', () => {
  it('SwiGLU hidden sizes follow LightningDiT (no rounding) and DINOv2 (multiple of 8)', () => {
    // Values computed with Python's int() on the reference expressions.
    const lightning: Array<[number, number]> = [[384, 1024], [768, 2048], [1024, 2730], [1152, 3072], [1536, 4096], [1792, 4778]];
    const dinov2: Array<[number, number]> = [[384, 1024], [768, 2048], [1024, 2736], [1152, 3072], [1536, 4096], [1792, 4784]];
    for (const [d, h] of lightning) expect(lightningDiTSwiGLUHidden(d, 4), `${d}`).toBe(h);
    for (const [d, h] of dinov2) expect(dinov2SwiGLUHidden(d, 4), `${d}`).toBe(h);
    expect(lightningDiTSwiGLUHidden(10)).toBe(26);
    expect(dinov2SwiGLUHidden(10)).toBe(32);
    expect(lightningDiTSwiGLUHidden(7, 3)).toBe(14);
  });

  it('SwiGLU parameter names are configurable', () => {
    const a = new SwiGLUFFN(8, 16);
    expect(a.namedParameters().map(([n]) => n)).toEqual(['w12.weight', 'w12.bias', 'w3.weight', 'w3.bias']);
    expect(a.inProj.weight.shape).toEqual([32, 8]);
    expect(a.outProj.weight.shape).toEqual([8, 16]);
    const b = new SwiGLUFFN(8, 16, { names: ['weights_in', 'weights_out'], bias: false, out: 4 });
    expect(b.namedParameters().map(([n]) => n)).toEqual(['weights_in.weight', 'weights_out.weight']);
    expect(b.outProj.weight.shape).toEqual([4, 16]);
  });

  it('Sequential-style keys: TimestepEmbedder mlp.0/mlp.2 and adaLN_modulation.1', () => {
    const te = new TimestepEmbedder(32);
    expect(te.namedParameters().map(([n]) => n)).toEqual(['mlp.0.weight', 'mlp.0.bias', 'mlp.2.weight', 'mlp.2.bias']);
    expect(te.mlp[0].weight.shape).toEqual([32, 256]);
    class Block extends Module {
      readonly attn = new Attention(16, { numHeads: 2, qkvBias: true, qkNorm: 'rmsnorm' });
      readonly adaLN_modulation = new AdaLNModulation(16, 16, 6);
    }
    expect(new Block().namedParameters().map(([n]) => n)).toEqual([
      'attn.qkv.weight', 'attn.qkv.bias', 'attn.q_norm.weight', 'attn.k_norm.weight', 'attn.proj.weight', 'attn.proj.bias',
      'adaLN_modulation.1.weight', 'adaLN_modulation.1.bias',
    ]);
    const ln = new Attention(16, { numHeads: 4, qkNorm: 'layernorm' });
    expect(ln.namedParameters().map(([n, p]) => `${n}:${p.shape.join('x')}`)).toEqual([
      'qkv.weight:48x16', 'q_norm.weight:4', 'q_norm.bias:4', 'k_norm.weight:4', 'k_norm.bias:4', 'proj.weight:16x16', 'proj.bias:16',
    ]);
  });

  it('adaLN modulation is zero-initialized by default (adaLN-Zero), not when asked', () => {
    const z = new Holder(new AdaLNModulation(4, 3, 6)).initState(1);
    expect(z.get('adaLN_modulation.1.weight')!.shape).toEqual([18, 4]);
    expect(maxAbs(z.get('adaLN_modulation.1.weight')!.data)).toBe(0);
    expect(maxAbs(z.get('adaLN_modulation.1.bias')!.data)).toBe(0);
    const nz = new Holder(new AdaLNModulation(4, 3, 6, { zeroInit: false })).initState(1);
    expect(maxAbs(nz.get('adaLN_modulation.1.weight')!.data)).toBeGreaterThan(0);
  });

  it('LabelEmbedder: a null row only with dropout; the training path drops where a Philox uniform < p', () => {
    expect(new LabelEmbedder(10, 4, 0.1).embedding_table.weight.shape).toEqual([11, 4]);
    expect(new LabelEmbedder(10, 4, 0).embedding_table.weight.shape).toEqual([10, 4]);
    const m = new LabelEmbedder(3, 2, 0.5);
    const b = 16;
    const g = trace('label_train', (t) => ({ out: m.forward(t.input('labels', [b], 'i32'), { train: true }) }), { params: m });
    const table = hostTensor('f32', [4, 2], [0, 0, 1, 1, 2, 2, 3, 3]); // row r = (r, r); row 3 is the null class
    const labels = hostTensor('i32', [b], Array.from({ length: b }, (_, i) => i % 3));
    const seed = hostTensor('u32', [2], [1234, 0]);
    const out = runGraph(g, { 'embedding_table.weight': table, labels, rng_seed: seed }).out!.data;
    const u = new Float64Array(b);
    fillUniform(u, 1234, 0, 0); // the trace's first random op uses stream 0
    let dropped = 0;
    for (let i = 0; i < b; i++) {
      const want = u[i]! < 0.5 ? 3 : i % 3;
      dropped += want === 3 ? 1 : 0;
      expect([out[2 * i], out[2 * i + 1]], `row ${i}`).toEqual([want, want]);
    }
    expect(dropped).toBeGreaterThan(0);
    expect(dropped).toBeLessThan(b);
    // Evaluation without forceDrop keeps every label; forceDrop without a null row is refused.
    const ge = trace('label_eval', (t) => ({ out: m.forward(t.input('labels', [b], 'i32')) }), { params: m });
    const oe = runGraph(ge, { 'embedding_table.weight': table, labels }).out!.data;
    for (let i = 0; i < b; i++) expect(oe[2 * i]).toBe(i % 3);
    const m0 = new LabelEmbedder(3, 2, 0);
    expect(() =>
      trace('bad', (t) => m0.forward(t.input('labels', [2], 'i32'), { forceDrop: t.input('drop', [2], 'i32') }), { params: m0 }),
    ).toThrow(/dropout_prob > 0/);
  });

  it('2D RoPE: tables follow the row/column halves and pairs, and shape mismatches are refused', () => {
    const r = VisionRotaryEmbeddingFast.forHeadDim(8, 3); // dim 4 → 2 freqs per axis, rotDim 8, 9 tokens
    expect([r.seqLen, r.rotDim]).toEqual([9, 8]);
    const { cos } = r.tables;
    // token (row 1, col 2) = 5: first half rotates with the row (pos 1), second half with the column (pos 2).
    const freqs = [1, 1 / 10000 ** 0.5];
    const row = Array.from(cos.subarray(5 * 8, 5 * 8 + 8));
    expect(row).toEqual([freqs[0]!, freqs[0]!, freqs[1]!, freqs[1]!, 2 * freqs[0]!, 2 * freqs[0]!, 2 * freqs[1]!, 2 * freqs[1]!].map(Math.cos));
    expect(() => trace('bad', (t) => r.forward(t.input('x', [1, 2, 8, 8])))).toThrow(ShapeError);
    expect(() => VisionRotaryEmbeddingFast.forHeadDim(6, 3)).toThrow(/multiple of 4/);
    // rotate_half on adjacent pairs
    const g = trace('rh', (t) => rotateHalf(t.input('x', [2, 4])));
    const o = runGraph(g, { x: hostTensor('f32', [2, 4], [1, 2, 3, 4, 5, 6, 7, 8]) }).out!.data;
    expect(Array.from(o)).toEqual([-2, 1, -4, 3, -6, 5, -8, 7]);
  });

  it('PatchConv2d.forward is the Conv2d output [B, dim, H/p, W/p] of the tokens', () => {
    const g0 = loadGolden('patch_embed_p2.safetensors');
    const c = g0.config;
    const m = new PatchEmbed(c.in_chans, c.embed_dim, c.patch_size, { bias: c.bias });
    const x = g0.byPrefix('input.').get('x')!;
    const ref = g0.byPrefix('output.').get('out')!; // [B, N, dim], N = h·w
    const g = trace('conv', (t) => m.proj.forward(t.input('x', x.shape)), { params: m });
    const feeds: Record<string, HostTensor> = { x };
    for (const [k, v] of g0.byPrefix('param.')) feeds[k] = v;
    const out = runGraph(g, feeds).out!;
    const [b, dim, h, w] = out.shape as [number, number, number, number];
    expect([b, dim, h * w]).toEqual([ref.shape[0], ref.shape[2], ref.shape[1]]);
    let err = 0;
    for (let i = 0; i < b; i++)
      for (let d = 0; d < dim; d++)
        for (let n = 0; n < h * w; n++) err = Math.max(err, Math.abs(out.data[(i * dim + d) * h * w + n]! - ref.data[(i * h * w + n) * dim + d]!));
    expect(err).toBeLessThanOrEqual(TOL * (1 + maxAbs(ref.data)));
  });

  it('unpatchify on a rectangular grid follows nhwpqc → nchpwq', () => {
    const [b, h, w, p, c] = [1, 2, 3, 2, 2];
    const n = b * h * w * p * p * c;
    const g = trace('unpatch', (t) => unpatchify(t.input('x', [b, h * w, p * p * c]), p, c, [h, w]));
    const out = runGraph(g, { x: hostTensor('f32', [b, h * w, p * p * c], Array.from({ length: n }, (_, i) => i)) }).out!;
    expect(out.shape).toEqual([b, c, h * p, w * p]);
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h * p; y++)
        for (let x = 0; x < w * p; x++) {
          const [hi, pi, wi, qi] = [Math.floor(y / p), y % p, Math.floor(x / p), x % p];
          const src = (((hi * w + wi) * p + pi) * p + qi) * c + ch;
          expect(out.data[(ch * h * p + y) * w * p + x]).toBe(src);
        }
    expect(() => trace('bad', (t) => unpatchify(t.input('x', [1, 5, 4]), 2, 1))).toThrow(/square/);
  });

  it('2D sin-cos embedding: the first half encodes the column, the second the row (rectangular grids too)', () => {
    const [gh, gw, d] = [2, 3, 8];
    const e = sincos2d(d, [gh, gw]);
    for (let r = 0; r < gh; r++)
      for (let c = 0; c < gw; c++) {
        const tok = Array.from(e.subarray((r * gw + c) * d, (r * gw + c + 1) * d));
        expect(tok).toEqual([...sincos1d(d / 2, [c]), ...sincos1d(d / 2, [r])]);
      }
    // 1D: sines first, then cosines.
    expect(Array.from(sincos1d(4, [2]))).toEqual([Math.sin(2), Math.sin(2 / 100), Math.cos(2), Math.cos(2 / 100)]);
  });

  it('modulate without shift (LightningDiT wo_shift) and RMSNorm keeps narrow inputs in their dtype', () => {
    const g = trace('mod', (t) => modulate(t.input('x', [1, 2, 2]), undefined, t.input('s', [1, 2])));
    const out = runGraph(g, { x: hostTensor('f32', [1, 2, 2], [1, 2, 3, 4]), s: hostTensor('f32', [1, 2], [1, -1]) }).out!;
    expect(Array.from(out.data)).toEqual([2, 0, 6, 0]);
    const rn = new RMSNorm(4, { dtype: 'bf16' });
    const g2 = trace('rms_bf16', (t) => rn.forward(t.input('x', [2, 4], 'bf16')), { params: rn });
    expect(g2.outputs.map((o) => g2.typeOf(o.id).dtype)).toEqual(['bf16']);
  });
});

/**
 * compiler/transforms/autocast.ts: which ops get casts and where (small graphs), idempotence, the f32
 * identity, bad dtypes; what stays f32 in whole training steps (inputs, optimizer state, every op but
 * matmul/attention/attention_grad); forward-first and whole-step autocast giving the same program;
 * the compiled LightningDiT training step without standalone cast kernels (and what its kernels load
 * and store); a training step with autocast on the kernel-cpu backend against the CPU oracle running
 * the same autocast graph.
 *
 * Tolerances of the session comparison (bf16): the CPU oracle accumulates matmuls in double and rounds
 * once to bf16; the kernel interpreter accumulates in f32 in loop order, as the GPU kernels do. Where an
 * exact result lies within an f32 rounding of a bf16 rounding boundary the two round to neighbouring
 * bf16 values (one ulp, 2^-8 relative), rarely but in every large matmul; that element then carries
 * the difference through the rest of the step. Per-step losses are averages, so they agree to ~1e-4
 * (measured ≤ 2e-5): bound 1e-3. After 3 AdamW steps each parameter agrees to 2^-7 ≈ 8e-3 of its own
 * largest magnitude (a bf16 ulp flip of a gradient element moves AdamW's g/√v step by up to lr; measured
 * ≤ 2.0e-3), with the noise rule of test/models/compiled.test.ts for elements whose gradient is zero in
 * exact arithmetic. A wrong transform, cast or kernel gives O(1) errors.
 */
import { describe, expect, it } from 'vitest';
import { cpuBackend } from '../../backends/cpu/executable.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { kernelCpuBackend } from '../../backends/kernel/executable.ts';
import type { Backend } from '../../backends/backend.ts';
import { compile } from '../../compiler/compile.ts';
import { attention, crossEntropy, trace } from '../../compiler/dsl/index.ts';
import { LOW_PRECISION_OPS, autocast } from '../../compiler/transforms/autocast.ts';
import { trainStep } from '../../compiler/transforms/trainStep.ts';
import type { Graph } from '../../ir/graph.ts';
import { printKernel } from '../../ir/kernel/print.ts';
import { printGraph } from '../../ir/printer.ts';
import { dce } from '../../compiler/passes/dce.ts';
import { simplify } from '../../compiler/passes/simplify.ts';
import { hostTensor } from '../../ir/tensor.ts';
import { LIGHTNINGDIT_TRAINING, flowMatchingLossGraph, gaussianNoise } from '../../models/flowMatching.ts';
import { LightningDiT } from '../../models/lightningdit.ts';
import { MlpClassifier } from '../../models/mlp.ts';
import { atPrecision, compileOn, defaultPrecision } from '../../runtime/compile.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { Session } from '../../runtime/session.ts';
import { kernelIO, standaloneCastKernels } from '../support/castKernels.ts';
import { ditConfigOf } from '../support/compiledModels.ts';
import { maxAbs, maxAbsDiff } from '../support/compare.ts';
import { ROOT } from '../support/nnGoldens.ts';

/** Data movement, exact in any dtype (pad: the VJP of slice, in a forward-first step's backward). */
const VIEWS = new Set(['reshape', 'permute', 'broadcast', 'slice', 'pad', 'concat']);

/** A small graph with a linear layer, attention, a norm, a softmax, a reduction and a loss. */
function smallGraph(): Graph {
  return trace('small', (t) => {
    const x = t.input('x', [2, 4, 8]);
    const w = t.input('w', [24, 8], 'f32', 'param');
    const qkv = x.matmul(w.transpose(0, 1)).reshape(2, 4, 3, 8);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.slice(2, i, i + 1).reshape(2, 4, 8));
    const a = attention(q!.layerNorm(), k!, v!);
    const s = a.softmax(-1).sum(-1);
    return { y: a, loss: s.square().mean() };
  });
}

/**
 * The dtype pins of an autocast graph: inputs as in the original; only matmul / attention /
 * attention_grad (and the casts and views feeding them) have low-precision operands; every other
 * op computes in f32 (norms and their statistics, softmax, reductions, losses, optimizer updates).
 */
function lowPrecisionViolations(g: Graph, orig: Graph, low: 'bf16' | 'f16'): string[] {
  const bad: string[] = [];
  for (const i of g.inputs) {
    const o = orig.inputByName(i.name);
    if (!o || o.type.dtype !== i.type.dtype) bad.push(`input ${i.name}: ${i.type.dtype}`);
  }
  for (const o of g.outputs) if (g.typeOf(o.id).dtype === low) bad.push(`output ${o.name} is ${low}`);
  for (const n of g.nodes) {
    const lowIn = n.inputs.some((i) => g.typeOf(i).dtype === low);
    if (n.type.dtype === low && !LOW_PRECISION_OPS.has(n.op) && n.op !== 'cast' && !VIEWS.has(n.op)) bad.push(`${n.op} %${n.id} computes in ${low}`);
    if (lowIn && !LOW_PRECISION_OPS.has(n.op) && !VIEWS.has(n.op) && !(n.op === 'cast' && n.type.dtype === 'f32')) bad.push(`${n.op} %${n.id} reads ${low}`);
  }
  return bad;
}

describe('autocast on small graphs', () => {
  it('casts matmul and attention operands (below their views, one cast per value) and casts their results back to f32', () => {
    const g = smallGraph();
    const a = autocast(g, { dtype: 'bf16' });
    const text = printGraph(a);
    // The weight is cast once, then transposed; the activation cast sits on x itself.
    expect(text).toMatch(/= cast %w \{dtype=bf16\}/);
    expect(text).toMatch(/= cast %x \{dtype=bf16\}/);
    const casts = a.nodes.filter((n) => n.op === 'cast');
    const mm = a.nodes.find((n) => n.op === 'matmul')!;
    const att = a.nodes.find((n) => n.op === 'attention')!;
    expect(mm.type.dtype).toBe('bf16');
    expect(att.type.dtype).toBe('bf16');
    for (const n of [mm, att]) for (const i of n.inputs) expect(a.typeOf(i).dtype).toBe('bf16');
    // Operand casts: x, w, the layer-normed q (a new value), and k, v come from the matmul result
    // itself: cast(mm_bf16 → f32) → bf16 is mm_bf16 (no cast pair); results back: matmul, attention.
    expect(casts.map((c) => `${a.typeOf(c.inputs[0]!).dtype}->${c.type.dtype}`).sort()).toEqual(['bf16->f32', 'bf16->f32', 'f32->bf16', 'f32->bf16', 'f32->bf16']);
    const ln = a.nodes.find((n) => n.op === 'layer_norm')!;
    expect(a.typeOf(ln.inputs[0]!).dtype).toBe('f32');
    expect(lowPrecisionViolations(a, g, 'bf16')).toEqual([]);
    // The outputs keep their types; f16 is the same rewrite.
    expect(a.outputs.map((o) => a.typeOf(o.id))).toEqual(g.outputs.map((o) => g.typeOf(o.id)));
    expect(printGraph(autocast(g, { dtype: 'f16' }))).toBe(text.replaceAll('bf16', 'f16'));
  });

  it('is idempotent, leaves f32 alone, and leaves graphs without f32 matmuls as they are', () => {
    const g = smallGraph();
    const once = autocast(g, { dtype: 'bf16' });
    expect(printGraph(autocast(once, { dtype: 'bf16' }))).toBe(printGraph(once));
    // Already-narrow nodes are not rewritten again in another dtype either.
    expect(printGraph(autocast(once, { dtype: 'f16' }))).toBe(printGraph(once));
    expect(autocast(g, { dtype: 'f32' })).toBe(g);
    expect(atPrecision(g, 'f32')).toBe(g);
    const noMatmul = trace('nomm', (t) => ({ y: t.input('x', [3, 5]).softmax(-1).layerNorm() }));
    expect(autocast(noMatmul, { dtype: 'bf16' })).toBe(noMatmul);
    const ints = trace('ints', (t) => ({ y: t.input('a', [2, 3], 'i32').matmul(t.input('b', [3, 2], 'i32')) }));
    expect(autocast(ints, { dtype: 'bf16' })).toBe(ints);
  });

  it('simplify transposes a product through the cast autocast puts after it: cast(a·b)ᵀ → cast(bᵀ·aᵀ)', () => {
    const g = trace('t', (t) => {
      const a = t.input('a', [3, 5], 'bf16'), b = t.input('b', [5, 4], 'bf16');
      return { y: a.matmul(b).cast('f32').transpose(0, 1) };
    });
    const s = dce(simplify(g));
    const mm = s.nodes.find((n) => n.op === 'matmul')!;
    expect(mm.type.shape).toEqual([4, 3]);
    expect(s.nodes.map((n) => n.op)).toEqual(['permute', 'permute', 'matmul', 'cast']);
    // Not when the product (or its cast) is used elsewhere too.
    const shared = trace('t2', (t) => {
      const c = t.input('a', [3, 5], 'bf16').matmul(t.input('b', [5, 4], 'bf16')).cast('f32');
      return { y: c.transpose(0, 1), z: c };
    });
    expect(dce(simplify(shared)).nodes.map((n) => n.op)).toEqual(['matmul', 'cast', 'permute']);
  });

  it('rejects a dtype that is not a precision, naming it', () => {
    const g = smallGraph();
    expect(() => autocast(g, { dtype: 'i32' as never })).toThrow("autocast: dtype 'i32' is not a precision (f32, bf16, f16)");
    expect(() => autocast(g, { dtype: 'fp16' as never })).toThrow(/'fp16' is not a precision/);
    expect(() => autocast(g, {} as never)).toThrow(/'undefined' is not a precision/);
  });

  it('compileOn: bf16 by default on cuda, f32 elsewhere, the backend hook and KILN_PRECISION first', () => {
    expect(defaultPrecision(cpuBackend)).toBe('f32');
    expect(defaultPrecision(kernelCpuBackend)).toBe('f32');
    expect(defaultPrecision({ ...cpuBackend, name: 'cuda' })).toBe('bf16');
    expect(defaultPrecision({ ...cpuBackend, name: 'wgsl', defaultPrecision: () => 'f16' })).toBe('f16');
    const saved = process.env.KILN_PRECISION;
    try {
      process.env.KILN_PRECISION = 'f32';
      expect(defaultPrecision({ ...cpuBackend, name: 'cuda' })).toBe('f32');
      process.env.KILN_PRECISION = 'half';
      expect(() => defaultPrecision(cpuBackend)).toThrow("KILN_PRECISION 'half' is not a precision");
    } finally {
      if (saved === undefined) delete process.env.KILN_PRECISION;
      else process.env.KILN_PRECISION = saved;
    }
  });

  it('the CPU oracle runs the autocast graph with bf16 rounding: the MLP differs from f32 by bf16 roundings, not more', async () => {
    const m = new MlpClassifier({ inputs: 16, hidden: [8], classes: 4 });
    const g = trace('mlp', (t) => ({ logits: m.forward(t.input('x', [3, 16])) }), { params: m });
    const feeds = { ...Object.fromEntries(m.initState(1)), x: gaussianNoise([3, 16], 5) };
    const f32 = runGraph(g, feeds).logits!;
    const exe = await compileOn(cpuBackend, g, { precision: 'bf16' });
    for (const [k, v] of m.initState(1)) await exe.write(k, v);
    const bf = (await exe.run({ x: feeds.x }, ['logits'])).logits!;
    exe.dispose();
    const e = maxAbsDiff(bf.data, f32.data) / maxAbs(f32.data);
    // Two matmuls, each three roundings of 2^-9: well above f32 noise (1e-7), below 12·2^-9.
    expect(e).toBeGreaterThan(1e-4);
    expect(e).toBeLessThan(12 * 2 ** -9);
  });
});

// ───────────────────────────── training steps ─────────────────────────────

const p1 = () => {
  const { tensors, metadata } = loadSafetensors(`${ROOT}/golden/data/lightningdit/lightningdit_p1.safetensors`);
  const model = new LightningDiT(ditConfigOf(JSON.parse(metadata.golden!).config));
  const init = new Map([...tensors].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v]));
  return { model, init };
};
const stepOpts = (model: LightningDiT) => ({
  loss: 'loss', metrics: ['mse', 'cos'], params: model.trainableParameterNames(),
  optimizer: LIGHTNINGDIT_TRAINING.optimizer, ema: LIGHTNINGDIT_TRAINING.ema, clipGradNorm: 1,
});

describe('autocast and the training step', () => {
  const { model, init } = p1();
  const B = 4;
  const fwd = flowMatchingLossGraph(model, B);
  const f32Step = trainStep(fwd, stepOpts(model));
  const forwardFirst = trainStep(autocast(fwd, { dtype: 'bf16' }), stepOpts(model));
  const wholeStep = autocast(f32Step, { dtype: 'bf16' });

  it('forward-first and whole-step autocast: inputs, optimizer state and every op but the tensor-core ones stay f32', () => {
    for (const s of [forwardFirst, wholeStep]) {
      expect(lowPrecisionViolations(s, f32Step, 'bf16')).toEqual([]);
      expect(s.inputs.map((i) => `${i.kind} ${i.name}: ${i.type.dtype}`)).toEqual(f32Step.inputs.map((i) => `${i.kind} ${i.name}: ${i.type.dtype}`));
      for (const o of s.outputs) expect(s.typeOf(o.id), o.name).toEqual(f32Step.typeOf(f32Step.output(o.name)!.id));
      const lowOps = s.nodes.filter((n) => LOW_PRECISION_OPS.has(n.op));
      expect(lowOps.length).toBeGreaterThan(40);
      for (const n of lowOps) expect(n.type.dtype, `${n.op} %${n.id}`).toBe('bf16');
    }
    // The optimizer has no matmul: the step's f32 matmuls are the forward's and the backward's only.
    expect(f32Step.nodes.filter((n) => LOW_PRECISION_OPS.has(n.op)).length).toBe(wholeStep.nodes.filter((n) => LOW_PRECISION_OPS.has(n.op)).length);
  });

  it('the structural pins catch a norm computed in bf16', () => {
    // What a transform that also lowered rms_norm (statistics from bf16 inputs) would produce.
    const g = trace('norm_bf16', (t) => {
      const x = t.input('x', [4, 8]);
      const w = t.input('w', [8, 8], 'f32', 'param');
      return { loss: x.matmul(w).cast('bf16').rmsNorm().cast('f32').sum() };
    });
    const a = autocast(g, { dtype: 'bf16' });
    expect(lowPrecisionViolations(a, g, 'bf16')).toEqual([expect.stringMatching(/^rms_norm %\d+ computes in bf16$/), expect.stringMatching(/^rms_norm %\d+ reads bf16$/)]);
  });

  it('compiled LightningDiT step (lightningdit_p1, batch 4): no standalone cast kernels, both ways, the same kernels', () => {
    const a = compile(forwardFirst), b = compile(wholeStep), f = compile(f32Step);
    for (const c of [a, b]) expect(standaloneCastKernels(c.program).map(printKernel)).toEqual([]);
    expect(a.program.kernels.length).toBe(b.program.kernels.length);
    // Measured: 206 kernels with bf16 against 203 in f32; the arena shrinks by 29% (431616 vs 609792 B).
    expect(b.program.kernels.length).toBeLessThanOrEqual(f.program.kernels.length + 3);
    expect(b.plan.arenaBytes).toBeLessThan(0.8 * f.plan.arenaBytes);
    const io = kernelIO(b.program);
    if (process.env.KILN_AUTOCAST_IO) console.log(io.join('\n'));
    // The weight casts fold into the matmul loads: every matmul reads its weight as f32 and rounds it.
    const mm = b.program.kernels.filter((k) => k.kind === 'matmul');
    const qkv = mm.find((k) => /load b(\d+)/.test(printKernel(k)) && printKernel(k).includes(`b${b.program.inputs.get('blocks.0.attn.qkv.weight')}[`))!;
    expect(printKernel(qkv)).toMatch(new RegExp(`b = bf16\\(load b${b.program.inputs.get('blocks.0.attn.qkv.weight')}\\[`));
    // Activations feeding matmuls are stored in bf16 by the kernels that produce them.
    const bf16Temps = b.program.buffers.filter((x) => x.kind === 'temp' && x.dtype === 'bf16').length;
    expect(bf16Temps).toBeGreaterThan(40);
    expect(b.program.buffers.filter((x) => x.kind === 'input' && x.dtype !== 'f32' && x.dtype !== 'i32' && x.dtype !== 'u32')).toEqual([]);
  });

  it('3 AdamW steps with autocast bf16 on kernel-cpu = the CPU oracle running the same autocast graph; the loss falls', async () => {
    const STEPS = 3, LR = 1e-3;
    const x1 = gaussianNoise([B, 4, 4, 4], 11);
    const y = hostTensor('i32', [B], [0, 3, 7, 9]);
    const train = async (backend: Backend) => {
      const s = await Session.open(backend, f32Step, init, { precision: 'bf16' });
      const losses: number[] = [];
      for (let k = 0; k < STEPS; k++) losses.push((await s.run({ x1, y, lr: hostTensor('f32', [], [LR]), rng_seed: hostTensor('u32', [2], [3, k]) }, ['loss'])).loss!.data[0]!);
      const state = await s.read();
      s.dispose();
      return { losses, state };
    };
    const ref = await train(cpuBackend);
    const ker = await train(kernelCpuBackend);
    expect(ref.losses[STEPS - 1]!).toBeLessThan(ref.losses[0]!);
    const lossErr = Math.max(...ker.losses.map((l, i) => Math.abs(l - ref.losses[i]!) / Math.abs(ref.losses[i]!)));
    expect(lossErr).toBeLessThan(1e-3);
    const params = model.trainableParameterNames();
    const M1 = Math.max(...params.map((p) => maxAbs(ref.state.get(`optim.exp_avg.${p}`)!.data)));
    let worst = 0, worstName = '';
    for (const p of params) {
      const a = ker.state.get(p)!.data, b = ref.state.get(p)!.data, m = ref.state.get(`optim.exp_avg.${p}`)!.data;
      const scale = Math.max(maxAbs(b), 1e-30);
      for (let i = 0; i < b.length; i++) {
        const d = Math.abs(a[i]! - b[i]!);
        if (Math.abs(m[i]!) <= 1e-6 * M1 && d <= 2 * STEPS * LR * (1 + 1e-6)) continue; // the noise rule
        if (d / scale > worst) [worst, worstName] = [d / scale, p];
      }
    }
    if (process.env.KILN_AUTOCAST_ERR) console.log(`bf16 session kernel-cpu vs cpu: losses ${lossErr.toExponential(2)}, worst parameter ${worst.toExponential(2)} (${worstName})`);
    expect(worst, worstName).toBeLessThan(2 ** -7);
    // Master weights and optimizer state stay f32 on the device.
    for (const [k, v] of ker.state) expect(v.dtype, k).toBe(k === 'optim.step' ? 'f32' : ref.state.get(k)!.dtype);
  });

  it('a cross-entropy MLP step compiles the same way from either order', () => {
    const m = new MlpClassifier({ inputs: 16, hidden: [8], classes: 4 });
    const f = trace('mlp', (t) => ({ loss: crossEntropy(m.forward(t.input('x', [2, 16])), t.input('y', [2], 'i32')) }), { params: m });
    const o = { loss: 'loss', optimizer: { kind: 'adamw' } as const };
    const a = compile(trainStep(autocast(f, { dtype: 'bf16' }), o)), b = compile(autocast(trainStep(f, o), { dtype: 'bf16' }));
    expect(a.program.kernels.length).toBe(b.program.kernels.length);
    expect(standaloneCastKernels(b.program)).toEqual([]);
  });
});

/**
 * Inception-v3 for FID (models/inception/*.ts, compiler/dsl/nn/conv.ts) against the PyTorch reference
 * golden/inception_golden.py → golden/data/inception/ (random weights, width ÷8: ~0.35 M parameters):
 * - the layers alone (Conv2d with a non-square kernel, stride and padding, its gradients w.r.t. input,
 *   weight and bias; max pooling with padding; average pooling with and without the padding counted;
 *   bilinear resizing up and down, non-square) on the CPU backend;
 * - the 256-d pool features of two images: 'fid' variant at 80 px without resizing (cpu and kernel-cpu),
 *   'fid' and 'torchvision' variants resized from 32 px to 299 (cpu);
 * - the full-size network's parameter names and shapes equal the reference's (keys_full.json: the
 *   script checked them against torchvision's Inception3 itself), and the loader's errors.
 * Tolerance: normwise relative error max|kiln − ref| / max|ref| ≤ 1e-5 for the single layers and the
 * resize (f32 reordering of a ≤ 18-term dot product, and of the 2-tap interpolation: measured ≤ 9e-7), ≤ 1e-4 for the features (about
 * 50 conv layers of f32 sums of up to 3,456 terms, in a different order than PyTorch's; measured 2–6e-7).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { nn, trace } from '../../compiler/dsl/index.ts';
import { grad } from '../../compiler/transforms/grad.ts';
import { KilnError } from '../../ir/errors.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { InceptionV3, loadInception, traceInceptionFeatures } from '../../models/inception.ts';
import { backendByName } from '../../runtime/backends.ts';
import { loadSafetensors, saveSafetensors } from '../../runtime/safetensors.ts';
import { runOnBackend } from '../support/backendRun.ts';
import { relErr } from '../support/compare.ts';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '../../golden/data/inception');
const WEIGHTS = join(DIR, 'w8.safetensors');
const cases = loadSafetensors(join(DIR, 'cases.safetensors')).tensors;
const get = (k: string): HostTensor => {
  const t = cases.get(k);
  if (!t) throw new Error(`golden cases: no '${k}'`);
  return t;
};
const LAYER_TOL = 1e-5, FEATURE_TOL = 1e-4;

describe('conv / pool / resize layers vs PyTorch', () => {
  const x = get('ops.x');
  const run = (f: (t: import('../../compiler/dsl/index.ts').Tensor) => import('../../compiler/dsl/index.ts').Tensor) =>
    runGraph(trace('layer', (t) => ({ y: f(t.input('x', [...x.shape])) })), { x }).y!;

  it('Conv2d (kernel 3x2, stride 2x1, padding 1x1, bias) and its gradients', () => {
    const conv = new nn.Conv2d(3, 4, [3, 2], { stride: [2, 1], padding: [1, 1] });
    const r = get('ops.r');
    const g = trace('conv', (t) => {
      const y = conv.forward(t.input('x', [...x.shape]));
      return { y, loss: y.mul(t.input('r', [...r.shape])).sum() };
    }, { params: conv });
    const dg = grad(g, { loss: 'loss', wrt: ['x', 'weight', 'bias'] });
    const out = runGraph(dg, { x, r, weight: get('ops.conv.weight'), bias: get('ops.conv.bias') });
    expect(out.y!.shape).toEqual(get('ops.conv').shape);
    expect(relErr(out.y!.data, get('ops.conv').data)).toBeLessThan(LAYER_TOL);
    for (const k of ['x', 'weight', 'bias']) expect(relErr(out[`grad.${k}`]!.data, get(`ops.grad.${k}`).data), `grad ${k}`).toBeLessThan(LAYER_TOL);
  });

  it('max pooling with padding, average pooling with and without the padding counted', () => {
    const cmp = (y: HostTensor, k: string) => {
      expect(y.shape, k).toEqual(get(k).shape);
      expect(relErr(y.data, get(k).data), k).toBeLessThan(LAYER_TOL);
    };
    cmp(run((t) => nn.maxPool2d(t, 3, 2, 1)), 'ops.maxpool');
    cmp(run((t) => nn.avgPool2d(t, 3, 2, 1, { countIncludePad: false })), 'ops.avgpool_excl');
    cmp(run((t) => nn.avgPool2d(t, [3, 2], 2, [1, 0])), 'ops.avgpool_incl');
  });

  it('bilinear resize (align_corners=False) up and down, non-square', () => {
    for (const [src, key, h, w] of [['images32', 'resize_up', 47, 61], ['images80', 'resize_down', 57, 45]] as const) {
      const im = get(src);
      const y = runGraph(trace('resize', (t) => ({ y: nn.resizeBilinear(t.input('x', [...im.shape]), h, w) })), { x: im }).y!;
      expect(y.shape).toEqual(get(key).shape);
      expect(relErr(y.data, get(key).data), key).toBeLessThan(LAYER_TOL);
    }
  });

  it('shape errors name the layer and the problem', () => {
    expect(() => run((t) => new nn.Conv2d(4, 2, 3).forward(t))).toThrow(/Conv2d.*expects 4 input channels, got 3/);
    expect(() => run((t) => nn.maxPool2d(t, 13))).toThrow(/maxPool2d.*does not fit a 9x11 input/);
    expect(() => run((t) => nn.avgPool2d(t, 3, 1, 2))).toThrow(/avgPool2d.*at most half the kernel/);
  });
});

describe('Inception-v3 features vs PyTorch (random weights, width ÷8)', () => {
  const features = async (variant: 'fid' | 'torchvision', resize: number | null, images: string, backend = 'cpu') => {
    const { model, weights } = loadInception(WEIGHTS, { variant, resize });
    const x = get(images);
    const g = traceInceptionFeatures(model, { batch: x.shape[0]!, height: x.shape[2]!, width: x.shape[3]! });
    const feeds = { ...Object.fromEntries(weights), images: x };
    return backend === 'cpu' ? runGraph(g, feeds).features! : (await runOnBackend(backendByName(backend), g, feeds)).features!;
  };

  it("'fid' variant at 80 px (no resize) on cpu and kernel-cpu", async () => {
    for (const b of ['cpu', 'kernel-cpu']) {
      const f = await features('fid', null, 'images80', b);
      expect(f.shape).toEqual([2, 256]);
      expect(relErr(f.data, get('fid80').data), b).toBeLessThan(FEATURE_TOL);
    }
  }, 240_000);

  it("'fid' and 'torchvision' variants, 32 px resized to 299", async () => {
    const fid = await features('fid', 299, 'images32');
    const tv = await features('torchvision', 299, 'images32');
    expect(relErr(fid.data, get('fid299').data)).toBeLessThan(FEATURE_TOL);
    expect(relErr(tv.data, get('tv299').data)).toBeLessThan(FEATURE_TOL);
    // The variants differ (pool of the padding, Mixed_7c's max pool): the test tells them apart.
    expect(relErr(tv.data, get('fid299').data)).toBeGreaterThan(100 * FEATURE_TOL);
  }, 240_000);
});

describe('Inception-v3 weights', () => {
  it("full-size parameter names and shapes are torchvision's (minus fc, AuxLogits, num_batches_tracked)", () => {
    const want = JSON.parse(readFileSync(join(DIR, 'keys_full.json'), 'utf8')) as Array<[string, number[]]>;
    const got = new InceptionV3().namedParameters().map(([n, p]) => [n, [...p.shape]]);
    expect(got).toEqual(want);
    expect(new InceptionV3().dim).toBe(2048);
    // torchvision's Inception3(num_classes=1008, aux_logits=False): 23,885,486 values, less fc (2048·1008 + 1008) and 94 num_batches_tracked.
    expect(new InceptionV3().numParams()).toBe(23_885_486 - (2048 * 1008 + 1008) - 94);
  });

  it('loads a state_dict file, ignoring fc and num_batches_tracked, reading the width from it', () => {
    const { model, weights, ignored } = loadInception(WEIGHTS);
    expect(model.config).toEqual({ variant: 'fid', width: 8, resize: 299, normalizeInput: true });
    expect(model.dim).toBe(256);
    expect(weights.size).toBe(model.namedParameters().length);
    expect(ignored.filter((k) => k.startsWith('fc.'))).toEqual(['fc.bias', 'fc.weight']);
    expect(ignored.filter((k) => k.endsWith('num_batches_tracked')).length).toBe(94);
  });

  it('refuses a file with a missing, unexpected or misshapen key, naming the file and the key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-inception-'));
    const src = loadSafetensors(WEIGHTS).tensors;
    const write = (name: string, edit: (m: Map<string, HostTensor>) => void) => {
      const m = new Map(src);
      edit(m);
      const p = join(dir, name);
      saveSafetensors(p, m);
      return p;
    };
    const missing = write('missing.safetensors', (m) => m.delete('Mixed_6b.branch7x7_2.bn.running_var'));
    expect(() => loadInception(missing)).toThrow(new RegExp(`${missing}: missing 1 Inception-v3 tensor\\(s\\): Mixed_6b.branch7x7_2.bn.running_var`));
    const extra = write('extra.safetensors', (m) => m.set('Mixed_8a.conv.weight', src.get('fc.bias')!));
    expect(() => loadInception(extra)).toThrow(/extra.safetensors: unexpected key 'Mixed_8a.conv.weight'/);
    const bad = write('bad.safetensors', (m) => m.set('Mixed_7c.branch_pool.conv.weight', src.get('Mixed_7b.branch_pool.conv.weight')!));
    expect(() => loadInception(bad)).toThrow(/'Mixed_7c.branch_pool.conv.weight' has shape \[24, 160, 1, 1\], Inception-v3 \(width ÷8\) expects \[24, 256, 1, 1\]/);
    const other = join(dir, 'other.safetensors');
    writeFileSync(other, readFileSync(join(DIR, 'fid_sets.safetensors')));
    expect(() => loadInception(other)).toThrow(KilnError);
    expect(() => loadInception(join(dir, 'none.safetensors'))).toThrow(/none.safetensors: no such Inception-v3 weights file/);
  });

  it('inputs smaller than 75 px after resizing are a clear error', () => {
    const { model } = loadInception(WEIGHTS, { resize: null });
    expect(() => traceInceptionFeatures(model, { batch: 1, height: 32, width: 32 })).toThrow(/32x32 inputs are smaller than the network's minimum 75x75/);
  });
});

/**
 * loadPretrained on an HF-format directory the test writes (config.json + model.safetensors with
 * random weights, as save_pretrained lays it out): the configured model and its weights, which trace
 * and run at the checkpoint's image size and at others (position-embedding interpolation), for DINOv2
 * and DINOv2 with registers; a wrong directory is an error naming the file.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { traceDinov2, dinov2ConfigFromHf, dinov2ParameterShapes } from '../../models/dinov2.ts';
import { loadPretrained } from '../../models/pretrained.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import { saveSafetensors } from '../../runtime/safetensors.ts';

function writeHfDir(configFile: string): { dir: string; weights: Map<string, HostTensor> } {
  const dir = join(mkdtempSync(join(tmpdir(), 'kiln-hf-')), 'model');
  mkdirSync(dir);
  copyFileSync(configFile, join(dir, 'config.json'));
  const config = dinov2ConfigFromHf(JSON.parse(readFileSync(configFile, 'utf8')));
  const rng = mulberry32(11);
  const weights = new Map<string, HostTensor>();
  for (const [name, shape] of dinov2ParameterShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    weights.set(name, { dtype: 'f32', shape: [...shape], data: Float32Array.from({ length: n }, () => (rng() - 0.5) * 0.1) });
  }
  saveSafetensors(join(dir, 'model.safetensors'), weights, { format: 'pt' });
  return { dir, weights };
}

describe('loadPretrained', () => {
  for (const variant of ['tiny', 'tiny_reg']) {
    it(`${variant}: config and weights from the directory; runs at its own size and at another`, () => {
      const { dir, weights } = writeHfDir(`golden/data/dinov2/${variant}.config.json`);
      const p = loadPretrained(dir);
      expect(p.config.variant).toBe(variant === 'tiny' ? 'dinov2' : 'dinov2_with_registers');
      expect([...p.weights.keys()]).toEqual([...weights.keys()]);
      for (const [k, v] of weights) expect(p.weights.get(k)!.data).toEqual(v.data);
      expect(p.model.namedParameters().map(([n]) => n)).toEqual([...weights.keys()]);
      for (const [h, w] of [p.config.imageSize, [28, 56]] as Array<[number, number]>) {
        const g = traceDinov2(p.model, { batch: 1, height: h, width: w });
        const feeds: Record<string, HostTensor> = Object.fromEntries(p.weights);
        feeds.pixel_values = { dtype: 'f32', shape: [1, 3, h, w], data: Float32Array.from({ length: 3 * h * w }, (_, i) => Math.sin(i)) };
        const out = runGraph(g, feeds);
        const tokens = (h / 14) * (w / 14);
        expect(out.patch_tokens!.shape).toEqual([1, tokens, p.config.hiddenSize]);
        expect(Array.from(out.patch_tokens!.data).every(Number.isFinite)).toBe(true);
      }
    });
  }

  it('errors name the missing or wrong file', () => {
    const { dir } = writeHfDir('golden/data/dinov2/tiny.config.json');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    expect(() => loadPretrained(dir)).toThrow(/config\.json: model_type "bert" is not supported/);
    expect(() => loadPretrained(join(dir, 'nope'))).toThrow(/no such checkpoint directory/);
    const { dir: d2 } = writeHfDir('golden/data/dinov2/tiny.config.json');
    copyFileSync('golden/data/dinov2/tiny_reg.config.json', join(d2, 'config.json'));
    expect(() => loadPretrained(d2)).toThrow(/model\.safetensors: .*missing .*register_tokens/);
  });
});

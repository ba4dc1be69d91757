/**
 * @file What `kiln eval` reads: image / feature / label sets from safetensors files (as `kiln sample
 * --save-samples` writes them: `images` [N, C, H, W], `samples`, `labels` i32 [N]; or `features` [N, D])
 * or from Fashion-MNIST (`fashion-mnist:test`, `fashion-mnist:train`, scaled to [−1, 1]); and a frozen
 * encoder given as an HF DINOv2 checkpoint directory (loadPretrained), its CLS token (pooler_output) as
 * the feature, run in batches on the chosen backend.
 */
import { existsSync } from 'node:fs';
import type { Backend } from '../backends/backend.ts';
import { KilnError } from '../ir/errors.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { traceDinov2 } from '../models/dinov2/model.ts';
import { loadPretrained } from '../models/pretrained.ts';
import { loadFashionMnist } from '../runtime/data/fashionMnist.ts';
import { loadSafetensors } from '../runtime/safetensors.ts';
import { Session } from '../runtime/session.ts';

export interface ImageSet {
  images?: HostTensor;
  features?: HostTensor;
  labels?: HostTensor;
  from: string;
}

/** A set from `spec` (a .safetensors file or fashion-mnist:<split>), at most `limit` items. */
export function loadSet(spec: string, limit?: number, tensor?: string): ImageSet {
  const take = (t: HostTensor | undefined): HostTensor | undefined => {
    if (!t || limit === undefined || t.shape[0]! <= limit) return t;
    const per = t.data.length / t.shape[0]!;
    return { dtype: t.dtype, shape: [limit, ...t.shape.slice(1)], data: t.data.slice(0, limit * per) } as HostTensor;
  };
  const fm = /^fashion-mnist(?::(train|test))?$/.exec(spec);
  if (fm) {
    const d = loadFashionMnist((fm[1] ?? 'test') as 'train' | 'test');
    const n = Math.min(limit ?? d.count, d.count);
    const images = hostTensor('f32', [n, 1, 28, 28], Float32Array.from(d.images.subarray(0, n * 784), (v) => (v / 255) * 2 - 1));
    return { images, labels: hostTensor('i32', [n], Int32Array.from(d.labels.subarray(0, n))), from: spec };
  }
  if (!existsSync(spec)) throw new KilnError(`${spec}: no such file (a .safetensors file or fashion-mnist[:test|train])`);
  const t = loadSafetensors(spec).tensors;
  const images = tensor ? t.get(tensor) : (t.get('images') ?? t.get('samples'));
  if (tensor && !images) throw new KilnError(`${spec}: no tensor '${tensor}' (it has ${[...t.keys()].join(', ')})`);
  const features = t.get('features');
  if (!images && !features) throw new KilnError(`${spec}: no 'images', 'samples' or 'features' tensor (it has ${[...t.keys()].join(', ')})`);
  return { images: take(images), features: take(features), labels: take(t.get('labels') ?? t.get('y')), from: spec };
}

export function count(s: ImageSet): number {
  return (s.images ?? s.features)!.shape[0]!;
}

/** Rows [from, to) of a batch tensor. */
export function rows(t: HostTensor, from: number, to: number): HostTensor {
  const per = t.data.length / t.shape[0]!;
  return { dtype: t.dtype, shape: [to - from, ...t.shape.slice(1)], data: t.data.slice(from * per, to * per) } as HostTensor;
}

export interface FeatureEncoder {
  name: string;
  encode(images: HostTensor): Promise<HostTensor>;
  dispose(): void;
}

/**
 * A DINOv2 encoder: images [N, C, H, W] in `range` → [0, 1], channels repeated to 3 when C = 1,
 * resized (nearest) to `size` (default: the smallest multiple of the patch size ≥ H), ImageNet-normalized.
 */
export async function dinov2Encoder(dir: string, backend: Backend, batch: number, range: readonly [number, number], size?: number): Promise<FeatureEncoder> {
  const p = loadPretrained(dir);
  const ps = p.config.patchSize;
  const sessions = new Map<number, Promise<Session>>();
  const open = (s: number) => {
    let x = sessions.get(s);
    if (!x) {
      x = Session.open(backend, traceDinov2(p.model, { batch, height: s, width: s, input: 'images', outputs: ['pooler_output'] }), p.weights);
      sessions.set(s, x);
    }
    return x;
  };
  return {
    name: `DINOv2 ${dir} (${p.config.hiddenSize}-d CLS token)`,
    async encode(images) {
      const [N, C, H, W] = images.shape as [number, number, number, number];
      if (C !== 1 && C !== 3) throw new KilnError(`encoder: images need 1 or 3 channels, got ${C}`);
      const S = size ?? Math.ceil(Math.max(H, W) / ps) * ps;
      if (S % ps !== 0) throw new KilnError(`--encoder-size ${S} is not a multiple of the encoder's patch size ${ps}`);
      const sess = await open(S);
      const out: number[] = [];
      let dim = 0;
      for (let b0 = 0; b0 < N; b0 += batch) {
        const x = new Float32Array(batch * 3 * S * S);
        for (let b = 0; b < Math.min(batch, N - b0); b++)
          for (let c = 0; c < 3; c++)
            for (let y = 0; y < S; y++)
              for (let xx = 0; xx < S; xx++) {
                const v = Number(images.data[(((b0 + b) * C + (C === 1 ? 0 : c)) * H + Math.floor((y * H) / S)) * W + Math.floor((xx * W) / S)]);
                x[((b * 3 + c) * S + y) * S + xx] = Math.min(1, Math.max(0, (v - range[0]) / (range[1] - range[0])));
              }
        const f = (await sess.run({ images: hostTensor('f32', [batch, 3, S, S], x) }, ['pooler_output'])).pooler_output!;
        dim = f.shape[1]!;
        for (let i = 0; i < Math.min(batch, N - b0) * dim; i++) out.push(Number(f.data[i]));
      }
      return hostTensor('f32', [N, dim], Float32Array.from(out));
    },
    dispose() {
      for (const s of sessions.values()) void s.then((x) => x.dispose(), () => undefined);
    },
  };
}

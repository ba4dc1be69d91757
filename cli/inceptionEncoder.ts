/**
 * @file The Inception-v3 feature encoder of `kiln eval fid`: weights from a safetensors file with
 * torchvision's state_dict keys (models/inception/weights.ts), images [N, C, H, W] with values in
 * `range` mapped to [0, 1] (clamped), one channel repeated to three, then as pytorch-fid: bilinear
 * resize to `resize` (299), 2x − 1, the 2048-d pool features; run in batches on the chosen backend
 * (the last batch padded with zeros, its padding rows dropped).
 */
import type { Backend } from '../backends/backend.ts';
import { KilnError } from '../ir/errors.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { type InceptionVariant, loadInception, traceInceptionFeatures } from '../models/inception.ts';
import type { Precision } from '../runtime/compile.ts';
import { Session } from '../runtime/session.ts';
import type { FeatureEncoder } from './evalInputs.ts';

export interface InceptionEncoderOptions {
  variant: InceptionVariant;
  /** Side the images are resized to (pytorch-fid: 299); null: none. */
  resize: number | null;
  batch: number;
  range: readonly [number, number];
  precision?: Precision;
}

export function inceptionEncoder(file: string, backend: Backend, o: InceptionEncoderOptions): FeatureEncoder {
  const { model, weights } = loadInception(file, { variant: o.variant, resize: o.resize });
  const sessions = new Map<string, Promise<Session>>();
  const open = (h: number, w: number) => {
    const key = `${h}x${w}`;
    let s = sessions.get(key);
    if (!s) {
      s = Session.open(backend, traceInceptionFeatures(model, { batch: o.batch, height: h, width: w }), weights, { precision: o.precision });
      sessions.set(key, s);
    }
    return s;
  };
  const [lo, hi] = o.range;
  return {
    name: `Inception-v3 ${file} (${o.variant} variant, ${model.dim}-d pool features${o.resize ? `, resized to ${o.resize}` : ''})`,
    async encode(images: HostTensor): Promise<HostTensor> {
      const [N, C, H, W] = images.shape as [number, number, number, number];
      if (images.shape.length !== 4 || (C !== 1 && C !== 3)) throw new KilnError(`Inception-v3: images must be [N, 1 or 3, H, W], got [${images.shape.join(', ')}]`);
      const sess = await open(H, W);
      const B = o.batch, plane = H * W;
      const out = new Float32Array(N * model.dim);
      for (let b0 = 0; b0 < N; b0 += B) {
        const m = Math.min(B, N - b0);
        const x = new Float32Array(B * 3 * plane);
        for (let b = 0; b < m; b++)
          for (let c = 0; c < 3; c++) {
            const src = ((b0 + b) * C + (C === 1 ? 0 : c)) * plane, dst = (b * 3 + c) * plane;
            for (let p = 0; p < plane; p++) x[dst + p] = Math.min(1, Math.max(0, (Number(images.data[src + p]) - lo) / (hi - lo)));
          }
        const f = (await sess.run({ images: hostTensor('f32', [B, 3, H, W], x) }, ['features'])).features!;
        out.set(f.data.subarray(0, m * model.dim) as Float32Array, b0 * model.dim);
      }
      return hostTensor('f32', [N, model.dim], out);
    },
    dispose() {
      for (const s of sessions.values()) void s.then((x) => x.dispose(), () => undefined);
    },
  };
}

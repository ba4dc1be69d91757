/**
 * @file Per-channel latent normalization stats of an FAE generator run, undone before decoding
 * (x·std + mean per channel of [B, C, ...]). Plain host math: the browser runtime shares it.
 */
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

export interface LatentStats {
  mean: ArrayLike<number>;
  std: ArrayLike<number>;
}

/** x·std + mean per channel of [B, C, ...]. */
export function denormalizeLatents(z: HostTensor, st: LatentStats): HostTensor {
  const C = z.shape[1]!;
  if (st.mean.length !== C || st.std.length !== C) throw new KilnError(`latent stats have ${st.mean.length} channels, the latents ${C}`);
  const per = z.data.length / (z.shape[0]! * C);
  const out = new Float32Array(z.data.length);
  for (let i = 0; i < out.length; i++) {
    const c = Math.floor(i / per) % C;
    out[i] = Number(z.data[i]) * st.std[c]! + st.mean[c]!;
  }
  return hostTensor('f32', z.shape, out);
}

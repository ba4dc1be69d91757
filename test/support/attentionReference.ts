/**
 * @file A direct f64 evaluation of the attention graphs of attentionGraphs.ts (y and dQ/dK/dV of
 * loss = Σ y·cot), with the cpu backend's rounding: bf16 operands in, f64 math (the oracle uses f32),
 * results rounded to bf16, D = rowsum(dO ∘ y) over the rounded y. The cpu backend interpreter needs
 * about a minute for one sequence-1000 head-dim-256 case; this needs about a second, and the GPU test
 * checks it against the cpu backend on the small cases of the same run. With `c.f32` nothing is rounded
 * (the f32 graphs of attentionGraph).
 */
import { roundTo } from '../../ir/dtype.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import type { AttentionCase } from './attentionGraphs.ts';

export function attentionReference(c: AttentionCase, feeds: Readonly<Record<string, HostTensor>>): Record<string, Float64Array> {
  const { batch: B, heads: H, seq: S, dim: D, causal } = c;
  const bshd = c.layout === 'bshd';
  const scale = 1 / Math.sqrt(D);
  const at = (b: number, h: number, s: number, d: number, input: boolean) =>
    input && bshd ? ((b * S + s) * H + h) * D + d : ((b * H + h) * S + s) * D + d;
  // f32 cases: no bf16 rounding anywhere (the exact f32 attention path, compared in f64).
  const bf = c.f32 ? (x: number) => x : (x: number) => roundTo('bf16', x);
  const n = B * H * S * D;
  const out: Record<string, Float64Array> = { y: new Float64Array(n), 'grad.q': new Float64Array(n), 'grad.k': new Float64Array(n), 'grad.v': new Float64Array(n) };
  const q = new Float64Array(S * D), k = new Float64Array(S * D), v = new Float64Array(S * D), dO = new Float64Array(S * D);
  const y = new Float64Array(S * D), dq = new Float64Array(S * D), dk = new Float64Array(S * D), dv = new Float64Array(S * D);
  const p = new Float64Array(S * S), ds = new Float64Array(S * S), Dsum = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) {
          const i = s * D + d;
          q[i] = bf(feeds.q!.data[at(b, h, s, d, true)]!);
          k[i] = bf(feeds.k!.data[at(b, h, s, d, true)]!);
          v[i] = bf(feeds.v!.data[at(b, h, s, d, true)]!);
          dO[i] = feeds.cot!.data[at(b, h, s, d, false)]!;
        }
      for (let s = 0; s < S; s++) {
        let m = -Infinity;
        for (let t = 0; t < S; t++) {
          let acc = 0;
          if (!causal || t <= s) for (let d = 0; d < D; d++) acc += q[s * D + d]! * k[t * D + d]!;
          const x = causal && t > s ? -Infinity : acc * scale;
          p[s * S + t] = x;
          if (x > m) m = x;
        }
        let l = 0;
        for (let t = 0; t < S; t++) l += (p[s * S + t] = Math.exp(p[s * S + t]! - m));
        for (let t = 0; t < S; t++) p[s * S + t]! /= l;
        y.fill(0, s * D, s * D + D);
        for (let t = 0; t < S; t++) {
          const w = p[s * S + t]!;
          if (w !== 0) for (let d = 0; d < D; d++) y[s * D + d]! += w * v[t * D + d]!;
        }
        let dsum = 0;
        for (let d = 0; d < D; d++) dsum += dO[s * D + d]! * (y[s * D + d] = bf(y[s * D + d]!));
        Dsum[s] = dsum;
      }
      for (let s = 0; s < S; s++)
        for (let t = 0; t < S; t++) {
          const w = p[s * S + t]!;
          if (w === 0) { ds[s * S + t] = 0; continue; }
          let dp = 0;
          for (let d = 0; d < D; d++) dp += dO[s * D + d]! * v[t * D + d]!;
          ds[s * S + t] = w * (dp - Dsum[s]!);
        }
      dq.fill(0); dk.fill(0); dv.fill(0);
      for (let s = 0; s < S; s++)
        for (let t = 0; t < S; t++) {
          const w = p[s * S + t]!, g = ds[s * S + t]!;
          if (w === 0 && g === 0) continue;
          for (let d = 0; d < D; d++) {
            dq[s * D + d]! += g * k[t * D + d]!;
            dk[t * D + d]! += g * q[s * D + d]!;
            dv[t * D + d]! += w * dO[s * D + d]!;
          }
        }
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) {
          const i = s * D + d, o = at(b, h, s, d, true);
          out.y![at(b, h, s, d, false)] = y[i]!;
          out['grad.q']![o] = bf(dq[i]! * scale);
          out['grad.k']![o] = bf(dk[i]! * scale);
          out['grad.v']![o] = bf(dv[i]!);
        }
    }
  return out;
}

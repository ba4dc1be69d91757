/**
 * @file The f32 attention check shared by the WGSL attention test and the GPU bench's correctness part:
 * y and dQ/dK/dV of loss = Σ y·cot for one AttentionCase (f32 operands) on a backend, against the f64
 * evaluation of attentionReference.ts (and, with `cpu`, that reference against the cpu backend). Errors are
 * normwise: max|got − want| / max(max|want|, 1): the floor is the inputs' scale (N(0,1)), for outputs that
 * are exactly 0 in exact arithmetic: dQ and dK at sequence length 1, where dS = P·(dP − D) with dP = Σ dO·v
 * and D = Σ dO·o summed in different orders (o = v), so f32 leaves |dS| ~ u·Σ|dO·v| ≈ 1e-6, not 0.
 */
import type { Backend } from '../../backends/backend.ts';
import { runGraph } from '../../backends/cpu/interpreter.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { numel } from '../../ir/shape.ts';
import { mulberry32 } from '../../runtime/prng.ts';
import { type AttentionCase, attentionGraph } from './attentionGraphs.ts';
import { attentionReference } from './attentionReference.ts';
import { runOnBackend } from './backendRun.ts';

export const ATTENTION_OUTS = ['y', 'grad.q', 'grad.k', 'grad.v'] as const;

export function normwise(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i]!)) return Infinity;
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / Math.max(m, 1);
}

/** N(0,1) feeds for every input of `c`'s f32 gradient graph. */
export function attentionFeeds(c: AttentionCase, seed: number): Record<string, HostTensor> {
  const g = attentionGraph({ ...c, grads: true, f32: true });
  const rnd = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const f: Record<string, HostTensor> = {};
  for (const inp of g.inputs) f[inp.name] = hostTensor('f32', inp.type.shape, Array.from({ length: numel(inp.type.shape) }, normal));
  return f;
}

/** Normwise errors per output; `refVsCpu` the reference's own error against the cpu backend (with `cpu`). */
export async function checkAttention(backend: Backend, c: AttentionCase, seed: number, cpu: boolean): Promise<{ err: Record<string, number>; refVsCpu?: number }> {
  const cf = { ...c, f32: true };
  const g = attentionGraph({ ...cf, grads: true });
  const f = attentionFeeds(cf, seed);
  const got = await runOnBackend(backend, g, f);
  const ref = attentionReference(cf, f);
  const err: Record<string, number> = {};
  for (const o of ATTENTION_OUTS) err[o] = normwise(got[o]!.data, ref[o]!);
  if (!cpu) return { err };
  const want = runGraph(g, f);
  let refVsCpu = 0;
  for (const o of ATTENTION_OUTS) refVsCpu = Math.max(refVsCpu, normwise(ref[o]!, want[o]!.data));
  return { err, refVsCpu };
}

/**
 * @file Benchmark: is fusing the qk-norm and RoPE prologues into flash attention worth it? One
 * LightningDiT-B/1 attention layer (dim 768, 12 heads of 64, 16×16 = 256 tokens, qkv bias; RMSNorm
 * qk-norm and 2D RoPE as LightningDiT applies them) as a bf16-autocast training step (forward, backward,
 * AdamW) on the CUDA backend, with and without each prologue. The step-time difference between a
 * variant and the plain layer is what the prologue costs as Kiln runs it today (its own fused loop
 * kernels, forward and backward); a prologue fused into the attention kernels could save at most that.
 * Prints one JSON line per variant (step ms; attention, matmul and other kernel ms from one profile).
 *
 *   KILN_BACKEND=cuda tsx bench/attentionPrologue.ts [batch=128]
 */
import { CudaDriver } from '../backends/cuda/driver.ts';
import type { CudaExecutable } from '../backends/cuda/executable.ts';
import { compile } from '../compiler/compile.ts';
import { type Tensor, nn, trace } from '../compiler/dsl/index.ts';
import { autocast } from '../compiler/transforms/autocast.ts';
import { trainStep } from '../compiler/transforms/trainStep.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';
import { backendByName, cudaOptionsFromEnv } from '../runtime/backends.ts';
import { defaultResident } from '../runtime/session.ts';

const batch = Number(process.argv[2] ?? 128);
const DIM = 768, HEADS = 12, GRID = 16, N = GRID * GRID;

for (const [name, qkNorm, useRope] of [['plain', 'none', false], ['qknorm', 'rmsnorm', false], ['rope', 'none', true], ['qknorm+rope', 'rmsnorm', true]] as const) {
  const m = new nn.Attention(DIM, { numHeads: HEADS, qkvBias: true, qkNorm });
  const rope = useRope ? nn.VisionRotaryEmbeddingFast.forHeadDim(DIM / HEADS, GRID) : undefined;
  const fwd = trace(`attn_${name.replace('+', '_')}`, (t): Record<string, Tensor> => ({ loss: m.forward(t.input('x', [batch, N, DIM]), rope).square().mean() }), { params: m });
  const graph = autocast(trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw' } }), { dtype: 'bf16' });
  const program = compile(graph).program;
  const exe = (await backendByName('cuda').compile(graph, program)) as CudaExecutable;
  const init = new Map<string, HostTensor>();
  for (const i of graph.inputs)
    if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
  for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
  const feeds: Record<string, HostTensor> = {};
  for (const i of graph.inputs) {
    if (i.kind !== 'data') continue;
    const n = numel(i.type.shape);
    feeds[i.name] = i.name === 'lr' ? hostTensor('f32', [], [1e-4]) : hostTensor(i.type.dtype, i.type.shape, Array.from({ length: n }, (_, k) => Math.sin(k * 0.37) * 0.5));
  }
  await exe.run(feeds, ['loss']);
  const cuda = CudaDriver.get(cudaOptionsFromEnv().libDir);
  for (let i = 0; i < 3; i++) exe.launchAll();
  cuda.synchronize();
  const steps = 10, t0 = performance.now();
  for (let i = 0; i < steps; i++) exe.launchAll();
  cuda.synchronize();
  const stepMs = (performance.now() - t0) / steps;
  const byKind: Record<string, number> = {};
  for (const p of exe.profile()) byKind[p.kind] = (byKind[p.kind] ?? 0) + p.ms;
  const ms = (k: string) => +(byKind[k] ?? 0).toFixed(3);
  const other = Object.entries(byKind).filter(([k]) => !['attention', 'attention_grad', 'matmul'].includes(k)).reduce((a, [, v]) => a + v, 0);
  console.log(JSON.stringify({
    variant: name, batch, stepMs: +stepMs.toFixed(3), attentionMs: +(ms('attention') + ms('attention_grad')).toFixed(3), matmulMs: ms('matmul'), otherMs: +other.toFixed(3),
    kernels: program.kernels.length, device: cuda.name,
  }));
  exe.dispose();
}

/**
 * @file Benchmark: is fusing the qk-norm and RoPE prologues into flash attention worth it? One
 * LightningDiT-B/1 attention layer (dim 768, 12 heads of 64, 16×16 = 256 tokens, qkv bias; RMSNorm
 * qk-norm and 2D RoPE as LightningDiT applies them) as a bf16-autocast training step (forward, backward,
 * AdamW) on the CUDA backend, with and without each prologue. The step-time difference between a
 * variant and the plain layer is what the prologue costs as Kiln runs it today (its own fused loop
 * kernels, forward and backward); a prologue fused into the attention kernels could save at most that.
 * Prints one JSON line per variant (step ms; attention, matmul and loop-kernel ms from one step's GPU
 * timeline), then a table with each prologue's cost per layer step and per B/1 step (x 12 layers). The
 * variants compile (NVRTC in parallel) before any is timed.
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
import { feedsFor } from './feeds.ts';

const batch = Number(process.argv[2] ?? 128);
const DIM = 768, HEADS = 12, GRID = 16, N = GRID * GRID;

const VARIANTS = [['plain', 'none', false], ['qknorm', 'rmsnorm', false], ['rope', 'none', true], ['qknorm+rope', 'rmsnorm', true]] as const;
const backend = backendByName('cuda');
// Every variant compiled first, one after another (built in parallel, the builds raced: window 2 on
// 2026-12-02 failed with cuModuleGetFunction ... named symbol not found), then each timed alone.
const built: Array<{ name: string; graph: ReturnType<typeof autocast>; program: ReturnType<typeof compile>['program']; exe: CudaExecutable }> = [];
for (const [name, qkNorm, useRope] of VARIANTS) built.push(await (async () => {
  const m = new nn.Attention(DIM, { numHeads: HEADS, qkvBias: true, qkNorm });
  const rope = useRope ? nn.VisionRotaryEmbeddingFast.forHeadDim(DIM / HEADS, GRID) : undefined;
  const fwd = trace(`attn_${name.replace('+', '_')}`, (t): Record<string, Tensor> => ({ loss: m.forward(t.input('x', [batch, N, DIM]), rope).square().mean() }), { params: m });
  const graph = autocast(trainStep(fwd, { loss: 'loss', optimizer: { kind: 'adamw' } }), { dtype: 'bf16' });
  const program = compile(graph).program;
  const exe = (await backend.compile(graph, program)) as CudaExecutable;
  return { name, graph, program, exe };
})());
const cuda = CudaDriver.get(cudaOptionsFromEnv().libDir);
const rows: Array<{ variant: string; stepMs: number; attentionMs: number; matmulMs: number; otherMs: number; timelineMs: number; kernels: number }> = [];
for (const { name, graph, program, exe } of built) {
  const init = new Map<string, HostTensor>();
  for (const i of graph.inputs)
    if (i.kind === 'param' || i.kind === 'frozen') init.set(i.name, hostTensor(i.type.dtype, i.type.shape, Array.from({ length: numel(i.type.shape) }, (_, k) => Math.cos(k * 0.11) * 0.02)));
  for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
  await exe.run(feedsFor(graph), ['loss']);
  for (let i = 0; i < 3; i++) exe.launchAll();
  cuda.synchronize();
  const steps = 20, t0 = performance.now();
  for (let i = 0; i < steps; i++) exe.launchAll();
  cuda.synchronize();
  const stepMs = (performance.now() - t0) / steps;
  // One step's launches on the GPU timeline (an event after each), summed by kernel kind.
  exe.timeline();
  const launches = exe.timeline();
  const byKind: Record<string, number> = {};
  let timelineMs = 0;
  for (const l of launches) {
    const kind = program.kernels[l.kernel]!.kind;
    byKind[kind] = (byKind[kind] ?? 0) + l.ms;
    timelineMs += l.ms;
  }
  // The slowest launches of that step (function, kind, ms): where a variant's extra time goes.
  const top = launches.map((l) => ({ fn: l.fn, kind: program.kernels[l.kernel]!.kind, ms: +l.ms.toFixed(3) })).sort((a, b) => b.ms - a.ms).slice(0, 8);
  console.log(JSON.stringify({ variant: name, slowestLaunches: top }));
  const ms = (k: string) => byKind[k] ?? 0;
  const row = {
    variant: name, stepMs: +stepMs.toFixed(3), attentionMs: +(ms('attention') + ms('attention_grad')).toFixed(3), matmulMs: +ms('matmul').toFixed(3),
    otherMs: +ms('loop').toFixed(3), timelineMs: +timelineMs.toFixed(3), kernels: program.kernels.length,
  };
  rows.push(row);
  console.log(JSON.stringify({ ...row, batch, device: cuda.name }));
  exe.dispose();
}
// What each prologue costs as Kiln runs it today (its loop kernels, forward and backward), per layer step
// and per LightningDiT-B/1 step (12 such layers); fused into the attention kernels it could save at most that.
const plain = rows[0]!;
console.log('| variant | step ms | attention kernels ms | matmul ms | loop kernels ms | kernels | prologue cost per layer step ms (step, loop kernels) | x 12 layers ms |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const d = r.stepMs - plain.stepMs, dl = r.otherMs - plain.otherMs;
  console.log(`| ${r.variant} | ${r.stepMs} | ${r.attentionMs} | ${r.matmulMs} | ${r.otherMs} | ${r.kernels} | ${r === plain ? '—' : `${d.toFixed(3)}, ${dl.toFixed(3)}`} | ${r === plain ? '—' : (12 * d).toFixed(2)} |`);
}

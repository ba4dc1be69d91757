/**
 * @file Benchmark: Kiln's flash attention (bf16 tensor cores) forward + backward at the shapes of
 * issue 10, one JSON line per shape; bench/attention.sh prints them next to PyTorch SDPA (bf16) measured
 * in the same call on the same card (bench/attention_sdpa.py).
 *
 *   KILN_BACKEND=cuda tsx bench/attention.ts 256,16,256,72 64,16,1024,64 32,16,256,256 64,16,1024,128,causal
 *
 * The program is y = attention(q, k, v) with loss = Σ y·cot and its gradients (bf16 operands [B,H,S,D]);
 * times are the attention kernels only (the forward kernel and the backward's launches: preprocess,
 * main kernel, dQ store), each synchronized on its own (KILN_PROFILE's method), median of 3 profiles of
 * 5 repeats after warm-up. FLOPs: SDPA's convention, forward 4·b·h·s²·d, backward 2.5× forward, halved
 * when causal.
 *
 * KILN_ATTN_VARIANTS='[{"name":"w8","fwd":{"warps":8},"bwd":{"bk":128,"warps":8}}]' measures tile variants
 * instead (fields override the kernel IR's chosen tile; same inputs; one line per variant, with `variant`).
 */
import { existsSync } from 'node:fs';
import type { AttentionTile, Kernel } from '../ir/kernel/types.ts';
import { CudaDriver } from '../backends/cuda/driver.ts';
import { type CudaExecutable, cudaBackend } from '../backends/cuda/executable.ts';
import { type FlashProbe, setFlashProbe } from '../backends/cuda/flashAttention.ts';
import { compile } from '../compiler/compile.ts';
import { tileIsValid } from '../compiler/schedule/attentionTiling.ts';
import { numel } from '../ir/shape.ts';
import { attentionGraph } from '../test/support/attentionGraphs.ts';

/**
 * Tile fields to override; `minDim` / `maxDim`: only at head dims in that range; `probe`: a
 * timing probe (setFlashProbe in backends/cuda/flashAttention.ts: wrong gradients, timing only).
 */
interface Variant { name?: string; fwd?: Partial<AttentionTile>; bwd?: Partial<AttentionTile>; minDim?: number; maxDim?: number; probe?: FlashProbe }
const variants: Variant[] = process.env.KILN_ATTN_VARIANTS ? JSON.parse(process.env.KILN_ATTN_VARIANTS) as Variant[] : [{}];

/** One compiled executable with its inputs uploaded. */
interface Prepared { spec: string; c: { batch: number; heads: number; seq: number; dim: number; causal: boolean }; variant: Variant; exe: CudaExecutable; kernels: Kernel[] }
// KILN_ATTN_WAIT_FILE: another process measures the GPU until that file exists (bench/attention.sh runs
// SDPA's measurement meanwhile): build (CPU) until then, and measure only after it. Builds go variant by
// variant (every shape's default tile first), each measured as soon as the file exists.
const waitFile = process.env.KILN_ATTN_WAIT_FILE;
const gpuFree = () => !waitFile || existsSync(waitFile);
const specs = process.argv.slice(2).map((spec) => {
  const [b, h, s, d, flag] = spec.split(',');
  return { spec, c: { batch: Number(b), heads: Number(h), seq: Number(s), dim: Number(d), causal: flag === 'causal', grads: true } };
});
const graphs = new Map<string, { g: ReturnType<typeof attentionGraph>; program: ReturnType<typeof compile>['program']; inputs: { name: string; bits: Uint16Array }[] }>();
function graphOf(spec: string, c: (typeof specs)[number]['c']) {
  let e = graphs.get(spec);
  if (!e) {
    const g = attentionGraph(c);
    // Inputs: random bf16 bits (values in ±[0.5, 2)), written straight into the input buffers
    // (converting ~75M numbers per tensor through hostTensor would take minutes on the host).
    let seed = 12345;
    const inputs = g.inputs.map((i) => {
      const n = numel(i.type.shape), bits = new Uint16Array(n);
      for (let k = 0; k < n; k++) {
        seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
        bits[k] = (seed & 0x8000) | (0x3f00 + ((seed >>> 8) & 0xff));
      }
      return { name: i.name, bits };
    });
    e = { g, program: compile(g).program, inputs };
    graphs.set(spec, e);
  }
  return e;
}
function measure({ spec, c, variant, exe, kernels }: Prepared): void {
  exe.launchAll();
  CudaDriver.get().synchronize();
  const times: { fwd: number; bwd: number }[] = [];
  for (let r = 0; r < 3; r++) {
    const p = exe.profile(5);
    times.push({ fwd: p.filter((k) => k.kind === 'attention').reduce((a, k) => a + k.ms, 0), bwd: p.filter((k) => k.kind === 'attention_grad').reduce((a, k) => a + k.ms, 0) });
  }
  times.sort((x, y) => x.fwd + x.bwd - (y.fwd + y.bwd));
  const { fwd, bwd } = times[1]!;
  const flopF = 4 * c.batch * c.heads * c.seq * c.seq * c.dim * (c.causal ? 0.5 : 1);
  const tf = (flop: number, ms: number) => +(flop / (ms * 1e-3) / 1e12).toFixed(1);
  console.log(JSON.stringify({
    shape: spec, ...(variant.name ? { variant: variant.name } : {}), fwdMs: +fwd.toFixed(3), bwdMs: +bwd.toFixed(3), totalMs: +(fwd + bwd).toFixed(3),
    fwdTflops: tf(flopF, fwd), bwdTflops: tf(2.5 * flopF, bwd), totalTflops: tf(3.5 * flopF, fwd + bwd),
    tiles: kernels.filter((k) => 'tile' in k && k.tile).map((k) => `${k.kind}:${JSON.stringify((k as { tile?: unknown }).tile)}`),
    device: CudaDriver.get().name,
  }));
  exe.dispose();
}
const pending: Prepared[] = [];
for (const variant of variants)
  for (const { spec, c } of specs) {
    if ((variant.maxDim !== undefined && c.dim > variant.maxDim) || (variant.minDim !== undefined && c.dim < variant.minDim)) continue;
    const { g, program, inputs } = graphOf(spec, c);
    const kernels: Kernel[] = program.kernels.map((k) => ((k.kind === 'attention' || k.kind === 'attention_grad') && k.tile ? { ...k, tile: { ...k.tile, ...(k.kind === 'attention' ? variant.fwd : variant.bwd) } } : k));
    const invalid = kernels.filter((k) => (k.kind === 'attention' || k.kind === 'attention_grad') && k.tile && !tileIsValid(k.tile, k.kind));
    if (invalid.length) {
      console.error(`${spec} ${variant.name}: invalid tile ${invalid.map((k) => JSON.stringify((k as { tile?: unknown }).tile)).join(', ')}, skipped`);
      continue;
    }
    setFlashProbe(variant.probe);
    const exe = (await cudaBackend.compile(g, { ...program, kernels })) as CudaExecutable;
    const ptr = (exe as unknown as { ptr: Map<number, bigint> }).ptr;
    for (const { name, bits } of inputs) CudaDriver.get().upload(ptr.get(program.inputs.get(name)!)!, bits);
    pending.push({ spec, c, variant, exe, kernels });
    if (gpuFree()) for (const p of pending.splice(0)) measure(p);
  }
while (!gpuFree()) await new Promise((r) => setTimeout(r, 50));
for (const p of pending.splice(0)) measure(p);

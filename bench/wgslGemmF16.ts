/**
 * @file f16 and f32 GEMMs through the whole compiler on the WGSL backend (GPU machine:
 * `tsx bench/wgslGemmF16.ts [SHAPE ...]`, then `python3 bench/wgsl_gemm_torch.py SHAPE ...` in the same
 * call for PyTorch fp32 (TF32 off), fp16 and bf16): 1024³, 4096³, 8192³ and the LightningDiT-B/1 and
 * XL/1 layer shapes of bench/gemmShapes.ts. f16: f16 inputs, f16 output (`--precision f16`'s matmul:
 * f32 accumulation; the subgroup-matrix GEMM where the adapter has it); f16o32: the same cast to an f32
 * output; f32: f32 in and out (the wide register-blocked GEMM). Times one submission of N runs after a warm-up; the cubes up to 4096 are
 * checked on 16 elements against an f64 dot product (f16: within one f16 rounding plus K·2^-24·Σ|ab|).
 * PRECISIONS=f16,f32 picks the precisions, BUDGET_S stops starting new shapes after that many seconds.
 * VARIANTS (comma-separated) renders the subgroup-matrix GEMM several ways in one call, each a '+'-joined
 * list of changes to the backend's defaults (robustness off on a real GPU: backends/wgsl/device.ts;
 * backends/wgsl/gemmSubgroupMatrix.ts SgmVariant's defaults; the schedule rule's tile): `robust` (Tint's
 * bounds clamps on), `norobust` (Dawn's disable_robustness, the default since 2026-12-02), `k` (an
 * m|n-contiguous operand transposed to k-contiguous on its way in), `always` (bounds guards on every
 * fetch and store), `scalar` (the epilogue per element: 16-bit stores as atomic and/or pairs), `atomic` (the pair epilogue's output bound atomic, each word an atomicStore), `g<N>`
 * (tile order groups), `p2` (two K steps loaded ahead), `const` (constant fragment offsets: one switch case per subgroup), `zeros` (inputs left zero, not uploaded), `t<BM>x<BN>x<BK>/<SM>x<SN>[/s1]` (block tile, subgroups per dimension, one
 * workgroup stage), `default` (none); `old` = `k+always+scalar` (the renderer before these choices).
 * A shape argument `NAME:V1;V2` takes its own variants. Shape `check` (4096×2048×128, the 128×256 tile's shape class) is checked like the small cubes.
 * Every executable is compiled first (concurrently), then each timed: wall ms per run of one submission
 * and GPU ms from timestamps (timestamp-query). One JSON line per (shape, precision, variant), then a table.
 */
import { type SgmVariant } from '../backends/wgsl/gemmSubgroupMatrix.ts';
import { wgslBackendWith } from '../backends/wgsl/executable.ts';
import type { WgslExecutable } from '../backends/wgsl/executable.ts';
import type { Backend } from '../backends/backend.ts';
import { type Graph, GraphBuilder } from '../ir/graph.ts';
import type { KernelProgram } from '../ir/kernel/types.ts';
import type { HostTensor } from '../ir/tensor.ts';
import { compileOn } from '../runtime/compile.ts';
import { GEMM_SHAPES } from './gemmShapes.ts';

const SHAPES: Record<string, [number, number, number, 'nn' | 'nt' | 'tn']> = {
  cube256: [256, 256, 256, 'nn'], cube1024: [1024, 1024, 1024, 'nn'], check: [4096, 2048, 128, 'nn'], ...GEMM_SHAPES,
  // 8192³ with B given as Bᵀ (k-contiguous, as the LightningDiT forward weights): its fragments load column-major.
  cube8192_nt: [8192, 8192, 8192, 'nt'],
};

/** A VARIANTS entry: the backend it names (see the file comment). */
function variantBackend(spec: string): Backend {
  let robustness: boolean | undefined; // the backend's default (off on a real GPU, device.ts)
  const sgm: { -readonly [K in keyof SgmVariant]: SgmVariant[K] } = {};
  let retile: { block: { m: number; n: number; k: number }; warps: { m: number; n: number }; stages: number } | undefined;
  for (const tok of spec.split('+')) {
    if (tok === 'default' || tok === '' || tok === 'zeros') continue;
    else if (tok === 'norobust') robustness = false;
    else if (tok === 'robust') robustness = true;
    else if (tok === 'k') sgm.mnStaging = 'k';
    else if (tok === 'always') sgm.guards = 'always';
    else if (tok === 'scalar') sgm.store = 'scalar';
    else if (tok === 'atomic') sgm.pairBinding = 'atomic';
    else if (tok === 'old') Object.assign(sgm, { mnStaging: 'k', guards: 'always', store: 'scalar' });
    else if (/^g\d+$/.test(tok)) sgm.group = Number(tok.slice(1));
    else if (tok === 'p2') sgm.prefetch = 2;
    else if (tok === 'const') sgm.constOffsets = true;
    else {
      const t = /^t(\d+)x(\d+)x(\d+)\/(\d+)x(\d+)(\/s1)?$/.exec(tok);
      if (!t) throw new Error(`VARIANTS: unknown change '${tok}' in '${spec}'`);
      retile = { block: { m: +t[1]!, n: +t[2]!, k: +t[3]! }, warps: { m: +t[4]!, n: +t[5]! }, stages: t[6] ? 1 : 2 };
    }
  }
  const inner = wgslBackendWith({ ...(robustness === undefined ? {} : { robustness }), sgm });
  if (!retile) return inner;
  const r = retile;
  return {
    ...inner,
    compile: (graph, program, info) => {
      const p = program as KernelProgram;
      return inner.compile(graph, { ...p, kernels: p.kernels.map((k) => (k.kind === 'matmul' && k.tile?.mma?.family === 'subgroup_matrix' ? { ...k, tile: { ...k.tile, ...r } } : k)) }, info);
    },
  };
}
const variants = (process.env.VARIANTS ?? 'default').split(',');
// A shape argument `NAME:V1;V2` takes its own variants instead of VARIANTS'.
const args = process.argv.slice(2).length ? process.argv.slice(2) : ['cube8192', 'cube4096', 'cube1024', ...Object.keys(GEMM_SHAPES).filter((s) => !s.startsWith('cube'))];
// f16o32: f16 inputs, the f16 matmul's result cast to f32 (stored as f32 words, not as 16-bit halves).
const precisions = (process.env.PRECISIONS ?? 'f16,f32').split(',') as Array<'f16' | 'f32' | 'f16o32'>;
const budget = Number(process.env.BUDGET_S ?? 1e9) * 1000;
const t0 = performance.now();

function graph(name: string, m: number, n: number, k: number, layout: 'nn' | 'nt' | 'tn', precision: 'f16' | 'f32' | 'f16o32'): Graph {
  const g = new GraphBuilder(`gemm_${name}_${precision}`);
  const dtype = precision === 'f32' ? 'f32' : 'f16';
  const t = (x: number) => g.op('permute', [x], { perm: [1, 0] });
  const a = layout === 'tn' ? t(g.input('a', { shape: [k, m], dtype })) : g.input('a', { shape: [m, k], dtype });
  const b = layout === 'nt' ? t(g.input('b', { shape: [n, k], dtype })) : g.input('b', { shape: [k, n], dtype });
  const y = g.op('matmul', [a, b]);
  g.output('y', precision === 'f16o32' ? g.op('cast', [y], { dtype: 'f32' }) : y);
  return g.build();
}

// Inputs: a 4096-value pattern of multiples of 1/64 in [-1, 1) (exact in f16), repeated with a shift per row.
const PATTERN = Float32Array.from({ length: 4099 }, (_, i) => (((i * 2654435761) >>> 20) % 128 - 64) / 64);
function values(n: number): Float32Array {
  const v = new Float32Array(n);
  for (let o = 0; o < n; o += 4096) v.set(PATTERN.subarray(o % 3, Math.min(4096, n - o) + (o % 3)), o);
  return v;
}

type Row = { shape: string; precision: string; variant: string; m: number; n: number; k: number; ms?: number; gpuMs?: number; tflops?: number; maxErr?: number; kernel?: string; compileMs?: number; error?: string };
type Job = { row: Row; g: Graph; dtype: 'f16' | 'f32'; check: boolean; zeros: boolean; exe?: Promise<WgslExecutable> };
// Every executable is compiled first, all at once (the driver's pipeline compiles overlap), then timed one by one.
const jobs: Job[] = [];
for (const arg of args) {
  const [name, own] = arg.split(':') as [string, string | undefined];
  const s = SHAPES[name];
  if (!s) throw new Error(`unknown shape '${name}' (have ${Object.keys(SHAPES).join(', ')})`);
  const [m, n, k, layout] = s;
  for (const precision of precisions) for (const variant of precision === 'f32' ? ['default'] : own ? own.split(';') : variants) {
    const g = graph(name, m, n, k, layout, precision);
    const check = (n <= 4096 && m <= 4096 && layout === 'nn') || name === 'check';
    // `zeros`: no upload (the buffers stay zero): variants of one shape in seconds, not one 8192² encode each.
    const job: Job = { row: { shape: name, precision, variant, m, n, k }, g, dtype: precision === 'f32' ? 'f32' : 'f16', check, zeros: variant.split('+').includes('zeros') && !check };
    const c0 = performance.now();
    job.exe = (compileOn(variantBackend(variant), g, { precision: job.dtype, cacheDir: '' }) as Promise<WgslExecutable>).then((e) => { job.row.compileMs = performance.now() - c0; return e; });
    job.exe.catch(() => undefined);
    jobs.push(job);
  }
}
await Promise.allSettled(jobs.map((j) => j.exe));
console.log(`[${((performance.now() - t0) / 1000).toFixed(1)}s] ${jobs.length} executables compiled`);
const rows: Row[] = [];
for (const { row, g, dtype, check, zeros, exe: pending } of jobs) {
  const { m, n, k } = row;
  if (performance.now() - t0 > budget) { console.log(`budget: skipping ${row.shape} ${row.precision} ${row.variant}`); continue; }
  try {
    const exe = await pending!;
    const feeds: Record<string, HostTensor> = zeros ? {} : Object.fromEntries(g.inputs.map((i) => [i.name, { dtype, shape: i.type.shape, data: values(i.type.shape[0]! * i.type.shape[1]!) }]));
    const src = exe.dispatches.flat().map((d) => d.source).join('\n');
    row.kernel = src.includes('subgroupMatrixMultiplyAccumulate') ? 'subgroup-matrix' : src.includes('As[kk * 32i') ? 'wide' : 'other';
    const out = zeros ? {} : await exe.run(feeds, check ? ['y'] : []);
    if (check) {
      const A = feeds.a!.data, B = feeds.b!.data, y = (out as Record<string, HostTensor>).y!.data;
      let worst = 0;
      for (let q = 0; q < 16; q++) {
        const i = (q * 7919) % m, j = (q * 104729) % n;
        let sum = 0, sa = 0;
        for (let p = 0; p < k; p++) { sum += A[i * k + p]! * B[p * n + j]!; sa += Math.abs(A[i * k + p]! * B[p * n + j]!); }
        const tol = dtype === 'f16' ? 2 ** -10 * Math.abs(sum) + k * 2 ** -24 * sa : k * 2 ** -24 * sa;
        worst = Math.max(worst, Math.abs(y[i * n + j]! - sum) / (tol || 1));
      }
      row.maxErr = worst; // in units of the tolerance (≤ 1 passes)
    }
    const flop = 2 * m * n * k;
    const reps = Math.max(3, Math.min(50, Math.round(0.3 / (flop / 100e12))));
    await exe.time(2);
    // Wall ms per run (one submission of `reps` runs), and the GPU's own (timestamps around the passes).
    let ms = Infinity, gpu = Infinity;
    for (let r = 0; r < 2; r++) { ms = Math.min(ms, await exe.time(reps)); gpu = Math.min(gpu, exe.gpuMs ?? Infinity); }
    row.ms = ms / reps;
    if (Number.isFinite(gpu)) row.gpuMs = gpu / reps;
    row.tflops = flop / (row.ms * 1e-3) / 1e12;
    exe.dispose();
  } catch (e) {
    row.error = (e as Error).message.slice(0, 400);
  }
  rows.push(row);
  console.log(JSON.stringify({ bench: 'wgsl-gemm', ...row }));
}
console.log('\n| shape | M×N×K | precision | variant | kernel | ms | GPU ms | TFLOP/s | TFLOP/s (GPU ms) | check (≤ 1) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.shape} | ${r.m}×${r.n}×${r.k} | ${r.precision} | ${r.variant} | ${r.kernel ?? '-'} | ${r.ms?.toFixed(3) ?? '-'} | ${r.gpuMs?.toFixed(3) ?? '-'} | ${r.tflops?.toFixed(1) ?? (r.error ? `ERROR ${r.error.slice(0, 100)}` : '-')} | ${r.gpuMs ? ((2 * r.m * r.n * r.k) / (r.gpuMs * 1e-3) / 1e12).toFixed(1) : '-'} | ${r.maxErr?.toFixed(3) ?? '-'} |`);
process.exit(0);

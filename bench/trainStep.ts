/**
 * @file Benchmark: one training step (forward, backward, AdamW) of named programs on Kiln's CUDA
 * backend, timed on the device after warm-up, at the precision a user gets (KILN_PRECISION, else the
 * backend's default: bf16 autocast on cuda, applied here exactly as compileOn applies it). Prints one
 * JSON line per program; bench/run.sh and bench/lightningdit.sh put them side by side with the PyTorch
 * baseline measured in the same call on the same card (bench/torch_baseline.py).
 *
 *   KILN_BACKEND=cuda tsx bench/trainStep.ts mlp:128 block:8 lightningdit:128 lightningdit_xl:64
 *
 * A spec is `program:batch` or `program:batch:size`; `lightningdit_xl` is `lightningdit` at size XL/1.
 * Device memory: `deviceMiB` is what the executable allocated (the arena of temporaries, inputs,
 * outputs, constants, GEMM scratch); Kiln allocates nothing during a step. `plannedMiB` is the
 * program's own part of it (arena + inputs, outputs, constants).
 * KILN_PROFILE=1 adds where the time goes: one step replayed with a GPU event after every launch
 * (CudaExecutable.timeline), the times summed per kind of kernel (generated tensor-core GEMM, cuBLAS,
 * cuBLAS epilogue, attention forward / backward, elementwise, row/reduction kernels), the CPU time to
 * enqueue one step, and the slowest launches of each kind (stderr, and `profile` in the JSON line);
 * KILN_PROFILE_OUT=FILE also writes every launch of that step (kernel index and name, function, kind, ms).
 * `byCategory`: the same times by a finer category (GEMMs by provider and shape, epilogues, weight vs
 * activation staging, attention, optimizer, norms, column reductions, elementwise: `category`).
 * KILN_RELAYOUT=1|0: the compile option `relayout` (compiler/schedule/layout.ts); KILN_ROW_LOOPS=1|0:
 * `rowLoops` (compiler/fuse/merge.ts); KILN_SPLIT_PARTS=1: `splitParts` (compiler/schedule/splitParts.ts);
 * KILN_SIBLING_REDUCTIONS=1|0: `siblingReductions` (compiler/fuse/merge.ts).
 * KILN_BENCH_DIGEST=1: `digest`, a SHA-256 of every resident input (parameters, EMA, optimizer state)
 * after the first step, for variants that must compute the same bits.
 * KILN_GEMM_AUTOTUNE=1 first measures the generated kernel against cuBLAS for each matmul signature
 * of the step not yet in the tuning cache (backends/cuda/gemmAutotune.ts) and reports the choice.
 * KILN_REMAT=off|cheap|blocks|auto: the compile option `remat` (compiler/transforms/remat.ts; default the
 * compiler's); the JSON line has `remat` (mode, recomputed nodes, extra FLOPs, kept bytes) and
 * `arenaMiB`. KILN_FUSION_COST=per-kernel|per-evaluation: the compile option `fusionCost`
 * (compiler/fuse/cost.ts FusionCostModel). KILN_BENCH_STEPS: timed steps (default 10 for LightningDiT, 20 otherwise; 3 warm-up).
 * KILN_GPU_LOCK=DIR: hold the GPU (an atomic mkdir of DIR) for the warm-up and timed steps (compiles,
 * NVRTC, autotuning and the first step run before; KILN_GPU_READY / KILN_GPU_AFTER: see acquire), so that compiles can run beside another process's timed steps (bench/lightningdit.sh).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { CudaDriver } from '../backends/cuda/driver.ts';
import { CudaExecutable } from '../backends/cuda/executable.ts';
import { autotuneGemms } from '../backends/cuda/gemmAutotune.ts';
import { tunedProgram } from '../backends/cuda/build.ts';
import { defaultPtxCacheDir } from '../backends/cuda/options.ts';
import { buildProgram } from '../cli/programs.ts';
import { type CompileOptions, compile } from '../compiler/compile.ts';
import { walkExpr, walkStmts } from '../ir/kernel/expr.ts';
import type { Expr, Kernel, KernelProgram, Stmt } from '../ir/kernel/types.ts';
import { numel } from '../ir/shape.ts';
import { type HostTensor, hostTensor } from '../ir/tensor.ts';
import { backendByName, cudaOptionsFromEnv } from '../runtime/backends.ts';
import { atPrecision, defaultPrecision } from '../runtime/compile.ts';
import { defaultResident } from '../runtime/session.ts';
import { feedsFor } from './feeds.ts';

/** Spec name → [program, default size]. */
const PROGRAMS: Record<string, [string, string | undefined]> = {
  block: ['block', '768x12x256'], dino: ['dino', '6x12'], lightningdit: ['lightningdit', 'B/1'], lightningdit_xl: ['lightningdit', 'XL/1'], mlp: ['mlp', undefined],
};

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Hold the GPU: an atomic mkdir of `dir` (released by rmdir), after the file KILN_GPU_AFTER (when set)
 * exists; KILN_GPU_READY (a file) is touched first, to say that this process is ready to time.
 * bench/lightningdit.sh opens KILN_GPU_AFTER when every process is ready, so that no compile runs
 * beside a timed step.
 */
function acquire(dir: string | undefined, ready = false): () => void {
  if (!dir) return () => {};
  if (ready && process.env.KILN_GPU_READY) writeFileSync(process.env.KILN_GPU_READY, '');
  const after = process.env.KILN_GPU_AFTER;
  while (after && !existsSync(after)) Atomics.wait(pause, 0, 0, 50);
  for (;;) {
    try {
      mkdirSync(dir);
      return () => existsSync(dir) && rmdirSync(dir);
    } catch {
      Atomics.wait(pause, 0, 0, 50);
    }
  }
}

const hasRowWork = (body: readonly Stmt[]): boolean => body.some((s) => s.k === 'reduce' || s.k === 'loop');

/** The kind of work a launch does, for the profile. */
function launchKind(k: Kernel, launch: 'kernel' | 'gemm', fn: string): string {
  switch (k.kind) {
    case 'matmul':
      if (launch === 'gemm') return 'matmul: cuBLAS';
      if (fn.endsWith('_epilogue')) return 'matmul: cuBLAS epilogue kernel';
      if (fn.includes('_stage_')) return 'matmul: cuBLAS operand staging';
      return k.tile?.provider === 'tensor-core' ? 'matmul: generated tensor-core' : 'matmul: generated SIMT';
    case 'attention': return 'attention forward';
    case 'attention_grad': return 'attention backward';
    case 'loop': return hasRowWork(k.body) ? 'row / reduction kernels' : 'elementwise kernels';
  }
}

/** A row kernel's mapping (LoopKernel.rows), for the profile. */
function rowsLabel(k: Extract<Kernel, { kind: 'loop' }>): string {
  const r = k.rows;
  return !r ? 'none' : r.kind === 'block' ? `block${r.threads}` : r.split > 1 ? `column split${r.split}` : 'column';
}

/**
 * The profile's finer category of a launch: GEMMs by provider and shape, their epilogue kernels, operand
 * staging (weight casts vs activations), attention forward / backward, the optimizer (loop kernels that
 * write the program's outputs: the parameter, moment and EMA updates), norms and other block-row
 * kernels, column reductions (bias and modulation gradients), elementwise kernels.
 */
export function category(program: KernelProgram, k: Kernel, launch: 'kernel' | 'gemm', fn: string): string {
  const kindOf = (e: Expr): string => {
    const bufs = new Set<number>();
    walkExpr(e, (x) => { if (x.k === 'load') bufs.add(x.buf); });
    return [...bufs].some((b) => program.buffers[b]!.kind === 'temp') ? 'activation' : 'weight';
  };
  switch (k.kind) {
    case 'matmul':
      if (launch === 'gemm') return `GEMM ${k.tile?.provider ?? '?'} ${k.m}x${k.n}x${k.k}${k.batch.length ? ` batch ${k.batch.join('x')}` : ''}`;
      if (fn.endsWith('_epilogue')) return 'GEMM epilogue kernels';
      if (fn.includes('_stage_')) return `staging: ${kindOf(fn.endsWith('_stage_a') ? k.a : k.b)} operand`;
      return `GEMM generated ${k.m}x${k.n}x${k.k}`;
    case 'attention': return 'attention forward';
    case 'attention_grad': return 'attention backward';
    case 'loop': {
      let out = false;
      walkStmts(k.body, () => {}, (st) => { if (st.k === 'store' && program.buffers[st.buf]!.kind === 'output') out = true; });
      if (out) return 'optimizer / EMA / outputs';
      if (!k.rows) return 'elementwise';
      return k.rows.kind === 'block' ? 'norms / block-row kernels' : 'column reductions (bias, modulation grads)';
    }
  }
}

function describe(k: Kernel): string {
  if (k.kind === 'matmul') return `m=${k.m} n=${k.n} k=${k.k} batch=${k.batch.join('x') || '-'} ${k.tile?.provider ?? ''} ${k.tile ? `${k.tile.a.staging}/${k.tile.b.staging}` : ''} epilogue ${k.epilogue.length}`;
  if (k.kind === 'loop') return `grid=${k.grid.join('x')}${k.rows ? ` rows=${rowsLabel(k)}` : ''}`;
  return `sq=${k.sq} sk=${k.sk} d=${k.dk} batch=${k.batch.join('x')}`;
}

function profile(exe: CudaExecutable, program: KernelProgram, enqueueMs: number, stepMs: number): Record<string, unknown> {
  exe.timeline(); // warm
  const tl = exe.timeline();
  const byKind: Record<string, { ms: number; launches: number }> = {};
  let gpu = 0, small = 0, smallN = 0;
  const rowsBy: Record<string, { ms: number; launches: number }> = {};
  const byCat: Record<string, { ms: number; launches: number }> = {};
  for (const l of tl) {
    const kern = program.kernels[l.kernel]!;
    const c = (byCat[category(program, kern, l.launch, l.fn)] ??= { ms: 0, launches: 0 });
    c.ms += l.ms;
    c.launches++;
    const kind = launchKind(kern, l.launch, l.fn);
    if (kern.kind === 'loop' && kern.rows) {
      const r = (rowsBy[kern.rows.kind === 'block' ? 'block' : kern.rows.split > 1 ? 'column split' : 'column'] ??= { ms: 0, launches: 0 });
      r.ms += l.ms;
      r.launches++;
    }
    const e = (byKind[kind] ??= { ms: 0, launches: 0 });
    e.ms += l.ms;
    e.launches++;
    gpu += l.ms;
    if (l.ms < 0.008) (small += l.ms), smallN++;
  }
  // The 4 slowest launches of each kind.
  const sorted = [...tl].sort((a, b) => b.ms - a.ms);
  const slowest = Object.keys(byKind).flatMap((kind) => sorted.filter((l) => launchKind(program.kernels[l.kernel]!, l.launch, l.fn) === kind).slice(0, 4)
    .map((l) => `${kind}: ${l.ms.toFixed(3)} ms ${l.fn} ${describe(program.kernels[l.kernel]!)} [${program.kernels[l.kernel]!.name}]`));
  // KILN_PROFILE_OUT=FILE: every launch of the step (program order) as JSON lines, for offline analysis.
  const dump = process.env.KILN_PROFILE_OUT;
  if (dump)
    writeFileSync(dump, tl.map((l) => JSON.stringify({ kernel: l.kernel, name: program.kernels[l.kernel]!.name, fn: l.fn, launch: l.launch, kind: launchKind(program.kernels[l.kernel]!, l.launch, l.fn), category: category(program, program.kernels[l.kernel]!, l.launch, l.fn), ms: Number(l.ms.toFixed(4)), what: describe(program.kernels[l.kernel]!) })).join('\n') + '\n');
  const kinds = Object.fromEntries(Object.entries(byKind).sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => [k, { ms: Number(v.ms.toFixed(3)), launches: v.launches, share: `${((100 * v.ms) / gpu).toFixed(1)}%` }]));
  return {
    gpuTimelineMs: Number(gpu.toFixed(3)), stepMs, cpuEnqueueMs: Number(enqueueMs.toFixed(3)), launches: tl.length,
    launchBound: { note: 'launches under 8 us on the timeline (the GPU likely waited for the CPU)', launches: smallN, ms: Number(small.toFixed(3)) },
    byKind: kinds,
    byCategory: Object.fromEntries(Object.entries(byCat).sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => [k, { ms: Number(v.ms.toFixed(3)), launches: v.launches }])),
    rowKernelsByMapping: Object.fromEntries(Object.entries(rowsBy).map(([k, v]) => [k, { ms: Number(v.ms.toFixed(3)), launches: v.launches }])), slowest,
  };
}

async function bench(spec: string): Promise<Record<string, unknown>> {
  const [key, b, sizeArg] = spec.split(':') as [string, string, string | undefined];
  const known = PROGRAMS[key];
  if (!known) throw new Error(`unknown program '${key}' (known: ${Object.keys(PROGRAMS).join(', ')})`);
  const [name, defaultSize] = known;
  const batch = Number(b);
  const backend = backendByName('cuda');
  const precision = await defaultPrecision(backend);
  const t0 = performance.now();
  const graph = atPrecision(buildProgram(name, { train: true, batch, size: sizeArg ?? defaultSize }), precision);
  const remat = process.env.KILN_REMAT ? (process.env.KILN_REMAT as CompileOptions['remat']) : undefined;
  const fusionCost = process.env.KILN_FUSION_COST as CompileOptions['fusionCost'] | undefined;
  const relayout = {
    ...(process.env.KILN_RELAYOUT ? { relayout: process.env.KILN_RELAYOUT !== '0' } : {}),
    ...(process.env.KILN_ROW_LOOPS ? { rowLoops: process.env.KILN_ROW_LOOPS !== '0' } : {}),
    ...(process.env.KILN_SPLIT_PARTS ? { splitParts: process.env.KILN_SPLIT_PARTS !== '0' } : {}),
    ...(process.env.KILN_SIBLING_REDUCTIONS ? { siblingReductions: process.env.KILN_SIBLING_REDUCTIONS !== '0' } : {}),
  };
  const compiled = compile(graph, { ...(remat ? { remat } : {}), ...(fusionCost ? { fusionCost } : {}), ...relayout });
  const compileMs = performance.now() - t0;
  const options = cudaOptionsFromEnv();
  const cuda = CudaDriver.get(options.libDir);
  const cacheDir = options.cacheDir ?? defaultPtxCacheDir();
  // KILN_GEMM_AUTOTUNE=1: measure the providers of the step's own matmuls first (the backend then
  // finds them in the tuning cache); the tuning program compiles outside the GPU lock, times inside.
  let autotune: Record<string, unknown> | undefined;
  if (options.autotune) {
    const t = performance.now();
    let unlock = () => {};
    try {
      const results = autotuneGemms(compiled.program, cuda.name, cacheDir, (p) => {
        const e = new CudaExecutable(graph, p, { ...options, gemmTuning: false, gemmDefault: 'generated' });
        if (!process.env.KILN_GPU_AFTER) unlock = acquire(process.env.KILN_GPU_LOCK);
        return e;
      });
      const chosen: Record<string, number> = {};
      for (const r of results) chosen[r.chosen] = (chosen[r.chosen] ?? 0) + r.kernels;
      autotune = { ms: Math.round(performance.now() - t), signatures: results.length, kernelsBy: chosen, results };
    } finally {
      unlock();
    }
  }
  const tuned = tunedProgram(cuda, compiled.program, options);
  const t1 = performance.now();
  const exe = (await backend.compile(graph, compiled.program)) as CudaExecutable;
  const nvrtcMs = performance.now() - t1;
  // Parameters: small deterministic values; state: zeros.
  const init = new Map<string, HostTensor>();
  for (const i of graph.inputs) {
    if (i.kind !== 'param' && i.kind !== 'frozen') continue;
    const v = new Float32Array(numel(i.type.shape)); // (a typed array: XL/1 has 675M parameters)
    for (let k = 0; k < v.length; k++) v[k] = Math.cos(k * 0.11) * 0.02;
    init.set(i.name, hostTensor(i.type.dtype, i.type.shape, v));
  }
  for (const [k, v] of defaultResident(graph, init)) await exe.write(k, v);
  const feeds = feedsFor(graph);
  const first = await exe.run(feeds, ['loss']); // first run: uploads; nothing is timed yet
  // KILN_BENCH_DIGEST=1: a SHA-256 of every resident input after the first step (parameters, EMA,
  // optimizer state): runs that must compute the same bits (a codegen variant) compare it.
  let digest: string | undefined;
  if (process.env.KILN_BENCH_DIGEST) {
    const h = createHash('sha256');
    for (const i of [...graph.inputs].filter((x) => x.kind !== 'data').sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const d = (await exe.read(i.name)).data as Float32Array;
      h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    digest = h.digest('hex').slice(0, 16);
  }
  const release = acquire(process.env.KILN_GPU_LOCK, true);
  try {
    const deviceBytes = exe.allocatedBytes;
    const steps = Number(process.env.KILN_BENCH_STEPS ?? (name === 'lightningdit' ? 10 : 20));
    for (let i = 0; i < Math.min(3, steps); i++) exe.launchAll();
    cuda.synchronize();
    let enqueue = 0;
    const t2 = performance.now();
    for (let i = 0; i < steps; i++) {
      const e = performance.now();
      exe.launchAll();
      enqueue += performance.now() - e;
    }
    cuda.synchronize();
    const stepMs = Number(((performance.now() - t2) / steps).toFixed(3));
    const prof = process.env.KILN_PROFILE ? profile(exe, tuned, enqueue / steps, stepMs) : undefined;
    exe.dispose();
    const p = tuned;
    const planned = p.arenaBytes + p.buffers.filter((x) => x.kind !== 'temp').reduce((s, x) => s + x.numel * (x.dtype === 'bf16' || x.dtype === 'f16' ? 2 : 4), 0);
    const matmuls = p.kernels.filter((k) => k.kind === 'matmul');
    const providers: Record<string, number> = {};
    for (const k of matmuls) if (k.kind === 'matmul') providers[k.tile?.provider ?? 'none'] = (providers[k.tile?.provider ?? 'none'] ?? 0) + 1;
    return {
      program: key, size: sizeArg ?? defaultSize, batch, precision, kernels: p.kernels.length, matmulProviders: providers,
      compileMs: Math.round(compileMs), nvrtcMs: Math.round(nvrtcMs), stepMs, loss: Number(first.loss!.data[0]!.toFixed(5)), ...(digest ? { digest } : {}),
      deviceMiB: Math.round(deviceBytes / 2 ** 20), plannedMiB: Math.round(planned / 2 ** 20), arenaMiB: Math.round(p.arenaBytes / 2 ** 20), device: cuda.name,
      remat: { ...compiled.remat, extraGFlops: Number((compiled.remat.extraFlops / 1e9).toFixed(1)) },
      ...(autotune ? { autotune } : {}), ...(prof ? { profile: prof } : {}),
    };
  } finally {
    release();
  }
}

for (const spec of process.argv.slice(2)) {
  const r = await bench(spec);
  const prof = r.profile as { byKind: Record<string, unknown>; slowest: string[] } | undefined;
  if (prof) {
    console.error(`profile ${spec}: ${JSON.stringify(prof.byKind)}`);
    for (const s of prof.slowest) console.error(`  ${s}`);
  }
  console.log(JSON.stringify(r));
}

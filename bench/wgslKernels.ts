/**
 * @file WGSL kernel benchmarks on the GPU machine (`tsx bench/wgslKernels.ts`): PARTS (comma list, in order)
 *  - check: the tiled attention (default on GPUs) against the f64 reference (test/support/wgslAttentionCheck.ts)
 *    at head dims 64, 72, 128, causal and not, sequence lengths 1, 17, 255, 256, with the adapter's tiles;
 *  - attn: attention forward (y only) and forward + backward (y and dQ, dK, dV of Σ y·cot) at ATTN_SHAPES
 *    (B,H,S,D[,causal];…), f32 operands, for ATTN_VARIANTS (tiled: the chosen tiles and the device's
 *    default softmax, tiled-serial: the same without subgroups, tiled16: 16×16 tiles, rows: the per-row kernels); ATTN_FWD_ONLY=1 times the forward only;
 *  - norm: LayerNorm and RMSNorm (no affine) over rows, forward (y) and forward + backward (dx of Σ y·cot),
 *    at NORM_SHAPES (ROWSxWIDTH,…), f32, with the GB/s of the forward's one read and one write;
 *  - step: training steps (forward, backward, AdamW) of cli/programs.ts programs at STEPS (program:batch,…:
 *    block = the pre-LN transformer block of bench/torch_baseline.py, lightningdit = LightningDiT-B/1),
 *    at the backend's default precision (f16 autocast where the adapter has shader-f16); PROFILE=1 adds the
 *    GPU time per dispatch summed by kind of work and the slowest dispatches (bench/wgslProfile.ts);
 *    KERNELS (comma list, default `default`): one run per kernel set (default: the backend's; main6d516a2:
 *    one workgroup per row-kernel grid point and atomic half-word stores, the kernels before the column
 *    mapping and the paired stores), in one process (pipelines they share are created once); STEP_REPS
 *    caps the timed steps;
 * Timing: one submission of REPS runs after a warm-up, wall clock around queue.onSubmittedWorkDone
 * (WgslExecutable.time), under KILN_GPU_LOCK when set (see withGpu), and GPU time from timestamps at the start and end of the submission (gpuMs; the
 * reported fwdMs/totalMs/TFLOP/s where the device has 'timestamp-query', the wall clock beside them); Dawn's bounds clamps on (the backend's default) unless ROBUSTNESS=off. One JSON line per measurement on stdout (`{"bench":…}`), progress on stderr.
 */
import { readFileSync } from 'node:fs';
import { type WgslBackendOptions, wgslBackendWith, type WgslExecutable } from '../backends/wgsl/executable.ts';
import { hostTensor, type HostTensor } from '../ir/tensor.ts';
import { numel } from '../ir/shape.ts';
import { atPrecision, compileOn, defaultPrecision } from '../runtime/compile.ts';
import { defaultResident } from '../runtime/session.ts';
import { buildProgram } from '../cli/programs.ts';
import { trace } from '../compiler/dsl/trace.ts';
import { grad } from '../compiler/transforms/grad.ts';
import type { Tensor } from '../compiler/dsl/tensor.ts';
import { type AttentionCase, attentionGraph, caseName } from '../test/support/attentionGraphs.ts';
import { checkAttention } from '../test/support/wgslAttentionCheck.ts';
import { profileSummary } from './wgslProfile.ts';
import { feedsFor } from './feeds.ts';
import { log, patternFeeds, pipelineProgress, timeExe, withGpu } from './wgslTiming.ts';

const parts = (process.env.PARTS ?? 'check,attn').split(',');
const emit = (o: Record<string, unknown>) => console.log(JSON.stringify({ bench: 'wgslKernels', ...o }));

/** CPU ms of this thread (the JS main thread) from /proc (Linux; NaN elsewhere): where Dawn compiles on it, the pipelines are serial. */
function mainThreadCpuMs(): number {
  try {
    const f = readFileSync('/proc/thread-self/stat', 'utf8');
    const p = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(p[11]) + Number(p[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

if (parts.includes('check')) {
  const be = wgslBackendWith({});
  const dev = await be.device();
  log(`check on ${dev.adapterInfo}, workgroup memory ${dev.limits.maxComputeWorkgroupStorageSize} B`);
  const seqs = (process.env.CHECK_SEQS ?? '1,17,255,256').split(',').map(Number);
  const bad: string[] = [];
  const dims = (process.env.CHECK_DIMS ?? '64,72,128').split(',').map(Number);
  for (const dim of dims)
    for (const causal of (process.env.CHECK_CAUSAL ?? 'false,true').split(',').map((x) => x === 'true'))
      for (const [i, seq] of seqs.entries()) {
        const c: AttentionCase = seq > 17 ? { batch: 1, heads: 2, seq, dim, causal, layout: i % 2 ? 'bshd' : 'bhsd' } : { batch: 2, heads: 3, seq, dim, causal, layout: i % 2 ? 'bshd' : 'bhsd' };
        const { err, refVsCpu } = await checkAttention(be, c, dim * 1000 + seq + (causal ? 7 : 0), seq <= 17);
        const worst = Math.max(...Object.values(err), refVsCpu ?? 0);
        if (!(worst <= 1e-4)) bad.push(caseName(c));
        emit({ part: 'check', case: caseName(c), ...err, refVsCpu, ok: worst <= 1e-4 });
      }
  log(`check: ${bad.length ? `FAILED ${bad.join('; ')}` : 'all within 1e-4'}`);
}

if (parts.includes('attn')) {
  const shapes = (process.env.ATTN_SHAPES ?? '256,16,256,72;64,16,1024,64').split(';').map((s) => {
    const p = s.split(',');
    return { batch: +p[0]!, heads: +p[1]!, seq: +p[2]!, dim: +p[3]!, causal: p[4] === 'causal' } as AttentionCase;
  });
  // Variants: tiled (the chosen tiles), tiled16 (16×16 tiles in every pass), rows (the per-row kernels).
  // tiled-serial: the chosen tiles with the forward's softmax statistics in workgroup memory (no subgroups).
  const variants = (process.env.ATTN_VARIANTS ?? 'tiled').split(',') as Array<'tiled' | 'tiled-serial' | 'tiled16' | 'rows'>;
  const fwdOnly = process.env.ATTN_FWD_ONLY === '1';
  const t16 = { rows: 16, cols: 16 };
  for (const c of shapes) {
    const flop = 4 * c.batch * c.heads * c.seq * c.seq * c.dim * (c.causal ? 0.5 : 1);
    for (const v of variants) {
      const be = wgslBackendWith({ onPipeline: pipelineProgress(`attn ${caseName(c)} ${v}`), attention: v === 'rows' ? 'rows' : 'tiled', ...(v === 'tiled16' ? { attentionTiles: { forward: t16, dq: t16, dkv: t16 } } : {}), ...(v === 'tiled-serial' ? { attentionSubgroups: false } : {}), robustness: process.env.ROBUSTNESS !== 'off' });
      try {
        const gf = attentionGraph({ ...c, f32: true });
        const ef = (await compileOn(be, gf, { precision: 'f32' })) as WgslExecutable;
        const fwd = await timeExe(ef, patternFeeds(gf.inputs), ['y'], 400);
        ef.dispose();
        let tot = { ms: NaN, gpuMs: NaN };
        if (!fwdOnly) {
          const gb = attentionGraph({ ...c, f32: true, grads: true });
          const eb = (await compileOn(be, gb, { precision: 'f32' })) as WgslExecutable;
          tot = await timeExe(eb, patternFeeds(gb.inputs), ['grad.q', 'grad.k', 'grad.v'], 800);
          eb.dispose();
        }
        // TFLOP/s from the GPU timestamps where there are some, else from the wall clock.
        const fwdMs = Number.isNaN(fwd.gpuMs) ? fwd.ms : fwd.gpuMs, totalMs = Number.isNaN(tot.gpuMs) ? tot.ms : tot.gpuMs;
        log(`attn ${caseName(c)} ${v}: fwd ${fwd.ms.toFixed(3)} ms wall / ${fwd.gpuMs.toFixed(3)} GPU, fwd+bwd ${tot.ms.toFixed(3)} wall / ${tot.gpuMs.toFixed(3)} GPU`);
        emit({ part: 'attn', shape: `${c.batch},${c.heads},${c.seq},${c.dim}${c.causal ? ',causal' : ''}`, variant: v, fwdMs, totalMs, fwdWallMs: fwd.ms, totalWallMs: tot.ms, fwdTflops: flop / (fwdMs * 1e-3) / 1e12, totalTflops: (3.5 * flop) / (totalMs * 1e-3) / 1e12 });
      } catch (e) {
        log(`attn ${caseName(c)} ${v}: ${(e as Error).message.slice(0, 300)}`);
        emit({ part: 'attn', shape: caseName(c), variant: v, error: (e as Error).message.slice(0, 300) });
      }
    }
  }
}
if (parts.includes('norm')) {
  const be = wgslBackendWith({ robustness: process.env.ROBUSTNESS !== 'off' });
  for (const spec of (process.env.NORM_SHAPES ?? '65536x768,32768x1152').split(',')) {
    const [rows, width] = spec.split('x').map(Number) as [number, number];
    for (const kind of ['layer_norm', 'rms_norm'] as const) {
      try {
        const fg = trace(`${kind}_${spec}`, (t): Record<string, Tensor> => {
          const xx = t.input('x', [rows, width]);
          const y = kind === 'layer_norm' ? xx.layerNorm() : xx.rmsNorm();
          return { y, loss: y.mul(t.input('cot', [rows, width])).sum() };
        });
        const gy = trace(`${kind}_${spec}_y`, (t): Record<string, Tensor> => {
          const xx = t.input('x', [rows, width]);
          return { y: kind === 'layer_norm' ? xx.layerNorm() : xx.rmsNorm() };
        });
        const gb = grad(fg, { loss: 'loss', wrt: ['x'] });
        const ef = (await compileOn(be, gy, { precision: 'f32' })) as WgslExecutable;
        const fwd = await timeExe(ef, patternFeeds(gy.inputs), ['y'], 300);
        ef.dispose();
        const eb = (await compileOn(be, gb, { precision: 'f32' })) as WgslExecutable;
        const tot = await timeExe(eb, patternFeeds(gb.inputs), ['grad.x'], 300);
        eb.dispose();
        const fwdMs = Number.isNaN(fwd.gpuMs) ? fwd.ms : fwd.gpuMs, totalMs = Number.isNaN(tot.gpuMs) ? tot.ms : tot.gpuMs;
        const gbs = (2 * rows * width * 4) / (fwdMs * 1e-3) / 1e9;
        log(`norm ${kind} ${spec}: fwd ${fwdMs.toFixed(3)} ms (${gbs.toFixed(0)} GB/s), fwd+bwd ${totalMs.toFixed(3)} ms`);
        emit({ part: 'norm', shape: `${kind} ${spec}`, variant: 'wgsl-f32', fwdMs, totalMs, fwdWallMs: fwd.ms, totalWallMs: tot.ms, fwdGBs: gbs });
      } catch (e) {
        log(`norm ${kind} ${spec}: ${(e as Error).message.slice(0, 300)}`);
        emit({ part: 'norm', shape: `${kind} ${spec}`, variant: 'wgsl-f32', error: (e as Error).message.slice(0, 300) });
      }
    }
  }
}

if (parts.includes('step')) {
  const be = wgslBackendWith({ robustness: process.env.ROBUSTNESS !== 'off' });
  const precision = (process.env.KILN_PRECISION as 'f32' | 'f16' | undefined) ?? (await defaultPrecision(be));
  // KERNELS: per run, the default kernels or main 6d516a2's (one workgroup per row-kernel grid point, atomic half-word stores).
  const kernelSets = (process.env.KERNELS ?? 'default').split(',');
  const KERNEL_SETS: Record<string, WgslBackendOptions> = { default: {}, main6d516a2: { rowMapping: 'block', elementwisePairs: false } };
  for (const spec of (process.env.STEPS ?? 'lightningdit:128,block:64').split(',')) {
    const [name, b, size] = spec.split(':') as [string, string, string | undefined];
    const graph = atPrecision(buildProgram(name, { train: true, batch: Number(b), size: size ?? (name === 'block' ? '768x12x256' : 'B/1') }), precision);
    let resident: Map<string, HostTensor> | undefined;
    for (const set of kernelSets) {
      const tag = `${spec} kernels=${set}`, variant = `wgsl-${precision}${set === 'default' ? '' : `-${set}`}`;
      const kernels = KERNEL_SETS[set];
      if (!kernels) throw new Error(`KERNELS: no kernel set '${set}' (${Object.keys(KERNEL_SETS).join(', ')})`);
      try {
        const t0 = performance.now();
        // Phases: Kiln (trace, autocast, compile) until the first generated source, then WGSL generation and pipelines (compileStats);
        // the process's CPU time while the pipelines are created (Dawn's and the driver's threads included).
        let firstSource = 0;
        let cpu0: NodeJS.CpuUsage | undefined, main0 = NaN;
        const beStep = wgslBackendWith({ ...kernels, robustness: process.env.ROBUSTNESS !== 'off', onPipeline: pipelineProgress(`step ${tag}`), onSource: () => { if (!firstSource) { firstSource = performance.now(); cpu0 = process.cpuUsage(); main0 = mainThreadCpuMs(); log(`step ${tag}: Kiln compile + WGSL generation ${(firstSource - t0).toFixed(0)} ms, creating pipelines`); } } });
        const exe = (await compileOn(beStep, graph, { precision, cacheDir: '' })) as WgslExecutable;
        const compileMs = performance.now() - t0;
        const cu = process.cpuUsage(cpu0);
        const cs = exe.compileStats;
        const pipelineCpuMs = (cu.user + cu.system) / 1000, pipelineMainCpuMs = mainThreadCpuMs() - main0;
        log(`step ${tag}: compiled (${precision}) in ${compileMs.toFixed(0)} ms, CPU ${pipelineCpuMs.toFixed(0)} ms while creating pipelines (${pipelineMainCpuMs.toFixed(0)} ms of it on the main thread): ${JSON.stringify({ ...cs, readyAt: undefined })}`);
        emit({ part: 'stepCompile', shape: spec, variant, compileMs, kilnMs: firstSource - t0 - (cs?.codegenMs ?? 0), pipelineCpuMs, pipelineMainCpuMs, ...cs });
        if (!resident) {
          const init = new Map<string, HostTensor>();
          for (const i of graph.inputs) {
            if (i.kind !== 'param' && i.kind !== 'frozen') continue;
            const v = new Float32Array(numel(i.type.shape));
            for (let k = 0; k < v.length; k++) v[k] = (((k * 7919) % 2001) - 1000) * 2e-5;
            init.set(i.name, hostTensor(i.type.dtype, i.type.shape, v));
          }
          resident = defaultResident(graph, init);
        }
        for (const [k, v] of resident) await exe.write(k, v);
        log(`step ${tag}: parameters written`);
        const feeds = feedsFor(graph);
        const { first, stepMs, stepGpuMs, encodeMs } = await withGpu(async () => {
          const first = await exe.run(feeds, ['loss']);
          const one = await exe.time(1);
          log(`step ${tag}: first step done, one timed step ${one.toFixed(1)} ms`);
          const reps = Math.max(2, Math.min(Number(process.env.STEP_REPS ?? 10), Math.floor(2000 / Math.max(one, 1))));
          const stepMs = (await exe.time(reps)) / reps;
          return { first, stepMs, stepGpuMs: exe.gpuMs === undefined ? NaN : exe.gpuMs / reps, encodeMs: (exe.encodeMs ?? NaN) / reps };
        });
        log(`step ${tag} (${precision}): ${stepMs.toFixed(2)} ms wall, ${stepGpuMs.toFixed(2)} ms GPU, ${encodeMs.toFixed(2)} ms CPU encoding and submitting, compile ${compileMs.toFixed(0)} ms, loss ${first.loss!.data[0]}`);
        emit({ part: 'step', shape: spec, variant, stepMs, stepGpuMs, encodeMs, compileMs, loss: first.loss!.data[0] });
        if (process.env.PROFILE === '1') {
          const prof = await withGpu(() => profileSummary(exe));
          log(`step ${tag} profile: ${prof.totalMs.toFixed(2)} ms in dispatches; ${JSON.stringify(prof.byCategory)}`);
          for (const t of prof.top.slice(0, 12)) log(`  ${t.ms.toFixed(3)} ms ${t.cat} ${t.name} (${t.what}, workgroups ${t.workgroups})`);
          emit({ part: 'stepProfile', shape: spec, variant, ...prof });
        }
        exe.dispose();
      } catch (e) {
        log(`step ${tag}: ${(e as Error).message.slice(0, 400)}`);
        emit({ part: 'step', shape: spec, variant, error: (e as Error).message.slice(0, 400) });
      }
    }
  }
}
process.exit(0);

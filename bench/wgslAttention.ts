/**
 * @file The WGSL tiled flash attention on the GPU machine (`tsx bench/wgslAttention.ts`), f32 operands: PARTS
 * (comma list, in order)
 *  - check: y, dQ, dK, dV against the f64 reference (test/support/wgslAttentionCheck.ts) at CHECK_CASES
 *    (dim:seq[:causal];…, default a head dim 64, 72 and 128 case each, lengths that end in a partial tile), with the
 *    adapter's tiles and softmax, or ATTN_VARIANTS' first variant;
 *  - attn: forward (y only) and backward (dQ, dK, dV from q, k, v, o, dO inputs: the statistics, dQ and
 *    dK/dV passes) at ATTN_SHAPES (B,H,S,D[,causal];…), forward + backward = their sum (as SDPA's are
 *    timed in bench/wgsl_kernels_torch.py), for each of ATTN_VARIANTS (`;`-separated; `default` =
 *    attentionTiling.ts's choice, else `name=pass:RxC[xG],…` with pass forward|dq|dkv, R×C the score tile
 *    and G its invocation rows: WorkgroupAttentionTile.threadRows; passes not named keep the default);
 *    ATTN_SPLIT=1 also times the backward of dQ alone and of dK, dV alone (qMs, kvMs: the statistics pass
 *    and that one pass), ATTN_PROGRAM=1 the autodiff program of loss = Σ y·cot (programMs: forward, the
 *    loss's full reduction and the backward; what this bench timed as forward + backward until 2026-12-02).
 * Compiled with remat off (fused remat would add a second forward to the autodiff program). Times from GPU timestamps around one submission of 2..20 runs (bench/wgslTiming.ts; wall clock beside
 * them), ROBUSTNESS=off turns Dawn's bounds clamps off. One JSON line per measurement on stdout
 * (`{"bench":"wgslAttention",…}`), progress on stderr. TFLOP/s count 4·B·H·S²·D for the forward and 3.5×
 * that for forward + backward (halved when causal), as bench/wgsl_kernels_torch.py does for PyTorch.
 */
import { type WgslExecutable, wgslBackendWith } from '../backends/wgsl/executable.ts';
import type { WorkgroupAttentionPass, WorkgroupAttentionTile } from '../backends/wgsl/attentionTiling.ts';
import { compileOn } from '../runtime/compile.ts';
import { type AttentionCase, attentionGradOnlyGraph, attentionGraph, caseName } from '../test/support/attentionGraphs.ts';
import { checkAttention } from '../test/support/wgslAttentionCheck.ts';
import { log, patternFeeds, pipelineProgress, timeExe } from './wgslTiming.ts';

type Tiles = Partial<Record<WorkgroupAttentionPass, WorkgroupAttentionTile>>;
const emit = (o: Record<string, unknown>) => console.log(JSON.stringify({ bench: 'wgslAttention', ...o }));
const parts = (process.env.PARTS ?? 'check,attn').split(',');
const robustness = process.env.ROBUSTNESS !== 'off';

/** `name=forward:64x32x16,dq:32x32x8` → [name, tiles]; `default` → no overrides. */
function parseVariant(spec: string): [string, Tiles] {
  if (spec === 'default') return ['default', {}];
  const [name, list] = spec.split('=') as [string, string | undefined];
  const tiles: Tiles = {};
  for (const item of (list ?? '').split(',').filter(Boolean)) {
    const [pass, dims] = item.split(':') as [WorkgroupAttentionPass, string];
    const [rows, cols, threadRows] = dims.split('x').map(Number) as [number, number, number | undefined];
    if (!['forward', 'dq', 'dkv'].includes(pass) || !rows || !cols) throw new Error(`ATTN_VARIANTS: bad tile '${item}' in '${spec}' (pass:RxC[xG])`);
    tiles[pass] = { rows, cols, ...(threadRows ? { threadRows } : {}) };
  }
  return [name, tiles];
}
const variants = (process.env.ATTN_VARIANTS ?? 'default').split(';').filter(Boolean).map(parseVariant);

/** The workgroup sizes of the tiled passes of the sources compiled (a tiled pass declares `Ks`). */
const passSizes = (sources: string[]) => sources.filter((s) => s.includes('var<workgroup> Ks')).map((s) => Number(s.match(/@workgroup_size\((\d+)/)?.[1]));

if (parts.includes('check')) {
  const [vname, tiles] = variants[0]!;
  const be = wgslBackendWith({ robustness, ...(Object.keys(tiles).length ? { attentionTiles: tiles } : {}) });
  const dev = await be.device();
  log(`check (${vname}) on ${dev.adapterInfo}, workgroup memory ${dev.limits.maxComputeWorkgroupStorageSize} B, subgroups ${dev.subgroupMinSize}`);
  const bad: string[] = [];
  for (const [i, spec] of (process.env.CHECK_CASES ?? '64:255:causal;72:256;128:255').split(';').entries()) {
    const [dim, seq, causal] = [Number(spec.split(':')[0]), Number(spec.split(':')[1]), spec.split(':')[2] === 'causal'];
    const c: AttentionCase = seq > 17 ? { batch: 1, heads: 2, seq, dim, causal, layout: i % 2 ? 'bhsd' : 'bshd' } : { batch: 2, heads: 3, seq, dim, causal, layout: 'bshd' };
    const t0 = performance.now();
    const { err, refVsCpu } = await checkAttention(be, c, dim * 1000 + seq + (causal ? 7 : 0), seq <= 17);
    const worst = Math.max(...Object.values(err), refVsCpu ?? 0);
    if (!(worst <= 1e-4)) bad.push(caseName(c));
    log(`check ${caseName(c)}: worst ${worst.toExponential(2)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    emit({ part: 'check', variant: vname, case: caseName(c), ...err, refVsCpu, ok: worst <= 1e-4 });
  }
  log(`check: ${bad.length ? `FAILED ${bad.join('; ')}` : 'all within 1e-4'}`);
}

if (parts.includes('attn')) {
  const shapes = (process.env.ATTN_SHAPES ?? '32,16,256,72;16,12,256,64').split(';').map((s) => {
    const p = s.split(',');
    return { batch: +p[0]!, heads: +p[1]!, seq: +p[2]!, dim: +p[3]!, causal: p[4] === 'causal' } as AttentionCase;
  });
  for (const c of shapes) {
    const flop = 4 * c.batch * c.heads * c.seq * c.seq * c.dim * (c.causal ? 0.5 : 1);
    const shape = `${c.batch},${c.heads},${c.seq},${c.dim}${c.causal ? ',causal' : ''}`;
    for (const [v, tiles] of variants) {
      const sources: string[] = [];
      const be = wgslBackendWith({ robustness, onPipeline: pipelineProgress(`attn ${shape} ${v}`), onSource: (_, s) => sources.push(s), ...(Object.keys(tiles).length ? { attentionTiles: tiles } : {}) });
      try {
        const t0 = performance.now();
        const gf = attentionGraph({ ...c, f32: true });
        const ef = (await compileOn(be, gf, { precision: 'f32', cacheDir: '', remat: 'off' })) as WgslExecutable;
        const fwd = await timeExe(ef, patternFeeds(gf.inputs), ['y'], 300);
        ef.dispose();
        const time = async (g: ReturnType<typeof attentionGraph>, outs: string[], budget: number) => {
          const e = (await compileOn(be, g, { precision: 'f32', cacheDir: '', remat: 'off' })) as WgslExecutable;
          const t = await timeExe(e, patternFeeds(g.inputs), outs, budget);
          e.dispose();
          return t;
        };
        // The backward alone (statistics, dQ, dK/dV passes), as SDPA's backward is timed.
        const bwd = await time(attentionGradOnlyGraph({ ...c, f32: true }), ['grad.q', 'grad.k', 'grad.v'], 600);
        const gpu = (t: { ms: number; gpuMs: number }) => (Number.isNaN(t.gpuMs) ? t.ms : t.gpuMs);
        const fwdMs = gpu(fwd), bwdMs = gpu(bwd), totalMs = fwdMs + bwdMs;
        log(`attn ${shape} ${v}: fwd ${fwdMs.toFixed(3)} ms, bwd ${bwdMs.toFixed(3)} ms (GPU; wall ${fwd.ms.toFixed(3)} / ${bwd.ms.toFixed(3)}), ${((performance.now() - t0) / 1000).toFixed(1)} s with compiles`);
        emit({ part: 'attn', shape, variant: v, tiles, workgroupSizes: passSizes(sources), fwdMs, bwdMs, totalMs, fwdWallMs: fwd.ms, bwdWallMs: bwd.ms, fwdTflops: flop / (fwdMs * 1e-3) / 1e12, totalTflops: (3.5 * flop) / (totalMs * 1e-3) / 1e12 });
        // ATTN_SPLIT=1: the backward with dQ only (statistics and dQ passes) and with dK, dV only; one line each.
        if (process.env.ATTN_SPLIT === '1')
          for (const wrt of [['q'], ['k', 'v']] as const) emit({ part: 'attnSplit', shape, variant: v, [`${wrt.join('')}Ms`]: gpu(await time(attentionGradOnlyGraph({ ...c, f32: true, wrt }), wrt.map((w) => `grad.${w}`), 400)) });
        // ATTN_PROGRAM=1: the whole autodiff program of loss = Σ y·cot (forward, the loss's reduction, backward).
        if (process.env.ATTN_PROGRAM === '1') emit({ part: 'attnProgram', shape, variant: v, programMs: gpu(await time(attentionGraph({ ...c, f32: true, grads: true }), ['grad.q', 'grad.k', 'grad.v'], 600)) });
      } catch (e) {
        log(`attn ${shape} ${v}: ${(e as Error).message.slice(0, 300)}`);
        emit({ part: 'attn', shape, variant: v, error: (e as Error).message.slice(0, 300) });
      }
    }
  }
}
process.exit(0);

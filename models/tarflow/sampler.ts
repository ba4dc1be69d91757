/**
 * @file Sampling a TarFlow (noise → data) and the one-step score denoising, as host loops over the
 * traced programs of graphs.ts.
 *
 * The blocks run in reverse order. Within a block (tokens in the block's order), token t is produced
 * from the tokens before it: x_t = z_t·σ_t + μ_t (TarFlow: t = 1 … T−1, x_0 = z_0; with SOS: t = 0 … T−1).
 * - KV-cached sampler: one `blockStep` program per block; each step feeds the newest token and its
 *   position, the keys/values stay resident as state of a fixed-size cache [B', H, T, hd] (zeroed at
 *   the start of each block), so every step has the same shapes. O(T) work per token.
 * - Non-cached reference sampler: one `blockParams` program per block, re-run over the whole
 *   (partially sampled) sequence for every token. O(T²) per token; it must agree with the cached one.
 *
 * Denoising (TarFlow sample.ipynb): x ← x + σ²·∇_x log p(x | y), with the gradient from `grad()` of
 * the logDensity program (equal to the reference's x − B·D·σ²·∇_x loss).
 *
 * Layering: models/ import only the DSL and ir, so the backend's compile function and the autodiff
 * transform are passed in (a Backend's `compile` and compiler/transforms/grad.ts's `grad` fit).
 */
import type { Graph } from '../../ir/graph.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { blockParamsGraph, blockStepGraph, cacheName, logDensityGraph, unpatchifyGraph } from './graphs.ts';
import type { TarFlow } from './model.ts';

/** What the sampler needs of a compiled program (a backend Executable has it). */
export interface GraphRunner {
  write(name: string, value: HostTensor): Promise<void>;
  run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>>;
  dispose(): void;
}
export type CompileGraph = (g: Graph) => Promise<GraphRunner>;
export type GradTransform = (g: Graph, opts: { loss: string; wrt: readonly string[]; outputs?: readonly string[] }) => Graph;

async function openProgram(compile: CompileGraph, g: Graph, params: ReadonlyMap<string, HostTensor>): Promise<GraphRunner> {
  const r = await compile(g);
  for (const i of g.inputs) {
    if (i.kind !== 'param') continue;
    const v = params.get(i.name);
    if (!v) throw new Error(`TarFlow sampler: no value for parameter '${i.name}'`);
    await r.write(i.name, v);
  }
  return r;
}

/** [B, T, C] host tokens: flip the token axis. */
function flipTokens(x: Float32Array, b: number, t: number, c: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < b; i++)
    for (let j = 0; j < t; j++) out.set(x.subarray((i * t + j) * c, (i * t + j + 1) * c), (i * t + (t - 1 - j)) * c);
  return out;
}

export interface SamplerOptions {
  batch: number;
  /** Build guided programs (class-conditional flows): `sample(..., { guidance })` then works for any w ≥ 0. */
  guided?: boolean;
  /** KV-cached steps (default) or the non-cached full recomputation. */
  kvCache?: boolean;
}

export interface SampleOptions {
  /** Labels i32 [B] (conditional flows; −1 = no class; default all −1). */
  y?: HostTensor;
  /** Guidance weight w (needs a sampler opened with guided: true). Default 0. */
  guidance?: number;
}

export class TarFlowSampler {
  private constructor(
    readonly flow: TarFlow,
    readonly opts: Required<SamplerOptions>,
    private readonly blocks: GraphRunner[],
    private readonly unpatch: GraphRunner,
  ) {}

  static async open(flow: TarFlow, compile: CompileGraph, params: ReadonlyMap<string, HostTensor>, opts: SamplerOptions): Promise<TarFlowSampler> {
    const o = { guided: false, kvCache: true, ...opts };
    const go = { batch: o.batch, guided: o.guided };
    const blocks: GraphRunner[] = [];
    for (let k = 0; k < flow.blocks.length; k++)
      blocks.push(await openProgram(compile, o.kvCache ? blockStepGraph(flow, k, go) : blockParamsGraph(flow, k, go), params));
    return new TarFlowSampler(flow, o, blocks, await compile(unpatchifyGraph(flow, { batch: o.batch })));
  }

  /** Noise tokens [B, T, C'] → data tokens [B, T, C']. */
  async sampleTokens(noise: HostTensor, so: SampleOptions = {}): Promise<HostTensor> {
    const { tokens: T, tokenChannels: C, numHeads, headDim, numClasses, sos } = this.flow.cfg;
    const B = this.opts.batch;
    if (noise.shape.join() !== [B, T, C].join()) throw new Error(`TarFlow sampler: noise must be [${B}, ${T}, ${C}], got [${noise.shape.join(', ')}]`);
    const w = so.guidance ?? 0;
    if (w !== 0 && !this.opts.guided) throw new Error('TarFlow sampler: guidance needs a sampler opened with guided: true');
    const feeds: Record<string, HostTensor> = {};
    if (numClasses > 0) feeds.y = so.y ?? hostTensor('i32', [B], new Array(B).fill(-1));
    if (this.opts.guided) feeds.guidance = hostTensor('f32', [], [w]);
    const rows = this.opts.guided ? 2 * B : B;
    const zeroCache = hostTensor('f32', [rows, numHeads, T, headDim]);

    let cur: Float32Array = Float32Array.from(noise.data as ArrayLike<number>);
    for (let k = this.flow.blocks.length - 1; k >= 0; k--) {
      const blk = this.flow.blocks[k]!;
      const prog = this.blocks[k]!;
      const z = blk.flip ? flipTokens(cur, B, T, C) : cur;
      const x = Float32Array.from(z);
      if (this.opts.kvCache)
        for (let j = 0; j < blk.attn_blocks.length; j++) {
          await prog.write(cacheName(j, 'k'), zeroCache);
          await prog.write(cacheName(j, 'v'), zeroCache);
        }
      const steps = sos ? T : T - 1;
      for (let t = 0; t < steps; t++) {
        const out = sos ? t : t + 1; // the token produced at this step
        let scale: ArrayLike<number>;
        let shift: ArrayLike<number>;
        let row: number; // token index of `out` inside the returned tensors
        if (this.opts.kvCache) {
          const src = sos ? t - 1 : t; // the input token at position t (SOS: position 0 takes sos_embed)
          const tok = new Float32Array(B * C);
          if (src >= 0) for (let b = 0; b < B; b++) tok.set(x.subarray((b * T + src) * C, (b * T + src + 1) * C), b * C);
          const r = await prog.run({ ...feeds, token: hostTensor('f32', [B, 1, C], tok), pos: hostTensor('i32', [], [t]) }, ['scale', 'shift']);
          [scale, shift, row] = [r.scale!.data, r.shift!.data, 0];
        } else {
          const r = await prog.run({ ...feeds, x: hostTensor('f32', [B, T, C], x) }, ['scale', 'shift']);
          [scale, shift, row] = [r.scale!.data, r.shift!.data, out];
        }
        const rowsPer = this.opts.kvCache ? 1 : T;
        for (let b = 0; b < B; b++)
          for (let c = 0; c < C; c++) {
            const i = (b * T + out) * C + c;
            const s = (b * rowsPer + row) * C + c;
            x[i] = z[i]! * scale[s]! + shift[s]!;
          }
      }
      cur = blk.flip ? flipTokens(x, B, T, C) : x;
    }
    return hostTensor('f32', [B, T, C], cur);
  }

  /** Noise tokens [B, T, C'] → images [B, C, S, S]. */
  async sample(noise: HostTensor, so: SampleOptions = {}): Promise<HostTensor> {
    const tokens = await this.sampleTokens(noise, so);
    return (await this.unpatch.run({ tokens }, ['x'])).x!;
  }

  dispose(): void {
    for (const r of this.blocks) r.dispose();
    this.unpatch.dispose();
  }
}

/** One score step x ← x + σ²·∇_x log p(x | y) on images [B, C, S, S]. */
export class TarFlowDenoiser {
  private constructor(readonly flow: TarFlow, readonly batch: number, private readonly prog: GraphRunner) {}

  static async open(flow: TarFlow, compile: CompileGraph, grad: GradTransform, params: ReadonlyMap<string, HostTensor>, opts: { batch: number }): Promise<TarFlowDenoiser> {
    const g = grad(logDensityGraph(flow, opts), { loss: 'log_p', wrt: ['x'], outputs: ['log_p'] });
    return new TarFlowDenoiser(flow, opts.batch, await openProgram(compile, g, params));
  }

  /** Returns the denoised images (and log p of the input, summed over the batch). */
  async denoise(x: HostTensor, sigma: number, y?: HostTensor): Promise<{ x: HostTensor; logp: number }> {
    const feeds: Record<string, HostTensor> = { x };
    if (this.flow.cfg.numClasses > 0) feeds.y = y ?? hostTensor('i32', [this.batch], new Array(this.batch).fill(-1));
    const r = await this.prog.run(feeds, ['log_p', 'grad.x']);
    const g = r['grad.x']!.data;
    const out = new Float32Array(x.data.length);
    for (let i = 0; i < out.length; i++) out[i] = (x.data[i] as number) + sigma * sigma * g[i]!;
    return { x: hostTensor('f32', x.shape, out), logp: r.log_p!.data[0]! };
  }

  dispose(): void {
    this.prog.dispose();
  }
}

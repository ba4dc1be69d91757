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
import { blockParamsGraph, blockStepGraph, logDensityGraph, unpatchifyGraph } from './graphs.ts';
import type { TarFlow } from './model.ts';
import { type GraphRunner, type SampleOptions, type ReverseSpec, reverseTokens } from './reverseLoop.ts';

/** What the reverse loop needs to know of a flow. */
export function reverseSpec(flow: TarFlow): ReverseSpec {
  const { tokens, tokenChannels, numHeads, headDim, numClasses, sos } = flow.cfg;
  return { tokens, tokenChannels, numHeads, headDim, numClasses, sos, blocks: flow.blocks.map((b) => ({ flip: b.flip, layers: b.attn_blocks.length })) };
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

export interface SamplerOptions {
  batch: number;
  /** Build guided programs (class-conditional flows): `sample(..., { guidance })` then works for any w ≥ 0. */
  guided?: boolean;
  /** KV-cached steps (default) or the non-cached full recomputation. */
  kvCache?: boolean;
}

export type { GraphRunner, SampleOptions } from './reverseLoop.ts';

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

  /** Noise tokens [B, T, C'] → data tokens [B, T, C'] (the loop: reverseLoop.ts). */
  async sampleTokens(noise: HostTensor, so: SampleOptions = {}): Promise<HostTensor> {
    return reverseTokens(reverseSpec(this.flow), this.blocks, noise, { ...so, batch: this.opts.batch, guided: this.opts.guided, kvCache: this.opts.kvCache });
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

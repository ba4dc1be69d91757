/**
 * @file The TarFlow/STARFlow reverse (noise → data) loop over compiled per-block programs, as plain host
 * code with no DSL imports, so that the Node sampler (sampler.ts) and the browser runtime (web/runtime)
 * run the same loop. The blocks run in reverse order; within a block (tokens in the block's order) token
 * t is x_t = z_t·σ_t + μ_t from the tokens before it (TarFlow: t = 1 … T−1, x_0 = z_0; with SOS:
 * t = 0 … T−1). KV-cached: each step feeds the newest token and its position to the block's step program,
 * whose caches (state inputs `cache.<layer>.<k|v>`, zeroed at the start of each block) it updates
 * itself; non-cached: the block's params program is re-run over the whole sequence for every token.
 */
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';

/** What the loop needs of a compiled program (a backend Executable has it). */
export interface GraphRunner {
  write(name: string, value: HostTensor): Promise<void>;
  run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>>;
  dispose(): void;
}

/** What the loop needs to know of a flow (sampler.ts's reverseSpec(flow) gives it). */
export interface ReverseSpec {
  readonly tokens: number;
  readonly tokenChannels: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly numClasses: number;
  readonly sos: boolean;
  /** Per block: flipped token order, and its number of attention layers (KV caches). */
  readonly blocks: ReadonlyArray<{ readonly flip: boolean; readonly layers: number }>;
}

export interface SampleOptions {
  /** Labels i32 [B] (conditional flows; −1 = no class; default all −1). */
  y?: HostTensor;
  /** Guidance weight w (needs programs built with guided: true). Default 0. */
  guidance?: number;
}

export interface ReverseOptions extends SampleOptions {
  readonly batch: number;
  readonly guided: boolean;
  readonly kvCache: boolean;
  /** Called after each block: blocks done of total. */
  readonly onBlock?: (done: number, total: number) => void;
}

/** The name of the KV cache state input of attention layer `layer`. */
export function cacheName(layer: number, which: 'k' | 'v'): string {
  return `cache.${layer}.${which}`;
}

/** [B, T, C] host tokens: flip the token axis. */
function flipTokens(x: Float32Array, b: number, t: number, c: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < b; i++)
    for (let j = 0; j < t; j++) out.set(x.subarray((i * t + j) * c, (i * t + j + 1) * c), (i * t + (t - 1 - j)) * c);
  return out;
}

/** Noise tokens [B, T, C'] → data tokens [B, T, C'], with `blocks[k]` the program of block k. */
export async function reverseTokens(spec: ReverseSpec, blocks: readonly GraphRunner[], noise: HostTensor, o: ReverseOptions): Promise<HostTensor> {
  const { tokens: T, tokenChannels: C, numHeads, headDim, numClasses, sos } = spec;
  const B = o.batch;
  if (noise.shape.join() !== [B, T, C].join()) throw new Error(`TarFlow sampler: noise must be [${B}, ${T}, ${C}], got [${noise.shape.join(', ')}]`);
  const w = o.guidance ?? 0;
  if (w !== 0 && !o.guided) throw new Error('TarFlow sampler: guidance needs a sampler opened with guided: true');
  const feeds: Record<string, HostTensor> = {};
  if (numClasses > 0) feeds.y = o.y ?? hostTensor('i32', [B], new Array(B).fill(-1));
  if (o.guided) feeds.guidance = hostTensor('f32', [], [w]);
  const rows = o.guided ? 2 * B : B;
  const zeroCache = hostTensor('f32', [rows, numHeads, T, headDim]);

  let cur: Float32Array = Float32Array.from(noise.data as ArrayLike<number>);
  for (let k = spec.blocks.length - 1; k >= 0; k--) {
    const blk = spec.blocks[k]!;
    const prog = blocks[k]!;
    const z = blk.flip ? flipTokens(cur, B, T, C) : cur;
    const x = Float32Array.from(z);
    if (o.kvCache)
      for (let j = 0; j < blk.layers; j++) {
        await prog.write(cacheName(j, 'k'), zeroCache);
        await prog.write(cacheName(j, 'v'), zeroCache);
      }
    const steps = sos ? T : T - 1;
    for (let t = 0; t < steps; t++) {
      const out = sos ? t : t + 1; // the token produced at this step
      let scale: ArrayLike<number>;
      let shift: ArrayLike<number>;
      let row: number; // token index of `out` inside the returned tensors
      if (o.kvCache) {
        const src = sos ? t - 1 : t; // the input token at position t (SOS: position 0 takes sos_embed)
        const tok = new Float32Array(B * C);
        if (src >= 0) for (let b = 0; b < B; b++) tok.set(x.subarray((b * T + src) * C, (b * T + src + 1) * C), b * C);
        const r = await prog.run({ ...feeds, token: hostTensor('f32', [B, 1, C], tok), pos: hostTensor('i32', [], [t]) }, ['scale', 'shift']);
        [scale, shift, row] = [r.scale!.data, r.shift!.data, 0];
      } else {
        const r = await prog.run({ ...feeds, x: hostTensor('f32', [B, T, C], x) }, ['scale', 'shift']);
        [scale, shift, row] = [r.scale!.data, r.shift!.data, out];
      }
      const rowsPer = o.kvCache ? 1 : T;
      for (let b = 0; b < B; b++)
        for (let c = 0; c < C; c++) {
          const i = (b * T + out) * C + c;
          const s = (b * rowsPer + row) * C + c;
          x[i] = z[i]! * scale[s]! + shift[s]!;
        }
    }
    cur = blk.flip ? flipTokens(x, B, T, C) : x;
    o.onBlock?.(spec.blocks.length - k, spec.blocks.length);
  }
  return hostTensor('f32', [B, T, C], cur);
}

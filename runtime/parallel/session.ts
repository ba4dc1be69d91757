/**
 * @file Data-parallel training of one rank: the training step split at its gradients
 * (compiler/transforms/trainStep.ts dataParallelSteps) into the gradients program (forward and
 * backward of this rank's shard) and the update program (clipping, optimizer, EMA), with the ranks'
 * gradients averaged in between, so that every rank applies the same update to the same parameters.
 *
 * Two ways to average, one contract:
 *  - on CUDA with NCCL (backends/cuda/dataParallel.ts): the gradients are all-reduced device to device
 *    in buckets, in the order the backward writes them, on a second stream while the rest of the
 *    backward runs, inside the step's CUDA graph; the update program reads the parameters in the
 *    gradients program's memory (no copy);
 *  - on any other backend (the CPU backend in tests), through the host: the gradients are fetched,
 *    averaged by the group's Collective of host buffers (runtime/parallel/tcpGroup.ts) in buckets in
 *    reverse parameter order, written into the update program, and the new parameters are copied
 *    back into the gradients program.
 *
 * The same on both: rank 0's parameters and state are broadcast when the session opens (so the ranks
 * start equal whatever they loaded); the scalar outputs a step fetches (loss, metrics) are averaged
 * over the ranks (each rank's loss is the mean over its shard, so the mean of the ranks' losses is the
 * global batch's loss); `checkEvery` N > 0 compares a SHA-256 of every rank's parameters, EMA and
 * optimizer state every N steps and fails naming the ranks that differ (debug mode: KILN_DP_CHECK_EVERY).
 */
import { createHash } from 'node:crypto';
import type { Backend } from '../../backends/backend.ts';
import { NEXT_PREFIX } from '../../ir/graph.ts';
import type { Graph, InputKind } from '../../ir/graph.ts';
import { KilnError } from '../../ir/errors.ts';
import { type HostTensor, hostTensor } from '../../ir/tensor.ts';
import { type DataParallelSteps, dataParallelSteps } from '../../compiler/transforms/trainStep.ts';
import { gradName } from '../../compiler/transforms/grad.ts';
import type { CompileOnOptions } from '../compile.ts';
import { Session, type StepSession, defaultResident } from '../session.ts';
import { ParallelError, type TcpGroup } from './tcpGroup.ts';

/** What a rank needs to train data-parallel. */
export interface ParallelContext {
  /** The job's ranks (rendezvous, host collectives, failure detection). */
  readonly group: TcpGroup;
  /** Compare the ranks' state every N steps (0: never). */
  readonly checkEvery?: number;
  /** Round gradients to bf16 for the all-reduce (default: the parameters' dtype, f32). */
  readonly gradDtype?: 'bf16';
  /** Gradient bucket size in bytes (default 25 MiB, PyTorch DDP's). */
  readonly bucketBytes?: number;
  /** The NCCL library search list (runtime/parallel/ncclLibrary.ts), for the CUDA path. */
  readonly ncclCandidates?: readonly string[];
}

export const DEFAULT_BUCKET_BYTES = 25 * 2 ** 20;

/** The device side of a rank's step (the CUDA path implements it; the host path is this file's). */
export interface DeviceParallelStep {
  /** Run the gradients program, its all-reduces and the update program; the fetched outputs of either. */
  run(feeds: Readonly<Record<string, HostTensor>>, fetch: readonly string[]): Promise<Record<string, HostTensor>>;
  /** Copy rank 0's parameters and state to every rank. */
  broadcastState(): Promise<void>;
  /** Bucket sizes and how the step runs (for the log). */
  readonly describe: string;
  dispose(): void;
}

/** Bytes of a host tensor's data. */
function bytesOf(t: HostTensor): Uint8Array {
  const d = t.data as unknown as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export class ParallelSession implements StepSession {
  private steps = 0;
  private constructor(
    readonly graph: Graph,
    private readonly parts: DataParallelSteps,
    private readonly grads: Session,
    private readonly update: Session,
    private readonly par: ParallelContext,
    private readonly device: DeviceParallelStep | undefined,
  ) {}

  get rank(): number {
    return this.par.group.rank;
  }
  get worldSize(): number {
    return this.par.group.worldSize;
  }
  get describe(): string {
    return this.device?.describe ?? `host all-reduce over ${this.par.group.transport} (${this.worldSize} ranks)`;
  }

  /**
   * Compile both programs of `step` (a trainStep graph) on `backend`, load `initial` (rank 0's counts:
   * it is broadcast), and on CUDA bind them to NCCL.
   */
  static async open(backend: Backend, step: Graph, initial: ReadonlyMap<string, HostTensor>, opts: CompileOnOptions, par: ParallelContext): Promise<ParallelSession> {
    if (step.inputs.some((i) => i.kind === 'data' && i.name.startsWith('grad.'))) throw new KilnError(`data parallelism: graph ${step.name} already has an input named grad.*`);
    const parts = dataParallelSteps(step, { gradDtype: par.gradDtype });
    const pick = (g: Graph) => new Map([...defaultResident(g, initial)]);
    if (backend.name === 'cuda') {
      const { openCudaParallel } = await import('../../backends/cuda/dataParallel.ts');
      const { compileOn } = await import('../compile.ts');
      const { loadNccl, ncclSearchList } = await import('../../backends/cuda/nccl.ts');
      const nccl = loadNccl(par.ncclCandidates ?? ncclSearchList());
      const made = await openCudaParallel({
        backend, parts, initialGradients: pick(parts.gradients), initialUpdate: pick(parts.update), compile: (g: Graph, b: Backend) => compileOn(b, g, opts),
        group: par.group, nccl: nccl.api, bucketBytes: par.bucketBytes ?? DEFAULT_BUCKET_BYTES,
      });
      const s = new ParallelSession(step, parts, Session.of(made.gradients), Session.of(made.update), par, made.step);
      await made.step.broadcastState();
      return s;
    }
    const grads = await Session.open(backend, parts.gradients, pick(parts.gradients), opts);
    const update = await Session.open(backend, parts.update, pick(parts.update), opts);
    const s = new ParallelSession(step, parts, grads, update, par, undefined);
    await s.broadcastHost();
    return s;
  }

  /** Rank 0's resident values on every rank (host path). */
  private async broadcastHost(): Promise<void> {
    const g = this.par.group;
    if (g.worldSize === 1) return;
    for (const s of [this.grads, this.update]) {
      const values = await s.read();
      for (const v of values.values()) await g.broadcastBytes(bytesOf(v), 0);
      await s.load(values);
    }
  }

  /** The gradient names in reverse parameter order (the backward's order, roughly), cut into buckets. */
  private buckets(): string[][] {
    const cap = this.par.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    const out: string[][] = [[]];
    let bytes = 0;
    for (const p of [...this.parts.params].reverse()) {
      if (bytes >= cap) (out.push([]), (bytes = 0));
      out.at(-1)!.push(gradName(p));
      bytes += this.parts.gradients.typeOf(this.parts.gradients.output(gradName(p))!.id).shape.reduce((a, b) => a * b, 1) * 4;
    }
    return out;
  }

  /** One data-parallel step on this rank's shard; fetched scalar outputs are averaged over the ranks. */
  async run(feeds: Readonly<Record<string, HostTensor>>, fetch?: readonly string[]): Promise<Record<string, HostTensor>> {
    const want = fetch ?? this.graph.outputs.map((o) => o.name).filter((n) => !n.startsWith(NEXT_PREFIX));
    for (const n of want) if (!this.graph.output(n)) throw new KilnError(`graph ${this.graph.name}: no output '${n}' to fetch`);
    const fromUpdate = want.filter((n) => this.parts.update.output(n));
    const fromGrads = want.filter((n) => !this.parts.update.output(n));
    const updateFeeds: Record<string, HostTensor> = {};
    const gradFeeds: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(feeds)) {
      const u = this.parts.update.inputByName(k)?.kind === 'data', gr = this.parts.gradients.inputByName(k)?.kind === 'data';
      if (!this.graph.inputByName(k)) throw new KilnError(`graph ${this.graph.name}: feed '${k}' is not an input`);
      if (u) updateFeeds[k] = v;
      if (gr) gradFeeds[k] = v;
    }
    let out: Record<string, HostTensor>;
    // The watchdog: a step that waits longer than the group's timeout (a rank hung, and this one waits
    // in a device collective, where no TCP timeout runs) fails the group on every rank.
    const g = this.par.group;
    const watchdog = setTimeout(() => g.abort(`rank ${g.rank} of ${g.worldSize}: step ${this.steps + 1} did not finish within ${g.timeoutMs / 1000} s (a rank hung)`), g.timeoutMs);
    try {
      out = await this.step(gradFeeds, updateFeeds, want, fromGrads, fromUpdate);
    } finally {
      clearTimeout(watchdog);
    }
    if (g.failed) throw g.failed;
    await this.averageScalars(out, fromGrads);
    this.steps++;
    if (this.par.checkEvery && this.steps % this.par.checkEvery === 0) await this.checkSame();
    return out;
  }

  private async step(gradFeeds: Record<string, HostTensor>, updateFeeds: Record<string, HostTensor>, want: readonly string[], fromGrads: readonly string[], fromUpdate: readonly string[]): Promise<Record<string, HostTensor>> {
    let out: Record<string, HostTensor>;
    if (this.device) {
      out = await this.device.run({ ...gradFeeds, ...updateFeeds }, want);
    } else {
      const gradNames = this.parts.params.map((p) => gradName(p));
      const a = await this.grads.run(gradFeeds, [...fromGrads, ...gradNames]);
      const values = new Map<string, HostTensor>();
      for (const bucket of this.buckets()) {
        const n = bucket.reduce((s, k) => s + a[k]!.data.length, 0);
        const flat = new Float32Array(n);
        let off = 0;
        for (const k of bucket) (flat.set(a[k]!.data, off), (off += a[k]!.data.length));
        await this.par.group.allReduce(flat, 'mean');
        off = 0;
        for (const k of bucket) {
          const t = a[k]!;
          values.set(k, hostTensor(t.dtype, t.shape, flat.subarray(off, (off += t.data.length))));
        }
      }
      await this.update.load(values);
      const b = await this.update.run(updateFeeds, fromUpdate);
      const params = new Map<string, HostTensor>();
      for (const p of this.parts.params) params.set(p, await this.update.exe.read(p));
      await this.grads.load(params);
      out = { ...Object.fromEntries(fromGrads.map((n) => [n, a[n]!])), ...b };
    }
    return out;
  }

  /** Scalar outputs of the gradients program (each rank's shard mean) → their mean over the ranks. */
  private async averageScalars(out: Record<string, HostTensor>, names: readonly string[]): Promise<void> {
    const scalars = names.filter((n) => out[n]!.data.length === 1 && out[n]!.dtype === 'f32');
    if (this.worldSize === 1 || !scalars.length) return;
    const v = Float32Array.from(scalars, (n) => out[n]!.data[0]!);
    await this.par.group.allReduce(v, 'mean');
    scalars.forEach((n, i) => (out[n] = hostTensor('f32', out[n]!.shape, [v[i]!])));
  }

  /** Every rank's parameters, EMA and optimizer state hashed; a ParallelError when two ranks differ. */
  async checkSame(): Promise<void> {
    const state = await this.read();
    const h = createHash('sha256');
    for (const k of [...state.keys()].sort()) h.update(k).update(bytesOf(state.get(k)!));
    const digest = h.digest();
    const W = this.worldSize;
    // 16 halves of 16 bits per rank (exact in f32), summed: every rank then has every rank's digest.
    const all = new Float32Array(W * 16);
    for (let i = 0; i < 16; i++) all[this.rank * 16 + i] = digest.readUInt16LE(2 * i);
    await this.par.group.allReduce(all, 'sum');
    const of = (r: number) => Array.from(all.subarray(r * 16, r * 16 + 16)).join(',');
    const differ = [...Array(W).keys()].filter((r) => of(r) !== of(0));
    if (differ.length) {
      const msg = `data parallelism: after ${this.steps} steps the parameters/optimizer state of rank(s) ${differ.join(', ')} differ from rank 0's (the ranks diverged: a non-deterministic update, or a rank ran a different program)`;
      this.par.group.abort(msg);
      throw new ParallelError(msg);
    }
  }

  /** Parameters (from the gradients program), optimizer state and EMA (from the update program). */
  async read(kinds: readonly InputKind[] = ['param', 'frozen', 'state']): Promise<Map<string, HostTensor>> {
    const m = await this.grads.read(kinds);
    for (const [k, v] of await this.update.read(kinds)) if (!k.startsWith('grad.') && !m.has(k)) m.set(k, v);
    return m;
  }

  /** Overwrite resident inputs of either program (parameters: both). */
  async load(values: ReadonlyMap<string, HostTensor>): Promise<void> {
    const a = new Map<string, HostTensor>(), b = new Map<string, HostTensor>();
    for (const [k, v] of values) {
      const inA = this.parts.gradients.inputByName(k), inB = this.parts.update.inputByName(k);
      if (!inA && !inB) throw new KilnError(`graph ${this.graph.name}: no resident input '${k}'`);
      if (inA) a.set(k, v);
      if (inB && !(this.device && inA)) b.set(k, v); // CUDA: the update program reads the gradients program's parameters
    }
    await this.grads.load(a);
    await this.update.load(b);
  }

  dispose(): void {
    this.device?.dispose();
    this.update.dispose();
    this.grads.dispose();
  }
}

/**
 * @file One rank's data-parallel step on CUDA with NCCL: the gradients program (forward and backward)
 * and the update program (clipping, optimizer, EMA) of compiler/transforms/trainStep.ts
 * dataParallelSteps, two CudaExecutables on one stream, the update program bound to the gradients
 * program's parameters (it reads and updates them in place: one copy of the weights).
 *
 * Overlap: the gradients are cut into buckets (25 MiB by default, like PyTorch DDP) in the order the
 * backward finishes writing them (CudaExecutable.lastWriter); right after the kernel that completes a
 * bucket, the step records an event, a second stream (the comm stream) waits for it and runs the
 * bucket's all-reduces (mean over the ranks, one NCCL group per bucket) from the gradients program's
 * output buffers into the update program's `grad.*` buffers, while the main stream goes on with the
 * rest of the backward. At the step's end the main stream waits for the comm stream, so the update
 * program (on the same stream) sees every averaged gradient.
 *
 * CUDA graphs: the fork (event record + wait), the NCCL calls and the join are enqueued inside the
 * gradients program's step, so the second run captures them with the kernels: every step is two graph
 * launches (gradients with its all-reduces, then the update), nothing from the host in between. NCCL
 * kernels in a graph need NCCL ≥ 2.9 (graph-capturable collectives). What is not captured: the feeds'
 * copies (as without data parallelism), the fetch of the loss, and the averaging of the fetched scalars
 * over the ranks (runtime/parallel/session.ts, through the TCP group: a few bytes per step).
 *
 * Failure: the TCP group (rank death, timeouts) aborts the communicator, so that a rank whose peer died
 * inside an all-reduce does not wait forever in an NCCL kernel.
 */
import type { Backend, Executable } from '../backend.ts';
import type { Collective } from '../collective.ts';
import type { DataParallelSteps } from '../../compiler/transforms/trainStep.ts';
import type { Graph } from '../../ir/graph.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { CudaDriver } from './driver.ts';
import { CudaError } from './errors.ts';
import { type CudaBackend, CudaExecutable } from './executable.ts';
import { NCCL_UNIQUE_ID_BYTES, type NcclApi, NcclComm } from './nccl.ts';

export interface CudaParallelArgs {
  readonly backend: Backend;
  readonly parts: DataParallelSteps;
  /** Initial resident values of each program (rank 0's are broadcast afterwards). */
  readonly initialGradients: ReadonlyMap<string, HostTensor>;
  readonly initialUpdate: ReadonlyMap<string, HostTensor>;
  /** Compile a graph on a backend (the runtime's compileOn with the job's options). */
  readonly compile: (g: Graph, b: Backend) => Promise<Executable>;
  /** The job's ranks (the unique id's way to every rank, failure detection). */
  readonly group: Collective<Float32Array>;
  readonly nccl: NcclApi;
  readonly bucketBytes: number;
  /** The driver (tests inject a fake one); default the process-wide one. */
  readonly driver?: CudaDriver;
}

/** A bucket: gradient names, and the kernel after which all of them are final. */
export interface GradientBucket {
  readonly names: readonly string[];
  readonly after: number;
  readonly bytes: number;
}

/** Gradients in the order their last writer runs, cut into buckets of at least `cap` bytes (the last one smaller). */
export function gradientBuckets(grads: ReadonlyArray<{ name: string; after: number; bytes: number }>, cap: number): GradientBucket[] {
  const sorted = [...grads].sort((a, b) => a.after - b.after);
  const out: Array<{ names: string[]; after: number; bytes: number }> = [];
  for (const g of sorted) {
    const last = out.at(-1);
    if (!last || last.bytes >= cap) out.push({ names: [g.name], after: g.after, bytes: g.bytes });
    else (last.names.push(g.name), (last.after = Math.max(last.after, g.after)), (last.bytes += g.bytes));
  }
  return out;
}

export class CudaParallelStep {
  private readonly cuda: CudaDriver;
  private readonly comm: NcclComm;
  private readonly commStream: unknown;
  private readonly events: unknown[] = [];
  private failure: Error | undefined;
  readonly buckets: GradientBucket[];

  constructor(readonly gradients: CudaExecutable, readonly update: CudaExecutable, comm: NcclComm, private readonly args: CudaParallelArgs) {
    this.cuda = args.driver ?? CudaDriver.get();
    this.comm = comm;
    this.commStream = this.cuda.createStream();
    const names = args.parts.params.map((p) => `grad.${p}`);
    this.buckets = gradientBuckets(names.map((n) => ({ name: n, after: gradients.lastWriter(n), bytes: gradients.address(n).bytes })), args.bucketBytes);
    const main = gradients.stepStream;
    for (const b of this.buckets) {
      const ready = this.cuda.createEvent();
      this.events.push(ready);
      const sends = b.names.map((n) => ({ src: gradients.address(n), dst: update.address(n) }));
      gradients.hook(b.after, () => {
        this.cuda.record(ready, main);
        this.cuda.streamWaitEvent(this.commStream, ready);
        this.comm.group(() => {
          for (const s of sends) this.comm.allReduce(s.src.ptr, s.dst.ptr, s.src.numel, s.src.dtype, 'mean', this.commStream);
        });
      });
    }
    const joined = this.cuda.createEvent();
    this.events.push(joined);
    gradients.hook('end', () => {
      this.cuda.record(joined, this.commStream);
      this.cuda.streamWaitEvent(main, joined);
    });
    for (const n of names) update.markWritten(n);
    args.group.onFailure((e) => {
      this.failure = e;
      this.comm.abort();
    });
  }

  get describe(): string {
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    return `NCCL all-reduce of ${this.buckets.length} gradient bucket(s) (${this.buckets.map((b) => mib(b.bytes)).join(', ')} MiB) on a second stream during the backward, over ${this.comm.worldSize} rank(s)`;
  }

  async run(feeds: Readonly<Record<string, HostTensor>>, fetch: readonly string[]): Promise<Record<string, HostTensor>> {
    if (this.failure) throw this.failure;
    const { gradients, update } = this;
    const gf: Record<string, HostTensor> = {}, uf: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(feeds)) {
      if (gradients.graph.inputByName(k)) gf[k] = v;
      if (update.graph.inputByName(k)) uf[k] = v;
    }
    // The update is enqueued right behind the gradients program (same stream, no host wait in
    // between); the gradients program's fetched outputs (the loss) are read after both.
    const fromA = fetch.filter((n) => !update.graph.output(n));
    await gradients.run(gf, []);
    const b = await update.run(uf, fetch.filter((n) => update.graph.output(n)));
    const a = fromA.length ? await gradients.fetchLast(fromA) : {};
    if (this.failure) throw this.failure;
    const async = this.comm.asyncError();
    if (async) throw new CudaError(`NCCL failed on rank ${this.comm.rank} of ${this.comm.worldSize}: ${async}`);
    return { ...a, ...b };
  }

  /** Rank 0's parameters, forward state, optimizer state and EMA on every rank (NCCL broadcast, in place). */
  async broadcastState(): Promise<void> {
    if (this.comm.worldSize === 1) return;
    const s = this.gradients.stepStream;
    const resident = (e: CudaExecutable, skip: (n: string) => boolean) => e.graph.inputs.filter((i) => i.kind !== 'data' && !skip(i.name)).map((i) => e.address(i.name));
    const bound = new Set(this.args.parts.params);
    const all = [...resident(this.gradients, () => false), ...resident(this.update, (n) => bound.has(n) || n.startsWith('grad.'))];
    this.comm.group(() => {
      for (const a of all) this.comm.broadcastBytes(a.ptr, a.bytes, 0, s);
    });
    this.cuda.streamSynchronize(s);
  }

  dispose(): void {
    this.cuda.streamSynchronize(this.commStream);
    for (const e of this.events) this.cuda.destroyEvent(e);
    this.cuda.destroyStream(this.commStream);
    this.comm.destroy();
  }
}

/**
 * NCCL's communicator for this rank (rank 0's unique id broadcast over the group), then both programs
 * compiled and bound, then the step. The ranks meet at a barrier right before ncclCommInitRank, which
 * blocks the thread until every rank has called it.
 */
export async function openCudaParallel(args: CudaParallelArgs): Promise<{ gradients: Executable; update: Executable; step: CudaParallelStep }> {
  const backend = args.backend as CudaBackend;
  if (typeof backend.withParts !== 'function') throw new CudaError('data parallelism on cuda needs the CUDA backend of backends/cuda/executable.ts');
  const gradients = await args.compile(args.parts.gradients, backend);
  if (!(gradients instanceof CudaExecutable)) throw new CudaError('data parallelism on cuda: the gradients program did not compile to a CudaExecutable');
  for (const [k, v] of args.initialGradients) await gradients.write(k, v);
  const bind = new Map(args.parts.params.map((p) => [p, gradients.address(p).ptr] as const));
  const update = await args.compile(args.parts.update, backend.withParts({ bind, stream: gradients.stepStream }));
  if (!(update instanceof CudaExecutable)) throw new CudaError('data parallelism on cuda: the update program did not compile to a CudaExecutable');
  for (const [k, v] of args.initialUpdate) if (!bind.has(k)) await update.write(k, v);
  const g = args.group;
  const id = g.rank === 0 ? NcclComm.uniqueId(args.nccl) : new Uint8Array(NCCL_UNIQUE_ID_BYTES);
  await g.broadcast(new Float32Array(id.buffer, id.byteOffset, NCCL_UNIQUE_ID_BYTES / 4), 0);
  await g.barrier();
  const comm = NcclComm.init(args.nccl, id, g.worldSize, g.rank);
  return { gradients, update, step: new CudaParallelStep(gradients, update, comm, args) };
}
